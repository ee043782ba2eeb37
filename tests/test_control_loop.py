"""The control plane closes the loop (issue 16), over real HTTP with real tokens: stop a run (in-process and a
CLI run that reports) and resume it, success criteria, the logs stream, SSE resume, and MCP over stdio and
HTTP with the SDK's own client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import anyio
import httpx
import pyarrow.parquet as pq
from typer.testing import CliRunner

from cdp_ray.control import ControlSettings
from cdp_ray.control.server import BackgroundServer
from cdp_ray.control.settings import TokenSpec
from cdp_ray.sample import SAMPLE_LAKE

START, END = 63092982, 63092991
TOKENS = {"reader": "tok-reader", "planner": "tok-planner", "operator": "tok-operator"}
SCOPES = {"reader": ["read"], "planner": ["read", "plan"], "operator": ["read", "plan", "apply", "approve"]}
PARTITION = "FC3E15FF--63040000-63103999"


def settings(tmp_path: Path, **kw) -> ControlSettings:
    return ControlSettings(database=str(tmp_path / "control.sqlite3"), policies_dir=None, data_dir=tmp_path,
                           tokens=[TokenSpec(name=n, token=t, scopes=SCOPES[n]) for n, t in TOKENS.items()],
                           default_workers=1, **kw)


def as_(name: str, srv: BackgroundServer) -> httpx.Client:
    return httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {TOKENS[name]}"}, timeout=120)


def stop_at_first_chunk(srv: BackgroundServer) -> dict:
    """When the first heartbeat reporting a committed chunk reaches the control plane, the operator asks it
    to stop over HTTP before that heartbeat is answered: the stop lands at a known point of the run."""
    hub, seen = srv.app.state.hub, {}
    original = hub.heartbeat

    def heartbeat(pipeline_id, hb):
        if (hb.stats.get("chunks") or 0) >= 1 and "stop" not in seen:
            seen["stop"] = httpx.post(f"{srv.url}/pipelines/{pipeline_id}/stop", json={"comment": "wrong range"},
                                      headers={"Authorization": f"Bearer {TOKENS['operator']}"}, timeout=60)
        return original(pipeline_id, hb)

    hub.heartbeat = heartbeat
    return seen


def pipeline(lake: Path | str, out: Path, **extra) -> dict:
    return {"name": "loop", "source": {"uri": str(lake), "start": START, "end": END},
            "processors": ["ledgers", "transactions"], "sinks": [{"type": "parquet", "uri": str(out)}],
            "options": {"ledgers_per_task": 2, "workers": 1}, **extra}


def sse(client: httpx.Client, path: str, last_id: str | None = None) -> list[tuple[str | None, str, dict]]:
    """``(id, event, data)`` of a stream until its ``end`` event."""
    out, ev, eid = [], None, None
    headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_id} if last_id else {})}
    with client.stream("GET", path, headers=headers, timeout=300) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("id: "):
                eid = line[4:]
            elif line.startswith("event: "):
                ev = line[7:]
            elif line.startswith("data: "):
                out.append((eid, ev, json.loads(line[6:])))
                if ev == "end":
                    return out
    return out


def wait_for(client: httpx.Client, pid: str, cond, what: str) -> dict:
    deadline = time.monotonic() + 180
    while not cond(doc := client.get(f"/pipelines/{pid}/status").json()):
        assert time.monotonic() < deadline, f"{what}: {doc}"
        time.sleep(0.1)
    return doc


def committed_sequences(out: Path) -> list[int]:
    return sorted(pq.read_table(out / "ledgers", columns=["sequence"]).column("sequence").to_pylist())


def test_stop_an_applied_run_then_resume(tmp_path: Path, ray_cluster) -> None:
    """Stop over HTTP while a chunk is in flight: it commits, no chunk starts after it, the run ends
    `stopped` with committed ranges kept; the stop is audited and logged; a resumed run finishes the rest,
    each ledger written once."""
    out = tmp_path / "out"
    with BackgroundServer(settings(tmp_path)) as srv:
        planner, operator, reader = as_("planner", srv), as_("operator", srv), as_("reader", srv)
        seen = stop_at_first_chunk(srv)
        plan = planner.post("/plans", json={"desired": pipeline(SAMPLE_LAKE, out)}).json()
        assert plan["status"] == "ready", plan
        pid = operator.post(f"/plans/{plan['id']}/apply").json()["pipeline_id"]
        assert reader.post(f"/pipelines/{pid}/stop").status_code == 403  # stopping needs the apply scope
        events = sse(reader, f"/pipelines/{pid}/events")
        end = events[-1][2]
        assert events[-1][1] == "end" and end["state"] == "stopped", end["error"]
        assert end["summary"]["stopped"] is True
        assert end["success"] is None  # a stopped run is not judged
        r = seen["stop"]
        assert r.status_code == 202, r.text
        assert r.json()["state"] == "stopping" and r.json()["stop_requested"]["by"] == "operator"
        status = reader.get(f"/pipelines/{pid}/status").json()
        done = status["stats"]["ledgers"]
        assert done in (2, 4) and status["summary"]["chunks"] < status["summary"]["chunks_planned"]
        # The stream resumes after the last event id: only the end again.
        again = sse(reader, f"/pipelines/{pid}/events", last_id=events[-1][0])
        assert [e[1] for e in again] == ["end"]
        assert operator.post(f"/pipelines/{pid}/stop").status_code == 409  # already finished
        trail = [(e["action"], e["actor"], e["outcome"]) for e in reader.get("/audit", params={"subject": pid}).json()]
        assert trail == [("pipeline.stop", "operator", "ok"), ("pipeline.stop", "operator", "refused")]
        logs = sse(reader, f"/pipelines/{pid}/logs")
        assert logs[-1][1] == "end" and any("stopped on request" in d["message"] for _, e, d in logs if e == "log")
        ckpt = reader.get(f"/pipelines/{pid}/checkpoints").json()
        assert ckpt["committed_ledgers"] == done and ckpt["sinks"][0]["ranges"] == done // 2
        assert committed_sequences(out) == list(range(START, START + done))

        resumed = pipeline(SAMPLE_LAKE, out)
        plan = planner.post("/plans", json={"desired": resumed}).json()
        pid2 = operator.post(f"/plans/{plan['id']}/apply").json()["pipeline_id"]
        assert sse(reader, f"/pipelines/{pid2}/events")[-1][2]["state"] == "succeeded"
    assert committed_sequences(out) == list(range(START, END + 1))  # every ledger once


def test_cli_run_reports_and_stops_when_asked(tmp_path: Path, monkeypatch) -> None:
    """`cdp-ray run --control-url` registers, reports chunks, and a stop requested over HTTP reaches it:
    exit 130, state `stopped`, the committed chunk kept; `--resume` then finishes the range."""
    from cdp_ray.cli.main import app

    out = tmp_path / "out"
    spec = tmp_path / "p.yaml"
    spec.write_text(json.dumps(pipeline(SAMPLE_LAKE, out)))
    monkeypatch.setenv("CDP_RAY_HEARTBEAT_INTERVAL", "0")
    with BackgroundServer(settings(tmp_path)) as srv:
        reader = as_("reader", srv)
        seen = stop_at_first_chunk(srv)
        res = CliRunner().invoke(app, ["run", str(spec), "--engine", "local", "--json",
                                       "--control-url", srv.url, "--control-token", TOKENS["operator"]])
        assert res.exit_code == 130, res.output
        assert seen["stop"].status_code == 202
        doc = json.loads([ln for ln in res.output.splitlines() if ln.startswith("{")][-1])
        assert doc["state"] == "stopped" and doc["stopped"] is True and doc["ledgers"] == 2  # the reply stopped it
        (listed,) = reader.get("/pipelines").json()
        status = reader.get(f"/pipelines/{listed['id']}/status").json()
        assert status["state"] == "stopped" and status["executor"] == "external" and status["stats"]["chunks"] == 1
    res = CliRunner().invoke(app, ["run", str(spec), "--engine", "local", "--json", "--resume"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["skipped_chunks"] == 1
    assert committed_sequences(out) == list(range(START, END + 1))


def test_success_criteria_judge_the_committed_output(tmp_path: Path) -> None:
    """Presets reconcile the real sample (ledgers vs transactions and operations); a wrong reconciliation
    and an unmet minimum fail the run: exit 4, with the ledgers that differ."""
    from cdp_ray.cli.main import app

    ok = pipeline(SAMPLE_LAKE, tmp_path / "ok", success={
        "min_rows": {"ledgers": 10, "transactions": 1}, "max_quarantined": 0,
        "reconcile": ["ledger_transactions"]})
    ok["processors"].append("operations")
    ok["success"]["reconcile"].append("ledger_operations")
    spec = tmp_path / "ok.yaml"
    spec.write_text(json.dumps(ok))
    res = CliRunner().invoke(app, ["run", str(spec), "--engine", "local", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output.strip().splitlines()[-1])
    assert doc["success"]["passed"] is True and doc["state"] == "succeeded"
    checks = {(c["criterion"], c["name"]): c for c in doc["success"]["checks"]}
    assert checks[("reconcile", "ledger_operations")]["detail"].startswith("0 of 10 ledgers differ")
    assert checks[("min_rows", "transactions")]["passed"] is True

    bad = pipeline(SAMPLE_LAKE, tmp_path / "bad", success={
        "min_rows": {"ledgers": 11},
        # every operation, failed transactions' included, is not `operation_count` (successful ones only)
        "reconcile": [{"name": "all-ops", "expected": {"table": "ledgers", "sum": ["operation_count"]},
                       "actual": {"table": "operations"}}]})
    bad["name"] = "loop-bad"
    bad["processors"].append("operations")
    spec = tmp_path / "bad.yaml"
    spec.write_text(json.dumps(bad))
    res = CliRunner().invoke(app, ["run", str(spec), "--engine", "local", "--json"])
    assert res.exit_code == 4, res.output
    doc = json.loads(res.output.strip().splitlines()[-1])
    assert doc["ok"] is False and doc["state"] == "failed"
    checks = {(c["criterion"], c["name"]): c for c in doc["success"]["checks"]}
    assert checks[("min_rows", "ledgers")]["passed"] is False
    diff = checks[("reconcile", "all-ops")]
    assert diff["passed"] is False and diff["examples"]
    assert all(e["actual"] > e["expected"] for e in diff["examples"])

    unknown = pipeline(SAMPLE_LAKE, tmp_path / "x", success={"min_rows": {"trades": 1}})
    spec.write_text(json.dumps(unknown))
    assert CliRunner().invoke(app, ["validate", str(spec)]).exit_code == 2


def test_reconciliation_in_postgres(tmp_path: Path, postgres_dsn: str) -> None:
    """The same presets as one aggregate query per window in PostgreSQL."""
    from cdp_ray.cli.main import app

    schema = f"loop_{uuid.uuid4().hex[:8]}"
    doc = pipeline(SAMPLE_LAKE, tmp_path / "o", success={"reconcile": ["ledger_transactions", "ledger_operations"]})
    doc["processors"].append("operations")
    doc["sinks"] = [{"type": "postgres", "dsn": postgres_dsn, "schema": schema}]
    spec = tmp_path / "pg.yaml"
    spec.write_text(json.dumps(doc))
    try:
        res = CliRunner().invoke(app, ["run", str(spec), "--engine", "local", "--json"])
        assert res.exit_code == 0, res.output
        checks = json.loads(res.output.strip().splitlines()[-1])["success"]["checks"]
        assert [(c["name"], c["passed"]) for c in checks] == [("ledger_transactions", True), ("ledger_operations", True)]
        import psycopg

        with psycopg.connect(postgres_dsn, autocommit=True) as conn:  # break one ledger's count
            conn.execute(f'UPDATE "{schema}".ledgers SET operation_count = operation_count + 1 WHERE sequence = %s',
                         (START + 3,))
        from cdp_ray.pipeline.config import PipelineConfig
        from cdp_ray.pipeline.runner import RunSummary
        from cdp_ray.pipeline.success import evaluate

        verdict = evaluate(PipelineConfig.model_validate(doc), RunSummary("loop"), [(START, END)])
        broken = {c.name: c for c in verdict.checks}["ledger_operations"]
        assert broken.passed is False and [e["ledger"] for e in broken.examples] == [START + 3]
    finally:
        import psycopg

        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _mcp_loop(client_factory, desired: dict) -> dict:
    """plan -> approve -> apply -> status through MCP tools; the final status."""

    async def main() -> dict:
        from mcp import Client

        async with Client(client_factory()) as c:
            names = [t.name for t in (await c.list_tools()).tools]
            assert names == ["list_components", "describe_component", "estimate", "preview", "plan", "approve",
                             "apply", "status", "stop", "checkpoint_list"]
            tools = {t.name: t for t in (await c.list_tools()).tools}
            assert "processor.ledgers" in tools["describe_component"].input_schema["properties"]["tool_id"]["enum"]
            assert tools["apply"].annotations.destructive_hint is True and "apply scope" in tools["apply"].description

            async def call(name: str, args: dict) -> dict:
                r = await c.call_tool(name, args)
                assert not r.is_error, (name, r.content[0].text)
                return json.loads(r.content[0].text)

            assert (await call("describe_component", {"tool_id": "processor.ledgers"}))["primary_key"] == ["sequence"]
            plan = await call("plan", {"desired": desired})
            assert plan["status"] == "ready"
            assert (await call("approve", {"plan_id": plan["id"], "comment": "via mcp"}))["status"] == "approved"
            pid = (await call("apply", {"plan_id": plan["id"]}))["pipeline_id"]
            deadline = time.monotonic() + 180
            while (st := await call("status", {"pipeline_id": pid}))["state"] not in ("succeeded", "failed", "stopped"):
                assert time.monotonic() < deadline
                await anyio.sleep(0.2)
            ckpt = await call("checkpoint_list", {"pipeline_id": pid})
            assert ckpt["committed_ledgers"] == 2
            return st

    return anyio.run(main)


def test_mcp_over_http_and_stdio(tmp_path: Path, ray_cluster) -> None:
    """The SDK's own client drives plan -> approve -> apply -> status over streamable HTTP at /mcp and over
    `cdp-ray mcp` (stdio); tokens and scopes are the API's."""
    from mcp.client.stdio import StdioServerParameters
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    with BackgroundServer(settings(tmp_path)) as srv:
        def http(token: str):
            return lambda: streamable_http_client(srv.url + "/mcp", http_client=create_mcp_http_client(
                headers={"Authorization": f"Bearer {token}"}))

        doc = pipeline(SAMPLE_LAKE, tmp_path / "h", name="loop-http")
        doc["source"]["end"] = START + 1
        st = _mcp_loop(http(TOKENS["operator"]), doc)
        assert st["state"] == "succeeded" and st["stats"]["ledgers"] == 2

        assert httpx.post(srv.url + "/mcp", json={}).status_code == 401

        async def forbidden() -> tuple[bool, str]:
            from mcp import Client

            async with Client(http(TOKENS["reader"])()) as c:
                r = await c.call_tool("plan", {"desired": doc})
                return bool(r.is_error), r.content[0].text

        is_error, text = anyio.run(forbidden)
        assert is_error and "lacks the 'plan' scope" in text

        doc = pipeline(SAMPLE_LAKE, tmp_path / "s", name="loop-stdio")
        doc["source"]["end"] = START + 1
        cli = str(Path(sys.executable).with_name("cdp-ray"))
        params = StdioServerParameters(command=cli, args=["mcp", "--url", srv.url],
                                       env={**os.environ, "CDP_RAY_TOKEN": TOKENS["operator"]})
        st = _mcp_loop(lambda: params, doc)
        assert st["state"] == "succeeded"
        audit = as_("reader", srv).get("/audit", params={"action": "plan.approve"}).json()
        assert [a["actor"] for a in audit] == ["operator", "operator"]


def test_otlp_traces_follow_the_standard_variables(tmp_path: Path) -> None:
    """OTEL_TRACES_EXPORTER=otlp and OTEL_SERVICE_NAME: the control plane's spans (an HTTP request traced by the
    FastAPI instrumentation) reach an OTLP/HTTP collector on loopback (in a child process: the provider is global)."""
    import http.server

    received: list[bytes] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    code = ("from opentelemetry import trace; from cdp_ray.control import ControlSettings; "
            "from cdp_ray.control.server import BackgroundServer; import httpx\n"
            f"with BackgroundServer(ControlSettings(database={str(tmp_path / 'c.sqlite3')!r})) as srv:\n"
            "    httpx.get(srv.url + '/tools')\n"
            "trace.get_tracer_provider().force_flush()\n")
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "otlp", "OTEL_SERVICE_NAME": "cdp-ray-test-svc",
           "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_port}"}
    try:
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    spans, services = [], set()
    for body in received:
        req = ExportTraceServiceRequest.FromString(body)
        for rs in req.resource_spans:
            services |= {a.value.string_value for a in rs.resource.attributes if a.key == "service.name"}
            spans += [sp.name for ss in rs.scope_spans for sp in ss.spans]
    assert services == {"cdp-ray-test-svc"}
    assert "GET /tools" in spans


def test_cli_stop_command(tmp_path: Path) -> None:
    from cdp_ray.cli.main import app

    with BackgroundServer(settings(tmp_path)) as srv:
        res = CliRunner().invoke(app, ["stop", "pl-none", "--url", srv.url, "--token", TOKENS["operator"], "--json"])
        assert res.exit_code == 1 and json.loads(res.output)["message"].endswith("HTTP 404: no pipeline 'pl-none'")
    assert subprocess.run([str(Path(sys.executable).with_name("cdp-ray")), "stop", "--help"],
                          capture_output=True, text=True).returncode == 0
