"""Stopping an applied pipeline that runs as a real Ray job (issue 16): the control plane submits it to the
session's private Ray head (``private_ray``), the operator stops it with ``force`` (``JobSubmissionClient.stop_job``) once its
first chunk has committed, the pipeline ends ``stopped`` with whole ranges only, and a resumed run writes the
rest, each ledger once."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq

from cdp_ray.control import ControlSettings
from cdp_ray.control.server import BackgroundServer
from cdp_ray.control.settings import TokenSpec
from cdp_ray.sample import SAMPLE_LAKE
from ray_head import free_ports

START, END = 63092982, 63092991
TOKENS = {"reader": "tok-reader", "operator": "tok-operator"}
SCOPES = {"reader": ["read"], "operator": ["read", "plan", "apply", "approve"]}


def free_port() -> int:
    return free_ports(1)[0]


def test_force_stop_of_a_real_ray_job_then_resume(tmp_path: Path, private_ray) -> None:
    ray_head = private_ray[0]
    from ray.job_submission import JobStatus, JobSubmissionClient

    out = tmp_path / "out"
    port = free_port()
    settings = ControlSettings(
        database=str(tmp_path / "control.sqlite3"), policies_dir=None, data_dir=tmp_path,
        tokens=[TokenSpec(name=n, token=t, scopes=SCOPES[n]) for n, t in TOKENS.items()],
        ray_address=ray_head, public_url=f"http://127.0.0.1:{port}", default_workers=1)
    desired = {"name": "jobstop", "source": {"uri": str(SAMPLE_LAKE), "start": START, "end": END},
               "processors": ["ledgers", "transactions"], "sinks": [{"type": "parquet", "uri": str(out)}],
               "options": {"ledgers_per_task": 2, "workers": 1}}
    with BackgroundServer(settings, port=port) as srv:
        operator = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {TOKENS['operator']}"}, timeout=120)
        reader = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {TOKENS['reader']}"}, timeout=120)
        hub, seen = srv.app.state.hub, {}
        original = hub.heartbeat

        def heartbeat(pipeline_id, hb):  # the job's first committed chunk: stop it through the dashboard
            if (hb.stats.get("chunks") or 0) >= 1 and "stop" not in seen:
                seen["stop"] = httpx.post(f"{srv.url}/pipelines/{pipeline_id}/stop", json={"force": True, "comment": "wrong range"},
                                          headers={"Authorization": f"Bearer {TOKENS['operator']}"}, timeout=60)
            return original(pipeline_id, hb)

        hub.heartbeat = heartbeat
        plan = operator.post("/plans", json={"desired": desired}).json()
        assert plan["status"] == "ready", plan
        applied = operator.post(f"/plans/{plan['id']}/apply").json()
        assert applied["executor"] == "ray-job", applied
        pid, job_id = applied["pipeline_id"], applied["job_id"]
        deadline = time.monotonic() + 300
        while (doc := reader.get(f"/pipelines/{pid}/status").json())["state"] not in ("stopped", "failed", "succeeded"):
            assert time.monotonic() < deadline, doc
            time.sleep(0.5)
        assert doc["state"] == "stopped", doc
        stop = seen["stop"]
        assert stop.status_code == 202, stop.text
        assert stop.json()["stop_job"] is True and stop.json()["job_id"] == job_id
        jobs, deadline = JobSubmissionClient(ray_head), time.monotonic() + 60
        while (status := jobs.get_job_status(job_id)) == JobStatus.RUNNING and time.monotonic() < deadline:
            time.sleep(0.5)
        assert status == JobStatus.STOPPED
        audit = reader.get("/audit", params={"subject": pid, "action": "pipeline.stop"}).json()
        assert [(a["actor"], a["outcome"], a["detail"]["force"]) for a in audit] == [("operator", "ok", True)]

        committed = reader.get(f"/pipelines/{pid}/checkpoints").json()
        done = committed["committed_ledgers"]
        assert 2 <= done < END - START + 1 and done % 2 == 0  # whole chunks only, and not all of them
        if (out / "ledgers").exists():
            from cdp_ray import scan

            seqs = sorted(scan(str(out), "ledgers").collect()["sequence"].to_list())
            assert seqs == sorted(set(seqs)) and len(seqs) == done

        plan = operator.post("/plans", json={"desired": desired}).json()
        pid2 = operator.post(f"/plans/{plan['id']}/apply").json()["pipeline_id"]
        deadline = time.monotonic() + 300
        while (doc := reader.get(f"/pipelines/{pid2}/status").json())["state"] not in ("stopped", "failed", "succeeded"):
            assert time.monotonic() < deadline, doc
            time.sleep(0.5)
        assert doc["state"] == "succeeded", doc
    seqs = sorted(pq.read_table(out / "ledgers", columns=["sequence"]).column("sequence").to_pylist())
    assert seqs == list(range(START, END + 1))  # every ledger once
