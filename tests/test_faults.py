"""Faults: a run killed mid-way and resumed, a Ray worker killed mid-run, corrupt files, a flaky S3, extended
ranges, pipelines sharing a sink, chain breaks, driver-side errors, concurrent runs, and a multi-node cluster
losing a node (its driver: tests/multinode_backfill.py).

The ledgers are real: 160 contiguous testnet ledgers (1410048-1410207) packed into a SEP-54 lake.
Every faulty run is compared, row for row, with a clean single run of the same pipeline into
Postgres and Parquet: same keys, same values, no duplicates, no gaps.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg
from psycopg.rows import dict_row
import pyarrow.dataset as pads
import pytest
import yaml

from cdp_ray.errors import CorruptLedgerFileError
from cdp_ray.lake import LakeSchema
from cdp_ray.lake.writer import write_lake
from cdp_ray.pipeline.config import PipelineConfig
from cdp_ray.pipeline.runner import run_pipeline

from conftest import ROOT, TESTNET
from ledger_files import lighthorizon

FIRST, LAST = 1410048, 1410207
PER_TASK = 4
KEYS = {"ledgers": ("sequence",), "transactions": ("id",)}
SEQ = {"ledgers": "sequence", "transactions": "ledger_sequence"}


@pytest.fixture(scope="module")
def lake(stellar_data, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lake")
    write_lake(lighthorizon(stellar_data, FIRST, LAST), str(root), LakeSchema(), network_passphrase=TESTNET)
    return root


def _pipeline(name: str, lake: Path, dsn: str, schema: str, out: Path, first: int = FIRST, last: int = LAST, **options) -> dict:
    return {
        "name": name,
        "source": {"uri": str(lake), "start": first, "end": last, "network": "testnet"},
        "processors": ["ledgers", "transactions"],
        "sinks": [
            {"type": "postgres", "dsn": dsn, "schema": schema},
            {"type": "parquet", "uri": str(out)},
        ],
        "options": {"ledgers_per_task": PER_TASK, **options},
    }


@pytest.fixture(scope="module")
def pg_conn(postgres_dsn):
    conn = psycopg.connect(postgres_dsn, autocommit=True)
    schemas: list[str] = []
    yield conn, schemas
    for s in schemas:
        conn.execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')
    conn.close()


def _schema(pg_conn) -> str:
    name = f"cdp_fault_{uuid.uuid4().hex[:10]}"
    pg_conn[1].append(name)
    return name


def pg_output(conn, schema: str) -> dict[str, list[dict]]:
    out = {}
    with conn.cursor(row_factory=dict_row) as cur:
        for table, pk in KEYS.items():
            out[table] = cur.execute(f'SELECT * FROM "{schema}".{table} ORDER BY {", ".join(pk)}').fetchall()
    return out


def parquet_output(out: Path) -> dict[str, list[dict]]:
    res = {}
    for table, pk in KEYS.items():
        t = pads.dataset(str(out / table)).to_table()
        res[table] = t.sort_by([(k, "ascending") for k in pk]).to_pylist()
    return res


@pytest.fixture(scope="module")
def reference(lake, postgres_dsn, pg_conn, tmp_path_factory):
    """A clean single run (in-process) of the whole range into Postgres and Parquet."""
    schema, out = _schema(pg_conn), tmp_path_factory.mktemp("ref")
    cfg = PipelineConfig.model_validate(_pipeline("reference", lake, postgres_dsn, schema, out))
    summary = run_pipeline(cfg, engine="local")
    assert summary.ledgers == LAST - FIRST + 1 and summary.rows_by_table["transactions"] > 500
    pg = pg_output(pg_conn[0], schema)
    assert [r["sequence"] for r in pg["ledgers"]] == list(range(FIRST, LAST + 1))
    return pg, parquet_output(out), summary


def assert_same_as_reference(reference, conn, schema: str, out: Path, first: int = FIRST, last: int = LAST) -> None:
    """Postgres and Parquet output of ``[first, last]`` equal the clean run's: same keys, same values."""
    ref_pg, ref_pq, _ = reference
    pg, pq = pg_output(conn, schema), parquet_output(out)
    for table, pk in KEYS.items():
        in_range = lambda r: first <= r[SEQ[table]] <= last  # noqa: E731
        want_pg, want_pq = [r for r in ref_pg[table] if in_range(r)], [r for r in ref_pq[table] if in_range(r)]
        assert len(pg[table]) == len(want_pg), f"{table}: {len(pg[table])} rows in Postgres, the clean run has {len(want_pg)}"
        assert pg[table] == want_pg, f"{table}: Postgres rows differ from the clean run"
        assert len(pq[table]) == len(want_pq), f"{table}: {len(pq[table])} rows in Parquet, the clean run has {len(want_pq)}"
        assert pq[table] == want_pq, f"{table}: Parquet rows differ from the clean run"
        keys = [tuple(r[k] for k in pk) for r in pq[table]]
        assert len(keys) == len(set(keys)), f"{table}: duplicate keys in Parquet"
    assert [r["sequence"] for r in pg["ledgers"]] == list(range(first, last + 1)), "ledgers missing (gaps) or repeated"


def _committed(conn, schema: str, out: Path, pipeline: str) -> tuple[int, int]:
    try:
        n_pg = conn.execute(f'SELECT count(*) FROM "{schema}".cdp_ray_ranges WHERE pipeline = %s', (pipeline,)).fetchone()[0]
    except psycopg.errors.UndefinedTable:
        n_pg = 0
    n_pq = len(list((out / "_cdp_ray" / pipeline / "ranges").glob("*.json")))
    return n_pg, n_pq


def _kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL the run's process group, then anything else left in its session (Ray's daemons)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    for _ in range(50):
        left = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == proc.pid:  # session id
                left.append(int(stat.parent.name))
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def test_killed_run_resumes_to_exactly_the_clean_output(lake, postgres_dsn, pg_conn, reference, ray_cluster, tmp_path):
    conn = pg_conn[0]
    schema, out = _schema(pg_conn), tmp_path / "out"
    doc = _pipeline("killed", lake, postgres_dsn, schema, out, workers=1)
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(yaml.safe_dump(doc))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "disabled"
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdp_ray.cli.main", "run", str(spec)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    total = (LAST - FIRST + 1) // PER_TASK
    try:
        deadline = time.monotonic() + 180
        while True:
            n_pg, n_pq = _committed(conn, schema, out, "killed")
            if min(n_pg, n_pq) >= 3:
                break
            assert proc.poll() is None, f"run exited early: {(tmp_path / 'run.log').read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no range committed within 180 s"
            time.sleep(0.05)
    finally:
        _kill_session(proc)
    n_pg, n_pq = _committed(conn, schema, out, "killed")
    assert 3 <= min(n_pg, n_pq) and max(n_pg, n_pq) < total, f"the kill did not land mid-run ({n_pg}, {n_pq} of {total})"

    # resume with the CLI, on this process's Ray cluster; --workers is not part of the config hash
    from typer.testing import CliRunner

    from cdp_ray.cli.main import app

    res = CliRunner().invoke(app, ["run", str(spec), "--resume", "--workers", "2", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    skipped = summary["skipped_chunks"]
    assert min(n_pg, n_pq) <= skipped < total
    assert summary["ledgers"] == (total - skipped) * PER_TASK and summary["quarantined"] == []
    assert_same_as_reference(reference, conn, schema, out)
    assert _committed(conn, schema, out, "killed") == (total, total)
    # one file per table per range: the interrupted range's file was replaced, not duplicated
    assert len(list((out / "transactions").glob("*.parquet"))) == total
    assert not list(out.rglob("_tmp-*"))


def test_worker_killed_mid_run_is_survived(lake, postgres_dsn, pg_conn, reference, ray_cluster, tmp_path):
    conn = pg_conn[0]
    schema, out = _schema(pg_conn), tmp_path / "out"
    cfg = PipelineConfig.model_validate(_pipeline("worker-death", lake, postgres_dsn, schema, out, workers=2))
    killed: list[int] = []

    def kill_first_worker(row: dict) -> None:
        if not killed:
            os.kill(int(row["worker_pid"]), signal.SIGKILL)
            killed.append(int(row["worker_pid"]))

    summary = run_pipeline(cfg, on_chunk=kill_first_worker)
    assert killed, "no worker was killed"
    assert summary.chunks == (LAST - FIRST + 1) // PER_TASK and summary.quarantined == []
    assert_same_as_reference(reference, conn, schema, out)


def _corrupt_lake(src: Path, dst: Path, seq: int) -> Path:
    shutil.copytree(src, dst)
    key = LakeSchema().key_for(seq)
    (dst / key).write_bytes(b"\x28\xb5\x2f\xfd this is not a zstd frame")
    return dst / key


def test_corrupt_file_is_quarantined_or_fails_the_run(lake, postgres_dsn, pg_conn, reference, tmp_path):
    conn = pg_conn[0]
    first, last, bad = FIRST, FIRST + 31, FIRST + 13
    bad_lake = tmp_path / "lake"
    bad_path = _corrupt_lake(lake, bad_lake, bad)
    schema, out = _schema(pg_conn), tmp_path / "out"
    doc = _pipeline("quarantine", bad_lake, postgres_dsn, schema, out, first, last, on_error="quarantine")
    summary = run_pipeline(PipelineConfig.model_validate(doc), engine="local")
    bad_range = (bad // PER_TASK * PER_TASK, bad // PER_TASK * PER_TASK + PER_TASK - 1)
    assert [(d.start, d.end) for d in summary.quarantined] == [bad_range]
    assert summary.ledgers == last - first + 1 - PER_TASK
    letters = conn.execute(
        f'SELECT pipeline, start_ledger, end_ledger, ledger, file_key, error, message FROM "{schema}".cdp_ray_dead_letters'
    ).fetchall()
    assert len(letters) == 1
    pipeline, s, e, ledger, key, error, message = letters[0]
    assert (pipeline, s, e, ledger, error) == ("quarantine", *bad_range, bad, "CorruptLedgerFileError")
    assert key.endswith(f"--{bad}.xdr.zst") and "decompression failed" in message
    from cdp_ray.sinks.parquet import ParquetSink, ParquetSinkConfig

    pq_letters = ParquetSink(ParquetSinkConfig(uri=str(out))).dead_letters("quarantine")
    assert [(d.start, d.end, d.key, d.error) for d in pq_letters] == [(*bad_range, key, "CorruptLedgerFileError")]
    present = {r[0] for r in conn.execute(f'SELECT sequence FROM "{schema}".ledgers')}
    assert present == set(range(first, last + 1)) - set(range(bad_range[0], bad_range[1] + 1))

    failing = PipelineConfig.model_validate(_pipeline("failing", bad_lake, postgres_dsn, _schema(pg_conn), tmp_path / "o2", first, last))
    with pytest.raises(CorruptLedgerFileError) as err:
        run_pipeline(failing, engine="local")
    assert f"--{bad}.xdr.zst" in err.value.key

    # the file is re-exported: resume processes only the quarantined range and clears its dead letter
    shutil.copyfile(lake / LakeSchema().key_for(bad), bad_path)
    resumed = run_pipeline(PipelineConfig.model_validate(doc), engine="local", resume=True)
    assert resumed.chunks == 1 and resumed.skipped_chunks == (last - first + 1) // PER_TASK - 1
    assert conn.execute(f'SELECT count(*) FROM "{schema}".cdp_ray_dead_letters').fetchone()[0] == 0
    assert ParquetSink(ParquetSinkConfig(uri=str(out))).dead_letters("quarantine") == []
    assert_same_as_reference(reference, conn, schema, out, first, last)


def test_cli_exit_code_3_when_ranges_are_quarantined(lake, postgres_dsn, pg_conn, ray_cluster, tmp_path):
    from typer.testing import CliRunner

    from cdp_ray.cli.main import app

    bad_lake = tmp_path / "lake"
    _corrupt_lake(lake, bad_lake, FIRST + 2)
    doc = _pipeline("cli-q", bad_lake, postgres_dsn, _schema(pg_conn), tmp_path / "out", FIRST, FIRST + 7, on_error="quarantine")
    spec = tmp_path / "p.yaml"
    spec.write_text(yaml.safe_dump(doc))
    res = CliRunner().invoke(app, ["run", str(spec), "--json"])
    assert res.exit_code == 3, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["ok"] is False and out["ledgers"] == 4
    assert [(q["start"], q["end"], q["error"]) for q in out["quarantined"]] == [(FIRST, FIRST + 3, "CorruptLedgerFileError")]


# -- a flaky S3 endpoint: moto behind a proxy that fails every third request -------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FlakyProxy:
    """Forwards HTTP to ``upstream``; every ``every``-th request gets a 500 InternalError instead."""

    def __init__(self, upstream_port: int, every: int = 3):
        self.upstream_port, self.every = upstream_port, every
        self.requests = self.failures = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy.lock:
                    proxy.requests += 1
                    fail = proxy.requests % proxy.every == 0
                    proxy.failures += fail
                if fail:
                    msg = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>InternalError</Code><Message>injected</Message></Error>"
                    self.send_response(500)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(msg)
                    return
                up = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                up.request(self.command, self.path, body=body or None, headers=headers)
                resp = up.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                up.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture()
def flaky_s3(monkeypatch):
    """(moto endpoint, flaky proxy) for S3; credentials are moto's dummies."""
    from moto.server import ThreadedMotoServer

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    proxy = FlakyProxy(port)
    yield f"http://127.0.0.1:{port}", proxy
    proxy.close()
    server.stop()


def test_flaky_s3_is_survived_by_retries(stellar_data, flaky_s3, reference, tmp_path):
    import s3fs

    endpoint, proxy = flaky_s3
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="lake")
    s3.create_bucket(Bucket="out")
    direct = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint, "region_name": "us-east-1"})
    first, last = FIRST, FIRST + 11
    write_lake(
        lighthorizon(stellar_data, first, last), "s3://lake/testnet", LakeSchema(), network_passphrase=TESTNET,
        storage_options={"client_kwargs": {"endpoint_url": endpoint}},
    )
    # botocore's and s3fs's own retries off: only cdp-ray's retries stand between the errors and the run
    no_retry = {"config_kwargs": {"retries": {"max_attempts": 1}}, "client_kwargs": {"region_name": "us-east-1"}}
    proxy_url = f"http://127.0.0.1:{proxy.port}"
    cfg = PipelineConfig.model_validate(
        {
            "name": "flaky",
            "source": {"uri": "s3://lake/testnet", "start": first, "end": last, "network": "testnet",
                       "endpoint_url": proxy_url, "storage_options": no_retry, "retries": 4},
            "processors": ["ledgers", "transactions"],
            "sinks": [{"type": "parquet", "uri": "s3://out/run", "endpoint_url": proxy_url, "storage_options": no_retry,
                       "retries": 4, "retry_backoff_s": 0.01}],
            "options": {"ledgers_per_task": PER_TASK},
        }
    )
    summary = run_pipeline(cfg, engine="local")
    assert proxy.failures >= 10, f"only {proxy.failures} of {proxy.requests} requests failed"
    assert summary.ledgers == last - first + 1
    ref_pq = reference[1]
    direct.invalidate_cache()
    for table, pk in KEYS.items():
        got = pads.dataset("out/run/" + table, filesystem=direct).to_table()
        got = got.sort_by([(k, "ascending") for k in pk]).to_pylist()
        want = [r for r in ref_pq[table] if first <= r[SEQ[table]] <= last]
        assert got == want
    manifests = direct.ls("out/run/_cdp_ray/flaky/ranges")
    assert len(manifests) == (last - first + 1) // PER_TASK


# -- exactly once in every shape of use (issue 15): extended ranges, shared sinks, chain breaks, driver errors,
# -- failed runs, concurrent runs ------------------------------------------------------------------------------


def _parquet_ranges(out: Path, pipeline: str) -> list[tuple[int, int]]:
    from cdp_ray.sinks.parquet import ParquetSink, ParquetSinkConfig

    return [(r.start, r.end) for r in ParquetSink(ParquetSinkConfig(uri=str(out))).committed(pipeline)]


def _reader_files(out: Path) -> dict[str, list[str]]:
    """What a glob reader sees: every Parquet file under each table directory."""
    return {t: sorted(p.name for p in (out / t).rglob("*.parquet")) for t in KEYS if (out / t).exists()}


def test_extending_a_range_past_a_partial_chunk_duplicates_nothing(lake, postgres_dsn, pg_conn, reference, tmp_path):
    """Issue 15.3: run to the middle of a chunk, then extend the range with --resume, then rerun a sub-range
    without it: every table holds each row once, in Parquet (glob readers included) and PostgreSQL."""
    conn = pg_conn[0]
    schema, out = _schema(pg_conn), tmp_path / "out"
    first, mid, last = FIRST, FIRST + 9, FIRST + 13
    run_pipeline(PipelineConfig.model_validate(_pipeline("extend", lake, postgres_dsn, schema, out, first, mid)), engine="local")
    assert _parquet_ranges(out, "extend")[-1] == (FIRST + 8, mid)
    extended = PipelineConfig.model_validate(_pipeline("extend", lake, postgres_dsn, schema, out, first, last))
    summary = run_pipeline(extended, engine="local", resume=True)
    assert summary.ledgers == last - mid and summary.skipped_ledgers == mid - first + 1
    assert_same_as_reference(reference, conn, schema, out, first, last)
    assert _parquet_ranges(out, "extend") == [(FIRST, FIRST + 3), (FIRST + 4, FIRST + 7), (FIRST + 8, FIRST + 11), (FIRST + 12, last)]
    assert _reader_files(out)["transactions"] == [f"{s:010d}-{e:010d}.parquet" for s, e in _parquet_ranges(out, "extend")]
    # a rerun of two ledgers inside a committed chunk, without --resume: the chunk's other rows stay, once
    sub = PipelineConfig.model_validate(_pipeline("extend", lake, postgres_dsn, schema, out, FIRST + 5, FIRST + 6))
    run_pipeline(sub, engine="local")
    assert_same_as_reference(reference, conn, schema, out, first, last)
    assert _parquet_ranges(out, "extend")[1] == (FIRST + 4, FIRST + 7)
    ranges = conn.execute(f'SELECT start_ledger, end_ledger FROM "{schema}".cdp_ray_ranges ORDER BY 1').fetchall()
    assert intervals_of(ranges) == [(first, last)], "PostgreSQL's records cover the range exactly once"


def intervals_of(ranges) -> list[tuple[int, int]]:
    from cdp_ray.pipeline import intervals

    spans = [(int(s), int(e)) for s, e in ranges]
    assert sum(e - s + 1 for s, e in spans) == sum(e - s + 1 for s, e in intervals.merge(spans)), "records overlap"
    return intervals.merge(spans)


def test_pipelines_sharing_a_sink_are_refused(lake, postgres_dsn, pg_conn, reference, tmp_path):
    """Issue 15.2: a second pipeline writing the same Parquet root and PostgreSQL schema would delete the first's
    rows by ledger range; it is refused (exit 2, naming the owner), following the CLI's own hint included."""
    from typer.testing import CliRunner

    from cdp_ray.cli.main import app

    conn = pg_conn[0]
    schema, out = _schema(pg_conn), tmp_path / "out"
    first, last = FIRST, FIRST + 7
    doc = _pipeline("owner", lake, postgres_dsn, schema, out, first, last)
    run_pipeline(PipelineConfig.model_validate(doc), engine="local")
    filtered = {**doc, "where": {"operation_types": ["payment"]}}
    spec = tmp_path / "p.yaml"
    spec.write_text(yaml.safe_dump(filtered))
    res = CliRunner().invoke(app, ["run", str(spec), "--engine", "local", "--json"])
    assert res.exit_code == 2 and json.loads(res.stdout.splitlines()[-1])["error"] == "CheckpointMismatchError"
    assert "another output" in json.loads(res.stdout.splitlines()[-1])["hint"]
    spec.write_text(yaml.safe_dump({**filtered, "name": "intruder"}))  # what the old hint suggested
    res = CliRunner().invoke(app, ["run", str(spec), "--engine", "local", "--json"])
    err = json.loads(res.stdout.splitlines()[-1])
    assert res.exit_code == 2 and err["error"] == "OwnershipError", res.output
    assert "belongs to pipeline 'owner'" in err["message"] and "another" in err["hint"]
    assert_same_as_reference(reference, conn, schema, out, first, last)
    again = run_pipeline(PipelineConfig.model_validate(doc), engine="local", resume=True)
    assert again.ledgers == 0 and again.skipped_ledgers == last - first + 1


def _break_chain(src: Path, dst: Path, seq: int) -> None:
    """A copy of the lake whose ledger ``seq`` verifies on its own but does not chain to ``seq - 1``."""
    from cdp_ray.lake.writer import resequence

    shutil.copytree(src, dst)
    raw = _lighthorizon_one(seq)
    (broken,) = resequence([raw], seq, 1, previous_hash=b"\x01" * 32)
    write_lake([broken], str(dst), LakeSchema(), network_passphrase=TESTNET)


def _lighthorizon_one(seq: int) -> bytes:
    from conftest import STELLAR_DATA

    return (STELLAR_DATA / "stellar-go-lighthorizon" / "ledgers" / str(seq)).read_bytes()[4:]


def test_a_chain_break_between_chunks_is_never_committed(lake, postgres_dsn, pg_conn, reference, tmp_path):
    """Issue 15.4: the chunk whose first ledger does not chain to the previous chunk is not committed (fails the
    run, or is quarantined), and --resume checks it again instead of skipping it."""
    from cdp_ray.errors import LedgerIntegrityError

    conn = pg_conn[0]
    first, last, bad = FIRST, FIRST + 15, FIRST + 8
    bad_lake = tmp_path / "lake"
    _break_chain(lake, bad_lake, bad)
    schema, out = _schema(pg_conn), tmp_path / "out"
    failing = PipelineConfig.model_validate(_pipeline("chain", bad_lake, postgres_dsn, schema, out, first, last))
    for resume in (False, True):
        with pytest.raises(LedgerIntegrityError) as err:
            run_pipeline(failing, engine="local", resume=resume)
        assert err.value.sequence == bad and f"is not the hash of ledger {bad - 1}" in err.value.message
        assert (bad, bad + 3) not in _parquet_ranges(out, "chain")
    assert _committed(conn, schema, out, "chain") == (2, 2)

    q_schema, q_out = _schema(pg_conn), tmp_path / "q"
    doc = _pipeline("chain-q", bad_lake, postgres_dsn, q_schema, q_out, first, last, on_error="quarantine")
    for resume in (False, True):
        summary = run_pipeline(PipelineConfig.model_validate(doc), engine="local", resume=resume)
        assert summary.quarantined_chunks == 1 and summary.quarantined[0].error == "LedgerIntegrityError"
        assert (summary.quarantined[0].start, summary.quarantined[0].ledger) == (bad, bad)
        assert _parquet_ranges(q_out, "chain-q") == [(first, first + 3), (first + 4, first + 7), (first + 12, last)]
    shutil.copyfile(lake / LakeSchema().key_for(bad), bad_lake / LakeSchema().key_for(bad))  # re-exported
    fixed = run_pipeline(PipelineConfig.model_validate(doc), engine="local", resume=True)
    assert (fixed.chunks, fixed.quarantined_chunks) == (1, 0)
    assert conn.execute(f'SELECT count(*) FROM "{q_schema}".cdp_ray_dead_letters').fetchone()[0] == 0
    assert_same_as_reference(reference, conn, q_schema, q_out, first, last)


@pytest.mark.timeout(300)
def test_a_driver_side_error_ends_a_ray_run(lake, postgres_dsn, pg_conn, ray_cluster, tmp_path):
    """Issue 15.5: an exception on the driver while chunks run ends the run (no hang), and a resume finishes it."""
    schema, out = _schema(pg_conn), tmp_path / "out"
    cfg = PipelineConfig.model_validate(_pipeline("driver-error", lake, postgres_dsn, schema, out, FIRST, FIRST + 31, workers=2))

    def explode(row: dict) -> None:
        raise RuntimeError("the driver's callback failed")

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="callback failed"):
        run_pipeline(cfg, on_chunk=explode)
    assert time.monotonic() - started < 240
    assert run_pipeline(cfg, resume=True).skipped_ledgers >= PER_TASK


def test_a_failed_ray_run_leaves_only_committed_files_where_readers_look(lake, postgres_dsn, pg_conn, ray_cluster, tmp_path):
    """Issue 15.9: a run that fails mid-way leaves no uncommitted rows and no temporary files at reader paths;
    a successful run leaves no staging behind."""
    conn = pg_conn[0]
    first, last, gone = FIRST, FIRST + 39, FIRST + 30
    holey = tmp_path / "lake"
    shutil.copytree(lake, holey)
    (holey / LakeSchema().key_for(gone)).unlink()
    schema, out = _schema(pg_conn), tmp_path / "out"
    cfg = PipelineConfig.model_validate(_pipeline("failed", holey, postgres_dsn, schema, out, first, last, workers=2))
    with pytest.raises(Exception):
        run_pipeline(cfg)
    committed = {f"{s:010d}-{e:010d}.parquet" for s, e in _parquet_ranges(out, "failed")}
    for table, files in _reader_files(out).items():
        assert set(files) <= committed, f"{table}: uncommitted files at the reader's path"
    assert not list(out.rglob("_tmp-*"))
    shutil.copyfile(lake / LakeSchema().key_for(gone), holey / LakeSchema().key_for(gone))
    run_pipeline(cfg, resume=True)
    assert_same_as_reference_range(conn, schema, out, first, last)
    assert not list((out / "_cdp_ray/failed/staging").iterdir())


def assert_same_as_reference_range(conn, schema: str, out: Path, first: int, last: int) -> None:
    pg, pq = pg_output(conn, schema), parquet_output(out)
    for table, pk in KEYS.items():
        keys = [tuple(r[k] for k in pk) for r in pq[table]]
        assert len(keys) == len(set(keys)) and len(pg[table]) == len(pq[table])
    assert [r["sequence"] for r in pg["ledgers"]] == list(range(first, last + 1))


def test_a_second_run_of_a_running_pipeline_is_refused(lake, postgres_dsn, pg_conn, reference, tmp_path):
    """Issue 15.10: two concurrent runs of one pipeline: the second is refused with a clear error, not a
    duplicate-key failure. The first run is a process holding the pipeline's locks in both sinks, as a run does
    from start to end (PostgreSQL's session lock, the Parquet lease); once it is gone a run goes through."""
    conn = pg_conn[0]
    schema, out = _schema(pg_conn), tmp_path / "out"
    doc = _pipeline("busy", lake, postgres_dsn, schema, out)
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(yaml.safe_dump(doc))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, yaml\n"
         "from cdp_ray.pipeline.config import PipelineConfig\nfrom cdp_ray.sinks.base import make_sink\n"
         "cfg = PipelineConfig.model_validate(yaml.safe_load(open(sys.argv[1])))\n"
         "locks = [make_sink(s).lock(cfg.name) for s in cfg.sinks]\nprint('held', flush=True)\nsys.stdin.read()\n",
         str(spec)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        from typer.testing import CliRunner

        from cdp_ray.cli.main import app

        res = CliRunner().invoke(app, ["run", str(spec), "--engine", "local", "--json"])
        err = json.loads(res.stdout.splitlines()[-1])
        assert res.exit_code == 1 and err["error"] == "PipelineBusyError", res.output
        assert "pipeline 'busy' is already running" in err["message"] and "wait for the other run" in err["hint"]
        assert _committed(conn, schema, out, "busy") == (0, 0), "the refused run wrote nothing"
    finally:
        holder.kill()
        holder.wait()
    res = CliRunner().invoke(app, ["run", str(spec), "--engine", "local", "--json"])
    assert res.exit_code == 0, res.output
    assert_same_as_reference(reference, conn, schema, out)


# -- a multi-node cluster losing a node mid-run (issue 14.9) ---------------------------------------------------


@pytest.mark.timeout(900)
def test_backfill_survives_losing_a_node(lake, postgres_dsn, pg_conn, reference, tmp_path):
    conn = pg_conn[0]
    schema, out = _schema(pg_conn), tmp_path / "out"
    doc = _pipeline("multinode", lake, postgres_dsn, schema, out)
    with tempfile.TemporaryDirectory(prefix="cdpmn-", dir="/tmp") as ray_tmp:
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
        env.update(RAY_TMPDIR=ray_tmp, RAY_AUTH_MODE="disabled", PYTHONPATH=str(Path(__file__).resolve().parent))
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve().parent / "multinode_backfill.py"), json.dumps(doc), "6"],
                              env=env, capture_output=True, text=True, timeout=840, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["refused_relative"] and "relative local path" in got["refused_relative"]
    assert "cluster of 3 nodes" in got["refused_relative"] and not (tmp_path / "relative").exists()
    assert len(got["events"]) == 1, got  # chunks the removed node had in flight (if any still were) are rerun
    assert len(got["nodes_used"]) == 2, f"chunks ran on both worker nodes: {got['nodes_used']}"
    assert got["chunks"] == (LAST - FIRST + 1) // PER_TASK and got["ledgers"] == LAST - FIRST + 1
    assert_same_as_reference(reference, conn, schema, out)
    assert _committed(conn, schema, out, "multinode") == ((LAST - FIRST + 1) // PER_TASK,) * 2
    # the killed node's chunks were rerun somewhere; resuming has nothing left to do
    again = run_pipeline(PipelineConfig.model_validate(doc), engine="local", resume=True)
    assert again.ledgers == 0 and again.skipped_ledgers == LAST - FIRST + 1
