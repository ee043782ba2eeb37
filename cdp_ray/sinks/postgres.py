"""PostgreSQL sink: tables from the processors' schemas, bulk loaded with ``COPY``.

Each ledger range is one transaction: for every table the range's rows are deleted (by the
processor's ledger column) and the new rows copied in, then the range is recorded in
``{schema}.cdp_ray_ranges`` (replacing the records it overlaps; their parts outside it stay recorded).
A replayed range therefore replaces its rows, and the checkpoint commits or rolls back together with
them. While a chunk is processed its tables are spooled to local Arrow files, so a transient
connection loss at commit replays the whole transaction. Quarantined ranges go to
``{schema}.cdp_ray_dead_letters``; ``{schema}.cdp_ray_owners`` records which pipeline owns each table;
a run holds a session advisory lock per pipeline (released when its connection closes, also when
the run is killed).

A first-seen table (``assets``: one row per key for the whole run, at its earliest ledger) is derived:
every range's own first sightings go to ``{schema}.cdp_ray_seen_{table}``, replaced by range like any
table, and the keys a range adds or removes are recomputed in the table from it (earliest row per key),
under a transaction advisory lock per table. A rerun, a resume or a discarded range therefore leaves
exactly the earliest sighting among the committed ranges, never a key that another range still holds lost.

Rows travel in COPY's binary format, written in C straight from the Arrow buffers (``_pgcopy``), or,
for a column type it does not write (or without the extension), as CSV produced by Arrow's C++ writer
(lists become array literals, binary ``\\x`` hex): either way no row passes through Python.
"""

from __future__ import annotations

import io
import json
import os
import re
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg.conninfo import conninfo_to_dict
from pydantic import Field, model_validator

from cdp_ray.errors import OwnershipError, PipelineBusyError, SinkError
from cdp_ray.processors.base import Processor
from cdp_ray.sinks.base import (
    DeadLetter, RangeRecord, RangeWriter, RunContext, Sink, SinkConfig, SinkLock, TableSpool, Tables,
    require_ledger_column, sink, with_retries,
)
from cdp_ray.sinks.ddl import create_table_sql, ident, pg_type, qualified, schema_differences, seen_processor, seen_table

try:
    from cdp_ray.sinks import _pgcopy
except ImportError:  # the C extension was not built: rows travel as CSV
    _pgcopy = None

DSN_ENV = "CDP_RAY_POSTGRES_DSN"
RANGES_TABLE = "cdp_ray_ranges"
DEAD_LETTERS_TABLE = "cdp_ray_dead_letters"
OWNERS_TABLE = "cdp_ray_owners"
LOCK_WAIT_S = 5.0


class PostgresSinkConfig(SinkConfig):
    """Load tables into PostgreSQL with COPY, one transaction per ledger range."""

    type: Literal["postgres"] = "postgres"
    dsn: str | None = Field(
        None,
        description=f"libpq URI or key=value string; default ${DSN_ENV}, else the PG* environment variables. "
        "A `schema` query parameter in the URI sets `schema`",
    )
    db_schema: str = Field("public", alias="schema", description="database schema of the tables")
    create_tables: bool = Field(True, description="create missing tables (and the schema) from the processors' schemas")
    batch_rows: int = Field(50_000, ge=1, description="rows per COPY batch sent to the server")
    toast_compression: Literal["lz4", "pglz", "server"] = Field(
        "lz4",
        description="compression of large values (XDR columns) while loading: lz4 loads ~2.5x faster than "
        "pglz at about the same size (PostgreSQL 14+); `server` keeps the server's default_toast_compression",
    )
    connect_timeout_s: int = Field(10, ge=1, description="connection timeout in seconds")

    @model_validator(mode="after")
    def _schema_from_uri(self) -> "PostgresSinkConfig":
        if self.dsn and "://" in self.dsn:
            parsed = urlparse(self.dsn)
            params = parse_qsl(parsed.query)
            schema = [v for k, v in params if k == "schema"]
            if schema:
                self.db_schema = schema[-1]
                rest = urlencode([(k, v) for k, v in params if k != "schema"])
                self.dsn = urlunparse(parsed._replace(query=rest))
        return self

    def resolved_dsn(self) -> str:
        return self.dsn or os.environ.get(DSN_ENV, "")

    def target(self) -> str:
        """``host:port/dbname`` (never the password), from the DSN or the libpq environment."""
        try:
            info = conninfo_to_dict(self.resolved_dsn())
        except psycopg.ProgrammingError:
            info = {}
        host = info.get("host") or os.environ.get("PGHOST") or "localhost"
        port = info.get("port") or os.environ.get("PGPORT") or "5432"
        db = info.get("dbname") or os.environ.get("PGDATABASE") or info.get("user") or os.environ.get("PGUSER") or "(default)"
        return f"{host}:{port}/{db}"

    def describe(self) -> str:
        return f"postgresql://{self.target()} schema {self.db_schema}"


def _connect_error(cfg: PostgresSinkConfig, exc: psycopg.Error) -> SinkError | None:
    """A clear :class:`SinkError` for a connection failure that retrying cannot fix, else ``None``."""
    msg = str(exc).strip()
    target = cfg.target()
    reason = msg.rsplit("FATAL:", 1)[-1].strip() if "FATAL:" in msg else msg.splitlines()[0]
    if "password authentication failed" in msg or re.search(r'role ".*" does not exist', msg) or "no password supplied" in msg:
        return SinkError(
            f"PostgreSQL at {target} rejected the credentials: {reason}",
            hint=f"check the user and password in the dsn (or ${DSN_ENV}, PGUSER, PGPASSWORD)",
        )
    if re.search(r'database ".*" does not exist', msg):
        return SinkError(f"PostgreSQL at {target}: {reason}", hint="create it (createdb NAME) or fix the database name in the dsn")
    if "invalid dsn" in msg.lower() or "invalid connection option" in msg or "missing \"=\"" in msg:
        return SinkError(f"invalid PostgreSQL dsn: {reason}", hint="write postgresql://user:pass@host:5432/db or host=... dbname=...")
    return None


def _unreachable(cfg: PostgresSinkConfig, exc: BaseException) -> SinkError:
    return SinkError(
        f"cannot reach PostgreSQL at {cfg.target()}: {str(exc).strip().splitlines()[0]}",
        hint=f"is the server running and accepting TCP connections on {cfg.target().split('/')[0]}? "
        f"check host and port in the dsn (or ${DSN_ENV}, PGHOST, PGPORT)",
    )


def _no_nul(arr: pa.Array) -> pa.Array:
    """PostgreSQL text cannot hold NUL: replace it with U+FFFD (as Horizon does)."""
    return pc.replace_substring(arr, "\x00", "\ufffd")


def _array_literal(arr: pa.Array) -> pa.Array:
    """list<T> -> PostgreSQL array literal text (``{"a","b",NULL}``), vectorized."""
    values = pc.list_flatten(arr)
    if pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type) or pa.types.is_fixed_size_binary(values.type):
        values = pa.array([None if v is None else "\\x" + v.hex() for v in values.to_pylist()], pa.string())
    elif pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    text = _no_nul(values.cast(pa.string()))
    text = pc.replace_substring(pc.replace_substring(text, "\\", "\\\\"), '"', '\\"')
    quoted = pc.fill_null(pc.binary_join_element_wise('"', text, '"', ""), "NULL")
    lengths = pc.fill_null(pc.list_value_length(arr), 0).cast(pa.int32())
    offsets = pa.concat_arrays([pa.array([0], pa.int32()), pc.cumulative_sum(lengths)])
    rebuilt = pa.ListArray.from_arrays(offsets, quoted, mask=arr.is_null())
    return pc.binary_join_element_wise("{", pc.binary_join(rebuilt, ","), "}", "")


def copy_ready(table: pa.Table) -> pa.Table:
    """Columns that Arrow's CSV writer renders as PostgreSQL's CSV COPY input expects."""
    cols = []
    for f, col in zip(table.schema, table.columns):
        arr = col.combine_chunks()
        t = f.type
        if pa.types.is_dictionary(t):
            arr, t = arr.cast(t.value_type), t.value_type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            arr = _no_nul(arr)
        elif pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
            arr = pa.array([None if v is None else "\\x" + v.hex() for v in arr.to_pylist()], pa.string())
        elif pg_type(t) == "jsonb":
            arr = pa.array([None if v is None else json.dumps(v, default=str) for v in arr.to_pylist()], pa.string())
        elif pa.types.is_list(t) or pa.types.is_large_list(t):
            arr = _array_literal(arr)
        cols.append(arr)
    return pa.table(cols, names=table.column_names)


def csv_batches(table: pa.Table, batch_rows: int):
    """CSV bytes of ``table`` in slices of ``batch_rows`` rows."""
    ready = copy_ready(table)
    opts = pacsv.WriteOptions(include_header=False)
    for off in range(0, ready.num_rows, batch_rows):
        buf = io.BytesIO()
        pacsv.write_csv(ready.slice(off, batch_rows), buf, opts)
        yield buf.getvalue()


@sink("postgres", PostgresSinkConfig)
class PostgresSink(Sink):
    config: PostgresSinkConfig

    def __init__(self, config: PostgresSinkConfig):
        super().__init__(config)
        self._conn: psycopg.Connection | None = None
        self.schema = config.db_schema
        self._procs: list[Processor] = []

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_conn"] = None
        return state

    def _open(self) -> psycopg.Connection:
        try:
            return psycopg.connect(
                self.config.resolved_dsn(), connect_timeout=self.config.connect_timeout_s, application_name="cdp-ray"
            )
        except psycopg.ProgrammingError as exc:
            raise SinkError(f"invalid PostgreSQL dsn: {exc}", hint="write postgresql://user:pass@host:5432/db") from exc
        except psycopg.OperationalError as exc:
            clear = _connect_error(self.config, exc)
            if clear is not None:
                raise clear from exc
            raise

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = with_retries(
                "connect", self._open, retries=self.config.retries, backoff_s=self.config.retry_backoff_s,
                transient=(psycopg.OperationalError,), permanent=(SinkError,),
            )
        return self._conn

    def _reset(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _run(self, what: str, fn, *, table: str | None = None):
        """``fn(conn)`` in a transaction, retried on connection loss, serialization failures and deadlocks."""

        def attempt():
            conn = self.conn
            try:
                with conn.transaction():
                    return fn(conn)
            except psycopg.OperationalError:
                self._reset()
                raise

        try:
            return with_retries(
                what, attempt, retries=self.config.retries, backoff_s=self.config.retry_backoff_s,
                transient=(psycopg.OperationalError,), permanent=(SinkError,),
            )
        except psycopg.OperationalError as exc:
            if self._conn is None and _connect_error(self.config, exc) is None and "connection" in str(exc).lower():
                raise _unreachable(self.config, exc) from exc
            raise SinkError(f"PostgreSQL at {self.config.target()}: {what} failed: {exc}") from exc
        except psycopg.Error as exc:
            where = f" table {qualified(self.schema, table)}" if table else ""
            raise SinkError(
                f"PostgreSQL at {self.config.target()}: {what}{where} failed: {str(exc).strip()}",
                hint="check that the table matches the processor's schema (`cdp-ray` creates it when create_tables is on)",
            ) from exc

    def _columns(self, conn: psycopg.Connection, table: str) -> list[tuple[str, str, bool, bool]] | None:
        rows = conn.execute(
            """
            SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atthasdef
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attnum
            """,
            (self.schema, table),
        ).fetchall()
        return rows or None

    def _meta_ddl(self) -> list[str]:
        ranges, letters = qualified(self.schema, RANGES_TABLE), qualified(self.schema, DEAD_LETTERS_TABLE)
        return [
            f"""CREATE TABLE IF NOT EXISTS {ranges} (
  pipeline text NOT NULL, start_ledger bigint NOT NULL, end_ledger bigint NOT NULL,
  config_hash text NOT NULL, rows jsonb NOT NULL, committed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (pipeline, start_ledger, end_ledger))""",
            f"""CREATE TABLE IF NOT EXISTS {letters} (
  pipeline text NOT NULL, start_ledger bigint NOT NULL, end_ledger bigint NOT NULL,
  ledger bigint, file_key text, error text NOT NULL, message text NOT NULL, at timestamptz NOT NULL,
  PRIMARY KEY (pipeline, start_ledger, end_ledger))""",
            f"""CREATE TABLE IF NOT EXISTS {qualified(self.schema, OWNERS_TABLE)} (
  table_name text PRIMARY KEY, pipeline text NOT NULL, claimed_at timestamptz NOT NULL DEFAULT now())""",
        ]

    def prepare(self, processors: list[Processor], pipeline: str | None = None) -> None:
        require_ledger_column(processors)

        def setup(conn: psycopg.Connection) -> None:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('cdp_ray_ddl'))")
            if self.config.toast_compression != "server":
                try:
                    with conn.transaction():
                        conn.execute(f"SET LOCAL default_toast_compression = '{self.config.toast_compression}'")
                except psycopg.Error as exc:
                    raise SinkError(
                        f"PostgreSQL at {self.config.target()} does not support toast_compression "
                        f"{self.config.toast_compression!r}: {str(exc).strip()}",
                        hint="set toast_compression: server (PostgreSQL before 14, or built without lz4)",
                    ) from exc
            if self.config.create_tables:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(self.schema)}")
            for stmt in self._meta_ddl():
                conn.execute(stmt)
            for p in processors:
                tables = [(p.name, p)] + ([(seen_table(p.name), seen_processor(p))] if p.first_seen else [])
                for name, spec in tables:
                    cols = self._columns(conn, name)
                    if cols is None:
                        if not self.config.create_tables:
                            raise SinkError(
                                f"table {qualified(self.schema, name)} does not exist in {self.config.target()}",
                                hint="set create_tables: true, or create it with the DDL from cdp_ray.sinks.ddl.render_ddl",
                            )
                        for stmt in create_table_sql(spec, self.schema, name):
                            conn.execute(stmt)
                        continue
                    problems = schema_differences(spec, cols)
                    if problems:
                        raise SinkError(
                            f"table {qualified(self.schema, name)} in {self.config.target()} disagrees with processor "
                            f"{p.name!r}: " + "; ".join(problems),
                            hint="migrate or drop the table (it is recreated from the processor's schema), or write to another schema",
                        )
            if pipeline is not None:
                for p in processors:
                    self._claim(conn, pipeline, p.name)

        self._run("preparing tables", setup)
        self._procs = list(processors)

    def _claim(self, conn: psycopg.Connection, pipeline: str, table: str) -> None:
        """Make ``pipeline`` the owner of ``table`` unless another pipeline is. A table written before owners
        were recorded belongs to the pipeline whose committed ranges hold its rows."""
        owners, ranges = qualified(self.schema, OWNERS_TABLE), qualified(self.schema, RANGES_TABLE)
        conn.execute(
            f"INSERT INTO {owners} (table_name, pipeline) SELECT %s, coalesce((SELECT pipeline FROM {ranges} "
            f"WHERE rows ? %s ORDER BY committed_at LIMIT 1), %s) ON CONFLICT (table_name) DO NOTHING",
            (table, table, pipeline),
        )
        owner = conn.execute(f"SELECT pipeline FROM {owners} WHERE table_name = %s", (table,)).fetchone()[0]
        if owner != pipeline:
            raise OwnershipError(
                f"table {qualified(self.schema, table)} in {self.config.target()} belongs to pipeline {owner!r}: "
                f"pipeline {pipeline!r} would replace its rows range by range",
                hint=f"write pipeline {pipeline!r} to another schema, or, if {owner!r} is gone for good, release its "
                f"tables with `cdp-ray checkpoint clean` for {owner!r}",
            )

    def release(self, pipeline: str) -> list[str]:
        def drop(conn):
            if not self._meta_exists(conn, OWNERS_TABLE):
                return []
            return [r[0] for r in conn.execute(
                f"DELETE FROM {qualified(self.schema, OWNERS_TABLE)} WHERE pipeline = %s RETURNING table_name", (pipeline,))]

        return self._run("releasing tables", drop)

    def lock(self, pipeline: str) -> SinkLock:
        return _AdvisoryLock(self, pipeline)

    def open_range(
        self, start: int, end: int, processors: list[Processor], run: RunContext | None = None,
        replaces: tuple[tuple[int, int], ...] = (),
    ) -> RangeWriter:
        return _PostgresRange(self, start, end, processors, run)

    def _meta_exists(self, conn: psycopg.Connection, table: str) -> bool:
        return conn.execute("SELECT to_regclass(%s)", (qualified(self.schema, table),)).fetchone()[0] is not None

    def committed(self, pipeline: str) -> list[RangeRecord]:
        def query(conn):
            if not self._meta_exists(conn, RANGES_TABLE):
                return []
            return conn.execute(
                f"SELECT pipeline, start_ledger, end_ledger, config_hash, rows, committed_at FROM "
                f"{qualified(self.schema, RANGES_TABLE)} WHERE pipeline = %s ORDER BY start_ledger",
                (pipeline,),
            ).fetchall()

        return [RangeRecord(p, int(s), int(e), h, {k: int(v) for k, v in rows.items()}, at) for p, s, e, h, rows, at in self._run("reading the checkpoint", query)]

    def pipelines(self) -> list[str]:
        def query(conn):
            names: set[str] = set()
            for t in (RANGES_TABLE, DEAD_LETTERS_TABLE):
                if self._meta_exists(conn, t):
                    names.update(r[0] for r in conn.execute(f"SELECT DISTINCT pipeline FROM {qualified(self.schema, t)}"))
            return sorted(names)

        return self._run("listing checkpoints", query)

    def discard(self, pipeline: str, records: list[RangeRecord]) -> None:
        """Delete the rows of ``records``' ranges from the tables of the last :meth:`prepare`, and the records."""

        def drop(conn):
            for r in records:
                for proc in sorted(self._procs, key=lambda p: p.first_seen):
                    with conn.cursor() as cur:
                        replace_range(cur, self.schema, proc, r.start, r.end)
                conn.execute(
                    f"DELETE FROM {qualified(self.schema, RANGES_TABLE)} WHERE pipeline = %s AND start_ledger = %s AND end_ledger = %s",
                    (pipeline, r.start, r.end),
                )

        self._run("discarding stale ranges", drop)

    def forget(self, pipeline: str, records: list[RangeRecord] | None = None) -> int:
        def drop(conn):
            if not self._meta_exists(conn, RANGES_TABLE):
                return 0
            ranges = qualified(self.schema, RANGES_TABLE)
            if records is None:
                return conn.execute(f"DELETE FROM {ranges} WHERE pipeline = %s", (pipeline,)).rowcount
            n = 0
            for r in records:
                n += conn.execute(
                    f"DELETE FROM {ranges} WHERE pipeline = %s AND start_ledger = %s AND end_ledger = %s", (pipeline, r.start, r.end)
                ).rowcount
            return n

        return self._run("deleting checkpoint records", drop)

    def record_dead_letter(self, letter: DeadLetter) -> None:
        def insert(conn):
            conn.execute(
                f"INSERT INTO {qualified(self.schema, DEAD_LETTERS_TABLE)} "
                "(pipeline, start_ledger, end_ledger, ledger, file_key, error, message, at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (pipeline, start_ledger, end_ledger) DO UPDATE SET ledger = EXCLUDED.ledger, "
                "file_key = EXCLUDED.file_key, error = EXCLUDED.error, message = EXCLUDED.message, at = EXCLUDED.at",
                (letter.pipeline, letter.start, letter.end, letter.ledger, letter.key, letter.error, letter.message, letter.at),
            )

        self._run("recording a dead letter", insert)

    def dead_letters(self, pipeline: str) -> list[DeadLetter]:
        def query(conn):
            if not self._meta_exists(conn, DEAD_LETTERS_TABLE):
                return []
            return conn.execute(
                f"SELECT pipeline, start_ledger, end_ledger, ledger, file_key, error, message, at FROM "
                f"{qualified(self.schema, DEAD_LETTERS_TABLE)} WHERE pipeline = %s ORDER BY start_ledger",
                (pipeline,),
            ).fetchall()

        return [DeadLetter(p, int(s), int(e), None if l is None else int(l), k, err, msg, at) for p, s, e, l, k, err, msg, at in self._run("reading dead letters", query)]

    def forget_dead_letters(self, pipeline: str) -> int:
        def drop(conn):
            if not self._meta_exists(conn, DEAD_LETTERS_TABLE):
                return 0
            return conn.execute(f"DELETE FROM {qualified(self.schema, DEAD_LETTERS_TABLE)} WHERE pipeline = %s", (pipeline,)).rowcount

        return self._run("deleting dead letters", drop)

    def close(self) -> None:
        self._reset()


#: Arrow type -> ``_pgcopy`` kind (the PostgreSQL type cdp_ray.sinks.ddl maps it to is written)
_BINARY_KINDS = {
    pa.int16(): "h", pa.int32(): "i", pa.uint32(): "I", pa.int64(): "q", pa.uint64(): "Q", pa.float32(): "f",
    pa.float64(): "d", pa.bool_(): "b", pa.string(): "s", pa.binary(): "y", pa.list_(pa.string()): "S",
    pa.list_(pa.uint32()): "U", pa.list_(pa.int64()): "L",
}


def _binary_columns(table: pa.Table) -> list[tuple] | None:
    """Each column's Arrow buffers as ``_pgcopy.encode`` takes them, or None when a column has no binary form
    there (its type, list items that are null, a list's values not at their start)."""
    out = []
    for f, col in zip(table.schema, table.columns):
        kind = "t" if pa.types.is_timestamp(f.type) and f.type.unit == "us" else _BINARY_KINDS.get(f.type)
        if kind is None:
            return None
        arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
        bufs = arr.buffers()
        if kind in "SUL":
            child = arr.values
            if child.null_count or child.offset:
                return None
            out.append((kind, arr.offset, bufs[0], bufs[-1], bufs[1], bufs[3] if kind == "S" else None,
                        bufs[4] if kind == "S" else None))
        elif kind in "sy":
            out.append((kind, arr.offset, bufs[0], bufs[2], bufs[1], None, None))
        else:
            out.append((kind, arr.offset, bufs[0], bufs[1], None, None, None))
        if out[-1][3] is None:  # an empty array may have no values buffer
            out[-1] = (*out[-1][:3], b"", *out[-1][4:])
    return out


def copy_rows(cur: psycopg.Cursor, qname: str, table: pa.Table, batch_rows: int) -> int:
    """COPY ``table``'s rows into ``qname`` inside the cursor's transaction; the bytes sent.

    Binary COPY written in C from the Arrow buffers where every column has a binary form there
    (``_pgcopy``), else CSV written by Arrow's C++ writer; ``batch_rows`` rows per write."""
    cols = ", ".join(ident(c) for c in table.column_names)
    columns = _binary_columns(table) if _pgcopy is not None and table.num_rows else None
    sent = 0
    if columns is None:
        with cur.copy(f"COPY {qname} ({cols}) FROM STDIN (FORMAT csv)") as copy:
            for chunk in csv_batches(table, batch_rows):
                copy.write(chunk)
                sent += len(chunk)
        return sent
    rows = table.num_rows
    with cur.copy(f"COPY {qname} ({cols}) FROM STDIN (FORMAT binary)") as copy:
        for off in range(0, rows, batch_rows):
            stop = min(off + batch_rows, rows)
            chunk = _pgcopy.encode(columns, off, stop, off == 0, stop == rows)
            copy.write(chunk)
            sent += len(chunk)
    return sent


def replace_range(cur: psycopg.Cursor, schema: str, proc: Processor, start: int, end: int, spool: str | None = None,
                  batch_rows: int = 50_000) -> int:
    """Replace ``proc``'s rows of ledgers ``[start, end]`` by those of the Arrow stream ``spool`` (none: delete
    them); the bytes sent. A first-seen table's range goes to its sightings table, and the keys it added or
    removed are recomputed from there: the earliest sighting per key among the committed ranges."""
    seq = ident(proc.sequence_column)
    target = qualified(schema, seen_table(proc.name) if proc.first_seen else proc.name)
    keys = list(proc.first_seen_by)
    if proc.first_seen:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"cdp_ray_first_seen:{schema}.{proc.name}",))
    deleted = cur.execute(
        f"DELETE FROM {target} WHERE {seq} BETWEEN %s AND %s" + (f" RETURNING {', '.join(map(ident, keys))}" if keys else ""),
        (start, end),
    )
    touched = set(deleted.fetchall()) if keys else set()
    sent = 0
    if spool is not None:
        with pa.memory_map(spool) as source:
            for batch in pa.ipc.open_stream(source):
                table = pa.Table.from_batches([batch])
                sent += copy_rows(cur, target, table, batch_rows)
                if keys:
                    touched.update(zip(*(table.column(k).to_pylist() for k in keys)))
    if keys and touched:
        main, names = qualified(schema, proc.name), ", ".join(ident(c) for c in proc.schema.names)
        key_list = ", ".join(map(ident, keys))
        unnest = "SELECT * FROM unnest(" + ", ".join(f"%s::{pg_type(proc.schema.field(k).type)}[]" for k in keys) + ")"
        values = [list(v) for v in zip(*sorted(touched))]
        cur.execute(f"DELETE FROM {main} WHERE ({key_list}) IN ({unnest})", values)
        cur.execute(
            f"INSERT INTO {main} ({names}) SELECT DISTINCT ON ({key_list}) {names} FROM {target} "
            f"WHERE ({key_list}) IN ({unnest}) ORDER BY {key_list}, {seq}",
            values,
        )
    return sent


class _PostgresRange(RangeWriter):
    """One range's transaction: tables spooled to local Arrow files while the chunk runs, then deleted,
    copied and recorded in one transaction (replayed whole on a transient connection loss)."""

    def __init__(self, sink: PostgresSink, start: int, end: int, processors: list[Processor], run: RunContext | None):
        self.sink, self.start, self.end, self.run = sink, start, end, run
        require_ledger_column(processors)
        self.procs = {p.name: p for p in processors}
        self.spool = TableSpool(list(self.procs), "cdp-ray-pg-")
        self.rows = self.spool.rows

    def write(self, tables: Tables) -> None:
        self.spool.write(tables)

    def commit(self) -> dict[str, int]:
        self.spool.close()
        sink, start, end = self.sink, self.start, self.end
        written: dict[str, int] = {}
        current: list[str | None] = [None]

        def load(conn: psycopg.Connection) -> None:
            with conn.cursor() as cur:
                if sink.config.toast_compression != "server":
                    cur.execute(f"SET LOCAL default_toast_compression = '{sink.config.toast_compression}'")
                # First-seen tables last: their lock is then held only for the end of the transaction.
                for name, proc in sorted(self.procs.items(), key=lambda item: item[1].first_seen):
                    current[0] = name
                    written[name] = replace_range(cur, sink.schema, proc, start, end, self.spool.path(name),
                                                  sink.config.batch_rows)
                current[0] = None
                if self.run is not None:
                    self._record(cur, self.run)

        try:
            sink._run(f"loading ledgers {start}-{end}", load)
        except SinkError as exc:
            if current[0] is not None and "table" not in exc.message:
                raise SinkError(f"{exc.message} (table {qualified(sink.schema, current[0])})", hint=exc.hint) from exc
            raise
        finally:
            self.spool.cleanup()
        return written

    def _record(self, cur: psycopg.Cursor, run: RunContext) -> None:
        """Record ``[start, end]``: records it overlaps are replaced by their parts outside it."""
        ranges = qualified(self.sink.schema, RANGES_TABLE)
        start, end = self.start, self.end
        overlapped = cur.execute(
            f"DELETE FROM {ranges} WHERE pipeline = %s AND start_ledger <= %s AND end_ledger >= %s "
            "RETURNING start_ledger, end_ledger, config_hash",
            (run.pipeline, end, start),
        ).fetchall()
        pieces = [(run.pipeline, start, end, run.config_hash, json.dumps(self.rows))]
        for s, e, h in overlapped:
            if s < start:
                pieces.append((run.pipeline, s, start - 1, h, "{}"))
            if e > end:
                pieces.append((run.pipeline, end + 1, e, h, "{}"))
        cur.executemany(
            f"INSERT INTO {ranges} (pipeline, start_ledger, end_ledger, config_hash, rows) VALUES (%s, %s, %s, %s, %s)", pieces
        )
        cur.execute(
            f"DELETE FROM {qualified(self.sink.schema, DEAD_LETTERS_TABLE)} WHERE pipeline = %s AND start_ledger >= %s "
            "AND end_ledger <= %s",
            (run.pipeline, start, end),
        )

    def abort(self) -> None:
        try:
            self.spool.close()
        finally:
            self.spool.cleanup()


class _AdvisoryLock(SinkLock):
    """A session-level advisory lock on a connection of its own, held for the run: PostgreSQL releases it
    when the connection closes, also when the run is killed."""

    def __init__(self, sink: PostgresSink, pipeline: str):
        self.sink, self.pipeline = sink, pipeline
        self.conn = with_retries(
            "connect", sink._open, retries=sink.config.retries, backoff_s=sink.config.retry_backoff_s,
            transient=(psycopg.OperationalError,), permanent=(SinkError,),
        )
        self.conn.autocommit = True
        self.key = key = f"cdp_ray:{sink.schema}:{pipeline}"
        if not self._take(key):
            holder = self.conn.execute(
                "SELECT a.pid, a.client_addr, a.backend_start FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND "
                "(l.classid::bigint << 32 | l.objid::bigint) = (hashtextextended(%s, 0) & x'ffffffffffffffff'::bigint) LIMIT 1",
                (key,),
            ).fetchone()
            self.conn.close()
            who = f" (connection pid {holder[0]} from {holder[1] or 'local socket'}, since {holder[2]:%Y-%m-%d %H:%M:%S})" if holder else ""
            raise PipelineBusyError(
                f"pipeline {pipeline!r} is already running against {sink.config.describe()}: another run holds its lock{who}"
            )

    def _take(self, key: str) -> bool:
        """Wait up to LOCK_WAIT_S for the lock: a killed run's session lingers until its backend sees the
        connection gone."""
        self.conn.execute(f"SET lock_timeout = '{int(LOCK_WAIT_S * 1000)}ms'")
        try:
            self.conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
            return True
        except psycopg.errors.LockNotAvailable:
            return False
        finally:
            self.conn.execute("RESET lock_timeout")

    def renew(self) -> None:
        try:
            self.conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise PipelineBusyError(
                f"lost the lock of pipeline {self.pipeline!r} in {self.sink.config.describe()}: {str(exc).strip()}",
                hint="the database connection holding it dropped; rerun with --resume",
            ) from exc

    def release(self) -> None:
        """Unlock, then close: the server drops a closed session's locks only once its backend has exited."""
        try:
            if not self.conn.closed:
                self.conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (self.key,))
        except psycopg.Error:
            pass
        finally:
            self.conn.close()
