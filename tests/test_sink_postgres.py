"""PostgreSQL sink against the real server: DDL, COPY round trip, atomic replay, clear errors."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal

import psycopg
import pyarrow as pa
import pytest

from cdp_ray.errors import SinkError
from cdp_ray.pipeline.config import PipelineConfig
from cdp_ray.pipeline.runner import process_local
from cdp_ray.processors.base import Processor, col, get_processor
from cdp_ray.sample import sample_pipeline_path
from cdp_ray.sinks.base import RunContext, make_sink
from cdp_ray.sinks.ddl import create_table_sql, pg_type, render_ddl
from cdp_ray.sinks.postgres import PostgresSinkConfig

ALL_TYPES = pa.schema(
    [
        col("ledger_sequence", pa.uint32(), "ledger", nullable=False),
        col("n", pa.int64(), "row number", nullable=False),
        col("small", pa.int16(), "int16"),
        col("u64", pa.uint64(), "uint64 up to 2^64-1"),
        col("f", pa.float64(), "float"),
        col("ok", pa.bool_(), "bool"),
        col("s", pa.string(), "text with quotes, commas, newlines, NUL"),
        col("raw", pa.binary(), "bytes"),
        col("at", pa.timestamp("us", tz="UTC"), "timestamp"),
        col("tags", pa.list_(pa.string()), "list of strings"),
        col("nums", pa.list_(pa.int64()), "list of ints"),
        col("doc", pa.struct([("a", pa.int32()), ("b", pa.string())]), "struct -> jsonb"),
    ]
)
ALL_TYPES_PROC = Processor("all_types", ALL_TYPES, lambda ledgers, cfg: [], "every column type", ("n",))

ROWS = [
    {
        "ledger_sequence": 100, "n": 1, "small": -3, "u64": 2**64 - 1, "f": 1.5e300, "ok": True,
        "s": 'a "quoted", comma\nnewline \\ back', "raw": b"\x00\xffbin", "at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc),
        "tags": ['x"y', "", None, "c,d", "{brace}", "back\\slash", "NULL"], "nums": [1, None, -2], "doc": {"a": 1, "b": "z"},
    },
    {
        "ledger_sequence": 100, "n": 2, "small": None, "u64": None, "f": None, "ok": None, "s": "", "raw": None,
        "at": None, "tags": [], "nums": None, "doc": None,
    },
    {
        "ledger_sequence": 101, "n": 3, "small": 7, "u64": 0, "f": -0.25, "ok": False, "s": "nul\x00byte", "raw": b"",
        "at": datetime(1970, 1, 1, tzinfo=timezone.utc), "tags": None, "nums": [], "doc": {"a": None, "b": None},
    },
]


@pytest.fixture()
def pg(postgres_dsn):
    """A fresh schema for one test, dropped afterwards; yields (dsn, schema, connection)."""
    schema = f"cdp_test_{uuid.uuid4().hex[:10]}"
    conn = psycopg.connect(postgres_dsn, autocommit=True)
    yield postgres_dsn, schema, conn
    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    conn.close()


@pytest.fixture(scope="module")
def sample_tables():
    """ledgers + transactions of two real pubnet ledgers (protocol 26) from the bundled sample lake."""
    lake = str(sample_pipeline_path().parent / "lake")
    cfg = PipelineConfig.model_validate(
        {"source": {"uri": lake, "start": 63092982, "end": 63092983}, "processors": ["ledgers", "transactions"]}
    )
    return {name: (get_processor(name), table) for name, table in process_local(cfg).items()}


def _sink(dsn: str, schema: str, **kw):
    return make_sink({"type": "postgres", "dsn": dsn, "schema": schema, **kw})


def test_type_mapping():
    assert pg_type(pa.uint32()) == "bigint"
    assert pg_type(pa.uint64()) == "numeric(20,0)"
    assert pg_type(pa.int32()) == "integer"
    assert pg_type(pa.list_(pa.string())) == "text[]"
    assert pg_type(pa.timestamp("us", tz="UTC")) == "timestamp with time zone"
    assert pg_type(pa.timestamp("us")) == "timestamp without time zone"
    assert pg_type(pa.binary()) == "bytea"
    assert pg_type(pa.float32()) == "real"
    assert pg_type(pa.decimal128(38, 7)) == "numeric(38,7)"
    assert pg_type(pa.struct([("a", pa.int8())])) == "jsonb"
    assert pg_type(pa.dictionary(pa.int32(), pa.string())) == "text"


def test_ddl_from_declared_schema():
    stmts = create_table_sql(get_processor("transactions"), "analytics")
    assert stmts[0].startswith('CREATE TABLE IF NOT EXISTS "analytics"."transactions" (')
    assert '"ledger_sequence" bigint NOT NULL' in stmts[0]
    assert 'PRIMARY KEY ("id")' in stmts[0]
    assert 'CREATE INDEX IF NOT EXISTS "transactions_ledger_sequence_idx" ON "analytics"."transactions" ("ledger_sequence")' in stmts
    # ledgers: the ledger column is the primary key, no extra index
    ledgers = render_ddl(get_processor("ledgers"))
    assert "CREATE INDEX" not in ledgers and 'PRIMARY KEY ("sequence")' in ledgers
    assert """COMMENT ON COLUMN "public"."ledgers"."sequence" IS 'ledger sequence number'""" in ledgers


def test_every_type_round_trips_through_copy(pg):
    dsn, schema, conn = pg
    table = pa.Table.from_pylist(ROWS, schema=ALL_TYPES)
    sink = _sink(dsn, schema, batch_rows=2)  # two COPY batches
    sink.prepare([ALL_TYPES_PROC])
    sink.write_range(100, 101, {"all_types": (ALL_TYPES_PROC, table)})
    got = conn.execute(f'SELECT * FROM "{schema}".all_types ORDER BY n').fetchall()
    first, second, third = got
    assert first == (
        100, 1, -3, Decimal(2**64 - 1), 1.5e300, True, 'a "quoted", comma\nnewline \\ back', b"\x00\xffbin",
        datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc),
        ['x"y', "", None, "c,d", "{brace}", "back\\slash", "NULL"], [1, None, -2], {"a": 1, "b": "z"},
    )
    assert second == (100, 2, None, None, None, None, "", None, None, [], None, None)
    assert third[:8] == (101, 3, 7, Decimal(0), -0.25, False, "nul\ufffdbyte", b"")
    assert third[8] == datetime(1970, 1, 1, tzinfo=timezone.utc) and third[9] is None and third[10] == []
    assert third[11] == {"a": None, "b": None}
    types = dict(conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0",
        (f'"{schema}".all_types',),
    ).fetchall())
    assert types["u64"] == "numeric(20,0)" and types["tags"] == "text[]" and types["doc"] == "jsonb"


def test_real_ledgers_round_trip(pg, sample_tables):
    dsn, schema, conn = pg
    sink = _sink(dsn, schema)
    sink.prepare([p for p, _ in sample_tables.values()])
    sink.write_range(63092982, 63092983, sample_tables)
    proc, tx = sample_tables["transactions"]
    assert tx.num_rows == 548
    got = conn.execute(f'SELECT id, transaction_hash, ledger_sequence, fee_charged FROM "{schema}".transactions ORDER BY id').fetchall()
    want = sorted(zip(tx["id"].to_pylist(), tx["transaction_hash"].to_pylist(), tx["ledger_sequence"].to_pylist(), tx["fee_charged"].to_pylist()))
    assert got == want
    _, led = sample_tables["ledgers"]
    row = conn.execute(f'SELECT sequence, ledger_hash, closed_at, total_byte_size_of_live_soroban_state FROM "{schema}".ledgers WHERE sequence = 63092983').fetchone()
    ref = led.filter(pa.compute.equal(led["sequence"], 63092983)).to_pylist()[0]
    assert row == (63092983, ref["ledger_hash"], ref["closed_at"], Decimal(ref["total_byte_size_of_live_soroban_state"]))
    # large XDR values were TOAST-compressed with lz4 (the sink's default), not the server's pglz
    methods = {m for (m,) in conn.execute(f'SELECT DISTINCT pg_column_compression(tx_meta) FROM "{schema}".transactions')}
    assert methods - {None} == {"lz4"}


def test_replayed_range_replaces_rows_and_records_checkpoint(pg, sample_tables):
    dsn, schema, conn = pg
    sink = _sink(dsn, schema)
    sink.prepare([p for p, _ in sample_tables.values()])
    run = RunContext("replay", "hash1")
    sink.write_range(63092982, 63092983, sample_tables, run)
    sink.write_range(63092982, 63092983, sample_tables, run)
    n, distinct = conn.execute(f'SELECT count(*), count(DISTINCT id) FROM "{schema}".transactions').fetchone()
    assert n == distinct == 548
    records = sink.committed("replay")
    assert [(r.start, r.end, r.config_hash, r.rows) for r in records] == [
        (63092982, 63092983, "hash1", {"ledgers": 2, "transactions": 548})
    ]
    # a range of one ledger inside the committed one replaces only that ledger's rows; the record it overlaps
    # keeps its part outside (with its own config hash)
    one = {k: (p, t.filter(pa.compute.equal(t[p.sequence_column], 63092982))) for k, (p, t) in sample_tables.items()}
    sink.write_range(63092982, 63092982, one, RunContext("replay", "hash2"))
    assert conn.execute(f'SELECT count(*) FROM "{schema}".transactions').fetchone()[0] == 548
    assert [(r.start, r.end, r.config_hash, r.rows) for r in sink.committed("replay")] == [
        (63092982, 63092982, "hash2", {"ledgers": 1, "transactions": 305}), (63092983, 63092983, "hash1", {})]


def test_failed_range_rolls_back_rows_and_checkpoint(pg, sample_tables):
    dsn, schema, conn = pg
    sink = _sink(dsn, schema)
    sink.prepare([p for p, _ in sample_tables.values()])
    sink.write_range(63092982, 63092983, sample_tables, RunContext("atomic", "h"))
    proc, tx = sample_tables["transactions"]
    dup = pa.concat_tables([tx, tx.slice(0, 1)])  # primary key violation in the second table
    led_proc, led = sample_tables["ledgers"]
    with pytest.raises(SinkError) as err:
        sink.write_range(63092982, 63092983, {"ledgers": (led_proc, led.slice(0, 1)), "transactions": (proc, dup)}, RunContext("atomic", "h2"))
    assert "transactions" in str(err.value) and "duplicate key" in str(err.value)
    # the ledgers delete+copy of the failed transaction was rolled back with the rest
    assert conn.execute(f'SELECT count(*) FROM "{schema}".ledgers').fetchone()[0] == 2
    assert conn.execute(f'SELECT count(*) FROM "{schema}".transactions').fetchone()[0] == 548
    assert [r.config_hash for r in sink.committed("atomic")] == ["h"]


def test_disagreeing_table_is_a_clear_error(pg):
    dsn, schema, conn = pg
    conn.execute(f'CREATE SCHEMA "{schema}"')
    conn.execute(f'CREATE TABLE "{schema}".ledgers (sequence integer PRIMARY KEY, ledger_hash text, extra text NOT NULL)')
    with pytest.raises(SinkError) as err:
        _sink(dsn, schema).prepare([get_processor("ledgers")])
    msg = str(err.value)
    assert f'"{schema}"."ledgers"' in msg
    assert "column 'sequence' is integer, expected bigint" in msg
    assert "column 'closed_at' is missing" in msg
    assert "column 'extra' (text NOT NULL, no default) is not produced" in msg


def test_missing_table_without_create_tables(pg):
    dsn, schema, conn = pg
    conn.execute(f'CREATE SCHEMA "{schema}"')
    with pytest.raises(SinkError, match="does not exist"):
        _sink(dsn, schema, create_tables=False).prepare([get_processor("ledgers")])


def test_unreachable_server_names_host_and_port():
    sink = _sink("postgresql://postgres@127.0.0.1:1/test", "public", retries=1, retry_backoff_s=0.01)
    with pytest.raises(SinkError) as err:
        sink.prepare([get_processor("ledgers")])
    assert "cannot reach PostgreSQL at 127.0.0.1:1/test" in err.value.message
    assert "127.0.0.1:1" in err.value.hint and "PGPORT" in err.value.hint


def test_bad_credentials_and_missing_database(postgres_dsn):
    base = psycopg.conninfo.conninfo_to_dict(postgres_dsn)
    bad_user = f"postgresql://no_such_role_cdp@{base.get('host', '127.0.0.1')}:{base.get('port', 5432)}/{base['dbname']}"
    with pytest.raises(SinkError) as err:
        _sink(bad_user, "public").prepare([get_processor("ledgers")])
    assert "rejected the credentials" in err.value.message and "no_such_role_cdp" in err.value.message
    assert "PGPASSWORD" in err.value.hint
    bad_db = f"postgresql://{base.get('user', 'postgres')}@{base.get('host', '127.0.0.1')}:{base.get('port', 5432)}/no_such_db_cdp"
    with pytest.raises(SinkError) as err:
        _sink(bad_db, "public").prepare([get_processor("ledgers")])
    assert 'database "no_such_db_cdp" does not exist' in err.value.message and "createdb" in err.value.hint


def test_dsn_from_environment_and_schema_in_uri(pg, monkeypatch):
    dsn, schema, conn = pg
    cfg = PostgresSinkConfig.model_validate({"type": "postgres", "dsn": f"{dsn}?schema={schema}"})
    assert cfg.db_schema == schema and "schema=" not in cfg.dsn
    monkeypatch.setenv("CDP_RAY_POSTGRES_DSN", dsn)
    env_cfg = PostgresSinkConfig.model_validate({"type": "postgres", "schema": schema})
    assert env_cfg.resolved_dsn() == dsn and "127.0.0.1:5432" in env_cfg.describe()
    sink = make_sink(env_cfg)
    sink.prepare([get_processor("ledgers")])
    assert conn.execute("SELECT to_regclass(%s)", (f'"{schema}".cdp_ray_ranges',)).fetchone()[0] is not None


def test_binary_copy_loads_what_csv_copy_loads(pg, monkeypatch):
    """Every core table of real ledgers, and every column type with a binary form (NULs, empty lists, extreme
    values), loads the same rows through binary COPY written from the Arrow buffers as through CSV."""
    from cdp_ray.sinks import postgres

    if postgres._pgcopy is None:
        pytest.skip("the _pgcopy extension is not built")
    dsn, schema, conn = pg
    lake = str(sample_pipeline_path().parent / "lake")
    names = ["ledgers", "transactions", "operations", "effects", "contract_events", "token_transfers", "trades"]
    cfg = PipelineConfig.model_validate({"source": {"uri": lake, "start": 63092982, "end": 63092983}, "processors": names})
    tables = {n: (get_processor(n), t) for n, t in process_local(cfg).items()}
    no_struct = pa.schema([f for f in ALL_TYPES if f.name not in ("doc", "tags", "nums")] + [
        col("tags", pa.list_(pa.string()), "list of strings"), col("nums", pa.list_(pa.int64()), "list of ints")])
    rows = [{**r, "tags": None if r["tags"] is None else [t or "" for t in r["tags"]],
             "nums": None if r["nums"] is None else [n or 0 for n in r["nums"]]} for r in ROWS]
    proc = Processor("no_struct", no_struct, lambda ledgers, cfg: [], "binary types", ("n",))
    tables["no_struct"] = (proc, pa.Table.from_pylist(rows, schema=no_struct))
    assert postgres._binary_columns(tables["transactions"][1]) is not None
    assert postgres._binary_columns(tables["no_struct"][1]) is not None
    loaded = {}
    for label, module in (("binary", postgres._pgcopy), ("csv", None)):
        monkeypatch.setattr(postgres, "_pgcopy", module)
        target = f"{schema}_{label}"
        sink = _sink(dsn, target, batch_rows=700)
        sink.prepare([p for p, _ in tables.values()])
        sink.write_range(63092982, 63092983, {n: v for n, v in tables.items() if n != "no_struct"})
        sink.write_range(100, 101, {"no_struct": tables["no_struct"]})
        sink.close()
        loaded[label] = {n: conn.execute(f'SELECT * FROM "{target}"."{n}" ORDER BY 1, 2, 3').fetchall() for n in tables}
        conn.execute(f'DROP SCHEMA "{target}" CASCADE')
    for n in tables:
        assert loaded["binary"][n] == loaded["csv"][n], n
        assert len(loaded["binary"][n]) == tables[n][1].num_rows


def test_binary_copy_encoder_checks_the_buffers_it_is_given():
    """Buffers shorter than the rows they claim, or out-of-order offsets, are a ValueError, not a read past them."""
    from cdp_ray.sinks import postgres

    if postgres._pgcopy is None:
        pytest.skip("the _pgcopy extension is not built")
    encode = postgres._pgcopy.encode
    ints = pa.array([1, 2, 3], pa.int64()).buffers()[1]
    assert encode([("q", 0, None, ints, None, None, None)], 0, 3, True, True).startswith(b"PGCOPY\n\xff\r\n\0")
    with pytest.raises(ValueError, match="too short"):
        encode([("q", 0, None, ints, None, None, None)], 0, 4, True, True)
    offsets = pa.array([0, 5, 2], pa.int32()).buffers()[1]
    with pytest.raises(ValueError, match="out of order"):
        encode([("s", 0, None, b"abcde", offsets, None, None)], 0, 2, True, True)
    with pytest.raises(ValueError, match="missing or short"):
        encode([("s", 0, None, b"abcde", None, None, None)], 0, 1, True, True)
