"""Plans, policies, estimates, the store and auth, without running pipelines."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
import yaml
from fastapi.testclient import TestClient

from cdp_ray.control import ControlSettings, create_app
from cdp_ray.control.auth import sign
from cdp_ray.control.estimate import estimate
from cdp_ray.control.plans import diff
from cdp_ray.control.policies import PolicyContext, evaluate, load_policies
from cdp_ray.control.settings import DEFAULT_POLICIES, DEFAULT_TOOLCARDS, CostRates, TokenSpec
from cdp_ray.control.stats import RunStats, quantile
from cdp_ray.control.store import Store
from cdp_ray.control.toolcards import load_cards
from cdp_ray.errors import ConfigError
from cdp_ray.pipeline.config import PipelineConfig
from cdp_ray.sample import SAMPLE_LAKE

START, END = 63092982, 63092991


def pipeline(out: Path, start: int = START, end: int = END, processors=("ledgers",), **options) -> dict:
    return {"name": "t", "source": {"uri": str(SAMPLE_LAKE), "start": start, "end": end},
            "processors": list(processors), "sinks": [{"type": "parquet", "uri": str(out)}],
            "options": {"ledgers_per_task": 4, **options}}


class RecordingExecutor:
    """Stands in for the Ray executor: records what apply submits."""

    kind = "recording"

    def __init__(self) -> None:
        self.submitted: list[tuple[str, str]] = []

    def submit(self, plan, cfg, pipeline_id):
        self.submitted.append((plan.id, pipeline_id))
        return {"executor": self.kind}

    def shutdown(self) -> None:
        pass


def make_client(tmp_path: Path, rules: list[dict] | None = None, **settings) -> tuple[TestClient, RecordingExecutor]:
    pol = tmp_path / "pol"
    pol.mkdir(exist_ok=True)
    (pol / "p.yaml").write_text(yaml.safe_dump({"policies": rules or []}))
    s = ControlSettings(database=str(tmp_path / "db.sqlite3"), policies_dir=pol, default_workers=2, **settings)
    ex = RecordingExecutor()
    return TestClient(create_app(s, executor=ex)), ex


def ctx(cfg: dict, phase="plan", applies=0, now=None, data_dir: Path = Path(".")) -> PolicyContext:
    p = PipelineConfig.model_validate(cfg)
    est = estimate(p, load_cards(DEFAULT_TOOLCARDS), CostRates(), default_workers=2)
    return PolicyContext(pipeline=p, estimate=est, phase=phase, principal="u",
                         now=now or datetime(2026, 11, 23, 12, tzinfo=timezone.utc), applies_since=lambda t: applies,
                         data_dir=data_dir)


# ---- policies --------------------------------------------------------------------------------


def _rules(tmp_path: Path, rules: list[dict]):
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({"policies": rules}))
    return load_policies(tmp_path)


def test_default_policies_load_and_allow_the_sample(tmp_path: Path) -> None:
    rules = load_policies(DEFAULT_POLICIES)
    assert {r.rule for r in rules} == {"max_ledgers", "resources", "max_cost", "approval_required", "rate_limit",
                                       "time_window", "allowed_roots"}
    v = evaluate(rules, ctx(pipeline(tmp_path / "out"), data_dir=tmp_path))
    assert v.allowed and not v.approval_required and v.blocking == []
    elsewhere = evaluate(rules, ctx(pipeline(tmp_path / "out"), data_dir=tmp_path / "data"))
    assert elsewhere.allowed and elsewhere.approval_required  # outside the data directory: an approver decides
    assert [r.message for r in elsewhere.results if r.outcome == "approval"] == [
        f"writes to {tmp_path / 'out'}, outside the allowed roots {tmp_path / 'data'}"]


def test_rules_block_warn_and_audit(tmp_path: Path) -> None:
    rules = _rules(tmp_path, [
        {"name": "range", "rule": "max_ledgers", "limit": 5, "mode": "block"},
        {"name": "workers", "rule": "resources", "max_workers": 1, "mode": "warn"},
        {"name": "cost", "rule": "max_cost", "max_cpu_hours": 0, "mode": "audit"},
        {"name": "pg", "rule": "approval_required", "sink_types": ["postgres"]},
    ])
    v = evaluate(rules, ctx(pipeline(tmp_path, workers=2)))
    assert not v.allowed and not v.approval_required
    assert v.blocking == ["range: range of 10 ledgers exceeds the limit of 5"]
    assert v.warnings == ["workers: 2 workers exceed the limit of 1"]
    assert [(r.policy, r.outcome) for r in v.results] == [("range", "fail"), ("workers", "fail"), ("cost", "fail"),
                                                          ("pg", "pass")]


def test_approval_conditions(tmp_path: Path) -> None:
    rules = _rules(tmp_path, [{"name": "big", "rule": "approval_required", "min_ledgers": 10}])
    assert evaluate(rules, ctx(pipeline(tmp_path))).approval_required
    assert not evaluate(rules, ctx(pipeline(tmp_path, end=START + 8))).approval_required


def test_time_window_and_rate_limit_block_only_at_apply(tmp_path: Path) -> None:
    rules = _rules(tmp_path, [
        {"name": "hours", "rule": "time_window", "start_hour": 8, "end_hour": 18, "weekdays": [0, 1, 2, 3, 4]},
        {"name": "rate", "rule": "rate_limit", "max_applies": 2, "per_seconds": 3600},
    ])
    night = datetime(2026, 11, 23, 22, tzinfo=timezone.utc)  # a Monday
    at_plan = evaluate(rules, ctx(pipeline(tmp_path), phase="plan", applies=2, now=night))
    assert at_plan.allowed and len(at_plan.warnings) == 2 and all("(enforced at apply)" in w for w in at_plan.warnings)
    at_apply = evaluate(rules, ctx(pipeline(tmp_path), phase="apply", applies=2, now=night))
    assert at_apply.blocking == [
        "hours: Mon 22:00 UTC is outside the apply window 08:00-18:00 UTC on weekdays [0, 1, 2, 3, 4]",
        "rate: 2 applies in the last 3600s reach the limit of 2"]
    noon = datetime(2026, 11, 23, 12, tzinfo=timezone.utc)
    assert evaluate(rules, ctx(pipeline(tmp_path), phase="apply", applies=1, now=noon)).allowed


def test_bad_policy_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("policies:\n  - {name: a, rule: max_ledgers}\n")
    with pytest.raises(ConfigError, match="x.yaml"):
        load_policies(tmp_path)


# ---- estimates and diffs ---------------------------------------------------------------------


def test_estimate_scales_with_the_range(tmp_path: Path) -> None:
    cards = load_cards(DEFAULT_TOOLCARDS)
    one = estimate(PipelineConfig.model_validate(pipeline(tmp_path, processors=("ledgers", "transactions"))),
                   cards, CostRates(cpu_hour=1.0), default_workers=2)
    src, txs = cards["source.lake"].cost, cards["processor.transactions"].cost
    assert one.rows == {"ledgers": 10, "transactions": round(txs["rows_per_ledger"] * 10)}
    assert one.read_bytes == round(src["compressed_bytes_per_ledger"] * 10) and one.objects == 10
    assert one.chunks == 3 and one.workers == 2
    assert one.dollars.compute == pytest.approx(one.cpu_seconds / 3600, abs=1e-6)
    big = estimate(PipelineConfig.model_validate(pipeline(tmp_path, end=START + 9999, processors=("ledgers", "transactions"))),
                   cards, CostRates(cpu_hour=1.0), default_workers=8)
    assert big.rows["transactions"] == round(txs["rows_per_ledger"] * 10000)
    # linear in the range, to the precision of the 10-ledger figure (rounded to milliseconds)
    assert big.cpu_seconds == pytest.approx(one.cpu_seconds * 1000, abs=0.0005 * 1000)
    assert big.workers == 8 and big.wall_seconds < big.cpu_seconds / 7
    unknown = estimate(PipelineConfig.model_validate(pipeline(tmp_path)), {}, CostRates())
    assert unknown.basis["source.lake"] == "default planning figure"


def test_diff_reports_impact(tmp_path: Path) -> None:
    cur = PipelineConfig.model_validate(pipeline(tmp_path / "a", end=START + 4))
    des = PipelineConfig.model_validate(pipeline(tmp_path / "b", start=START + 2, processors=("ledgers", "transactions")))
    changes = {c.path: c for c in diff(cur, des)}
    assert changes["source.range"].impact == ("process 5 new ledgers 63092987-63092991; stop covering 2 ledgers "
                                              "63092982-63092983 (their existing output is kept)")
    assert changes["source.range"].reprocess_ledgers == 5
    assert changes["processors.transactions"].op == "add" and changes["processors.transactions"].reprocess_ledgers == 8
    sinks = sorted((c.op, c.after or c.before) for c in diff(cur, des) if c.path == "sinks.parquet")
    assert [(op, doc["uri"]) for op, doc in sinks] == [("add", str(tmp_path / "b")), ("remove", str(tmp_path / "a"))]
    assert diff(cur, cur) == []


# ---- API: plans, approval, expiry, auth ------------------------------------------------------


def test_plan_ready_apply_and_output_overwrite_warning(tmp_path: Path) -> None:
    client, ex = make_client(tmp_path)
    out = tmp_path / "out"
    (out / "_cdp_ray/t/ranges").mkdir(parents=True)
    (out / "_cdp_ray/t/ranges/0063092984-0063092987.0123456789abcdef.json").write_text("{}")  # committed by t
    plan = client.post("/plans", json={"desired": pipeline(out)}).json()
    assert plan["status"] == "ready"
    sink = next(c for c in plan["checks"] if c["name"] == "sink.parquet")
    assert sink["status"] == "warn" and "1 committed ranges of t" in sink["detail"]
    r = client.post(f"/plans/{plan['id']}/apply")
    assert r.status_code == 202 and ex.submitted == [(plan["id"], r.json()["pipeline_id"])]
    assert client.get(f"/plans/{plan['id']}").json()["status"] == "applied"


def test_tables_another_pipeline_owns_block_the_plan(tmp_path: Path) -> None:
    client, _ = make_client(tmp_path)
    out = tmp_path / "out"
    (out / "_cdp_ray/_owners").mkdir(parents=True)
    (out / "_cdp_ray/_owners/ledgers.json").write_text('{"pipeline": "other"}')
    plan = client.post("/plans", json={"desired": pipeline(out)}).json()
    sink = next(c for c in plan["checks"] if c["name"] == "sink.parquet")
    assert plan["status"] == "blocked" and sink["status"] == "fail"
    assert sink["detail"] == f"tables under {out} belong to other pipelines: ledgers (other)"


def test_missing_ledgers_and_output_inside_the_lake_block_the_plan(tmp_path: Path) -> None:
    client, _ = make_client(tmp_path)
    plan = client.post("/plans", json={"desired": pipeline(tmp_path / "o", end=END + 5)}).json()
    assert plan["status"] == "blocked"
    assert next(c for c in plan["checks"] if c["name"] == "source")["detail"].startswith(f"ledgers [{END + 5}] are not")
    inside = client.post("/plans", json={"desired": pipeline(SAMPLE_LAKE / "out")}).json()
    assert inside["status"] == "blocked"
    r = client.post("/plans", json={"desired": {"source": {"uri": "x", "start": 1, "end": 2}, "processors": ["nope"]}})
    assert r.status_code == 422 and "unknown processor 'nope'" in r.json()["detail"]["message"]


def test_expired_plans_cannot_be_approved_or_applied(tmp_path: Path) -> None:
    client, ex = make_client(tmp_path)
    plan = client.post("/plans", json={"desired": pipeline(tmp_path / "o")}).json()
    store = client.app.state.store
    doc = store.get_plan(plan["id"])
    doc["expires_at"] = (datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat()
    store.save_plan(doc)
    assert client.get(f"/plans/{plan['id']}").json()["status"] == "expired"
    r = client.post(f"/plans/{plan['id']}/apply")
    assert r.status_code == 409 and "expired" in r.json()["detail"]["message"]
    assert client.post(f"/plans/{plan['id']}/approve").status_code == 409 and ex.submitted == []


def test_policy_failing_at_apply_time_refuses_the_apply(tmp_path: Path) -> None:
    client, ex = make_client(tmp_path, [{"name": "rate", "rule": "rate_limit", "max_applies": 1, "per_seconds": 3600}])
    first = client.post("/plans", json={"desired": pipeline(tmp_path / "o")}).json()
    second = client.post("/plans", json={"desired": pipeline(tmp_path / "o")}).json()
    assert client.post(f"/plans/{first['id']}/apply").status_code == 202
    r = client.post(f"/plans/{second['id']}/apply")
    assert r.status_code == 409 and "rate: 1 applies in the last 3600s" in r.json()["detail"]["message"]
    assert len(ex.submitted) == 1
    assert client.get(f"/plans/{second['id']}").json()["status"] == "ready"


def test_scopes(tmp_path: Path) -> None:
    tokens = [TokenSpec(name="reader", token="r", scopes=["read"]),
              TokenSpec(name="planner", token="p", scopes=["read", "plan"]),
              TokenSpec(name="ops", sha256=__import__("hashlib").sha256(b"o").hexdigest(), scopes=["apply", "approve"])]
    client, ex = make_client(tmp_path, [{"name": "all", "rule": "approval_required"}], tokens=tokens,
                             distinct_approver=True)
    h = lambda t: {"Authorization": f"Bearer {t}"}  # noqa: E731
    assert client.get("/tools").status_code == 401
    assert client.get("/tools", headers=h("bogus")).status_code == 401
    assert client.get("/tools", headers=h("r")).status_code == 200
    assert client.post("/plans", headers=h("r"), json={"desired": pipeline(tmp_path)}).status_code == 403
    plan = client.post("/plans", headers=h("p"), json={"desired": pipeline(tmp_path)}).json()
    assert plan["created_by"] == "planner" and plan["status"] == "pending_approval"
    assert client.post(f"/plans/{plan['id']}/approve", headers=h("p")).status_code == 403
    assert client.post(f"/plans/{plan['id']}/approve", headers=h("o")).json()["status"] == "approved"
    assert client.post(f"/plans/{plan['id']}/apply", headers=h("p")).status_code == 403
    assert client.post(f"/plans/{plan['id']}/apply", headers=h("o")).status_code == 202
    assert client.get("/health").json()["auth"] is True
    refused = client.app.state.store.audit_log(action="auth.apply")
    assert [(e["actor"], e["subject"], e["detail"]["status"]) for e in refused] == [
        ("planner", f"/plans/{plan['id']}/apply", 403)]


def test_distinct_approver(tmp_path: Path) -> None:
    tokens = [TokenSpec(name="solo", token="s", scopes=["read", "plan", "apply", "approve"])]
    client, _ = make_client(tmp_path, [{"name": "all", "rule": "approval_required"}], tokens=tokens,
                            distinct_approver=True)
    plan = client.post("/plans", headers={"Authorization": "Bearer s"}, json={"desired": pipeline(tmp_path)}).json()
    r = client.post(f"/plans/{plan['id']}/approve", headers={"Authorization": "Bearer s"})
    assert r.status_code == 409 and "may not approve" in r.json()["detail"]["message"]


def test_signed_approval_webhook(tmp_path: Path) -> None:
    client, _ = make_client(tmp_path, [{"name": "all", "rule": "approval_required"}], webhook_secret="k")
    plan = client.post("/plans", json={"desired": pipeline(tmp_path)}).json()
    body = json.dumps({"plan_id": plan["id"], "decision": "approve", "by": "dana"}).encode()
    assert client.post("/webhooks/approval", content=body, headers=sign("wrong", body)).status_code == 401
    r = client.post("/webhooks/approval", content=body, headers=sign("k", body))
    assert r.status_code == 200 and r.json()["status"] == "approved"
    assert r.json()["approvals"][0]["by"] == "webhook:dana"


def test_estimate_endpoint_and_preview(tmp_path: Path) -> None:
    client, _ = make_client(tmp_path)
    est = client.post("/estimate", json={"desired": pipeline(tmp_path)}).json()
    assert est["ledgers"] == 10 and est["rows"] == {"ledgers": 10}
    r = client.post("/tools/processor.ledgers/preview",
                    json={"source": {"uri": str(SAMPLE_LAKE), "start": START, "end": START + 1}, "limit": 1})
    doc = r.json()
    assert doc["num_rows"] == 2 and [row["sequence"] for row in doc["rows"]] == [START]
    too_many = client.post("/tools/processor.ledgers/preview",
                           json={"source": {"uri": str(SAMPLE_LAKE), "start": START, "end": START + 10}})
    assert too_many.status_code == 422
    assert client.post("/tools/sink.parquet/preview", json={"source": {}}).status_code == 400


# ---- stats and store -------------------------------------------------------------------------


def test_run_stats_and_prometheus(tmp_path: Path) -> None:
    cfg = PipelineConfig.model_validate(pipeline(tmp_path, processors=("ledgers", "transactions")))
    rs = RunStats(cfg)
    for i, secs in enumerate([0.1, 0.2, 0.9]):
        rs.add_chunk({"start": START + i, "end": START + i, "ledgers": 1, "xdr_bytes": 100, "bytes_written": 7,
                      "rows_by_table": {"ledgers": 1, "transactions": 5}, "seconds": secs})
    rs.add_chunk({"start": START + 3, "end": START + 3, "status": "quarantined", "ledgers": 0, "xdr_bytes": 0,
                  "bytes_written": 0, "rows_by_table": {"ledgers": 0, "transactions": 0}, "seconds": 0.05,
                  "error": "CorruptLedgerFileError", "error_message": "bad zstd frame", "error_ledger": START + 3})
    snap = rs.snapshot()
    assert snap["errors"] == 1 and snap["quarantined"] == [{"start": START + 3, "end": START + 3, "ledger": START + 3,
                                                           "error": "CorruptLedgerFileError", "message": "bad zstd frame"}]
    assert snap["ledgers"] == 3 and snap["rows"] == 18 and snap["progress"] == 0.3 and snap["last_ledger"] == START + 3
    lake = snap["components"]["source.lake"]
    assert lake == {**lake, "bytes": 300, "errors": 1, "lag_ledgers": 7, "latency_p50_ms": 100.0, "latency_p99_ms": 900.0}
    assert quantile([5, 1, 3], 0.5) == 3 and quantile([], 0.5) is None
    client, _ = make_client(tmp_path)
    hub = client.app.state.hub
    hub.register({"id": "p1", "name": "t", "pipeline": cfg.model_dump(mode="json")})
    from cdp_ray.control.stats import Heartbeat

    hub.heartbeat("p1", Heartbeat(state="running", stats=snap))
    text = client.get("/metrics").text
    assert 'cdp_ray_component_rows_total{component="processor.transactions",pipeline="t"} 15.0' in text
    assert 'cdp_ray_chunk_duration_seconds_bucket{le="0.25",pipeline="t"} 3.0' in text
    assert 'cdp_ray_chunk_duration_seconds_count{pipeline="t"} 4.0' in text
    assert "# TYPE cdp_ray_component_lag_ledgers gauge" in text and "p1" not in text, "labels are names, not run ids"


def _postgres_dsn() -> str:
    dsn = os.environ.get("CDP_RAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        psycopg.connect(dsn, connect_timeout=2).close()
    except psycopg.Error:
        pytest.skip("PostgreSQL not reachable")
    return dsn


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_store_round_trip(tmp_path: Path, backend: str) -> None:
    dsn = str(tmp_path / "s.sqlite3") if backend == "sqlite" else _postgres_dsn()
    store = Store(dsn)
    pid = f"plan-test-{os.getpid()}-{tmp_path.name}"
    store.save_plan({"id": pid, "created_at": "2026-01-01T00:00:00+00:00", "status": "ready", "x": [1]})
    store.save_plan({"id": pid, "created_at": "2026-01-01T00:00:00+00:00", "status": "applied", "x": [2]})
    store.audit("u", "plan.apply", pid, "ok", {"k": "v", "dsn": "postgresql://u:pw@h/db"})
    with store.transaction("apply"):
        assert not store.swap_plan(pid, "ready", {"id": pid, "status": "rejected"})  # it is applied now
        assert store.swap_plan(pid, "applied", {"id": pid, "created_at": "2026-01-01T00:00:00+00:00", "status": "ready"})
        store.record_apply(f"pl-{pid}", pid, "u")
    before = store.count_applies("2000-01-01")
    with pytest.raises(RuntimeError), store.transaction("apply"):  # rolled back as a whole
        store.record_apply(f"pl2-{pid}", pid, "u")
        raise RuntimeError("abort")
    assert store.count_applies("2000-01-01") == before
    assert store.first_use(f"once-{pid}", "9999-12-31") and not store.first_use(f"once-{pid}", "9999-12-31")
    store.close()
    again = Store(dsn)
    assert again.get_plan(pid) == {"id": pid, "created_at": "2026-01-01T00:00:00+00:00", "status": "ready"}
    log = again.audit_log(subject=pid)
    assert [(e["actor"], e["action"], e["outcome"], e["detail"]) for e in log] == [
        ("u", "plan.apply", "ok", {"k": "v", "dsn": "postgresql://u:***@h/db"})]  # redacted as written
    since = "2000-01-01"
    counted = again.count_applies(since)
    again.forget_apply(f"pl-{pid}")
    assert again.count_applies(since) == counted - 1 and counted >= 1
    assert again.kind == backend
    again.close()


def test_probe_scales_the_estimate_to_another_era(tmp_path: Path, stellar_data: Path) -> None:
    """2020 ledgers carry a quarter of the sample's volume: the probe brings the estimate within 2x."""
    from cdp_ray.control.estimate import probe_volume
    from cdp_ray.lake.formats import split_ledgers
    from cdp_ray.lake.schema import LakeSchema
    from cdp_ray.lake.writer import write_lake

    start, end = 30822015, 30822025
    raws = []
    for seq in range(start, end + 1):
        (path,) = (stellar_data / "stellar-etl-golden" / "reconstructed").glob(f"*--{seq}.reconstructed.xdr")
        raws += split_ledgers(path.read_bytes(), str(path), "auto")
    write_lake(raws, str(tmp_path / "lake"), LakeSchema(), network_passphrase="Public Global Stellar Network ; September 2015")
    inv = [json.loads(line) for line in (stellar_data / "inventory.jsonl").read_text().splitlines()]
    inv = {r["seq"]: r for r in inv if start <= r["seq"] <= end}
    txs, xdr = sum(r["txs"] for r in inv.values()), sum(r["xdr_bytes"] for r in inv.values())
    cfg = PipelineConfig.model_validate({"source": {"uri": str(tmp_path / "lake"), "start": start, "end": end},
                                         "processors": ["ledgers", "transactions"]})
    cards = load_cards(DEFAULT_TOOLCARDS)
    probe = probe_volume(cfg, cards)
    assert probe is not None and probe.objects == 3 and 0.1 < probe.scale < 0.5
    scaled = estimate(cfg, cards, CostRates(), probe=probe)
    assert scaled.rows["ledgers"] == 11  # one row per ledger whatever the volume
    assert 0.5 <= scaled.rows["transactions"] / txs <= 2.0
    assert 0.5 <= scaled.xdr_bytes / xdr <= 2.0
    assert "3 objects of the range probed" in scaled.basis["volume"]
    unscaled = estimate(cfg, cards, CostRates())
    assert unscaled.rows["transactions"] / txs > 2.0


def test_plan_needing_approval_notifies_the_webhook(tmp_path: Path) -> None:
    import hashlib
    import hmac
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    got: dict = {}
    arrived = threading.Event()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            got["body"] = self.rfile.read(int(self.headers["Content-Length"]))
            got["signature"] = self.headers["X-CDP-Signature"]
            got["timestamp"] = self.headers["X-CDP-Timestamp"]
            self.send_response(204)
            self.end_headers()
            arrived.set()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client, _ = make_client(tmp_path, [{"name": "all", "rule": "approval_required"}],
                                webhook_url=f"http://127.0.0.1:{server.server_port}/hook", webhook_secret="k")
        plan = client.post("/plans", json={"desired": pipeline(tmp_path)}).json()
        assert arrived.wait(10)
    finally:
        server.shutdown()
    doc = json.loads(got["body"])
    assert doc["event"] == "plan.pending_approval" and doc["plan_id"] == plan["id"]
    assert doc["reasons"] == ["every plan needs approval"] and doc["estimate"]["ledgers"] == 10
    signed = got["timestamp"].encode() + b"." + got["body"]
    assert got["signature"] == "sha256=" + hmac.new(b"k", signed, hashlib.sha256).hexdigest()


def test_ray_job_executor_submits_with_a_report_token_and_watches_the_job(tmp_path: Path) -> None:
    """Apply with a Ray dashboard configured: the job gets the pipeline and a report token; a job
    that dies without a final heartbeat marks the pipeline failed."""
    import hashlib
    import time

    from ray.job_submission import JobStatus

    from cdp_ray.control.execute import RayJobExecutor

    class Jobs:  # the dashboard's job API, as JobSubmissionClient exposes it
        def __init__(self) -> None:
            self.submitted: dict = {}
            self.status = JobStatus.RUNNING

        def submit_job(self, **kw):
            self.submitted = kw
            return kw["submission_id"]

        def get_job_status(self, job_id):
            return self.status

        def get_job_info(self, job_id):
            return type("Info", (), {"message": "worker OOM"})()

    jobs = Jobs()
    client, _ = make_client(tmp_path)
    hub = client.app.state.hub
    ex = RayJobExecutor(hub, "http://ray:8265", "http://control:8000", poll_seconds=0.05, client=jobs)
    client.app.state.service.submit = ex.submit
    plan = client.post("/plans", json={"desired": pipeline(tmp_path)}).json()
    applied = client.post(f"/plans/{plan['id']}/apply").json()
    pid = applied["pipeline_id"]
    assert applied["executor"] == "ray-job" and applied["job_id"] == pid
    env = jobs.submitted["runtime_env"]["env_vars"]
    assert jobs.submitted["entrypoint"] == "python -m cdp_ray.control.client"
    assert env["CDP_RAY_CONTROL_URL"] == "http://control:8000" and env["CDP_RAY_PIPELINE_ID"] == pid
    assert PipelineConfig.model_validate_json(env["CDP_RAY_PIPELINE_JSON"]).source.end == END
    stored = client.app.state.store.get_pipeline(pid)
    assert stored["report_token_sha256"] == hashlib.sha256(env["CDP_RAY_REPORT_TOKEN"].encode()).hexdigest()
    jobs.status = JobStatus.FAILED
    deadline = time.monotonic() + 10
    while client.get(f"/pipelines/{pid}/status").json()["state"] != "failed" and time.monotonic() < deadline:
        time.sleep(0.05)
    status = client.get(f"/pipelines/{pid}/status").json()
    assert status["state"] == "failed" and status["error"] == f"Ray job {pid} FAILED: worker OOM"


def test_plan_from_yaml_text_expands_nothing(tmp_path: Path, monkeypatch) -> None:
    """Pipeline YAML text is planned as written: its ${VAR}s are refused, never filled from the server."""
    from cdp_ray.sample import SAMPLE_PIPELINE

    client, _ = make_client(tmp_path, data_dir=tmp_path)
    text = SAMPLE_PIPELINE.read_text()
    plain = text.replace("${CDP_RAY_SAMPLE_LAKE}", str(SAMPLE_LAKE)).replace("${CDP_RAY_OUT:-out/sample}", "out")
    plan = client.post("/plans", json={"desired": plain}).json()
    assert plan["desired"]["source"]["uri"] == str(SAMPLE_LAKE)
    assert plan["desired"]["sinks"][0]["uri"] == str(tmp_path / "out")
    monkeypatch.setenv("CDP_RAY_SAMPLE_LAKE", str(SAMPLE_LAKE))
    r = client.post("/plans", json={"desired": text})
    assert r.status_code == 400 and "${CDP_RAY_SAMPLE_LAKE}" in r.json()["detail"]["message"]
