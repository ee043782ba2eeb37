"""The control plane deployed on Ray Serve: tools over HTTP, MCP over streamable HTTP with the SDK's client
(plan -> approve -> apply -> status), and a stop over HTTP of a run the replica started, then its resume."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq

from cdp_ray.control import ControlSettings
from cdp_ray.control.settings import DEFAULT_TOOLCARDS, TokenSpec
from cdp_ray.sample import SAMPLE_LAKE
from test_control_loop import END, SCOPES, START, TOKENS, _mcp_loop, pipeline


def wait_done(client: httpx.Client, pid: str) -> dict:
    deadline = time.monotonic() + 180
    while (doc := client.get(f"/pipelines/{pid}/status").json())["state"] not in ("succeeded", "failed", "stopped"):
        assert time.monotonic() < deadline, doc
        time.sleep(0.1)
    return doc


def test_serve_deployment_serves_tools_mcp_and_stop(tmp_path: Path, ray_cluster) -> None:
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client
    from ray import serve

    from cdp_ray.control.serve import run

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    settings = ControlSettings(database=str(tmp_path / "serve.sqlite3"), toolcards_dir=DEFAULT_TOOLCARDS,
                               policies_dir=None, data_dir=tmp_path, default_workers=1,
                               tokens=[TokenSpec(name=n, token=t, scopes=SCOPES[n]) for n, t in TOKENS.items()])
    try:
        run(settings, port=port, blocking=False)
        health = httpx.get(f"{url}/health", timeout=30).json()
        assert health["ok"] is True and health["store"] == "sqlite" and health["executor"] == "local"
        assert httpx.get(f"{url}/tools", timeout=30).status_code == 401
        reader = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKENS['reader']}"}, timeout=120)
        operator = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKENS['operator']}"}, timeout=120)
        assert "processor.ledgers" in {t["id"] for t in reader.get("/tools").json()}
        assert (tmp_path / "serve.sqlite3").exists()  # the replica opened the store

        doc = pipeline(SAMPLE_LAKE, tmp_path / "mcp", name="serve-mcp")
        doc["source"]["end"] = START + 1
        mcp = lambda: streamable_http_client(url + "/mcp", http_client=create_mcp_http_client(  # noqa: E731
            headers={"Authorization": f"Bearer {TOKENS['operator']}"}))
        st = _mcp_loop(mcp, doc)
        assert st["state"] == "succeeded" and st["stats"]["ledgers"] == 2

        out = tmp_path / "out"
        desired = pipeline(SAMPLE_LAKE, out, name="serve-stop")
        desired["options"]["ledgers_per_task"] = 1
        plan = operator.post("/plans", json={"desired": desired}).json()
        pid = operator.post(f"/plans/{plan['id']}/apply").json()["pipeline_id"]
        assert operator.post(f"/pipelines/{pid}/stop", json={"comment": "wrong range"}).status_code == 202
        end = wait_done(reader, pid)
        assert end["state"] == "stopped", end
        done = reader.get(f"/pipelines/{pid}/checkpoints").json()["committed_ledgers"]
        assert done < END - START + 1 and end["summary"]["chunks"] < end["summary"]["chunks_planned"]

        plan = operator.post("/plans", json={"desired": desired}).json()
        pid2 = operator.post(f"/plans/{plan['id']}/apply").json()["pipeline_id"]
        assert wait_done(reader, pid2)["state"] == "succeeded"
        seqs = sorted(pq.read_table(out / "ledgers", columns=["sequence"]).column("sequence").to_pylist())
        assert seqs == list(range(START, END + 1))  # every ledger once
    finally:
        serve.shutdown()
