"""Iceberg sink: tables from the processors' schemas, exactly-once ranges (replays, concurrent workers, a run
killed with SIGKILL and resumed), the checkpoint in table properties and snapshot summaries, compaction
keeping rows, reading back (scan, polars), the SQL catalog on SQLite and PostgreSQL, S3 warehouses.

The pipeline tests run real testnet ledgers (1410048-1410207, a SEP-54 lake) and compare every Iceberg row
with a Parquet sink written in the same run, field by field.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.dataset as pads
import pytest
import yaml
from typer.testing import CliRunner

from cdp_ray.cli.main import app
from cdp_ray.errors import OwnershipError, SinkError
from cdp_ray.lake import LakeSchema
from cdp_ray.lake.writer import write_lake
from cdp_ray.pipeline.config import PipelineConfig, parse_sink_uri
from cdp_ray.pipeline.runner import run_pipeline
from cdp_ray.pipeline.scan import scan
from cdp_ray.processors.base import get_processor
from cdp_ray.sinks.base import RunContext, make_sink
from cdp_ray.sinks.iceberg import IcebergSinkConfig

from conftest import ROOT, TESTNET
from ledger_files import lighthorizon
from test_sink_parquet import PROC, rows

FIRST, LAST = 1410048, 1410207
PER_TASK = 4
KEYS = {"ledgers": ("sequence",), "transactions": ("id",)}
SEQ = {"ledgers": "sequence", "transactions": "ledger_sequence"}


def _plain(v):
    return int(v) if isinstance(v, Decimal) else v


def _sorted_rows(table: pa.Table, name: str) -> list[dict]:
    data = table.sort_by([(k, "ascending") for k in KEYS[name]]).to_pylist()
    return [{k: _plain(v) for k, v in r.items()} for r in data]


def _events(sink) -> list[int]:
    return sorted(sink.load("events").scan().to_arrow()["n"].to_pylist())


# ---- tables and ranges ----------------------------------------------------------------------------


def test_tables_follow_the_processor_schemas(tmp_path):
    sink = make_sink({"type": "iceberg", "uri": str(tmp_path)})
    procs = [get_processor(n) for n in ("ledgers", "transactions", "trades", "payments")]
    sink.prepare(procs, "p")
    assert (tmp_path / "catalog.db").is_file()
    ledgers = sink.load("ledgers")
    schema = ledgers.schema()
    seq = schema.find_field("sequence")
    assert (str(seq.field_type), seq.required, seq.doc) == ("long", True, "ledger sequence number")
    assert str(schema.find_field("total_byte_size_of_live_soroban_state").field_type) == "decimal(20, 0)"
    assert schema.identifier_field_names() == {"sequence"}
    assert [(f.name, str(f.transform)) for f in ledgers.spec().fields] == [("closed_at_day", "day")]
    trades = sink.load("trades")
    assert trades.schema().identifier_field_names() == {"history_operation_id", "order"}
    assert [f.name for f in trades.spec().fields] == ["ledger_closed_at_day"]
    assert ledgers.properties["cdp-ray.pipeline"] == "p" and ledgers.properties["cdp-ray.ledger-column"] == "sequence"
    # every column keeps its description
    want = {f.name: f.metadata[b"description"].decode() for f in get_processor("transactions").schema}
    have = {f.name: f.doc for f in sink.load("transactions").schema().fields}
    assert have == want


def test_replayed_range_replaces_its_rows_and_is_recorded(tmp_path):
    sink = make_sink({"type": "iceberg", "uri": str(tmp_path)})
    sink.prepare([PROC], "p1")
    run = RunContext("p1", "abc")
    sink.write_range(10, 13, {"events": (PROC, rows(10, 13))}, run)
    sink.write_range(14, 15, {"events": (PROC, rows(14, 15))}, run)
    sink.write_range(10, 13, {"events": (PROC, rows(10, 13))}, run)  # replay
    assert _events(sink) == sorted(r * 10 + i for r in range(10, 16) for i in range(2))
    assert [(r.start, r.end, r.config_hash) for r in sink.committed("p1")] == [(10, 15, "abc")]
    tbl = sink.load("events")
    summaries = [s.summary for s in tbl.snapshots()]
    assert [s.get("cdp-ray.range") for s in summaries] == ["10-13", "14-15", "10-13", "10-13"]
    assert [s.operation.value for s in summaries] == ["append", "append", "delete", "append"]
    assert summaries[-1]["cdp-ray.config-hash"] == "abc" and summaries[-1]["cdp-ray.rows"] == "8"
    assert summaries[-1]["cdp-ray.pipeline"] == "p1"
    # the replayed range kept its day partitions: two days, ledgers 10-11 before midnight
    days = sorted(str(f.file.partition[0]) for f in tbl.scan().plan_files())
    assert len(days) == 3 and len(set(days)) == 2
    detail = sink.committed_detail("p1")
    assert detail[0].rows == {"events": 12} and detail[0].committed_at is not None
    # a stale config's range is discarded with its rows; forget keeps rows
    sink.discard("p1", [sink.committed("p1")[0]])
    assert _events(sink) == [] and sink.committed("p1") == []
    sink.write_range(10, 11, {"events": (PROC, rows(10, 11))}, run)
    assert sink.forget("p1") == 1 and sink.committed("p1") == [] and len(_events(sink)) == 4


def test_snapshots_expire_and_compact_deletes_unreferenced_files(tmp_path):
    from pyiceberg.io.pyarrow import _dataframe_to_data_files

    sink = make_sink({"type": "iceberg", "uri": str(tmp_path), "keep_snapshots": 2})
    sink.prepare([PROC], "p")
    run = RunContext("p", "h")
    for start in range(0, 60, 4):
        sink.write_range(start, start + 3, {"events": (PROC, rows(start, start + 3))}, run)
    tbl = sink.load("events")
    assert len(tbl.snapshots()) <= 2 + 10 + 1
    assert _events(sink) == sorted(r * 10 + i for r in range(60) for i in range(2))
    # a killed writer's files: written, never committed
    orphans = list(_dataframe_to_data_files(table_metadata=tbl.metadata, df=rows(100, 101).cast(tbl.schema().as_arrow()),
                                            io=tbl.io, write_uuid=uuid.uuid4()))
    paths = [f.file_path.removeprefix("file://") for f in orphans]
    assert all(os.path.exists(p) for p in paths)
    report = sink.compact("p")["events"]
    assert report["orphans_deleted"] >= len(paths) and not any(os.path.exists(p) for p in paths)
    assert report["files_after"] == 2  # one per day
    assert _events(sink) == sorted(r * 10 + i for r in range(60) for i in range(2))
    assert [(r.start, r.end) for r in sink.committed("p")] == [(0, 59)]


def test_a_commit_whose_outcome_was_lost_is_rebuilt_without_duplicates(tmp_path, monkeypatch):
    """The catalog took the commit but the answer was lost (a storage error after it landed): the rebuilt commit
    deletes the range's rows, its own files included, and appends the same files once."""
    from pyiceberg.table import Transaction

    sink = make_sink({"type": "iceberg", "uri": str(tmp_path), "retry_backoff_s": 0.01})
    sink.prepare([PROC], "p")
    run = RunContext("p", "h")
    sink.write_range(1, 2, {"events": (PROC, rows(1, 2))}, run)
    original, lost = Transaction.commit_transaction, []

    def commit_then_fail(txn):
        result = original(txn)
        if not lost:
            lost.append(True)
            raise OSError("connection reset after the commit")
        return result

    monkeypatch.setattr(Transaction, "commit_transaction", commit_then_fail)
    sink.write_range(3, 6, {"events": (PROC, rows(3, 6))}, run)
    monkeypatch.undo()
    assert lost == [True]
    assert _events(sink) == sorted(r * 10 + i for r in range(1, 7) for i in range(2))
    assert [(r.start, r.end) for r in sink.committed("p")] == [(1, 6)]
    assert sink.committed_detail("p")[0].rows == {"events": 12}
    paths = [f.file.file_path for f in sink.load("events").scan().plan_files()]
    assert len(paths) == len(set(paths)) == 3  # 1-2: one day; 3-6: two days, each file once


def test_a_range_is_committed_once_every_table_holds_it(tmp_path):
    other = PROC.__class__("others", PROC.schema, PROC.fn, "more rows", ("n",))
    sink = make_sink({"type": "iceberg", "uri": str(tmp_path)})
    sink.prepare([PROC, other], "p")
    run = RunContext("p", "h")
    sink.write_range(1, 4, {"events": (PROC, rows(1, 4)), "others": (other, rows(1, 4))}, run)
    # a run killed between the two tables' commits: only `events` holds 5-8
    writer = sink.open_range(5, 8, [PROC], run)
    writer.write({"events": (PROC, rows(5, 8))})
    writer.commit()
    assert [(r.start, r.end) for r in sink.committed("p")] == [(1, 4)]
    tbl, row_filter, spans = sink.committed_filter("p", "events")
    assert spans == [(1, 4)]
    assert sorted(set(tbl.scan(row_filter=row_filter).to_arrow()["ledger_sequence"].to_pylist())) == [1, 2, 3, 4]


def _concurrent_writers(cfg: dict, writers: int, ranges: int) -> None:
    """``writers`` threads (each its own sink and catalog connection) commit ``ranges`` ranges each at once, every
    third one twice; then every range is recorded and every row is there once."""
    make_sink(cfg).prepare([PROC], "p")
    run = RunContext("p", "h")
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        sink = make_sink(cfg)
        try:
            for j in range(ranges):
                start = (k * ranges + j) * 4
                sink.write_range(start, start + 3, {"events": (PROC, rows(start, start + 3))}, run)
                if j % 3 == 0:
                    sink.write_range(start, start + 3, {"events": (PROC, rows(start, start + 3))}, run)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    sink = make_sink(cfg)
    n = writers * ranges
    assert [(r.start, r.end) for r in sink.committed("p")] == [(0, 4 * n - 1)]
    assert _events(sink) == sorted(r * 10 + i for r in range(4 * n) for i in range(2))
    summaries = [s.summary for s in sink.load("events").snapshots()]
    assert sum(s.operation.value == "append" for s in summaries) == n + writers * len(range(0, ranges, 3))
    assert sink.committed_detail("p")[0].rows == {"events": 8 * n}


def test_concurrent_workers_lose_no_commit(tmp_path):
    """On a SQLite catalog the writers of one host take turns (a file lock)."""
    _concurrent_writers({"type": "iceberg", "uri": str(tmp_path)}, 6, 4)


def test_concurrent_commits_refused_by_the_catalog_are_rebuilt(tmp_path, monkeypatch):
    """Without the file lock (as on PostgreSQL and REST catalogs, or across hosts) the catalog refuses all but one
    of the commits racing on a snapshot; the others are rebuilt on the new snapshot and land."""
    from cdp_ray.sinks.iceberg import IcebergSink

    attempts = []
    original = IcebergSink._commit_retried

    def counting(self, table, build, what):
        def build_counted(t, txn):
            build(t, txn)
            attempts.append(t.metadata.current_snapshot_id)

        return original(self, table, build_counted, what)

    monkeypatch.setattr(IcebergSink, "_commit_mutex", lambda self: contextlib.nullcontext())
    monkeypatch.setattr(IcebergSink, "_commit_retried", counting)
    _concurrent_writers({"type": "iceberg", "uri": str(tmp_path)}, 4, 3)
    assert len(attempts) > 4 * 3 + 4, "no commit was refused: the writers did not race"


def test_new_processor_columns_evolve_the_table(tmp_path):
    sink = make_sink({"type": "iceberg", "uri": str(tmp_path)})
    sink.prepare([PROC], "p")
    sink.write_range(1, 2, {"events": (PROC, rows(1, 2))}, RunContext("p", "h1"))
    schema = PROC.schema.append(pa.field("memo", pa.string(), metadata={"description": "a new column"}))
    wider = PROC.__class__("events", schema, PROC.fn, "test rows", ("n",))
    sink.prepare([wider], "p")
    field = sink.load("events").schema().find_field("memo")
    assert (str(field.field_type), field.required, field.doc) == ("string", False, "a new column")
    data = rows(3, 3).append_column(schema.field("memo"), pa.array(["m", "m"]))
    sink.write_range(3, 3, {"events": (wider, data)}, RunContext("p", "h2"))
    got = sink.load("events").scan().to_arrow().sort_by("n")
    assert got["memo"].to_pylist() == [None] * 4 + ["m", "m"]
    retyped = PROC.__class__("events", PROC.schema.set(1, pa.field("n", pa.string(), nullable=False)), PROC.fn, "x", ("n",))
    with pytest.raises(SinkError, match="column 'n' is int64, processor 'events' declares string"):
        sink.prepare([retyped], "p")


def test_ownership_and_release(tmp_path):
    sink = make_sink({"type": "iceberg", "uri": str(tmp_path)})
    sink.prepare([PROC], "p1")
    with pytest.raises(OwnershipError, match="belongs to pipeline 'p1'"):
        sink.prepare([PROC], "p2")
    assert sink.release("p1") == ["events"]
    sink.prepare([PROC], "p2")
    assert sink.load("events").properties["cdp-ray.pipeline"] == "p2"


# ---- configuration ----------------------------------------------------------------------------------


def test_config_one_liner_and_catalogs(tmp_path):
    doc = parse_sink_uri("iceberg+s3://bucket/wh?namespace=lake&catalog_uri=postgresql%2Bpsycopg://u@h/db")
    assert doc == {"type": "iceberg", "uri": "s3://bucket/wh", "namespace": "lake", "catalog_uri": "postgresql+psycopg://u@h/db"}
    assert parse_sink_uri("iceberg://out") == {"type": "iceberg", "uri": "out"}
    local = IcebergSinkConfig(uri=str(tmp_path))
    assert local.pyiceberg_properties() == {"type": "sql", "uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": tmp_path.as_uri()}
    s3 = IcebergSinkConfig(uri="s3://b/wh", catalog_uri="sqlite:////x/c.db", endpoint_url="http://127.0.0.1:9",
                           storage_options={"key": "k", "secret": "s", "client_kwargs": {"region_name": "us-east-1"}})
    assert s3.pyiceberg_properties() == {
        "type": "sql", "uri": "sqlite:////x/c.db", "warehouse": "s3://b/wh", "s3.endpoint": "http://127.0.0.1:9",
        "s3.access-key-id": "k", "s3.secret-access-key": "s", "s3.region": "us-east-1"}
    rest = IcebergSinkConfig(uri="gs://b/wh", catalog="rest", catalog_uri="https://cat.example/api",
                             catalog_properties={"credential": "id:secret"})
    assert rest.pyiceberg_properties() == {"type": "rest", "uri": "https://cat.example/api", "warehouse": "gs://b/wh",
                                           "py-io-impl": "pyiceberg.io.fsspec.FsspecFileIO", "credential": "id:secret"}
    with pytest.raises(SinkError, match="SQLite catalog file cannot live on object storage"):
        IcebergSinkConfig(uri="s3://b/wh").pyiceberg_properties()
    with pytest.raises(SinkError, match="REST catalog without catalog_uri"):
        IcebergSinkConfig(uri="/x", catalog="rest").pyiceberg_properties()


def test_postgres_catalog(tmp_path, postgres_dsn):
    import psycopg

    name = f"cdp_test_{uuid.uuid4().hex[:8]}"
    url = "postgresql+psycopg://" + postgres_dsn.split("://", 1)[1]
    cfg = {"type": "iceberg", "uri": str(tmp_path / "wh"), "catalog_uri": url, "catalog_name": name}
    sink = make_sink(cfg)
    try:
        sink.prepare([PROC], "p")
        sink.write_range(1, 4, {"events": (PROC, rows(1, 4))}, RunContext("p", "h"))
        again = make_sink(cfg)
        assert [(r.start, r.end) for r in again.committed("p")] == [(1, 4)] and len(_events(again)) == 8
        assert not (tmp_path / "wh" / "catalog.db").exists()
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM iceberg_tables WHERE catalog_name = %s", (name,))
            conn.execute("DELETE FROM iceberg_namespace_properties WHERE catalog_name = %s", (name,))


@pytest.mark.parametrize("store", ["s3", "gcs"])
def test_object_storage_warehouse(store, tmp_path, s3_server, gcs_server):
    server = s3_server if store == "s3" else gcs_server
    bucket = server.bucket()
    scheme = "s3" if store == "s3" else "gs"
    options = {k: v for k, v in server.options.items() if k != "endpoint_url"}
    cfg = {"type": "iceberg", "uri": f"{scheme}://{bucket}/wh", "catalog_uri": f"sqlite:///{tmp_path}/catalog.db",
           "endpoint_url": server.endpoint_url, "storage_options": options}
    sink = make_sink(cfg)
    sink.prepare([PROC], "p")
    lock = sink.lock("p")
    run = RunContext("p", "h")
    sink.write_range(1, 4, {"events": (PROC, rows(1, 4))}, run)
    sink.write_range(1, 4, {"events": (PROC, rows(1, 4))}, run)
    sink.write_range(5, 6, {"events": (PROC, rows(5, 6))}, run)
    lock.release()
    assert _events(sink) == sorted(r * 10 + i for r in range(1, 7) for i in range(2))
    assert [(r.start, r.end) for r in sink.committed("p")] == [(1, 6)]
    fs = fsspec.filesystem(scheme, **({"endpoint_url": server.endpoint_url} | options))
    keys = [k.split("/", 1)[1] for k in fs.find(f"{bucket}/wh")]
    assert any(k.startswith("wh/stellar/events/data/") and k.endswith(".parquet") for k in keys)
    assert any(k.startswith("wh/stellar/events/metadata/") for k in keys)
    report = sink.compact("p")
    assert report["events"]["files_before"] > report["events"]["files_after"]
    assert _events(sink) == sorted(r * 10 + i for r in range(1, 7) for i in range(2))


# ---- pipelines over real ledgers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def lake(stellar_data, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lake")
    write_lake(lighthorizon(stellar_data, FIRST, LAST), str(root), LakeSchema(), network_passphrase=TESTNET)
    return root


def _cfg_doc(name: str, lake: Path, warehouse: Path, parquet: Path | None = None, **options) -> dict:
    sinks = [{"type": "iceberg", "uri": str(warehouse)}]
    if parquet is not None:
        sinks.append({"type": "parquet", "uri": str(parquet)})
    return {
        "name": name,
        "source": {"uri": str(lake), "start": FIRST, "end": LAST, "network": "testnet"},
        "processors": ["ledgers", "transactions"],
        "sinks": sinks,
        "options": {"ledgers_per_task": PER_TASK, **options},
    }


@pytest.fixture(scope="module")
def reference(lake, tmp_path_factory):
    """A clean run on two Ray workers into Iceberg and Parquet: the rows of each (sorted by key)."""
    base = tmp_path_factory.mktemp("ref")
    doc = _cfg_doc("reference", lake, base / "wh", base / "pq", workers=2)
    summary = run_pipeline(PipelineConfig.model_validate(doc))
    assert summary.chunks == (LAST - FIRST + 1) // PER_TASK and summary.rows_by_table["transactions"] > 500
    parquet = {t: _sorted_rows(pads.dataset(str(base / "pq" / t)).to_table(), t) for t in KEYS}
    return base, doc, parquet


def _iceberg_rows(cfg: PipelineConfig | dict, table: str) -> list[dict]:
    cfg = cfg if isinstance(cfg, PipelineConfig) else PipelineConfig.model_validate(cfg)
    return _sorted_rows(scan(cfg, table, sink="iceberg", output="arrow").to_table(), table)


def test_pipeline_rows_equal_parquet_and_resume_skips_everything(reference, ray_cluster):
    base, doc, parquet = reference
    for table in KEYS:
        got = _iceberg_rows(doc, table)
        assert len(got) == len(parquet[table])
        assert got == parquet[table], f"{table}: Iceberg rows differ from Parquet"
    # polars reads the committed table through pyiceberg
    lazy = scan(PipelineConfig.model_validate(doc), "transactions", sink="iceberg")
    assert lazy.select("id").collect().height == len(parquet["transactions"])
    sink = make_sink(doc["sinks"][0])
    assert [(r.start, r.end) for r in sink.committed("reference")] == [(FIRST, LAST)]
    spec = base / "pipeline.yaml"
    spec.write_text(yaml.safe_dump(doc))
    res = CliRunner().invoke(app, ["run", str(spec), "--resume", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["ledgers"] == 0 and summary["skipped_chunks"] == (LAST - FIRST + 1) // PER_TASK
    res = CliRunner().invoke(app, ["checkpoint", "show", str(spec), "--json"])
    shown = json.loads(res.stdout)
    assert shown["ledgers_done"] == LAST - FIRST + 1 and shown["gaps"] == []
    iceberg_view = shown["sinks"][0]
    assert iceberg_view["ranges"] == 1 and iceberg_view["records"][0]["rows"] == {
        "ledgers": LAST - FIRST + 1, "transactions": len(parquet["transactions"])}


def test_changed_partitioning_is_refused_against_the_checkpoint(reference, tmp_path):
    base, doc, parquet = reference
    changed = {**doc, "sinks": [{**doc["sinks"][0], "partition_by_day": []}], "options": {**doc["options"], "workers": 1}}
    spec = tmp_path / "changed.yaml"
    spec.write_text(yaml.safe_dump(changed))
    res = CliRunner().invoke(app, ["run", str(spec), "--resume", "--engine", "local", "--json"])
    assert res.exit_code == 2 and "CheckpointMismatchError" in res.stdout


def test_compact_rewrites_small_files_and_keeps_rows(reference):
    base, doc, parquet = reference
    sink = make_sink(doc["sinks"][0])
    before = {t: len(list(sink.load(t).scan().plan_files())) for t in KEYS}
    assert before["ledgers"] >= (LAST - FIRST + 1) // PER_TASK
    spec = base / "compact.yaml"
    spec.write_text(yaml.safe_dump(doc))
    res = CliRunner().invoke(app, ["compact", str(spec), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)["compacted"][0]["tables"]
    for t in KEYS:
        files = len(list(sink.load(t).scan().plan_files()))
        days = len({tuple(f.file.partition) for f in sink.load(t).scan().plan_files()})
        assert report[t]["files_before"] == before[t] and report[t]["files_after"] == files == days
        assert _iceberg_rows(doc, t) == parquet[t]
    assert [(r.start, r.end) for r in sink.committed("reference")] == [(FIRST, LAST)]


def _kill_session(proc: subprocess.Popen) -> None:
    from test_faults import _kill_session as kill

    kill(proc)


def test_killed_run_resumes_exactly_once(reference, lake, ray_cluster, tmp_path):
    _, _, parquet = reference
    doc = _cfg_doc("killed", lake, tmp_path / "wh", workers=1)
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(yaml.safe_dump(doc))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "disabled"
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "cdp_ray.cli.main", "run", str(spec)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    total = (LAST - FIRST + 1) // PER_TASK
    sink = make_sink(doc["sinks"][0])

    def done() -> int:
        try:
            return sum(e - s + 1 for s, e in ((r.start, r.end) for r in sink.committed("killed"))) // PER_TASK
        except Exception:  # the catalog or tables do not exist yet
            return 0

    try:
        deadline = time.monotonic() + 180
        while done() < 3:
            assert proc.poll() is None, f"run exited early: {(tmp_path / 'run.log').read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no range committed within 180 s"
            time.sleep(0.05)
    finally:
        _kill_session(proc)
    n = done()
    assert 3 <= n < total, f"the kill did not land mid-run ({n} of {total})"
    # readers see committed ranges only, each row once
    committed = [(r.start, r.end) for r in sink.committed("killed")]
    for t in KEYS:
        got = _iceberg_rows(doc, t)
        want = [r for r in parquet[t] if any(s <= r[SEQ[t]] <= e for s, e in committed)]
        assert got == want
        raw = sink.load(t).scan().to_arrow()
        keys = list(zip(*(raw[k].to_pylist() for k in KEYS[t])))
        assert len(keys) == len(set(keys)), f"{t}: duplicate rows after the kill"

    res = CliRunner().invoke(app, ["run", str(spec), "--resume", "--workers", "2", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert n <= summary["skipped_chunks"] < total
    for t in KEYS:
        got = _iceberg_rows(doc, t)
        assert len(got) == len(parquet[t]), f"{t}: {len(got)} rows, the clean run has {len(parquet[t])}"
        assert got == parquet[t]
        raw = sink.load(t).scan().to_arrow()
        assert raw.num_rows == len(parquet[t]), f"{t}: rows outside the committed view"
    assert [(r.start, r.end) for r in sink.committed("killed")] == [(FIRST, LAST)]
    res = CliRunner().invoke(app, ["compact", str(spec), "--json"])
    assert res.exit_code == 0, res.output
    for t in KEYS:
        assert _iceberg_rows(doc, t) == parquet[t]


def test_iceberg_template_runs_on_the_sample(tmp_path, monkeypatch):
    import polars as pl

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CDP_RAY_OUT", raising=False)
    runner = CliRunner()
    assert runner.invoke(app, ["init", "iceberg"]).exit_code == 0
    pipeline = yaml.safe_load((tmp_path / "pipeline.yaml").read_text())
    pipeline["success"] = {"reconcile": ["ledger_transactions", "ledger_operations"]}
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    res = runner.invoke(app, ["run", "pipeline.yaml", "--engine", "local", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    checks = {c["name"]: c["passed"] for c in doc["success"]["checks"]}
    assert checks == {"ledger_transactions": True, "ledger_operations": True}, doc["success"]
    assert doc["rows"] == {"ledgers": 10, "transactions": 2650, "operations": 7032, "trades": doc["rows"]["trades"]}
    assert doc["rows"]["trades"] > 0
    sink = make_sink({"type": "iceberg", "uri": str(tmp_path / "out" / "iceberg")})
    for table, n in doc["rows"].items():
        assert pl.scan_iceberg(sink.load(table)).select(pl.len()).collect().item() == n
        assert scan(str(tmp_path / "pipeline.yaml"), table).select(pl.len()).collect().item() == n
    listed = json.loads(runner.invoke(app, ["checkpoint", "list", "pipeline.yaml", "--json"]).stdout)
    assert [(c["pipeline"], c["ranges"], c["ledgers"]) for c in listed["checkpoints"]] == [("iceberg", 1, 10)]
    cleaned = json.loads(runner.invoke(app, ["checkpoint", "clean", "pipeline.yaml", "--yes", "--json"]).stdout)
    assert cleaned["deleted"][0]["records"] == 1
    assert sorted(cleaned["deleted"][0]["released"]) == ["ledgers", "operations", "trades", "transactions"]
    assert sink.committed("iceberg") == [] and "cdp-ray.pipeline" not in sink.load("ledgers").properties
