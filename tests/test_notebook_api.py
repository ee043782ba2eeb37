"""The notebook API as a data scientist calls it: `load`/`table_dataset` with UTC times, filters and options;
`scan` of what a pipeline committed (Parquet and PostgreSQL)."""

from __future__ import annotations

import gzip
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import psycopg
import pyarrow as pa
import pytest

import cdp_ray
from cdp_ray.errors import ConfigError
from cdp_ray.lake import LakeSchema
from cdp_ray.lake.writer import write_lake
from cdp_ray.pipeline.config import PipelineConfig
from cdp_ray.pipeline.runner import run_pipeline
from conftest import PUBNET

FIRST, LAST = 63092982, 63093001  # 2026-06-19 00:20:52Z .. 00:22:39Z, one ledger every 5-6 s
PAYMENT_FILTER = {"operation_types": ["payment"]}


@pytest.fixture(scope="module")
def lake(tmp_path_factory, stellar_data: Path) -> str:
    """wallet-backend's 20 contiguous pubnet ledgers as a SEP-54 lake of 2-ledger batches."""
    raws = [gzip.decompress((stellar_data / "wallet-backend" / f"ledger-{s}.xdr.gz").read_bytes()) for s in range(FIRST, LAST + 1)]
    root = str(tmp_path_factory.mktemp("lake"))
    write_lake(raws, root, LakeSchema(ledgers_per_file=2, files_per_partition=4), network_passphrase=PUBNET)
    return root


@pytest.fixture(scope="module")
def everything(lake: str) -> dict[str, pl.DataFrame]:
    return cdp_ray.load(["ledgers", "transactions", "operations"], lake, FIRST, LAST, output="polars")


def _closed_between(ledgers: pl.DataFrame, a: datetime, b: datetime) -> list[int]:
    return ledgers.filter(pl.col("closed_at").is_between(a, b))["sequence"].to_list()


@pytest.mark.parametrize(
    ("start_time", "end_time", "expected"),
    [
        ("2026-06-19T00:21:00Z", "2026-06-19T00:21:30Z", (63092984, 63092988)),
        ("2026-06-19T02:21:00+02:00", "2026-06-19T00:21:30", (63092984, 63092988)),  # offsets; no offset = UTC
        (datetime(2026, 6, 19, 0, 22, 17, tzinfo=timezone.utc), datetime(2026, 6, 18, 19, 22, 33, tzinfo=timezone(timedelta(hours=-5))),
         (63092997, 63093000)),  # aware datetimes, close times inclusive
        (datetime(2026, 6, 19, 0, 22, 0), "2030-01-01T00:00:00Z", (63092994, LAST)),  # naive = UTC; future clamps
    ],
)
def test_load_resolves_utc_times_to_the_ledgers_closed_inside(lake, everything, start_time, end_time, expected) -> None:
    got = cdp_ray.load("ledgers", lake, start_time=start_time, end_time=end_time, output="polars")
    assert (got["sequence"].min(), got["sequence"].max()) == expected
    assert got["sequence"].to_list() == list(range(expected[0], expected[1] + 1))
    a = got["closed_at"].min() - timedelta(seconds=1)
    b = got["closed_at"].max() + timedelta(seconds=1)
    # no ledger just outside the window closed inside it: the ends are exact
    assert _closed_between(everything["ledgers"], a, b) == got["sequence"].to_list()


def test_a_time_in_the_lake_uri_and_a_ledger_argument_mix(lake) -> None:
    got = cdp_ray.load("ledgers", f"{lake}?start_time=2026-06-19T00:21:00Z", end=63092990)
    assert got.column("sequence").to_pylist() == list(range(63092984, 63092991))
    src = cdp_ray.LakeSource(uri=lake, start=FIRST, end=LAST)
    narrowed = cdp_ray.load("ledgers", src, end_time="2026-06-19T00:21:30Z")  # a source's end replaced by a time
    assert narrowed.column("sequence").to_pylist() == list(range(FIRST, 63092989))


def test_where_keeps_the_matching_transactions_in_every_table(lake, everything) -> None:
    tables = cdp_ray.load(["transactions", "operations"], lake, start_time="2026-06-19T00:21:00Z",
                          end_time="2026-06-19T00:22:00Z", where=PAYMENT_FILTER, output="polars")
    window = _closed_between(everything["ledgers"], datetime(2026, 6, 19, 0, 21, tzinfo=timezone.utc),
                             datetime(2026, 6, 19, 0, 22, tzinfo=timezone.utc))
    assert (window[0], window[-1]) == (63092984, 63092994)  # 63092994 closed at 00:22:00 exactly
    ops = everything["operations"].filter(pl.col("ledger_sequence").is_between(window[0], window[-1]))
    paying = set(ops.filter(pl.col("type_string") == "payment")["transaction_id"].to_list())
    assert set(tables["transactions"]["id"].to_list()) == paying
    assert tables["transactions"].height == len(paying) == 337
    assert tables["operations"].height == ops.filter(pl.col("transaction_id").is_in(list(paying))).height == 2575
    assert (tables["operations"]["type_string"] == "payment").sum() == ops.filter(pl.col("type_string") == "payment").height == 1872


def test_processor_options_network_and_bad_inputs(lake) -> None:
    contract = "CAS3J7GYLGXMF6TDJBBYYSE3HQ6BBSMLNUQ34T6TZMYMW2EVH34XOWMA"
    events = cdp_ray.load("contract_events", lake, FIRST, 63092991, config={"contract_ids": [contract]}, network="pubnet")
    assert events.num_rows > 0 and set(events.column("contract_id").to_pylist()) == {contract}
    both = cdp_ray.load(["contract_events", "ledgers"], lake, FIRST, FIRST + 1, config={"contract_events": {"contract_ids": [contract]}})
    assert set(both["contract_events"].column("contract_id").to_pylist()) == {contract}
    with pytest.raises(ConfigError, match="source start: Field required") as err:
        cdp_ray.load("ledgers", lake, end=LAST)
    assert "start_time=" in err.value.hint
    with pytest.raises(ConfigError, match="both start= and start_time="):
        cdp_ray.load("ledgers", lake, FIRST, LAST, start_time="2026-06-19T00:21:00Z")
    with pytest.raises(ConfigError, match="start_time 2027-01-01T00:00:00Z is after the lake's last ledger"):
        cdp_ray.load("ledgers", lake, start_time="2027-01-01", end=LAST)
    with pytest.raises(ConfigError, match="where.operation_types"):
        cdp_ray.load("ledgers", lake, FIRST, LAST, where={"operation_types": ["paymnet"]})
    with pytest.raises(ConfigError, match="source anonymus: Extra inputs are not permitted"):
        cdp_ray.load("ledgers", lake, FIRST, LAST, anonymus=True)
    with pytest.raises(ConfigError, match="config names processors not loaded: payments"):
        cdp_ray.load(["ledgers"], lake, FIRST, LAST, config={"payments": {}})


def test_scan_as_a_ray_dataset(ray_cluster, committed) -> None:
    cfg, out, _ = committed
    ds = cdp_ray.scan(str(out), "ledgers", output="ray")
    assert sorted(r["sequence"] for r in ds.take_all()) == [s for s in range(FIRST, LAST + 1) if not 63092994 <= s <= 63092999]


def test_engine_ray_and_table_dataset_take_the_same_options(ray_cluster, lake) -> None:
    window = {"start_time": "2026-06-19T00:21:00Z", "end_time": "2026-06-19T00:21:30Z", "where": PAYMENT_FILTER}
    local = cdp_ray.load(["transactions", "operations"], lake, **window)
    on_ray = cdp_ray.load(["transactions", "operations"], lake, engine="ray", **window)
    for name in local:
        assert on_ray[name].equals(local[name]), name
    ds = cdp_ray.table_dataset("operations", lake, ledgers_per_task=2, **window)
    rows = pa.concat_tables(ray_cluster.get(ds.to_arrow_refs())).sort_by("id")
    assert rows.equals(local["operations"].sort_by("id"))


def test_load_from_a_public_bucket_by_time(s3_server, wallet_ledgers) -> None:
    bucket = s3_server.bucket(public=True)
    uri = f"s3://{bucket}/pubnet"
    raws = [wallet_ledgers[s] for s in range(FIRST, FIRST + 10)]
    write_lake(raws, uri, LakeSchema(ledgers_per_file=1, files_per_partition=8), network_passphrase=PUBNET,
               storage_options=s3_server.options)
    got = cdp_ray.load("ledgers", uri, start_time="2026-06-19T00:21:00Z", end_time="2026-06-19T00:21:30Z",
                       anonymous=True, endpoint_url=s3_server.endpoint_url)
    assert got.column("sequence").to_pylist() == list(range(63092984, 63092989))


# ---- scan: committed output only ---------------------------------------------------------------


@pytest.fixture()
def committed(lake, tmp_path, postgres_dsn):
    """A pipeline run into Parquet and PostgreSQL (4 chunks: 6 ledgers each, aligned to the lake's files, then 2); one range then loses its commit
    record in each sink, as after a crash between writing and committing."""
    schema = f"cdp_scan_{uuid.uuid4().hex[:10]}"
    cfg = PipelineConfig.model_validate({
        "name": "scanned", "source": {"uri": lake, "start": FIRST, "end": LAST},
        "processors": ["ledgers", "transactions"],
        "sinks": [{"type": "parquet", "uri": str(tmp_path / "out")}, {"type": "postgres", "dsn": postgres_dsn, "schema": schema}],
        "options": {"ledgers_per_task": 5},
    })
    summary = run_pipeline(cfg, engine="local")
    assert summary.chunks == 4
    (manifest,) = (tmp_path / "out" / "_cdp_ray" / "scanned" / "ranges").glob("0063092994-0063092999.*.json")
    manifest.unlink()
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'DELETE FROM "{schema}".cdp_ray_ranges WHERE start_ledger = 63092988')
        yield cfg, tmp_path / "out", summary
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _run_second_pipeline(cfg: PipelineConfig) -> None:
    """Another pipeline writing another table under the same Parquet root."""
    doc = cfg.model_dump()
    doc.update(name="other", processors=["operations"], sinks=doc["sinks"][:1])
    run_pipeline(PipelineConfig.model_validate(doc), engine="local")


def test_scan_reads_only_committed_ranges(committed, everything) -> None:
    cfg, out, summary = committed
    assert sorted(p.name for p in (out / "transactions").rglob("*.parquet"))[-2].startswith("0063092994")  # still on disk
    expected = everything["transactions"].filter(~pl.col("ledger_sequence").is_between(63092994, 63092999))
    lf = cdp_ray.scan(str(out), "transactions")
    assert isinstance(lf, pl.LazyFrame)
    got = lf.sort("id").collect()
    assert got.height == expected.height < summary.rows_by_table["transactions"]
    assert got["id"].to_list() == expected.sort("id")["id"].to_list()
    assert cdp_ray.scan(cfg, "ledgers", output="arrow").to_table().num_rows == 14
    pg = cdp_ray.scan(cfg, "transactions", sink="postgres").collect()
    pg_expected = everything["transactions"].filter(~pl.col("ledger_sequence").is_between(63092988, 63092993))
    assert pg.height == pg_expected.height
    assert pg.sort("id")["fee_charged"].to_list() == pg_expected.sort("id")["fee_charged"].to_list()
    by_position = cdp_ray.scan(cfg, "transactions", sink=1).collect()
    assert by_position.sort("id")["id"].to_list() == pg.sort("id")["id"].to_list()
    _run_second_pipeline(cfg)
    with pytest.raises(ConfigError, match=r"holds the output of 2 pipelines \(other, scanned\)"):
        cdp_ray.scan(str(out), "ledgers")
    assert cdp_ray.scan(str(out), "ledgers", pipeline="scanned").collect().height == 14
    with pytest.raises(ConfigError, match="has no 'iceberg' sink"):
        cdp_ray.scan(cfg, "ledgers", sink="iceberg")


def test_scan_of_postgres_equals_scan_of_parquet_column_by_column(tmp_path, postgres_dsn) -> None:
    """The PostgreSQL query returns the processors' schemas: every column of every table as Parquet has it."""
    from cdp_ray.sample import SAMPLE_LAKE

    tables = ["ledgers", "transactions", "operations", "contract_events", "token_transfers", "payments", "effects"]
    schema = f"cdp_scan_{uuid.uuid4().hex[:10]}"
    cfg = PipelineConfig.model_validate({
        "name": "both", "source": {"uri": str(SAMPLE_LAKE), "start": FIRST, "end": FIRST + 2}, "processors": tables,
        "sinks": [{"type": "parquet", "uri": str(tmp_path / "out")}, {"type": "postgres", "dsn": postgres_dsn, "schema": schema}],
    })
    try:
        run_pipeline(cfg, engine="local")
        for table in tables:
            parquet = cdp_ray.scan(cfg, table).collect()
            pg = cdp_ray.scan(cfg, table, sink="postgres").collect()
            assert parquet.height > 0 and pg.schema == parquet.schema, table
            parquet, pg = parquet.sort(parquet.columns), pg.sort(pg.columns)
            assert [c for c in parquet.columns if not parquet[c].equals(pg[c])] == [], table
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
