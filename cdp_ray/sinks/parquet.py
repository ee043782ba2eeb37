"""Parquet sink: files per table per committed ledger range, on local disk or object storage.

Layout under ``uri``::

    {table}/{start:010d}-{end:010d}.parquet                   partitioning: range
    {table}/date=YYYY-MM-DD/{start:010d}-{end:010d}.parquet   partitioning: date (Hive style)
    _cdp_ray/{pipeline}/ranges/{start}-{end}.{config}.json    commit manifest of a range
    _cdp_ray/{pipeline}/dead_letters/{start}-{end}.json       a quarantined range
    _cdp_ray/{pipeline}/staging/{start}-{end}.{attempt}/      a commit in progress
    _cdp_ray/{pipeline}/lock.json                             the lease of the run writing now
    _cdp_ray/_owners/{table}.json                             the pipeline that owns a table

**Commit protocol.** A chunk's rows are streamed into Parquet files in its staging directory (row
groups of ``row_group_rows``), so nothing uncommitted ever sits where readers look. ``commit`` writes
``commit.json`` (what to move and delete) into the staging directory, then the range's manifest: that
single atomic write is the commit point. The staged files are then moved to their final names
(a rename on local disk, a server-side copy on object storage; each file appears whole), the files
and manifests it supersedes are deleted, and the staging directory goes. A writer killed before the
manifest leaves only its staging directory, which the next run (or a retry of the chunk) deletes; one
killed after it is finished by the next run from ``commit.json``.

**Replacing ranges.** A range's files are named after it, so rerunning it replaces them in place. A
commit that overlaps committed ranges of other bounds (a run over a sub-range, a range extended past
a partial last chunk) carries their rows outside its own ledgers into its files and commits the union,
then deletes them: committed ranges never overlap for long, and no ledger's rows are in two files
once a commit finishes. Manifests name their config hash, so resuming lists one directory and reads
no file. ``committed_files`` gives the files of committed ranges only: :func:`cdp_ray.scan` reads
through it; glob readers see each file appear whole, but see a range's tables replaced one by one
while a run is replacing it.
"""

from __future__ import annotations

import glob
import io
import json
import os
import re
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem
from pydantic import Field

from cdp_ray.errors import OwnershipError, PipelineBusyError, SinkError
from cdp_ray.lake.store import url_to_filesystem
from cdp_ray.processors.base import Processor
from cdp_ray.sinks.base import (
    DeadLetter, RangeRecord, RangeWriter, RunContext, Sink, SinkConfig, SinkLock, Tables, require_ledger_column, sink,
    with_retries,
)

META_DIR = "_cdp_ray"
OWNERS = f"{META_DIR}/_owners"
LOCK_TTL_S = 60.0
BUFFER_BYTES = 32 * 2**20  # Arrow bytes buffered per output file before a row group is written
_MANIFEST = re.compile(r"^(\d{10})-(\d{10})(?:\.([0-9A-Za-z_-]+))?\.json$")
_DATA_FILE = re.compile(r"(\d{10})-(\d{10})\.parquet$")


class ParquetSinkConfig(SinkConfig):
    """Write Parquet files under ``uri`` (local path, s3:// or gs://)."""

    type: Literal["parquet"] = "parquet"
    uri: str = Field(description="output root: local path, s3://bucket/prefix or gs://bucket/prefix")
    compression: Literal["zstd", "snappy", "gzip", "none"] = Field("zstd", description="Parquet codec")
    partitioning: Literal["range", "date"] = Field(
        "range", description="`range`: one file per table per ledger range; `date`: also split into date=YYYY-MM-DD directories"
    )
    date_column: str = Field("closed_at", description="timestamp column that `date` partitioning splits on")
    row_group_rows: int = Field(1_000_000, ge=1, description="maximum rows per Parquet row group")
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, moto, ...)")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="extra fsspec options")

    def fingerprint(self) -> dict[str, Any]:
        return {"partitioning": self.partitioning, "date_column": self.date_column if self.partitioning == "date" else None}

    def describe(self) -> str:
        return self.uri

    def fsspec_options(self) -> dict[str, Any]:
        opts = dict(self.storage_options)
        if self.endpoint_url and self.uri.startswith(("s3://", "s3a://")):
            opts.setdefault("client_kwargs", {})["endpoint_url"] = self.endpoint_url
        elif self.endpoint_url and self.uri.startswith(("gs://", "gcs://")):
            opts.setdefault("endpoint_url", self.endpoint_url)
        return opts


def range_name(start: int, end: int) -> str:
    return f"{start:010d}-{end:010d}"


def range_file(table: str, start: int, end: int, date: str | None = None) -> str:
    part = f"date={date}/" if date else ""
    return f"{table}/{part}{range_name(start, end)}.parquet"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs. A zombie (exited, not yet reaped: what a killed
    Ray worker stays where PID 1 does not reap orphans, as in many containers) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):  # no procfs (not Linux): the signal's answer
        return True
    return state not in ("Z", "X")


def _bytes_writer(data: bytes) -> Callable[[Any], None]:
    def write(target: Any) -> None:
        if isinstance(target, str):
            with open(target, "wb") as f:
                f.write(data)
        else:
            target.write(data)

    return write


def _contained(records: list[RangeRecord]) -> set[int]:
    """Indexes of records whose range lies inside another record's (superseded by a finished commit)."""
    order = sorted(range(len(records)), key=lambda i: (records[i].start, -records[i].end))
    out, reach, span = set(), -1, None
    for i in order:
        r = records[i]
        if r.end <= reach and (r.start, r.end) != span:
            out.add(i)
        elif r.end > reach:
            reach, span = r.end, (r.start, r.end)
    return out


@sink("parquet", ParquetSinkConfig)
class ParquetSink(Sink):
    config: ParquetSinkConfig

    def __init__(self, config: ParquetSinkConfig):
        super().__init__(config)
        try:
            self.fs, root = url_to_filesystem(config.uri, config.fsspec_options())
        except (ImportError, ValueError) as exc:
            raise SinkError(f"cannot open Parquet output {config.uri!r}: {exc}", hint="use a local path, s3:// or gs://") from exc
        self.root = root.rstrip("/") or "/"
        self.local = isinstance(self.fs, LocalFileSystem)
        self._legacy: set[tuple[str, int, int, str]] = set()  # manifests named without their config hash

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def url(self, rel: str) -> str:
        """``rel`` as a path or URL that readers outside this sink can open."""
        if self.local:
            return self.path(rel)
        proto = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return f"{'gs' if proto in ('gcs', 'gs') else proto}://{self.path(rel)}"

    # ---- storage primitives ---------------------------------------------------------------------

    def _retry(self, what: str, fn):
        try:
            return with_retries(
                what, fn, retries=self.config.retries, backoff_s=self.config.retry_backoff_s,
                transient=(OSError,), permanent=(FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError),
            )
        except (FileNotFoundError, FileExistsError):
            raise
        except PermissionError as exc:
            raise SinkError(f"{what}: permission denied: {exc}", hint="check the credentials and the bucket's policy") from exc
        except OSError as exc:
            raise SinkError(f"{what} failed after {self.config.retries + 1} attempts: {exc}") from exc

    def _put(self, rel: str, data: bytes, *, create: bool = False) -> int:
        """Make ``rel`` appear whole: tmp file + rename (``create``: + link, failing if it exists) locally,
        one PUT (``create``: conditional) on object storage. Raises ``FileExistsError`` for ``create``."""
        final = self.path(rel)

        def put() -> int:
            if self.local:
                parent = final.rsplit("/", 1)[0]
                os.makedirs(parent, exist_ok=True)
                tmp = f"{parent}/_tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"
                try:
                    _bytes_writer(data)(tmp)
                    if create:
                        os.link(tmp, final)
                    else:
                        os.replace(tmp, final)
                finally:
                    if os.path.exists(tmp):
                        os.remove(tmp)
                return len(data)
            self.fs.pipe_file(final, data, mode="create" if create else "overwrite")
            return len(data)

        try:
            return self._retry(f"writing {final}", put)
        except FileNotFoundError as exc:
            raise SinkError(f"writing {final} failed: {exc}", hint="check that the bucket (or parent directory) exists") from exc

    def _read_json(self, rel: str) -> dict | None:
        """A JSON document of this sink, or ``None`` when absent."""
        path = self.path(rel)
        try:
            raw = self._retry(f"reading {path}", lambda: self.fs.cat_file(path))
        except FileNotFoundError:
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise SinkError(f"{path} is not valid JSON: {exc}", hint="delete it; the range is then rerun on --resume") from exc

    def _remove(self, rel: str, *, recursive: bool = False) -> None:
        def rm() -> None:
            try:
                self.fs.rm(self.path(rel), recursive=recursive)
            except FileNotFoundError:
                pass

        self._retry(f"deleting {self.path(rel)}", rm)

    def _move(self, src: str, dst: str) -> None:
        def mv() -> None:
            if self.local:
                os.makedirs(self.path(dst).rsplit("/", 1)[0], exist_ok=True)
                os.replace(self.path(src), self.path(dst))
            else:
                self.fs.mv(self.path(src), self.path(dst))

        self._retry(f"moving {self.path(src)} to {self.path(dst)}", mv)

    def _exists(self, rel: str) -> bool:
        return bool(self._retry(f"checking {self.path(rel)}", lambda: self.fs.exists(self.path(rel))))

    def _names(self, rel_dir: str) -> list[str]:
        """Entry names directly under ``rel_dir`` (empty when it does not exist)."""
        base = self.path(rel_dir)

        def listing() -> list[str]:
            try:
                return [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(base, detail=False)]
            except FileNotFoundError:
                return []

        self.fs.invalidate_cache()
        return sorted(self._retry(f"listing {base}", listing))

    # ---- run lock and table ownership -----------------------------------------------------------

    def lock(self, pipeline: str) -> SinkLock:
        return _Lease(self, f"{META_DIR}/{pipeline}/lock.json", pipeline)

    def _claim(self, pipeline: str, table: str) -> None:
        rel = f"{OWNERS}/{table}.json"
        doc = {"pipeline": pipeline, "claimed_at": datetime.now(timezone.utc).isoformat()}
        try:
            self._put(rel, json.dumps(doc).encode(), create=True)
        except FileExistsError:
            pass
        owner = self.owner(table)
        if owner != pipeline:
            raise OwnershipError(
                f"table {table!r} under {self.config.uri} belongs to pipeline {owner!r}: pipeline {pipeline!r} "
                "would replace its rows range by range",
                hint=f"write pipeline {pipeline!r} to another location (its own directory or bucket prefix), or, "
                f"if {owner!r} is gone for good, release its tables with `cdp-ray checkpoint clean` for {owner!r}",
            )

    def owner(self, table: str) -> str | None:
        """The pipeline that owns ``table`` here, if any."""
        return (self._read_json(f"{OWNERS}/{table}.json") or {}).get("pipeline")

    def release(self, pipeline: str) -> list[str]:
        released = []
        for name in self._names(OWNERS):
            if name.endswith(".json") and (self._read_json(f"{OWNERS}/{name}") or {}).get("pipeline") == pipeline:
                self._remove(f"{OWNERS}/{name}")
                released.append(name[: -len(".json")])
        return released

    # ---- preparing and finishing a run ----------------------------------------------------------

    def prepare(self, processors: list[Processor], pipeline: str | None = None) -> None:
        require_ledger_column(processors)
        for p in processors:
            if self.config.partitioning == "date" and self.config.date_column not in p.schema.names:
                raise SinkError(
                    f"Parquet sink {self.config.uri}: table {p.name!r} has no column {self.config.date_column!r} to partition by date",
                    hint="set date_column to a timestamp column every table has, or use partitioning: range",
                )
        if self.local:
            self._sweep_tmp([p.name for p in processors])
        if pipeline is None:
            return
        for p in processors:
            self._claim(pipeline, p.name)
        self.finish(pipeline)
        self._drop_superseded(pipeline)

    def finish(self, pipeline: str) -> None:
        """Finish commits whose manifest was written, drop those whose was not (no writer of the pipeline runs)."""
        for name in self._names(f"{META_DIR}/{pipeline}/staging"):
            self._resolve(pipeline, name)

    def _resolve(self, pipeline: str, name: str) -> None:
        base = f"{META_DIR}/{pipeline}/staging/{name}"
        plan = self._read_json(f"{base}/commit.json")
        if plan is not None:
            manifest = self._read_json(plan["manifest"])
            if manifest is not None and manifest.get("attempt") == plan["attempt"]:
                self._publish(plan)
        self._remove(base, recursive=True)

    def _publish(self, plan: dict) -> None:
        """Move a committed attempt's staged files into place and delete what it supersedes (idempotent)."""
        for staged, final in plan["moves"]:
            try:
                self._move(staged, final)
            except FileNotFoundError:
                pass  # moved by an earlier try
        for rel in plan["delete"]:
            self._remove(rel)

    def _drop_superseded(self, pipeline: str) -> None:
        """Delete manifests (and their files) inside another manifest's range: left by a killed commit."""
        records = self._records(pipeline)
        gone = _contained(records)
        for i in sorted(gone):
            r = records[i]
            container = next(c for j, c in enumerate(records) if j not in gone and c.start <= r.start and r.end <= c.end)
            keep = {f for fs in (self._read_json(self._manifest_of(container)) or {}).get("files", {}).values() for f in fs}
            doc = self._read_json(self._manifest_of(r)) or {}
            for rel in (f for fs in doc.get("files", {}).values() for f in fs):
                if rel not in keep:
                    self._remove(rel)
            self._remove(self._manifest_of(r))

    def _sweep_tmp(self, tables: list[str]) -> None:
        """Delete ``_tmp-`` files left by writers on this host that were killed mid-write."""
        patterns = [f"{t}/_tmp-*" for t in tables] + [f"{t}/*/_tmp-*" for t in tables] + [f"{META_DIR}/*/*/_tmp-*"]
        for pattern in patterns:
            for path in glob.glob(self.path(pattern)):
                host, _, rest = path.rsplit("/", 1)[-1][len("_tmp-"):].rpartition("-")
                host, _, pid = host.rpartition("-")
                if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
                    try:
                        os.remove(path)
                    except FileNotFoundError:
                        pass

    # ---- writing ranges -------------------------------------------------------------------------

    def open_range(
        self, start: int, end: int, processors: list[Processor], run: RunContext | None = None,
        replaces: tuple[tuple[int, int], ...] = (),
    ) -> RangeWriter:
        return _ParquetRange(self, start, end, processors, run, replaces)

    def _manifest(self, pipeline: str, start: int, end: int, config_hash: str) -> str:
        return f"{META_DIR}/{pipeline}/ranges/{range_name(start, end)}.{config_hash}.json"

    def _find_manifest(self, pipeline: str, start: int, end: int, config_hash: str) -> tuple[str, dict] | None:
        """``(path, document)`` of the manifest of ``[start, end]`` with ``config_hash`` (or a legacy one)."""
        for rel in (self._manifest(pipeline, start, end, config_hash), f"{META_DIR}/{pipeline}/ranges/{range_name(start, end)}.json"):
            doc = self._read_json(rel)
            if doc is not None and doc.get("config_hash") == config_hash:
                return rel, doc
        return None

    def _manifest_of(self, r: RangeRecord) -> str:
        if (r.pipeline, r.start, r.end, r.config_hash) in self._legacy:
            return f"{META_DIR}/{r.pipeline}/ranges/{range_name(r.start, r.end)}.json"
        return self._manifest(r.pipeline, r.start, r.end, r.config_hash)

    def _dead_letter(self, pipeline: str, start: int, end: int) -> str:
        return f"{META_DIR}/{pipeline}/dead_letters/{range_name(start, end)}.json"

    # ---- checkpoints ----------------------------------------------------------------------------

    def _records(self, pipeline: str) -> list[RangeRecord]:
        """Every manifest of ``pipeline``, from the names alone (legacy manifests without a hash are read)."""
        out = []
        for name in self._names(f"{META_DIR}/{pipeline}/ranges"):
            m = _MANIFEST.match(name)
            if m is None:
                continue
            start, end, config_hash = int(m.group(1)), int(m.group(2)), m.group(3)
            if config_hash is None:
                doc = self._read_json(f"{META_DIR}/{pipeline}/ranges/{name}") or {}
                out.append(RangeRecord(pipeline, start, end, doc.get("config_hash", "")))
                self._legacy.add((pipeline, start, end, out[-1].config_hash))
            else:
                out.append(RangeRecord(pipeline, start, end, config_hash))
        return out

    def committed(self, pipeline: str) -> list[RangeRecord]:
        records = self._records(pipeline)
        gone = _contained(records)
        return [r for i, r in enumerate(records) if i not in gone]

    def committed_detail(self, pipeline: str) -> list[RangeRecord]:
        out = []
        for r in self.committed(pipeline):
            doc = self._read_json(self._manifest_of(r)) or {}
            at = doc.get("committed_at")
            out.append(RangeRecord(r.pipeline, r.start, r.end, r.config_hash, {k: int(v) for k, v in (doc.get("rows") or {}).items()},
                                   datetime.fromisoformat(at) if at else None))
        return out

    def committed_files(self, pipeline: str, table: str) -> list[str]:
        """Paths (URLs on object storage) of ``table``'s files that belong to committed ranges."""
        ranges = {(r.start, r.end) for r in self.committed(pipeline)}
        base = self.path(table)
        self.fs.invalidate_cache()
        try:
            paths = self._retry(f"listing {base}", lambda: self.fs.find(base))
        except FileNotFoundError:
            return []
        out = []
        for p in sorted(paths):
            m = _DATA_FILE.search(p.rsplit("/", 1)[-1])
            if m and (int(m.group(1)), int(m.group(2))) in ranges:
                out.append(self.url(p[len(self.root) + 1:]) if p.startswith(self.root + "/") else p)
        return out

    def pipelines(self) -> list[str]:
        return [n for n in self._names(META_DIR) if not n.startswith("_") and self._is_dir(f"{META_DIR}/{n}")]

    def _is_dir(self, rel: str) -> bool:
        return bool(self._retry(f"checking {self.path(rel)}", lambda: self.fs.isdir(self.path(rel))))

    def discard(self, pipeline: str, records: list[RangeRecord]) -> None:
        for r in records:
            doc = self._read_json(self._manifest_of(r)) or {}
            self._remove(self._manifest_of(r))
            for rels in (doc.get("files") or {}).values():
                for rel in rels:
                    self._remove(rel)

    def forget(self, pipeline: str, records: list[RangeRecord] | None = None) -> int:
        records = self._records(pipeline) if records is None else records
        for r in records:
            self._remove(self._manifest_of(r))
        return len(records)

    def record_dead_letter(self, letter: DeadLetter) -> None:
        body = json.dumps(letter.to_json(), indent=1).encode()
        self._put(self._dead_letter(letter.pipeline, letter.start, letter.end), body)

    def dead_letters(self, pipeline: str) -> list[DeadLetter]:
        rel_dir = f"{META_DIR}/{pipeline}/dead_letters"
        docs = [self._read_json(f"{rel_dir}/{n}") for n in self._names(rel_dir) if n.endswith(".json")]
        return [DeadLetter.from_json(d) for d in docs if d is not None]

    def forget_dead_letters(self, pipeline: str) -> int:
        letters = self.dead_letters(pipeline)
        for d in letters:
            self._remove(self._dead_letter(pipeline, d.start, d.end))
        return len(letters)


class _ParquetRange(RangeWriter):
    """One range's commit in a :class:`ParquetSink` (see the module docstring for the protocol)."""

    def __init__(self, sink: ParquetSink, start: int, end: int, processors: list[Processor], run: RunContext | None,
                 replaces: tuple[tuple[int, int], ...]):
        self.sink, self.start, self.end, self.run = sink, start, end, run
        self.procs = {p.name: p for p in processors}
        cfg = sink.config
        self.codec = None if cfg.compression == "none" else cfg.compression
        self.attempt = uuid.uuid4().hex[:12]
        pipeline = run.pipeline if run else "_unrecorded"
        prefix = f"{range_name(start, end)}."
        for name in sink._names(f"{META_DIR}/{pipeline}/staging"):
            if name.startswith(prefix):  # an earlier attempt at this chunk: finish or drop it first
                sink._resolve(pipeline, name)
        self.staging = f"{META_DIR}/{pipeline}/staging/{prefix}{self.attempt}"
        self.writers: dict[str, tuple[pq.ParquetWriter, Any]] = {}
        self.buffers: dict[str, list[pa.Table]] = {}
        self.rows: dict[str, int] = {n: 0 for n in self.procs}
        self.superseded: list[tuple[int, int, str, dict]] = []
        self.sealed = False
        self.sources = self._sources(replaces) if run else []
        self.bounds = (min([start] + [s[0] for s in self.sources]), max([end] + [s[1] for s in self.sources]))
        self._carry(before=True)

    def _sources(self, replaces: tuple[tuple[int, int], ...]) -> list[tuple[int, int, str, dict]]:
        """Committed ranges whose rows outside this range this commit carries: the union's own manifest when
        an earlier attempt (or run) already committed it, else the replaced ranges that still exist."""
        assert self.run is not None
        lo = min([self.start] + [s for s, _ in replaces])
        hi = max([self.end] + [e for _, e in replaces])
        found = []
        for s, e in dict.fromkeys([*replaces, (lo, hi)]):
            hit = self.sink._find_manifest(self.run.pipeline, s, e, self.run.config_hash)
            if hit is not None:
                found.append((s, e, *hit))
        own = [f for f in found if (f[0], f[1]) == (lo, hi)]
        self.superseded = [f for f in found if (f[0], f[1]) != (lo, hi)] if own else []
        return own or found

    def _carry(self, *, before: bool) -> None:
        """Copy the sources' rows of ledgers before (or after) this range into the new files."""
        for _, _, _, doc in self.sources:
            for table, rels in (doc.get("files") or {}).items():
                proc = self.procs.get(table)
                if proc is None:
                    continue
                seq = proc.sequence_column
                for rel in rels:
                    try:
                        data = pq.read_table(self.sink.path(rel), filesystem=self.sink.fs, schema=proc.schema)
                    except FileNotFoundError:
                        continue
                    keep = pc.less(data[seq], self.start) if before else pc.greater(data[seq], self.end)
                    self.write({table: (proc, data.filter(keep))})

    def _parts(self, table: pa.Table) -> list[tuple[str | None, pa.Table]]:
        cfg = self.sink.config
        if cfg.partitioning == "range":
            return [(None, table)]
        days = pc.strftime(table[cfg.date_column], format="%Y-%m-%d")
        return [(d, table.filter(pc.equal(days, d))) for d in sorted(pc.unique(days).drop_null().to_pylist())]

    def write(self, tables: Tables) -> None:
        for name, (proc, table) in tables.items():
            if table.num_rows == 0:
                continue
            if table.schema != proc.schema:
                table = table.cast(proc.schema)
            self.rows[name] = self.rows.get(name, 0) + table.num_rows
            for date, part in self._parts(table):
                key = range_file(name, *self.bounds, date)
                buf = self.buffers.setdefault(key, [])
                buf.append(part)
                if sum(t.num_rows for t in buf) >= self.sink.config.row_group_rows or sum(t.nbytes for t in buf) >= BUFFER_BYTES:
                    self._flush(key, proc.schema)

    def _flush(self, key: str, schema: pa.Schema) -> None:
        parts = self.buffers.pop(key, [])
        if not parts:
            return
        if key not in self.writers:
            path = self.sink.path(f"{self.staging}/data/{key}")
            if self.sink.local:
                os.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
                f = None
                writer = pq.ParquetWriter(path, schema, compression=self.codec)
            else:
                f = self.sink.fs.open(path, "wb")
                writer = pq.ParquetWriter(f, schema, compression=self.codec)
            self.writers[key] = (writer, f)
        self.writers[key][0].write_table(pa.concat_tables(parts), row_group_size=self.sink.config.row_group_rows)

    def _close(self) -> None:
        for writer, f in self.writers.values():
            writer.close()
            if f is not None:
                f.close()

    def commit(self) -> dict[str, int]:
        sink = self.sink
        self._carry(before=False)
        for key in list(self.buffers):
            self._flush(key, self.procs[key.split("/", 1)[0]].schema)
        self._close()
        files: dict[str, list[str]] = {n: [] for n in self.procs}
        written: dict[str, int] = {n: 0 for n in self.procs}
        for key in sorted(self.writers):
            table = key.split("/", 1)[0]
            files[table].append(key)
            written[table] += int(sink._retry("stat", lambda key=key: sink.fs.size(sink.path(f"{self.staging}/data/{key}"))))
        moves = [[f"{self.staging}/data/{k}", k] for k in sorted(self.writers)]
        new_files = set(self.writers)
        if self.run is None:
            sink._publish({"moves": moves, "delete": []})
            sink._remove(self.staging, recursive=True)
            return written
        run, (lo, hi) = self.run, self.bounds
        manifest = sink._manifest(run.pipeline, lo, hi, run.config_hash)
        replaced = self.sources + self.superseded
        delete = [rel for *_, doc in replaced for rels in (doc.get("files") or {}).values() for rel in rels if rel not in new_files]
        delete += [rel for _, _, rel, _ in replaced if rel != manifest]
        delete += [sink._dead_letter(run.pipeline, s, e) for s, e in sorted(run.dead_letter_ranges) if lo <= s and e <= hi]
        plan = {"manifest": manifest, "attempt": self.attempt, "moves": moves, "delete": sorted(set(delete))}
        sink._put(f"{self.staging}/commit.json", json.dumps(plan).encode())
        self.sealed = True  # from here on the manifest may exist: the next run finishes or drops the commit
        doc = {
            **RangeRecord(run.pipeline, lo, hi, run.config_hash, dict(self.rows), datetime.now(timezone.utc)).to_json(),
            "chunk": [self.start, self.end], "files": files, "attempt": self.attempt,
        }
        sink._put(manifest, json.dumps(doc, indent=1).encode())
        sink._publish(plan)
        sink._remove(self.staging, recursive=True)
        return written

    def abort(self) -> None:
        if self.sealed:
            return
        try:
            self._close()
        except Exception:  # a half-written file of an aborted range: its staging directory goes anyway
            pass
        self.sink._remove(self.staging, recursive=True)


class _Lease(SinkLock):
    """A run lock as a lease file renewed by the driver; a lease past its expiry, or held by a dead process
    of this host, is taken over."""

    def __init__(self, sink: ParquetSink, rel: str, pipeline: str):
        self.sink, self.rel, self.pipeline = sink, rel, pipeline
        self.id = uuid.uuid4().hex
        self._mutex = threading.Lock()
        doc = self._doc()
        try:
            sink._put(rel, doc, create=True)
        except FileExistsError:
            held = sink._read_json(rel) or {}
            if not self._stale(held):
                raise PipelineBusyError(
                    f"pipeline {pipeline!r} is already running against {sink.config.uri}: run {held.get('run', '?')} "
                    f"on {held.get('host', '?')} (pid {held.get('pid', '?')}) holds its lease until {held.get('expires_at', '?')}"
                ) from None
            sink._put(rel, doc)
        if (sink._read_json(rel) or {}).get("run") != self.id:
            raise PipelineBusyError(f"pipeline {pipeline!r}: another run took the lease on {sink.config.uri} at the same time")

    def _doc(self) -> bytes:
        now = time.time()
        return json.dumps({
            "run": self.id, "host": socket.gethostname(), "pid": os.getpid(),
            "acquired_at": datetime.fromtimestamp(now, timezone.utc).isoformat(),
            "expires_at": datetime.fromtimestamp(now + LOCK_TTL_S, timezone.utc).isoformat(),
        }).encode()

    @staticmethod
    def _stale(held: dict) -> bool:
        try:
            if datetime.fromisoformat(held["expires_at"]) < datetime.now(timezone.utc):
                return True
        except (KeyError, ValueError):
            return True
        return held.get("host") == socket.gethostname() and isinstance(held.get("pid"), int) and not _alive(held["pid"])

    def renew(self) -> None:
        with self._mutex:
            if (self.sink._read_json(self.rel) or {}).get("run") == self.id:
                self.sink._put(self.rel, self._doc())

    def release(self) -> None:
        with self._mutex:
            if (self.sink._read_json(self.rel) or {}).get("run") == self.id:
                self.sink._remove(self.rel)
