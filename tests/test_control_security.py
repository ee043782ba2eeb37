"""The control plane against a hostile client, over real HTTP (uvicorn on loopback): secrets, concurrent
applies, paths, limits, webhooks, open endpoints and the apply errors (issue 15, issue 16's auth part)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml

from cdp_ray.control import ControlSettings
from cdp_ray.control.server import BackgroundServer
from cdp_ray.control.settings import TokenSpec
from cdp_ray.sample import SAMPLE_LAKE

START, END = 63092982, 63092991
TOKENS = {"reader": "tok-reader", "planner": "tok-planner", "operator": "tok-operator"}
SCOPES = {"reader": ["read"], "planner": ["read", "plan"], "operator": ["read", "apply", "approve"]}


class RecordingExecutor:
    """Stands in for the runner: records what apply submits (thread-safe, shared by servers)."""

    kind = "recording"

    def __init__(self) -> None:
        self.submitted: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def submit(self, plan, cfg, pipeline_id):
        with self._lock:
            self.submitted.append((plan.id, pipeline_id))
        return {"executor": self.kind}

    def shutdown(self) -> None:
        pass


def settings(tmp_path: Path, rules: list[dict] | None = None, *, database: str | None = None, **kw) -> ControlSettings:
    pol = tmp_path / "pol"
    pol.mkdir(exist_ok=True)
    (pol / "p.yaml").write_text(yaml.safe_dump({"policies": rules or []}))
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    kw.setdefault("tokens", [TokenSpec(name=n, token=t, scopes=SCOPES[n]) for n, t in TOKENS.items()])
    return ControlSettings(database=database or str(tmp_path / "control.sqlite3"), policies_dir=pol, default_workers=2,
                           data_dir=data, **kw)


def as_(name: str, srv: BackgroundServer) -> httpx.Client:
    return httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {TOKENS[name]}"}, timeout=60)


def pipeline(sink: dict | str = "out", *, start: int = START, end: int = END, name: str = "t", **source) -> dict:
    return {"name": name, "source": {"uri": str(SAMPLE_LAKE), "start": start, "end": end, **source},
            "processors": ["ledgers"], "sinks": [sink if isinstance(sink, dict) else {"type": "parquet", "uri": sink}],
            "options": {"ledgers_per_task": 4}}


def detail(r: httpx.Response) -> dict:
    return r.json()["detail"]


@pytest.fixture
def pg_store(postgres_dsn: str):
    """A fresh PostgreSQL schema for the control-plane store: its DSN (search_path set), dropped after."""
    schema = f"cdp_ctl_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in postgres_dsn else "?"
    yield f"{postgres_dsn}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


# ---- 1. secrets through plans ----------------------------------------------------------------


def test_server_settings_never_reach_a_plan(tmp_path: Path, monkeypatch) -> None:
    """`${VAR}` in a client document is not expanded on the server: a plan token cannot copy the server's
    tokens, webhook secret or DSN into a plan that read tokens can fetch."""
    monkeypatch.setenv("CDP_RAY_CONTROL_TOKENS", json.dumps([{"name": "root", "token": "root-token-123", "scopes": ["approve"]}]))
    monkeypatch.setenv("CDP_RAY_POSTGRES_DSN", "postgresql://app:hunter2@127.0.0.1:5432/test")
    text = (f"name: t\nsource: {{uri: '{SAMPLE_LAKE}', start: {START}, end: {END}}}\nprocessors: [ledgers]\n"
            "sinks: [{type: parquet, uri: 'out/${CDP_RAY_CONTROL_TOKENS}'}]\n")
    with BackgroundServer(settings(tmp_path)) as srv:
        planner = as_("planner", srv)
        r = planner.post("/plans", json={"desired": text})
        assert r.status_code == 400, r.text
        assert detail(r)["error"] == "UnsafeDocument"
        assert "${CDP_RAY_CONTROL_TOKENS}" in detail(r)["message"] and "client" in detail(r)["hint"]
        doc = pipeline({"type": "postgres", "dsn": "${CDP_RAY_POSTGRES_DSN}"})
        r = planner.post("/plans", json={"desired": doc})
        assert r.status_code == 400 and "${CDP_RAY_POSTGRES_DSN}" in detail(r)["message"]
        listed = as_("reader", srv).get("/plans")
        assert listed.json() == []
        for body in (r.text, listed.text):
            assert "root-token-123" not in body and "hunter2" not in body


def test_literal_secrets_are_refused_and_credentials_go_by_name(tmp_path: Path) -> None:
    creds = {"analytics": {"value": "postgresql://app:s3cr3t-pg@127.0.0.1:5432/test"}, "aws": {"value": "AKIA-s3cr3t"}}
    with BackgroundServer(settings(tmp_path, credentials=creds)) as srv:
        planner, reader = as_("planner", srv), as_("reader", srv)
        refused = [
            pipeline({"type": "postgres", "dsn": "postgresql://app:hunter2@127.0.0.1:5432/test"}),
            pipeline({"type": "postgres", "dsn": "host=127.0.0.1 dbname=test password=hunter2"}),
            {**pipeline(), "sinks": ["postgresql://app:hunter2@127.0.0.1/test"]},
            pipeline({"type": "parquet", "uri": "s3://b/p", "storage_options": {"key": "AKIA", "secret": "hunter2"}}),
            pipeline({"type": "parquet", "uri": "s3://b/p", "endpoint_url": "http://u:hunter2@127.0.0.1:9000"}),
            pipeline("out", storage_options={"client_kwargs": {"aws_secret_access_key": "hunter2"}}),
        ]
        for doc in refused:
            r = planner.post("/plans", json={"desired": doc})
            assert r.status_code == 400, (doc, r.text)
            assert detail(r)["error"] == "UnsafeDocument" and "${credential:" in detail(r)["hint"], r.text
            assert "hunter2" not in r.text
        r = planner.post("/plans", json={"desired": pipeline({"type": "postgres", "dsn": "${credential:nope}"})})
        assert r.status_code == 400 and "unknown credential 'nope'" in detail(r)["message"]
        assert "analytics, aws" in detail(r)["hint"]

        ok = pipeline({"type": "postgres", "dsn": "${credential:analytics}", "schema": "s"},
                      storage_options={"token": "anon"})
        r = planner.post("/plans", json={"desired": ok})
        assert r.status_code == 201, r.text
        plan = reader.get(f"/plans/{r.json()['id']}").json()
        assert plan["desired"]["sinks"][0]["dsn"] == "${credential:analytics}"
        assert plan["desired"]["source"]["storage_options"] == {"token": "anon"}

        # Defence in depth: documents that hold a literal secret anyway (a plan stored by an older version,
        # a pipeline registered by an external run, an audit detail) are served redacted.
        store = srv.app.state.store
        old = store.get_plan(plan["id"])
        old["id"] = "plan-old"
        old["desired"]["sinks"][0]["dsn"] = "postgresql://app:hunter2@127.0.0.1:5432/test"
        store.save_plan(old)
        shown = reader.get("/plans/plan-old").json()["desired"]["sinks"][0]["dsn"]
        assert shown == "postgresql://app:***@127.0.0.1:5432/test"
        reg = as_("operator", srv).post("/pipelines", json={
            "id": "ext-1", "name": "ext", "pipeline": pipeline({"type": "postgres", "dsn": "postgresql://app:hunter2@h/db"})})
        assert reg.status_code == 201, reg.text
        assert reg.json()["pipeline"]["sinks"][0]["dsn"] == "postgresql://app:***@h/db"
        store.audit("x", "test.detail", "plan-old", "ok", {"dsn": "postgresql://app:hunter2@h/db", "storage_options": {"secret": "hunter2"}})
        for path in ("/plans", "/plans/plan-old", "/audit", "/pipelines/ext-1/status", "/plans/plan-old/audit"):
            assert "hunter2" not in reader.get(path).text, path
    raw = (tmp_path / "control.sqlite3").read_bytes() + (tmp_path / "control.sqlite3-wal").read_bytes() \
        if (tmp_path / "control.sqlite3-wal").exists() else (tmp_path / "control.sqlite3").read_bytes()
    assert b"s3cr3t" not in raw  # credential values never reach the store


def test_which_values_count_as_secrets() -> None:
    from cdp_ray.control.secrets import find_literal_secrets, find_variables, is_secret_key, redact

    assert all(map(is_secret_key, ["key", "secret", "aws_secret_access_key", "sessionToken", "password", "credentials"]))
    assert not any(map(is_secret_key, ["report_token_sha256", "ledgers_per_task", "endpoint_url", "anon", "dsn"]))
    doc = {"sinks": [{"dsn": "postgresql://app:pw1@db/x"}, {"dsn": "postgresql://app:${credential:pg}@db/x"},
                     {"dsn": "host=db password='p w2' dbname=x"}, {"dsn": "postgresql://app@db/x?password=pw3"}],
           "source": {"endpoint_url": "http://tok4@minio:9000", "storage_options": {
               "token": "anon", "key": "${credential:aws}", "client_kwargs": {"aws_session_token": "tok5"},
               "credentials": {"type": "service_account", "private_key": "pk6"}}}}
    assert find_literal_secrets(doc) == [
        "sinks[0].dsn", "sinks[2].dsn", "sinks[3].dsn", "source.endpoint_url",
        "source.storage_options.client_kwargs.aws_session_token", "source.storage_options.credentials.type",
        "source.storage_options.credentials.private_key"]
    shown = redact(doc)
    assert [s["dsn"] for s in shown["sinks"]] == ["postgresql://app:***@db/x", "postgresql://app:${credential:pg}@db/x",
                                                  "host=db password=*** dbname=x", "postgresql://app@db/x?password=***"]
    assert shown["source"]["storage_options"] == {"token": "anon", "key": "${credential:aws}",
                                                  "client_kwargs": {"aws_session_token": "***"},
                                                  "credentials": {"type": "***", "private_key": "***"}}
    assert find_variables({"a": "x/${HOME}/${credential:ok}", "b": ["${X:-y}"]}) == ["${HOME}", "${X:-y}"]


def test_credentials_reach_the_run_only_in_memory(tmp_path: Path, postgres_dsn: str, ray_cluster) -> None:
    """A plan names a credential; the in-process run gets its value, nothing stored or served has it."""
    schema = f"sec_{uuid.uuid4().hex[:8]}"
    secret_dsn = postgres_dsn.replace("postgres@", "postgres:s3cr3t-run@", 1)
    assert "s3cr3t-run" in secret_dsn
    s = settings(tmp_path, credentials={"analytics": {"env": "SEC_TEST_ANALYTICS_DSN"}})
    os.environ["SEC_TEST_ANALYTICS_DSN"] = secret_dsn
    try:
        with BackgroundServer(s) as srv:
            planner, operator, reader = as_("planner", srv), as_("operator", srv), as_("reader", srv)
            doc = pipeline({"type": "postgres", "dsn": "${credential:analytics}", "schema": schema}, end=START + 1)
            plan = planner.post("/plans", json={"desired": doc}).json()
            r = operator.post(f"/plans/{plan['id']}/apply")
            assert r.status_code == 202, r.text
            pid = r.json()["pipeline_id"]
            deadline = time.monotonic() + 120
            while (st := reader.get(f"/pipelines/{pid}/status").json())["state"] not in ("succeeded", "failed"):
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert st["state"] == "succeeded", st.get("error")
            assert st["pipeline"]["sinks"][0]["dsn"] == "${credential:analytics}"
            served = "".join(reader.get(p).text for p in ("/plans", f"/plans/{plan['id']}", "/audit", "/pipelines",
                                                           f"/pipelines/{pid}/status", "/metrics"))
            assert "s3cr3t-run" not in served
    finally:
        os.environ.pop("SEC_TEST_ANALYTICS_DSN", None)
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute(f'SELECT count(*) FROM "{schema}".ledgers').fetchone()[0] == 2
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    for f in tmp_path.glob("control.sqlite3*"):
        assert b"s3cr3t-run" not in f.read_bytes()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FakeJobs:
    """The dashboard's job API as JobSubmissionClient exposes it."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.submitted: list[dict] = []
        self.fail = fail

    def submit_job(self, **kw):
        if self.fail is not None:
            raise self.fail
        self.submitted.append(kw)
        return kw["submission_id"]

    def get_job_status(self, job_id):
        from ray.job_submission import JobStatus

        return JobStatus.RUNNING


def test_ray_job_fetches_its_credentials_once_with_its_report_token(tmp_path: Path, postgres_dsn: str, monkeypatch,
                                                                      ray_cluster) -> None:
    """The Ray job's runtime env carries no credential value: the job fetches the values it needs once,
    with its report token, and runs with them."""
    from cdp_ray.control import client as job

    schema = f"sec_{uuid.uuid4().hex[:8]}"
    secret_dsn = postgres_dsn.replace("postgres@", "postgres:s3cr3t-job@", 1)
    port = _free_port()
    s = settings(tmp_path, credentials={"analytics": {"value": secret_dsn}}, ray_address="http://127.0.0.1:1",
                 public_url=f"http://127.0.0.1:{port}")
    jobs = FakeJobs()
    with BackgroundServer(s, port=port) as srv:
        srv.app.state.executor.client = jobs
        doc = pipeline({"type": "postgres", "dsn": "${credential:analytics}", "schema": schema}, end=START + 1)
        plan = as_("planner", srv).post("/plans", json={"desired": doc}).json()
        r = as_("operator", srv).post(f"/plans/{plan['id']}/apply")
        assert r.status_code == 202, r.text
        pid = r.json()["pipeline_id"]
        (sub,) = jobs.submitted
        assert "s3cr3t-job" not in json.dumps(sub)
        env = sub["runtime_env"]["env_vars"]
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        assert job.main() == 0
        reader = as_("reader", srv)
        assert reader.get(f"/pipelines/{pid}/status").json()["state"] == "succeeded"
        again = httpx.post(f"{srv.url}/pipelines/{pid}/credentials",
                          headers={"Authorization": f"Bearer {env['CDP_RAY_REPORT_TOKEN']}"})
        assert again.status_code == 409 and detail(again)["error"] == "CredentialsAlreadyFetched"
        assert reader.post(f"/pipelines/{pid}/credentials").status_code == 401  # only the report token
        assert as_("operator", srv).post(f"/pipelines/{pid}/credentials").status_code == 401
        assert "s3cr3t-job" not in reader.get(f"/pipelines/{pid}/status").text
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute(f'SELECT count(*) FROM "{schema}".ledgers').fetchone()[0] == 2
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


# ---- 6. concurrent applies -------------------------------------------------------------------


def _concurrently(calls: list) -> list[int]:
    """Run every ``call()`` at once (a barrier releases them together); their HTTP status codes."""
    barrier = threading.Barrier(len(calls))
    out: list[int | None] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        out[i] = calls[i]().status_code

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out  # type: ignore[return-value]


@contextlib.contextmanager
def two_servers(s: ControlSettings, ex: RecordingExecutor):
    """Two control planes on one database (as two replicas would be): no in-process lock is shared."""
    with BackgroundServer(s, executor=ex) as a, BackgroundServer(s, executor=ex) as b:
        yield a, b


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_one_plan_is_applied_once_under_concurrent_requests(tmp_path: Path, backend: str, request) -> None:
    db = request.getfixturevalue("pg_store") if backend == "postgresql" else None
    ex = RecordingExecutor()
    with two_servers(settings(tmp_path, database=db), ex) as (a, b):
        plan = as_("planner", a).post("/plans", json={"desired": pipeline()}).json()
        assert plan["status"] == "ready"
        clients = [as_("operator", a), as_("operator", b)]
        codes = _concurrently([lambda c=clients[i % 2]: c.post(f"/plans/{plan['id']}/apply") for i in range(24)])
        assert sorted(codes) == [202] + [409] * 23, codes
        assert len(ex.submitted) == 1
        applied = as_("reader", b).get(f"/plans/{plan['id']}").json()
        assert applied["status"] == "applied" and applied["pipeline_id"] == ex.submitted[0][1]
        ok = [e for e in as_("reader", a).get(f"/plans/{plan['id']}/audit").json()
              if e["action"] == "plan.apply" and e["outcome"] == "ok"]
        assert len(ok) == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_rate_policy_holds_under_concurrent_applies_of_different_plans(tmp_path: Path, backend: str, request) -> None:
    db = request.getfixturevalue("pg_store") if backend == "postgresql" else None
    ex = RecordingExecutor()
    rules = [{"name": "rate", "rule": "rate_limit", "max_applies": 3, "per_seconds": 3600}]
    with two_servers(settings(tmp_path, rules, database=db), ex) as (a, b):
        planner = as_("planner", a)
        ids = [planner.post("/plans", json={"desired": pipeline()}).json()["id"] for _ in range(16)]
        clients = [as_("operator", a), as_("operator", b)]
        codes = _concurrently([lambda c=clients[i % 2], p=p: c.post(f"/plans/{p}/apply") for i, p in enumerate(ids)])
        assert sorted(codes) == [202] * 3 + [409] * 13, codes
        assert len(ex.submitted) == 3
        statuses = [as_("reader", b).get(f"/plans/{p}").json()["status"] for p in ids]
        assert statuses.count("applied") == 3 and statuses.count("ready") == 13


# ---- 7. paths (names: test_config_validate.py) ----------------------------------------------------------------------


def test_sink_locations_are_confined(tmp_path: Path) -> None:
    data = tmp_path / "data"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rules = [{"name": "roots", "rule": "allowed_roots", "applies_to": "sinks", "roots": ["."], "outside": "approval"},
             {"name": "no-tmp", "rule": "allowed_roots", "applies_to": "sinks", "outside": "block",
              "roots": [".", str(elsewhere)]}]
    with BackgroundServer(settings(tmp_path, rules)) as srv:
        planner = as_("planner", srv)
        ok = planner.post("/plans", json={"desired": pipeline("out/a")}).json()
        assert ok["status"] == "ready"
        assert ok["desired"]["sinks"][0]["uri"] == str(data / "out" / "a")  # relative: under the data directory
        for bad in ("../x", "out/../../x", "parquet://../x"):
            r = planner.post("/plans", json={"desired": pipeline(bad) if "://" not in bad else {**pipeline(), "sinks": [bad]}})
            assert r.status_code == 400, (bad, r.text)
            assert detail(r)["error"] == "UnsafeDocument" and "data directory" in detail(r)["message"]
        outside = planner.post("/plans", json={"desired": pipeline(str(elsewhere / "o"))}).json()
        assert outside["status"] == "pending_approval"
        assert any(str(elsewhere / "o") in (res["message"] or "") for res in outside["policy"]["results"])
        (data / "link").symlink_to(elsewhere)
        linked = planner.post("/plans", json={"desired": pipeline("link/o")}).json()
        assert linked["status"] == "pending_approval"  # the symlink is resolved before matching
        blocked = planner.post("/plans", json={"desired": pipeline(str(tmp_path / "other"))}).json()
        assert blocked["status"] == "blocked"
        assert any(m.startswith("no-tmp:") for m in blocked["policy"]["blocking"])


def test_allowed_roots_match_object_stores_and_postgres(tmp_path: Path) -> None:
    from cdp_ray.control.policies import AllowedRoots
    from test_control_plans import ctx

    rule = AllowedRoots(name="r", rule="allowed_roots", applies_to="sinks", outside="block", roots=[
        "s3://bucket/cdp", "gs://lake-out/", "postgresql://db.internal:5432/analytics/reports",
        {"uri": "s3://minio-bucket/x", "endpoint_url": "http://127.0.0.1:9000"}])

    def verdict(sink) -> str | None:
        return rule.check(ctx({**pipeline(), "sinks": [sink]}, data_dir=tmp_path))

    assert verdict("parquet+s3://bucket/cdp/tables") is None
    assert verdict({"type": "parquet", "uri": "s3a://bucket/cdp"}) is None
    assert verdict("parquet+s3://bucket/cdpx") is not None
    assert verdict("parquet+s3://bucket/cdp/../other") is not None
    assert verdict("parquet+gs://lake-out/a/b") is None
    assert verdict({"type": "parquet", "uri": "s3://bucket/cdp", "endpoint_url": "http://127.0.0.1:9999"}) is not None
    assert verdict({"type": "parquet", "uri": "s3://minio-bucket/x/y", "endpoint_url": "http://127.0.0.1:9000"}) is None
    assert verdict({"type": "postgres", "dsn": "postgresql://u@db.internal/analytics", "schema": "reports"}) is None
    assert verdict({"type": "postgres", "dsn": "postgresql://u@db.internal:5432/analytics?schema=other"}) is not None
    assert verdict({"type": "postgres", "dsn": "postgresql://u@evil.example/analytics", "schema": "reports"}) is not None
    msg = verdict({"type": "postgres", "dsn": "postgresql://u@db.internal/other", "schema": "reports"})
    assert msg is not None and "postgresql://db.internal:5432/other/reports" in msg


# ---- 8. denial of service --------------------------------------------------------------------


def test_request_bodies_and_documents_are_bounded(tmp_path: Path) -> None:
    with BackgroundServer(settings(tmp_path, max_body_bytes=128 * 1024)) as srv:
        planner = as_("planner", srv)
        big = planner.post("/plans", content=b'{"desired": "' + b"x" * 200_000 + b'"}',
                           headers={"Content-Type": "application/json"})
        assert big.status_code == 413 and detail(big)["error"] == "RequestTooLarge"
        assert "131072" in detail(big)["message"]

        def chunks():
            yield b'{"desired": "'
            for _ in range(200):
                yield b"x" * 1000
            yield b'"}'

        streamed = planner.post("/plans", content=chunks(), headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413  # no Content-Length: counted as it arrives
        doc = pipeline()
        doc["where"] = {"accounts": ["GBRPFZV43NZBTOZOQUHVYMONKYOVUC4GYPC7AGU6Y5YIOLAFSAD2D6BH"] * 1200}  # 71 KB
        r = planner.post("/plans", json={"desired": doc})
        assert r.status_code == 413 and detail(r)["error"] == "DocumentTooLarge", r.text
        reader = as_("reader", srv)
        assert reader.get("/plans", params={"limit": 1000}).status_code == 422
        ids = [planner.post("/plans", json={"desired": pipeline()}).json()["id"] for _ in range(3)]
        page1 = reader.get("/plans", params={"limit": 2}).json()
        assert [p["id"] for p in page1] == ids[::-1][:2]
        page2 = reader.get("/plans", params={"limit": 2, "before": page1[-1]["created_at"]}).json()
        assert [p["id"] for p in page2] == [ids[0]]


def test_yaml_alias_bombs_are_refused(tmp_path: Path) -> None:
    lines = ["name: bomb", f"source: {{uri: {SAMPLE_LAKE}, start: {START}, end: {END}}}", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 7):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    lines.append("processors: [{name: ledgers, config: {bomb: *a6}}]")
    with BackgroundServer(settings(tmp_path)) as srv:
        r = as_("planner", srv).post("/plans", json={"desired": "\n".join(lines) + "\n"})
        assert r.status_code == 400, r.text[:300]
        assert detail(r)["error"] == "UnsafeDocument" and "alias" in detail(r)["message"]


def test_preview_reads_only_small_lake_shaped_sources_inside_allowed_roots(tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "data"
    data.mkdir()
    shutil.copytree(SAMPLE_LAKE, data / "lake")
    (tmp_path / "outside").mkdir()
    shutil.copytree(SAMPLE_LAKE, tmp_path / "outside" / "lake")
    with BackgroundServer(settings(tmp_path, preview_max_bytes=40_000_000, credentials={"gcp": {"value": "x"}})) as srv:
        reader = as_("reader", srv)

        def preview(source: dict) -> httpx.Response:
            return reader.post("/tools/processor.ledgers/preview", json={"source": source, "limit": 1})

        ok = preview({"uri": "lake", "start": START, "end": START + 1})
        assert ok.status_code == 200, ok.text
        assert ok.json()["num_rows"] == 2
        files = preview({"uri": "lake", "start": START, "end": START + 1, "layout": "files"})
        assert files.status_code == 400 and "lake" in detail(files)["message"]
        creds = preview({"uri": "lake", "start": START, "end": START + 1, "storage_options": {"token": "${credential:gcp}"}})
        assert creds.status_code == 400 and "credentials" in detail(creds)["message"]
        not_a_lake = preview({"uri": ".", "start": START, "end": START + 1})
        assert not_a_lake.status_code == 400 and detail(not_a_lake)["error"] == "NotPreviewable"
        escape = preview({"uri": "../outside/lake", "start": START, "end": START + 1})
        assert escape.status_code == 400 and "data directory" in detail(escape)["message"]
        absolute = preview({"uri": str(tmp_path / "outside" / "lake"), "start": START, "end": START + 1})
        assert absolute.status_code == 403 and detail(absolute)["error"] == "LocationNotAllowed"
    with BackgroundServer(settings(tmp_path, preview_max_bytes=100_000)) as srv:
        r = as_("reader", srv).post("/tools/processor.ledgers/preview",
                                    json={"source": {"uri": "lake", "start": START, "end": END}})
        assert r.status_code == 413 and detail(r)["error"] == "PreviewTooLarge" and "100000" in detail(r)["message"]


# ---- 10. webhooks, open endpoints, OpenAPI -----------------------------------------------------


def _signed(secret: str, body: bytes, ts: int) -> dict[str, str]:
    sig = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {"X-CDP-Timestamp": str(ts), "X-CDP-Signature": f"sha256={sig}", "Content-Type": "application/json"}


def test_approval_webhooks_are_timestamped_and_not_replayable(tmp_path: Path) -> None:
    rules = [{"name": "all", "rule": "approval_required"}]
    with BackgroundServer(settings(tmp_path, rules, webhook_secret="k")) as srv:
        planner = as_("planner", srv)
        plans = [planner.post("/plans", json={"desired": pipeline()}).json()["id"] for _ in range(3)]
        body = json.dumps({"plan_id": plans[0], "decision": "approve", "by": "dana"}).encode()
        now = int(time.time())
        hook = f"{srv.url}/webhooks/approval"
        r = httpx.post(hook, content=body, headers=_signed("k", body, now))
        assert r.status_code == 200 and r.json()["status"] == "approved"
        replay = httpx.post(hook, content=body, headers=_signed("k", body, now))
        assert replay.status_code == 409 and detail(replay)["error"] == "WebhookReplayed"
        stale_body = json.dumps({"plan_id": plans[1], "decision": "approve", "by": "dana"}).encode()
        stale = httpx.post(hook, content=stale_body, headers=_signed("k", stale_body, now - 600))
        assert stale.status_code == 401 and "timestamp" in detail(stale)["message"]
        old_style = {"X-CDP-Signature": "sha256=" + hmac.new(b"k", stale_body, hashlib.sha256).hexdigest()}
        assert httpx.post(hook, content=stale_body, headers=old_style).status_code == 401
        moved = _signed("k", stale_body, now)
        moved["X-CDP-Timestamp"] = str(now + 1)  # the timestamp is covered by the signature
        assert httpx.post(hook, content=stale_body, headers=moved).status_code == 401
        bad = json.dumps({"plan_id": plans[2], "decision": "maybe", "by": "dana"}).encode()
        assert httpx.post(hook, content=bad, headers=_signed("k", bad, now)).status_code == 422
        assert [as_("reader", srv).get(f"/plans/{p}").json()["status"] for p in plans] == [
            "approved", "pending_approval", "pending_approval"]


OPEN = {("GET", "/health"), ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"),
        ("GET", "/redoc"), ("POST", "/webhooks/approval")}


def test_only_the_documented_endpoints_are_open(tmp_path: Path) -> None:
    """Every route of the app answers 401 without a token, except the documented open ones."""
    from starlette.routing import Route

    with BackgroundServer(settings(tmp_path, webhook_secret="k")) as srv:
        routes = [(m, r.path) for r in srv.app.routes if isinstance(r, Route) for m in sorted(r.methods or ()) if m != "HEAD"]
        assert len(routes) > 20
        opened = set()
        for method, path in routes:
            url = srv.url + path.replace("{tool_id}", "processor.ledgers").replace("{plan_id}", "plan-x").replace(
                "{pipeline_id}", "pl-x")
            r = httpx.request(method, url, json={} if method == "POST" else None)
            if not (r.status_code == 401 and r.headers.get("www-authenticate") == "Bearer"):
                opened.add((method, path))
        assert opened == OPEN
        assert httpx.get(srv.url + "/health").json()["ok"] is True
        assert httpx.get(srv.url + "/metrics").status_code == 401
        assert as_("reader", srv).get("/metrics").status_code == 200
        assert as_("reader", srv).get("/llms.txt").status_code == 200
    with BackgroundServer(settings(tmp_path, public_metrics=True)) as srv:
        assert httpx.get(srv.url + "/metrics").status_code == 200  # for scrapers that send no token
        assert httpx.get(srv.url + "/llms.txt").status_code == 401


def test_openapi_shows_the_bearer_scheme_and_each_routes_scope(tmp_path: Path) -> None:
    with BackgroundServer(settings(tmp_path)) as srv:
        api = httpx.get(srv.url + "/openapi.json").json()
    schemes = api["components"]["securitySchemes"]
    assert schemes["bearer"]["type"] == "http" and schemes["bearer"]["scheme"] == "bearer"
    paths = api["paths"]
    assert paths["/plans"]["post"]["security"] == [{"bearer": ["plan"]}]
    assert paths["/plans"]["get"]["security"] == [{"bearer": ["read"]}]
    assert paths["/plans/{plan_id}/apply"]["post"]["security"] == [{"bearer": ["apply"]}]
    assert paths["/plans/{plan_id}/approve"]["post"]["security"] == [{"bearer": ["approve"]}]
    assert paths["/tools"]["get"]["security"] == [{"bearer": ["read"]}]
    assert paths["/metrics"]["get"]["security"] == [{"bearer": ["read"]}]
    assert "security" not in paths["/health"]["get"]
    assert "security" not in paths["/webhooks/approval"]["post"]
    every = [(p, m, op) for p, ops in paths.items() for m, op in ops.items()]
    assert all("security" in op for p, m, op in every if (m.upper(), p) not in OPEN)


# ---- apply failures --------------------------------------------------------------------------


def test_a_failed_ray_submit_is_a_structured_error_and_the_plan_can_be_retried(tmp_path: Path) -> None:
    port = _free_port()
    closed = _free_port()  # nothing listens here: the Ray dashboard is unreachable
    s = settings(tmp_path, ray_address=f"http://127.0.0.1:{closed}", public_url=f"http://127.0.0.1:{port}")
    with BackgroundServer(s, port=port) as srv:
        planner, operator, reader = as_("planner", srv), as_("operator", srv), as_("reader", srv)
        plan = planner.post("/plans", json={"desired": pipeline()}).json()
        r = operator.post(f"/plans/{plan['id']}/apply")
        assert r.status_code == 503, r.text
        err = detail(r)
        assert err["error"] == "RayUnavailable" and f"127.0.0.1:{closed}" in err["message"] and err["hint"]
        assert reader.get(f"/plans/{plan['id']}").json()["status"] == "ready"

        srv.app.state.executor.client = FakeJobs(RuntimeError("Request failed with status code 400: bad runtime_env"))
        r = operator.post(f"/plans/{plan['id']}/apply")
        assert r.status_code == 502 and detail(r)["error"] == "JobSubmitError"
        assert "bad runtime_env" in detail(r)["message"] and detail(r)["hint"]
        assert reader.get(f"/plans/{plan['id']}").json()["status"] == "ready"
        failed = [p for p in reader.get("/pipelines").json()]
        assert {p["state"] for p in failed} <= {"failed"}  # a run that never started is not left pending

        jobs = FakeJobs()
        srv.app.state.executor.client = jobs
        r = operator.post(f"/plans/{plan['id']}/apply")
        assert r.status_code == 202 and len(jobs.submitted) == 1
        trail = [(e["action"], e["outcome"]) for e in reader.get(f"/plans/{plan['id']}/audit").json()
                 if e["action"] == "plan.apply"]
        assert trail == [("plan.apply", "error"), ("plan.apply", "error"), ("plan.apply", "ok")]
