"""End to end over real HTTP: discover, plan under policies, approve, restart, apply, follow, read output."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
import yaml
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cdp_ray.control import ControlSettings, telemetry
from cdp_ray.control.client import ControlClient, ControlPlaneError, Reporter
from cdp_ray.control.server import BackgroundServer
from cdp_ray.control.settings import DEFAULT_TOOLCARDS, TokenSpec
from cdp_ray.pipeline.config import PipelineConfig, load_pipeline
from cdp_ray.processors import REGISTRY
from cdp_ray.sample import SAMPLE_RANGE, sample_pipeline_path

SAMPLE_TXS = 2650  # transactions in the ten bundled ledgers (shared/stellar-data/inventory.jsonl)
TOKENS = {"alice": "tok-alice", "bob": "tok-bob", "carol": "tok-carol"}


def _settings(tmp_path: Path) -> ControlSettings:
    policies = tmp_path / "policies"
    policies.mkdir(exist_ok=True)
    (policies / "test.yaml").write_text(yaml.safe_dump({"policies": [
        {"name": "max-range", "rule": "max_ledgers", "limit": 1000, "mode": "block"},
        {"name": "four-eyes", "rule": "approval_required", "mode": "block"},
        {"name": "cost", "rule": "max_cost", "limit_usd": 1.0, "mode": "warn"},
    ]}))
    return ControlSettings(
        database=str(tmp_path / "control.sqlite3"),
        toolcards_dir=DEFAULT_TOOLCARDS,
        policies_dir=policies,
        tokens=[TokenSpec(name="alice", token=TOKENS["alice"], scopes=["read", "plan", "apply"]),
                TokenSpec(name="bob", token=TOKENS["bob"], scopes=["read", "approve"]),
                TokenSpec(name="carol", token=TOKENS["carol"], scopes=["read"])],
        default_workers=2,
    )


def _desired(out: Path, monkeypatch) -> dict:
    monkeypatch.setenv("CDP_RAY_OUT", str(out))
    doc = load_pipeline(sample_pipeline_path()).model_dump(mode="json")
    doc["processors"] = [p for p in doc["processors"] if p["name"] in ("ledgers", "transactions") and p["name"] in REGISTRY]
    return doc


def _sse(client: httpx.Client, path: str) -> list[tuple[str, dict]]:
    events, event = [], None
    with client.stream("GET", path, headers={"Accept": "text/event-stream"}, timeout=300) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                events.append((event, json.loads(line[6:])))
                if event == "end":
                    break
    return events


def test_plan_block_approve_restart_apply_follow(tmp_path: Path, monkeypatch, ray_cluster) -> None:
    spans = InMemorySpanExporter()
    telemetry.configure(spans)
    settings = _settings(tmp_path)
    out = tmp_path / "out"
    desired = _desired(out, monkeypatch)
    tables = [p["name"] for p in desired["processors"]]

    with BackgroundServer(settings) as srv:
        alice = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {TOKENS['alice']}"}, timeout=60)
        # Discovery.
        assert httpx.get(srv.url + "/tools").status_code == 401
        tools = alice.get("/tools").json()
        ids = {t["id"] for t in tools}
        assert {"source.lake", "processor.ledgers", "sink.parquet"} <= ids
        card = alice.get("/tools/processor.ledgers").json()
        assert card["primary_key"] == ["sequence"] and card["cost"]["rows_per_ledger"] == 1.0
        assert "processor.ledgers" in alice.get("/llms.txt").text
        assert "/plans/{plan_id}/apply" in alice.get("/openapi.json").json()["paths"]

        # A range over the policy's limit is blocked and cannot be approved.
        big = json.loads(json.dumps(desired))
        big["source"]["end"] = big["source"]["start"] + 4999
        blocked = alice.post("/plans", json={"desired": big}).json()
        assert blocked["status"] == "blocked"
        assert blocked["policy"]["blocking"] == ["max-range: range of 5000 ledgers exceeds the limit of 1000"]
        bob = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {TOKENS['bob']}"}, timeout=60)
        assert bob.post(f"/plans/{blocked['id']}/approve").status_code == 409

        # The sample range is allowed but needs an approver.
        r = alice.post("/plans", json={"desired": desired, "comment": "sample backfill"})
        assert r.status_code == 201
        plan = r.json()
        assert plan["status"] == "pending_approval" and plan["approval_required"] is True
        assert plan["changes"][0]["op"] == "create" and plan["changes"][0]["reprocess_ledgers"] == 10
        assert {c["name"]: c["status"] for c in plan["checks"]}["source"] == "pass"
        refused = alice.post(f"/plans/{plan['id']}/apply")
        assert refused.status_code == 409 and "needs approval" in refused.json()["detail"]["message"]
        assert alice.post(f"/plans/{plan['id']}/approve").status_code == 403  # alice lacks the approve scope

    # Restart: the plan and its audit trail survive.
    with BackgroundServer(settings) as srv:
        alice = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {TOKENS['alice']}"}, timeout=60)
        bob = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {TOKENS['bob']}"}, timeout=60)
        carol = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {TOKENS['carol']}"}, timeout=60)
        again = alice.get(f"/plans/{plan['id']}").json()
        assert again["status"] == "pending_approval" and again["estimate"] == plan["estimate"]
        approved = bob.post(f"/plans/{plan['id']}/approve", json={"comment": "ok for sample"}).json()
        assert approved["status"] == "approved" and approved["approvals"][0]["by"] == "bob"
        assert bob.post(f"/plans/{plan['id']}/apply").status_code == 403  # approving is not applying
        assert carol.post(f"/plans/{plan['id']}/apply").status_code == 403

        r = alice.post(f"/plans/{plan['id']}/apply")
        assert r.status_code == 202, r.text
        pid = r.json()["pipeline_id"]
        assert alice.post(f"/plans/{plan['id']}/apply").status_code == 409  # applied once only

        events = _sse(carol, f"/pipelines/{pid}/events")
        assert events[-1][0] == "end" and events[-1][1]["state"] == "succeeded", events[-1]
        done = [e[1]["stats"].get("ledgers", 0) for e in events if e[0] == "progress"]
        assert done == sorted(done) and done[-1] == 10

        status = carol.get(f"/pipelines/{pid}/status").json()
        stats = status["stats"]
        assert status["state"] == "succeeded" and status["plan_id"] == plan["id"]
        assert stats["ledgers"] == 10 and stats["chunks"] == 3 and stats["errors"] == 0
        assert stats["rows_by_table"]["ledgers"] == 10
        if "transactions" in tables:
            assert stats["rows_by_table"]["transactions"] == SAMPLE_TXS
        comp = stats["components"]
        assert comp["source.lake"]["lag_ledgers"] == 0 and comp["source.lake"]["bytes"] == stats["xdr_bytes"]
        assert comp["sink.parquet"]["bytes"] == stats["bytes_written"] > 0
        assert comp["source.lake"]["latency_p50_ms"] <= comp["source.lake"]["latency_p99_ms"]
        # The estimate made at plan time is within 2x of what the run measured.
        ratios = status["estimate_vs_actual"]
        for key in ("rows", "xdr_bytes", "bytes_written"):
            assert 0.5 <= ratios[key] <= 2.0, (key, ratios)
        assert [p["id"] for p in carol.get("/pipelines").json()] == [pid]

        assert httpx.get(srv.url + "/metrics").status_code == 401  # read scope, unless public_metrics
        metrics = carol.get("/metrics").text
        name = desired["name"]
        assert f'cdp_ray_component_rows_total{{component="processor.ledgers",pipeline="{name}"}} 10.0' in metrics
        assert pid not in metrics  # labels are bounded: the pipeline's name, never a run id
        assert 'cdp_ray_pipelines{state="succeeded"} 1.0' in metrics
        assert 'cdp_ray_plans{status="applied"} 1.0' in metrics
        assert f'cdp_ray_chunk_duration_seconds_count{{pipeline="{name}"}} 3.0' in metrics
        # Strict OpenMetrics, as Prometheus negotiates it.
        from prometheus_client.openmetrics.parser import text_string_to_metric_families

        om = carol.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert om.headers["content-type"].startswith("application/openmetrics-text")
        families = {f.name: f for f in text_string_to_metric_families(om.text)}
        assert families["cdp_ray_chunk_duration_seconds"].type == "histogram"
        assert families["cdp_ray_component_rows"].type == "counter"
        runs = {s.labels["state"]: s.value for s in families["cdp_ray_runs"].samples if s.name == "cdp_ray_runs_total"}
        assert runs == {"succeeded": 1.0}
        assert status["trace_id"] and len(status["trace_id"]) == 32

        trail = [(e["action"], e["actor"], e["outcome"]) for e in carol.get(f"/plans/{plan['id']}/audit").json()]
        assert trail[:3] == [("policy.evaluate", "alice", "allowed"), ("plan.create", "alice", "pending_approval"),
                             ("plan.apply", "alice", "refused")]
        assert trail[3:] == [("plan.approve", "bob", "ok"),
                             ("policy.evaluate", "alice", "allowed"),  # policies re-checked at apply time
                             ("plan.apply", "alice", "ok"), ("plan.apply", "alice", "refused")]

    # The output is where the plan said.
    ledgers = pq.read_table(out / "ledgers")
    assert sorted(ledgers.column("sequence").to_pylist()) == list(range(SAMPLE_RANGE[0], SAMPLE_RANGE[1] + 1))
    if "transactions" in tables:
        assert pq.read_table(out / "transactions").num_rows == SAMPLE_TXS
    names = {s.name for s in spans.get_finished_spans()}
    assert {"plan.create", "policy.evaluate", "plan.estimate", "plan.apply", "pipeline.run", "pipeline.chunk"} <= names
    chunk_spans = [s for s in spans.get_finished_spans() if s.name == "pipeline.chunk"]
    assert sorted(s.attributes["start"] for s in chunk_spans) == [63092982, 63092984, 63092988]


def test_external_pipeline_reports_over_http(tmp_path: Path, monkeypatch) -> None:
    """A pipeline running elsewhere registers and heartbeats with the client; a report token is scoped."""
    settings = _settings(tmp_path)
    cfg = PipelineConfig.model_validate(_desired(tmp_path / "out", monkeypatch))
    with BackgroundServer(settings) as srv:
        client = ControlClient(srv.url, token=TOKENS["alice"])
        reg = client.register(cfg, pipeline_id="job-1")
        assert reg["state"] == "pending"
        reporter = Reporter(client, "job-1", cfg, interval=0)
        for s, e, txs in ((63092982, 63092983, 500), (63092984, 63092987, 1000)):
            reporter({"start": s, "end": e, "ledgers": e - s + 1, "xdr_bytes": 1000 * (e - s + 1), "rows": txs,
                      "rows_by_table": {"ledgers": e - s + 1, "transactions": txs}, "bytes_written": 10, "seconds": 0.5})
        mid = client.status("job-1")
        assert mid["state"] == "running" and mid["stats"]["ledgers"] == 6
        assert mid["stats"]["components"]["source.lake"]["lag_ledgers"] == 4
        reporter.finish({"ledgers": 6})
        assert client.status("job-1")["state"] == "succeeded" and reporter.failures == 0

        # A token without the apply scope may not report; the pipeline's own report token may.
        carol = ControlClient(srv.url, token=TOKENS["carol"])
        with pytest.raises(ControlPlaneError, match="HTTP 403"):
            carol.heartbeat("job-1", "running", {})
        store = srv.app.state.store
        doc = store.get_pipeline("job-1")
        store.save_pipeline({**doc, "id": "job-2", "state": "pending",
                             "report_token_sha256": hashlib.sha256(b"report-secret").hexdigest()})
        assert ControlClient(srv.url, token="report-secret").heartbeat("job-2", "running", {"ledgers": 1})["state"] == "running"
        with pytest.raises(ControlPlaneError, match="HTTP 401"):
            ControlClient(srv.url, token="wrong").heartbeat("job-2", "running", {})
        assert "report_token_sha256" not in client.status("job-2")


def test_ray_job_entrypoint_runs_and_reports(tmp_path: Path, monkeypatch, ray_cluster) -> None:
    """`python -m cdp_ray.control.client` (what apply submits as a Ray job) runs the pipeline and reports."""
    from cdp_ray.control import client as job

    doc = _desired(tmp_path / "out", monkeypatch)
    doc["processors"] = [{"name": "ledgers", "config": {}}]
    doc["source"]["end"] = doc["source"]["start"] + 1
    cfg = PipelineConfig.model_validate(doc)
    with BackgroundServer(_settings(tmp_path)) as srv:
        ControlClient(srv.url, token=TOKENS["alice"]).register(cfg, pipeline_id="job-run", job_id="raysubmit_1")
        monkeypatch.setenv("CDP_RAY_CONTROL_URL", srv.url)
        monkeypatch.setenv("CDP_RAY_PIPELINE_ID", "job-run")
        monkeypatch.setenv("CDP_RAY_REPORT_TOKEN", TOKENS["alice"])
        monkeypatch.setenv("CDP_RAY_PIPELINE_JSON", cfg.model_dump_json())
        assert job.main() == 0
        status = ControlClient(srv.url, token=TOKENS["carol"]).status("job-run")
    assert status["state"] == "succeeded" and status["executor"] == "ray-job" and status["job_id"] == "raysubmit_1"
    assert status["stats"]["ledgers"] == 2 and status["stats"]["rows_by_table"] == {"ledgers": 2}
    assert status["summary"]["ledgers"] == 2
    assert pq.read_table(tmp_path / "out" / "ledgers").num_rows == 2
