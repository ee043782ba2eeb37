"""Apache Iceberg sink: one Iceberg table per processor in a namespace, written with ``pyiceberg``.

Tables are created from the processors' declared Arrow schemas (column descriptions become column
docs, primary keys the identifier fields, unsigned integers widened to types Iceberg has: ``uint32`` to
``long``, ``uint64`` to ``decimal(20, 0)``) and partitioned by the day of the close time where the
table has one. Catalogs: the SQL catalog on SQLite (the default: catalog file next to a local
warehouse), the SQL catalog on PostgreSQL, and the REST catalog; warehouses on local disk, S3 or GCS.

**Commit protocol.** A chunk's tables are spooled to local Arrow files while it is processed. At
``commit``, per table, its Parquet data files are written once into the table's data directory
(invisible to readers: no snapshot references them), then one Iceberg transaction deletes the rows
of the range's ledgers (by the table's ledger column) and appends the new files, and sets the table
property ``cdp-ray.ranges`` (the pipeline's committed ranges in that table, coalesced) in the same
metadata commit. The snapshot summary names the pipeline, range, config hash and rows of the commit.
Workers commit concurrently: a commit whose base snapshot moved meanwhile is refused by the catalog
(``CommitFailedException``) and rebuilt on the new snapshot (a new delete, the same files, the
ranges recomputed) until it lands; pyiceberg's own retry is switched off on these tables, as it
would replay a stale ``cdp-ray.ranges``.

A range is committed when every table of the pipeline records it (Iceberg commits one table at a
time): a run killed between two tables' commits reruns the range, and its commits replace the rows
the first ones wrote. :func:`cdp_ray.scan` reads only the ranges every table holds. Files written by a
killed or refused commit are referenced by no snapshot; ``cdp-ray compact`` deletes them.

The run lock and dead letters are files under ``{uri}/_cdp_ray/{namespace}/`` (the lease protocol of
the Parquet sink); table ownership is the table property ``cdp-ray.pipeline``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import time
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Literal

import pyarrow as pa
from pydantic import Field

from cdp_ray.errors import OwnershipError, SinkError
from cdp_ray.pipeline import intervals
from cdp_ray.processors.base import Processor
from cdp_ray.sinks.base import (
    DeadLetter, RangeRecord, RangeWriter, RunContext, Sink, SinkConfig, SinkLock, TableSpool, Tables,
    require_ledger_column, sink,
)
from cdp_ray.sinks.parquet import ParquetSink, ParquetSinkConfig

OWNER_PROP = "cdp-ray.pipeline"
LEDGER_PROP = "cdp-ray.ledger-column"
RANGES_PROP = "cdp-ray.ranges"
MAX_BACKOFF_S = 1.0
# a range's first commit deletes nothing: pyiceberg's warning about it says nothing to a cdp-ray user
warnings.filterwarnings("ignore", message="Delete operation did not match any records")


class IcebergSinkConfig(SinkConfig):
    """Write Apache Iceberg tables (one per processor) into a namespace of an Iceberg catalog."""

    type: Literal["iceberg"] = "iceberg"
    uri: str = Field(description="warehouse: local path, s3://bucket/prefix or gs://bucket/prefix (cdp-ray's run lock "
                     "and dead letters are kept under it too)")
    namespace: str = Field("stellar", description="Iceberg namespace of the tables")
    catalog: Literal["sql", "rest"] = Field("sql", description="`sql`: SQLite or PostgreSQL catalog; `rest`: an Iceberg REST catalog")
    catalog_uri: str | None = Field(
        None,
        description="`sql`: SQLAlchemy URL (sqlite:////abs/catalog.db, postgresql+psycopg://user@host/db; default "
        "a SQLite file catalog.db in a local warehouse); `rest`: the catalog's URL",
    )
    catalog_name: str = Field("cdp_ray", description="catalog name (the SQL catalog keeps several apart by it)")
    catalog_properties: dict[str, str] = Field(
        default_factory=dict, description="extra pyiceberg catalog and FileIO properties (credential, token, s3.region, ...)")
    partition_by_day: list[str] = Field(
        ["closed_at", "ledger_closed_at"],
        description="partition a table by the day of the first of these timestamp columns it has (none: unpartitioned)",
    )
    target_file_mb: int = Field(128, ge=1, description="target data file size (Iceberg write.target-file-size-bytes; `cdp-ray compact` packs toward it)")
    commit_retries: int = Field(100, ge=0, description="rebuilds of a commit refused because another worker committed first")
    keep_snapshots: int = Field(100, ge=1, description="snapshots kept per table; older ones expire with each commit")
    endpoint_url: str | None = Field(None, description="S3-compatible or GCS endpoint (MinIO, moto, emulator)")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options for cdp-ray's lock and dead-letter files")

    def fingerprint(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "partition_by_day": self.partition_by_day}

    def describe(self) -> str:
        return f"iceberg {self.catalog} catalog {self.catalog_name}, warehouse {self.uri}, namespace {self.namespace}"

    def fsspec_options(self) -> dict[str, Any]:
        """fsspec options reaching the warehouse (as the Parquet sink's: ``endpoint_url`` folded in)."""
        return ParquetSinkConfig(uri=self.uri, endpoint_url=self.endpoint_url, storage_options=self.storage_options).fsspec_options()

    def warehouse(self) -> str:
        return self.uri if "://" in self.uri else Path(self.uri).resolve().as_uri()

    def pyiceberg_properties(self) -> dict[str, str]:
        """The catalog's properties, FileIO settings for the warehouse's storage included."""
        props: dict[str, str] = {"type": self.catalog, "warehouse": self.warehouse()}
        if self.catalog == "sql":
            uri = self.catalog_uri
            if uri is None:
                if "://" in self.uri:
                    raise SinkError(
                        f"Iceberg sink on {self.uri}: a SQLite catalog file cannot live on object storage",
                        hint="set catalog_uri (postgresql+psycopg://host/db, or sqlite:////local/path/catalog.db), or use catalog: rest",
                    )
                uri = f"sqlite:///{Path(self.uri).resolve() / 'catalog.db'}"
            props["uri"] = uri
        else:
            if not self.catalog_uri:
                raise SinkError("Iceberg REST catalog without catalog_uri", hint="set catalog_uri: https://host/catalog")
            props["uri"] = self.catalog_uri
        opts = self.storage_options
        if self.uri.startswith(("s3://", "s3a://")):
            region = (opts.get("client_kwargs") or {}).get("region_name") or opts.get("region_name")
            for key, value in (("s3.endpoint", self.endpoint_url), ("s3.access-key-id", opts.get("key")),
                               ("s3.secret-access-key", opts.get("secret")), ("s3.region", region)):
                if value:
                    props[key] = str(value)
        elif self.uri.startswith(("gs://", "gcs://")):
            props["py-io-impl"] = "pyiceberg.io.fsspec.FsspecFileIO"  # gcsfs, as the rest of cdp-ray: its options carry over
            if self.endpoint_url:
                props["gcs.service.host"] = self.endpoint_url
            if opts.get("project"):
                props["gcs.project-id"] = str(opts["project"])
            if isinstance(opts.get("token"), str):
                props["gcs.oauth2.token"] = opts["token"]
        props.update(self.catalog_properties)
        return props


def iceberg_type(t: pa.DataType) -> pa.DataType:
    """An Arrow type Iceberg stores: unsigned integers widened, lists of them too."""
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(iceberg_type(t.value_type))
    if t in (pa.uint8(), pa.uint16()):
        return pa.int32()
    if t == pa.uint32():
        return pa.int64()
    if t == pa.uint64():
        return pa.decimal128(20, 0)
    if pa.types.is_dictionary(t):
        return iceberg_type(t.value_type)
    return t


def iceberg_schema(proc: Processor) -> pa.Schema:
    """``proc``'s schema as the Iceberg table holds it: descriptions as docs, Iceberg-storable types."""
    fields = []
    for f in proc.schema:
        doc = (f.metadata or {}).get(b"description")
        fields.append(pa.field(f.name, iceberg_type(f.type), f.nullable, metadata={b"doc": doc} if doc else None))
    return pa.schema(fields)


def _same_type(have: pa.DataType, want: pa.DataType) -> bool:
    """Types equal as Iceberg stores them (pyiceberg reads strings and lists back as their large variants)."""
    norm = {pa.large_string(): pa.string(), pa.large_binary(): pa.binary()}
    if (pa.types.is_list(have) or pa.types.is_large_list(have)) and (pa.types.is_list(want) or pa.types.is_large_list(want)):
        return _same_type(have.value_type, want.value_type)
    return norm.get(have, have) == norm.get(want, want)


def day_column(proc: Processor, candidates: Iterable[str]) -> str | None:
    """The first of ``candidates`` that is a timestamp column of ``proc``."""
    return next((c for c in candidates if c in proc.schema.names and pa.types.is_timestamp(proc.schema.field(c).type)), None)


# ---- the committed ranges of one table: [[start, end, config_hash, rows, committed_at], ...] -------------

def _load_ranges(props: dict[str, str]) -> list[list]:
    return json.loads(props.get(RANGES_PROP) or "[]")


def _without(ranges: list[list], cut: list[intervals.Interval], removed: int = 0) -> list[list]:
    """``ranges`` minus the ledgers of ``cut``, whose ``removed`` rows are taken from the records they cut (the
    rows a cut record keeps go on its first piece: coalescing sums them again)."""
    out = []
    for r in ranges:
        pieces = intervals.subtract((r[0], r[1]), cut)
        rows = r[3]
        if pieces != [(r[0], r[1])]:
            taken = min(rows, removed)
            rows, removed = rows - taken, removed - taken
        out += [[s, e, r[2], rows if i == 0 else 0, r[4]] for i, (s, e) in enumerate(pieces)]
    return out


def _deleted_rows(tbl: Any, txn: Any) -> int:
    """Rows the snapshots staged in ``txn`` deleted."""
    before = {s.snapshot_id for s in tbl.metadata.snapshots}
    return sum(int(s.summary.get("deleted-records") or 0) for s in txn.table_metadata.snapshots
               if s.snapshot_id not in before and s.summary is not None)


def _with(ranges: list[list], start: int, end: int, config_hash: str, rows: int, at: str, removed: int = 0) -> list[list]:
    """``ranges`` with ``[start, end]`` recorded (``removed``: the rows its commit replaced), neighbours of the
    same hash coalesced (the list stays as long as the number of gaps and config changes, not of commits)."""
    out: list[list] = []
    for r in sorted(_without(ranges, [(start, end)], removed) + [[start, end, config_hash, rows, at]]):
        if out and out[-1][2] == r[2] and out[-1][1] + 1 == r[0]:
            out[-1] = [out[-1][0], r[1], r[2], out[-1][3] + r[3], max(out[-1][4], r[4])]
        else:
            out.append(r)
    return out


def _between(column: str, spans: Iterable[intervals.Interval]):
    """An Iceberg expression: ``column`` in one of ``spans``."""
    from pyiceberg.expressions import AlwaysFalse, And, GreaterThanOrEqual, LessThanOrEqual, Or

    terms = [And(GreaterThanOrEqual(column, s), LessThanOrEqual(column, e)) for s, e in spans]
    if not terms:
        return AlwaysFalse()
    return terms[0] if len(terms) == 1 else Or(*terms)


@sink("iceberg", IcebergSinkConfig)
class IcebergSink(Sink):
    """Each ledger range replaces its rows in one Iceberg commit per table (a delete of its ledgers and an append),
    with the committed ranges in the same commit; concurrent commits are rebuilt, never lost. `cdp-ray compact`
    packs small files; Trino, Spark, DuckDB and polars read the tables."""

    config: IcebergSinkConfig

    def __init__(self, config: IcebergSinkConfig):
        super().__init__(config)
        self._catalog = None
        self.state = ParquetSink(ParquetSinkConfig(
            uri=f"{config.uri.rstrip('/')}/_cdp_ray/{config.namespace}", endpoint_url=config.endpoint_url,
            storage_options=config.storage_options, retries=config.retries, retry_backoff_s=config.retry_backoff_s,
        ))

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_catalog"] = None
        return state

    @property
    def catalog(self):
        if self._catalog is None:
            from pyiceberg.catalog import load_catalog

            if self.config.catalog == "sql" and self.config.catalog_uri is None:
                os.makedirs(Path(self.config.uri).resolve(), exist_ok=True)
            try:
                self._catalog = load_catalog(self.config.catalog_name, **self.config.pyiceberg_properties())
            except SinkError:
                raise
            except Exception as exc:
                raise SinkError(f"cannot open the Iceberg catalog of {self.config.describe()}: {exc}",
                                hint="check catalog_uri and catalog_properties") from exc
        return self._catalog

    def identifier(self, table: str) -> tuple[str, str]:
        return (self.config.namespace, table)

    def load(self, table: str):
        return self.catalog.load_table(self.identifier(table))

    def _embedded_missing(self) -> bool:
        """The default SQLite catalog does not exist yet (reading must not create it: dry runs write nothing)."""
        cfg = self.config
        return cfg.catalog == "sql" and cfg.catalog_uri is None and not (Path(cfg.uri).resolve() / "catalog.db").exists()

    def _tables(self, pipeline: str | None = None) -> list[Any]:
        """The namespace's tables (those owned by ``pipeline`` when given)."""
        from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

        if self._catalog is None and self._embedded_missing():
            return []
        try:
            names = self.catalog.list_tables(self.config.namespace)
        except NoSuchNamespaceError:
            return []
        out = []
        for ident in sorted(names):
            try:
                tbl = self.catalog.load_table(ident)
            except NoSuchTableError:
                continue
            if pipeline is None or tbl.properties.get(OWNER_PROP) == pipeline:
                out.append(tbl)
        return out

    # ---- tables, ownership, locks -----------------------------------------------------------------

    def _table_properties(self, proc: Processor, pipeline: str | None) -> dict[str, str]:
        props = {
            LEDGER_PROP: proc.sequence_column,
            "commit.retry.num-retries": "0",  # cdp-ray rebuilds refused commits itself (see the module docstring)
            "write.target-file-size-bytes": str(self.config.target_file_mb * 2**20),
            "write.parquet.compression-codec": "zstd",
            "write.metadata.delete-after-commit.enabled": "true",
            "write.metadata.previous-versions-max": str(self.config.keep_snapshots),
        }
        if pipeline is not None:
            props[OWNER_PROP] = pipeline
        return props

    def prepare(self, processors: list[Processor], pipeline: str | None = None) -> None:
        from pyiceberg.exceptions import NoSuchTableError, TableAlreadyExistsError
        from pyiceberg.transforms import DayTransform

        require_ledger_column(processors)
        self.catalog.create_namespace_if_not_exists(self.config.namespace)
        for p in processors:
            try:
                tbl = self.load(p.name)
            except NoSuchTableError:
                try:
                    with self.catalog.create_table_transaction(self.identifier(p.name), iceberg_schema(p),
                                                               properties=self._table_properties(p, pipeline)) as txn:
                        if p.primary_key:
                            with txn.update_schema() as schema:
                                schema.set_identifier_fields(*p.primary_key)
                        day = day_column(p, self.config.partition_by_day)
                        if day is not None:
                            with txn.update_spec() as spec:
                                spec.add_field(day, DayTransform(), f"{day}_day")
                    continue
                except TableAlreadyExistsError:
                    tbl = self.load(p.name)
            self._check_schema(tbl, p)
            if pipeline is not None:
                self._claim(tbl, p, pipeline)
        if pipeline is not None:
            self.state.prepare([], pipeline)

    def _check_schema(self, tbl: Any, proc: Processor) -> None:
        """Evolve the table by the processor's new nullable columns; refuse dropped, required or retyped ones."""
        want = iceberg_schema(proc)
        have = tbl.schema().as_arrow()
        added = [f for f in want if f.name not in have.names]
        problems = [f"new column {f.name!r} is required (a table's existing rows have no value)" for f in added if not f.nullable]
        problems += [f"column {f.name!r} is not in processor {proc.name!r}" for f in have if f.name not in want.names]
        problems += [f"column {f.name!r} is {have.field(f.name).type}, processor {proc.name!r} declares {f.type}"
                     for f in want if f.name in have.names and not _same_type(have.field(f.name).type, f.type)]
        if added and not problems:
            with tbl.update_schema() as update:
                update.union_by_name(pa.schema(added))
            return
        if problems:
            raise SinkError(
                f"Iceberg table {'.'.join(self.identifier(proc.name))} in {self.config.describe()} disagrees with "
                f"processor {proc.name!r}: " + "; ".join(problems),
                hint="drop the table (it is recreated from the processor's schema), or write to another namespace",
            )

    def _claim(self, tbl: Any, proc: Processor, pipeline: str) -> None:
        owner = tbl.properties.get(OWNER_PROP)
        if owner is None:
            with tbl.transaction() as txn:
                txn.set_properties(self._table_properties(proc, pipeline))
            owner = self.load(proc.name).properties.get(OWNER_PROP)
        if owner != pipeline:
            raise OwnershipError(
                f"Iceberg table {'.'.join(self.identifier(proc.name))} in {self.config.describe()} belongs to pipeline "
                f"{owner!r}: pipeline {pipeline!r} would replace its rows range by range",
                hint=f"write pipeline {pipeline!r} to another namespace, or, if {owner!r} is gone for good, release its "
                f"tables with `cdp-ray checkpoint clean` for {owner!r}",
            )

    def lock(self, pipeline: str) -> SinkLock:
        return self.state.lock(pipeline)

    def release(self, pipeline: str) -> list[str]:
        released = []
        for tbl in self._tables(pipeline):
            self._update_state(tbl, lambda props: None, remove=[OWNER_PROP])
            released.append(tbl.name()[-1])
        return released

    # ---- commits ----------------------------------------------------------------------------------

    def commit_table(self, table: str, build, *, what: str) -> Any:
        """Commit a transaction ``build(tbl, txn)`` fills, rebuilt on the new snapshot while the catalog refuses it
        because another writer committed first (or the SQLite catalog is busy)."""
        with self._commit_mutex():
            return self._commit_retried(table, build, what)

    @contextlib.contextmanager
    def _commit_mutex(self):
        """Writers of one SQLite catalog (one host) take turns: optimistic retries would mostly redo work."""
        props = self.config.pyiceberg_properties()
        if props["type"] != "sql" or not props["uri"].startswith("sqlite:///"):
            yield
            return
        path = props["uri"][len("sqlite:///"):] + ".commit-lock"
        with open(path, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _commit_retried(self, table: str, build, what: str) -> Any:
        from pyiceberg.exceptions import CommitFailedException
        from sqlalchemy.exc import OperationalError

        delay, failures = 0.05, 0
        for attempt in range(self.config.commit_retries + 1):
            try:
                tbl = self.load(table)
                txn = tbl.transaction()
                build(tbl, txn)
                return txn.commit_transaction()
            except OSError as exc:  # storage: the rebuilt commit replaces the range again, so a landed one is harmless
                failures += 1
                if failures > self.config.retries:
                    raise SinkError(f"Iceberg table {'.'.join(self.identifier(table))}: {what} failed after "
                                    f"{failures} attempts: {exc}", hint="check the warehouse's storage and credentials") from exc
                time.sleep(self.config.retry_backoff_s * 2 ** (failures - 1) * (0.5 + random.random()))
            except (CommitFailedException, OperationalError) as exc:
                if attempt == self.config.commit_retries:
                    raise SinkError(
                        f"Iceberg table {'.'.join(self.identifier(table))}: {what} was refused {attempt + 1} times "
                        f"(other writers kept committing first): {exc}",
                        hint="raise commit_retries, or run fewer workers per table; rerun with --resume",
                    ) from exc
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, MAX_BACKOFF_S)
        raise AssertionError(what)

    def _update_state(self, tbl: Any, change, *, remove: list[str] = ()) -> None:
        """Rewrite ``cdp-ray.ranges`` (``change(ranges) -> ranges``) without touching data, refused like a data
        commit when another commit lands first."""
        from pyiceberg.table.update import AssertRefSnapshotId

        def build(t, txn):
            ranges = change(_load_ranges(t.properties))
            if ranges is not None:
                txn.set_properties({RANGES_PROP: json.dumps(ranges)})
            if remove:
                txn.remove_properties(*remove)
            snap = t.metadata.current_snapshot_id
            txn._apply((), (AssertRefSnapshotId(snapshot_id=snap, ref="main"),))

        self.commit_table(tbl.name()[-1], build, what="updating the committed ranges")

    def open_range(
        self, start: int, end: int, processors: list[Processor], run: RunContext | None = None,
        replaces: tuple[tuple[int, int], ...] = (),
    ) -> RangeWriter:
        return _IcebergRange(self, start, end, processors, run)

    def finish(self, pipeline: str) -> None:
        self.state.finish(pipeline)

    # ---- checkpoints ------------------------------------------------------------------------------

    def _per_table(self, pipeline: str) -> dict[str, list[list]]:
        return {tbl.name()[-1]: _load_ranges(tbl.properties) for tbl in self._tables(pipeline)}

    @staticmethod
    def _common(per_table: dict[str, list[list]]) -> list[tuple[int, int, str]]:
        """Ranges every table recorded, per config hash, as ``(start, end, hash)`` by start."""
        if not per_table:
            return []
        hashes = set.intersection(*({r[2] for r in rs} for rs in per_table.values()))
        out = []
        for h in hashes:
            spans = None
            for rs in per_table.values():
                mine = intervals.merge((r[0], r[1]) for r in rs if r[2] == h)
                spans = mine if spans is None else intervals.intersect(spans, mine)
            out += [(s, e, h) for s, e in spans]
        return sorted(out)

    def committed(self, pipeline: str) -> list[RangeRecord]:
        return [RangeRecord(pipeline, s, e, h) for s, e, h in self._common(self._per_table(pipeline))]

    def committed_detail(self, pipeline: str) -> list[RangeRecord]:
        per_table = self._per_table(pipeline)
        out = []
        for s, e, h in self._common(per_table):
            rows, at = {}, None
            for table, rs in per_table.items():
                inside = [r for r in rs if r[2] == h and s <= r[0] and r[1] <= e]
                rows[table] = sum(r[3] for r in inside)
                stamps = [datetime.fromisoformat(r[4]) for r in inside if r[4]]
                at = max([at, *stamps] if at else stamps, default=None)
            out.append(RangeRecord(pipeline, s, e, h, rows, at))
        return out

    def pipelines(self) -> list[str]:
        owners = {t.properties.get(OWNER_PROP) for t in self._tables() if _load_ranges(t.properties)}
        return sorted((owners - {None}) | set(self.state.pipelines()))

    def discard(self, pipeline: str, records: list[RangeRecord]) -> None:
        spans = intervals.merge((r.start, r.end) for r in records)
        if not spans:
            return
        for tbl in self._tables(pipeline):
            column = tbl.properties.get(LEDGER_PROP)

            def build(t, txn, column=column):
                txn.delete(_between(column, spans), snapshot_properties={OWNER_PROP: pipeline, "cdp-ray.operation": "discard"})
                txn.set_properties({RANGES_PROP: json.dumps(_without(_load_ranges(t.properties), spans, _deleted_rows(t, txn)))})

            self.commit_table(tbl.name()[-1], build, what="discarding stale ranges")

    def forget(self, pipeline: str, records: list[RangeRecord] | None = None) -> int:
        n = len(records) if records is not None else len(self.committed(pipeline))
        spans = None if records is None else intervals.merge((r.start, r.end) for r in records)
        for tbl in self._tables(pipeline):
            self._update_state(tbl, lambda rs: [] if spans is None else _without(rs, spans))
        return n

    def record_dead_letter(self, letter: DeadLetter) -> None:
        self.state.record_dead_letter(letter)

    def dead_letters(self, pipeline: str) -> list[DeadLetter]:
        return self.state.dead_letters(pipeline)

    def forget_dead_letters(self, pipeline: str) -> int:
        return self.state.forget_dead_letters(pipeline)

    # ---- reading and maintenance ------------------------------------------------------------------

    @staticmethod
    def ledger_column(tbl: Any) -> str:
        return tbl.properties[LEDGER_PROP]

    def committed_filter(self, pipeline: str, table: str) -> tuple[Any, Any, list[intervals.Interval]]:
        """``table`` (a pyiceberg Table), a row filter selecting its rows of the ranges every table of ``pipeline``
        committed, and those ranges."""
        from pyiceberg.exceptions import NoSuchTableError

        try:
            tbl = self.load(table)
        except NoSuchTableError as exc:
            raise SinkError(f"no Iceberg table {'.'.join(self.identifier(table))} in {self.config.describe()}",
                            hint="run the pipeline first, or check namespace and catalog") from exc
        spans = intervals.merge((r.start, r.end) for r in self.committed(pipeline))
        return tbl, _between(self.ledger_column(tbl), spans), spans

    def compact(self, pipeline: str, target_mb: int | None = None) -> dict[str, dict[str, int]]:
        """Rewrite each table's small data files, per partition, into files near ``target_mb`` (default
        ``target_file_mb``); rows are unchanged. Then delete data files no snapshot references (left by killed
        or refused commits). Run under the pipeline's lock: no writer commits meanwhile."""
        from pyiceberg.io.pyarrow import _dataframe_to_data_files

        target = (target_mb or self.config.target_file_mb) * 2**20
        report = {}
        for tbl in self._tables(pipeline):
            name = tbl.name()[-1]
            before = [t.file for t in tbl.scan().plan_files()]
            groups: dict[Any, list] = {}
            for f in before:
                if f.file_size_in_bytes < target * 3 // 4:
                    groups.setdefault((f.spec_id, tuple(f.partition)), []).append(f)
            rewritten = 0
            for files in groups.values():
                for batch in _pack(files, target):
                    if len(batch) < 2:
                        continue
                    data = _read_files(tbl, batch)

                    def build(t, txn, batch=batch, data=data):
                        producer = txn.update_snapshot(snapshot_properties={OWNER_PROP: pipeline, "cdp-ray.operation": "compact"}).overwrite()
                        with producer as rewrite:
                            for f in batch:
                                rewrite.delete_data_file(f)
                            for f in _dataframe_to_data_files(table_metadata=t.metadata, df=data, io=t.io, write_uuid=uuid.uuid4()):
                                rewrite.append_data_file(f)

                    self.commit_table(name, build, what="compacting data files")
                    rewritten += len(batch)
            tbl = self.load(name)
            after = [t.file for t in tbl.scan().plan_files()]
            report[name] = {"files_before": len(before), "files_after": len(after), "files_rewritten": rewritten,
                            "orphans_deleted": self._delete_orphans(tbl)}
        return report

    def _delete_orphans(self, tbl: Any) -> int:
        """Delete data files under the table's data directory that no snapshot references."""
        referenced = {f.file_path for snap in tbl.snapshots() for f in _snapshot_files(tbl, snap)}
        fs, base = self.state.fs, tbl.location().rstrip("/") + "/data"
        root = base.split("://", 1)[1] if "://" in base else base
        if base.startswith("file://"):
            root = base[len("file://"):]
        try:
            found = fs.find(root)
        except FileNotFoundError:
            return 0
        n = 0
        for path in found:
            url = base[: len(base) - len(root)] + path if "://" in base else path
            if path.endswith(".parquet") and url not in referenced:
                fs.rm(path)
                n += 1
        return n

    def close(self) -> None:
        self._catalog = None


def _snapshot_files(tbl: Any, snap: Any) -> list:
    return [e.data_file for m in snap.manifests(tbl.io) for e in m.fetch_manifest_entry(tbl.io, discard_deleted=True)]


def _read_files(tbl: Any, files: list) -> pa.Table:
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan
    from pyiceberg.table import FileScanTask

    return ArrowScan(table_metadata=tbl.metadata, io=tbl.io, projected_schema=tbl.schema(), row_filter=AlwaysTrue()) \
        .to_table(tasks=[FileScanTask(f) for f in files])


def _pack(files: list, target: int) -> list[list]:
    """Consecutive groups of ``files`` whose sizes sum to about ``target`` (first fit by size)."""
    out, cur, size = [], [], 0
    for f in sorted(files, key=lambda f: f.file_path):
        if cur and size + f.file_size_in_bytes > target:
            out.append(cur)
            cur, size = [], 0
        cur.append(f)
        size += f.file_size_in_bytes
    if cur:
        out.append(cur)
    return out


class _IcebergRange(RangeWriter):
    """One range's commit: tables spooled to local Arrow files, then per table its data files written once and
    committed by an overwrite of the range's ledgers (rebuilt while other writers commit first)."""

    def __init__(self, sink: IcebergSink, start: int, end: int, processors: list[Processor], run: RunContext | None):
        require_ledger_column(processors)
        self.sink, self.start, self.end, self.run = sink, start, end, run
        self.procs = {p.name: p for p in processors}
        self.spool = TableSpool(list(self.procs), "cdp-ray-iceberg-", iceberg_schema)
        self.rows = self.spool.rows

    def write(self, tables: Tables) -> None:
        self.spool.write(tables)

    def commit(self) -> dict[str, int]:
        from pyiceberg.io.pyarrow import _dataframe_to_data_files
        from pyiceberg.table.update.snapshot import ExpireSnapshots

        self.spool.close()
        sink, start, end, run = self.sink, self.start, self.end, self.run
        written: dict[str, int] = {}
        at = datetime.now(timezone.utc).isoformat()
        props = {"cdp-ray.range": f"{start}-{end}"}
        if run is not None:
            props.update({OWNER_PROP: run.pipeline, "cdp-ray.config-hash": run.config_hash})
        try:
            for name, proc in self.procs.items():
                data = self.spool.read(name)
                tbl = sink.load(name)
                files = [] if data is None else list(_dataframe_to_data_files(
                    table_metadata=tbl.metadata, df=data, io=tbl.io, write_uuid=uuid.uuid4()))
                spec = tbl.metadata.default_spec_id
                written[name] = sum(f.file_size_in_bytes for f in files)
                summary = {**props, "cdp-ray.rows": str(self.rows[name])}
                del data

                def build(t, txn, proc=proc, files=files, summary=summary, spec=spec, name=name):
                    if t.metadata.default_spec_id != spec:
                        raise SinkError(f"Iceberg table {name}: its partition spec changed during the commit",
                                        hint="rerun with --resume")
                    txn.delete(_between(proc.sequence_column, [(start, end)]), snapshot_properties=summary)
                    with txn.update_snapshot(snapshot_properties=summary).fast_append() as append:
                        for f in files:
                            append.append_data_file(f)
                    if run is not None:
                        ranges = _with(_load_ranges(t.properties), start, end, run.config_hash, self.rows[name], at,
                                       _deleted_rows(t, txn))
                        txn.set_properties({RANGES_PROP: json.dumps(ranges)})
                    old = sorted(t.snapshots(), key=lambda s: s.timestamp_ms)
                    if len(old) > sink.config.keep_snapshots + 10:
                        current = t.metadata.current_snapshot_id
                        expire = [s.snapshot_id for s in old[: len(old) - sink.config.keep_snapshots] if s.snapshot_id != current]
                        ExpireSnapshots(txn).by_ids(expire).commit()

                sink.commit_table(name, build, what=f"committing ledgers {start}-{end}")
        finally:
            self.spool.cleanup()
        if run is not None:
            for s, e in sorted(run.dead_letter_ranges):
                if start <= s and e <= end:
                    sink.state._remove(sink.state._dead_letter(run.pipeline, s, e))
        return written

    def abort(self) -> None:
        try:
            self.spool.close()
        finally:
            self.spool.cleanup()
