"""Parquet sink: files per table per ledger range, on local disk or object storage.

Layout under ``uri``::

    {table}/{start:010d}-{end:010d}.parquet                      partitioning: range
    {table}/date=YYYY-MM-DD/{start:010d}-{end:010d}.parquet      partitioning: date (hive style)
    _cdp_ray/{pipeline}/ranges/{start:010d}-{end:010d}.json      commit manifest of a range
    _cdp_ray/{pipeline}/dead_letters/{start:010d}-{end:010d}.json

Each file appears whole: on local disk it is written under a ``_tmp-`` name and renamed, on object
storage it is one PUT. The range's manifest (files, rows, config hash) is written after all its
files: it is the commit point. A rerun of a range writes the same file names, so it replaces its
files instead of adding new ones. Readers of the directory tree (``pyarrow.dataset``, DuckDB,
Spark) skip the ``_``-prefixed names.
"""

from __future__ import annotations

import glob
import io
import json
import os
import socket
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem
from pydantic import Field

from cdp_ray.errors import SinkError
from cdp_ray.lake.store import url_to_filesystem
from cdp_ray.processors.base import Processor
from cdp_ray.sinks.base import DeadLetter, RangeRecord, RunContext, Sink, SinkConfig, sink, with_retries

META_DIR = "_cdp_ray"


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

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def _retry(self, what: str, fn):
        try:
            return with_retries(
                what, fn, retries=self.config.retries, backoff_s=self.config.retry_backoff_s,
                transient=(OSError,), permanent=(FileNotFoundError, PermissionError, IsADirectoryError),
            )
        except FileNotFoundError:
            raise
        except PermissionError as exc:
            raise SinkError(f"{what}: permission denied: {exc}", hint="check the credentials and the bucket's policy") from exc
        except OSError as exc:
            raise SinkError(f"{what} failed after {self.config.retries + 1} attempts: {exc}") from exc

    def _put(self, rel: str, write: Callable[[Any], None]) -> int:
        """Make ``rel`` appear whole: tmp file + rename locally, a single PUT on object storage.

        ``write(target)`` writes the content to ``target``, a local path or a binary file object;
        returns the bytes written.
        """
        final = self.path(rel)

        def put() -> int:
            if self.local:
                parent = final.rsplit("/", 1)[0]
                os.makedirs(parent, exist_ok=True)
                tmp = f"{parent}/_tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"
                try:
                    write(tmp)
                    size = os.path.getsize(tmp)
                    os.replace(tmp, final)
                finally:
                    if os.path.exists(tmp):
                        os.remove(tmp)
                return size
            buf = io.BytesIO()
            write(buf)
            self.fs.pipe_file(final, buf.getvalue())
            return buf.tell()

        try:
            return self._retry(f"writing {final}", put)
        except FileNotFoundError as exc:
            raise SinkError(f"writing {final} failed: {exc}", hint="check that the bucket (or parent directory) exists") from exc

    def prepare(self, processors: list[Processor]) -> None:
        if self.local:
            self._sweep_tmp([p.name for p in processors])
        if self.config.partitioning == "date":
            for p in processors:
                if self.config.date_column not in p.schema.names:
                    raise SinkError(
                        f"Parquet sink {self.config.uri}: table {p.name!r} has no column {self.config.date_column!r} to partition by date",
                        hint="set date_column to a timestamp column every table has, or use partitioning: range",
                    )

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

    def _parts(self, table: pa.Table) -> list[tuple[str | None, pa.Table]]:
        if self.config.partitioning == "range":
            return [(None, table)]
        if table.num_rows == 0:
            return []
        days = pc.strftime(table[self.config.date_column], format="%Y-%m-%d")
        return [(d, table.filter(pc.equal(days, d))) for d in sorted(pc.unique(days).drop_null().to_pylist())]

    def write_range(
        self, start: int, end: int, tables: dict[str, tuple[Processor, pa.Table]], run: RunContext | None = None
    ) -> dict[str, int]:
        codec = None if self.config.compression == "none" else self.config.compression
        written: dict[str, int] = {}
        files: dict[str, list[str]] = {}
        for name, (proc, table) in tables.items():
            if table.schema != proc.schema:
                table = table.cast(proc.schema)
            written[name] = 0
            files[name] = []
            for date, part in self._parts(table):
                rel = range_file(name, start, end, date)
                written[name] += self._put(
                    rel, lambda f, part=part: pq.write_table(part, f, compression=codec, row_group_size=self.config.row_group_rows)
                )
                files[name].append(rel)
        if run is not None:
            record = RangeRecord(
                run.pipeline, start, end, run.config_hash,
                {n: t.num_rows for n, (_, t) in tables.items()}, datetime.now(timezone.utc),
            )
            doc = {**record.to_json(), "files": files}
            self._put(self._manifest(run.pipeline, start, end), _bytes_writer(json.dumps(doc, indent=1).encode()))
            if (start, end) in run.dead_letter_ranges:
                self._remove(self._dead_letter(run.pipeline, start, end))
        return written

    def _manifest(self, pipeline: str, start: int, end: int) -> str:
        return f"{META_DIR}/{pipeline}/ranges/{range_name(start, end)}.json"

    def _dead_letter(self, pipeline: str, start: int, end: int) -> str:
        return f"{META_DIR}/{pipeline}/dead_letters/{range_name(start, end)}.json"

    def _remove(self, rel: str) -> None:
        def rm() -> None:
            try:
                self.fs.rm(self.path(rel))
            except FileNotFoundError:
                pass

        self._retry(f"deleting {self.path(rel)}", rm)

    def _read_docs(self, rel_dir: str) -> list[dict]:
        base = self.path(rel_dir)

        def listing() -> list[str]:
            try:
                return sorted(p for p in self.fs.ls(base, detail=False) if p.endswith(".json"))
            except FileNotFoundError:
                return []

        self.fs.invalidate_cache()
        paths = self._retry(f"listing {base}", listing)
        # one concurrent batch on object storage; a failed read is retried on its own
        contents = self.fs.cat(paths, on_error="return") if paths else {}
        docs = []
        for p, raw in sorted(contents.items()):
            if isinstance(raw, BaseException):
                raw = self._retry(f"reading {p}", lambda p=p: self.fs.cat_file(p))
            try:
                docs.append(json.loads(raw))
            except ValueError as exc:
                raise SinkError(f"checkpoint file {p} is not valid JSON: {exc}", hint="delete it; the range is then rerun on --resume") from exc
        return docs

    def committed(self, pipeline: str) -> list[RangeRecord]:
        return [RangeRecord.from_json(d) for d in self._read_docs(f"{META_DIR}/{pipeline}/ranges")]

    def pipelines(self) -> list[str]:
        base = self.path(META_DIR)
        self.fs.invalidate_cache()
        try:
            entries = self._retry(f"listing {base}", lambda: self.fs.ls(base, detail=True))
        except FileNotFoundError:
            return []
        return sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e["type"] == "directory")

    def discard(self, pipeline: str, records: list[RangeRecord]) -> None:
        docs = {(d["start"], d["end"]): d for d in self._read_docs(f"{META_DIR}/{pipeline}/ranges")}
        for r in records:
            doc = docs.get((r.start, r.end), {})
            self._remove(self._manifest(pipeline, r.start, r.end))
            for rels in (doc.get("files") or {}).values():
                for rel in rels:
                    self._remove(rel)

    def forget(self, pipeline: str, records: list[RangeRecord] | None = None) -> int:
        records = self.committed(pipeline) if records is None else records
        for r in records:
            self._remove(self._manifest(pipeline, r.start, r.end))
        return len(records)

    def record_dead_letter(self, letter: DeadLetter) -> None:
        body = json.dumps(letter.to_json(), indent=1).encode()
        self._put(self._dead_letter(letter.pipeline, letter.start, letter.end), _bytes_writer(body))

    def dead_letters(self, pipeline: str) -> list[DeadLetter]:
        return [DeadLetter.from_json(d) for d in self._read_docs(f"{META_DIR}/{pipeline}/dead_letters")]

    def forget_dead_letters(self, pipeline: str) -> int:
        letters = self.dead_letters(pipeline)
        for d in letters:
            self._remove(self._dead_letter(pipeline, d.start, d.end))
        return len(letters)
