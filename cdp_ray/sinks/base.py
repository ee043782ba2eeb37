"""The sink extension point.

A sink commits the tables of one ledger range at a time, atomically: a :class:`RangeWriter` receives
the range's rows in batches (a chunk is decoded a batch at a time, so memory does not grow with the
chunk) and ``commit`` makes them visible all at once, replacing any rows an earlier run wrote for the
same ledgers. Given a :class:`RunContext`, the sink records the range as committed (a
:class:`RangeRecord`) in the same commit as its rows, so the checkpoint never claims a range the data
does not hold. Every sink also keeps the dead-letter records of ranges that were quarantined.

A sink's tables belong to one pipeline (``prepare`` claims them): two pipelines writing the same table
would replace each other's rows by ledger range. A run holds its pipeline's lock in every sink
(``lock``), so two runs of one pipeline never interleave their commits.
"""

from __future__ import annotations

import difflib

import os
import random
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, TypeVar

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from cdp_ray.errors import ConfigError, SinkError, UnknownComponentError
from cdp_ray.processors.base import Processor

T = TypeVar("T")


class SinkConfig(BaseModel):
    """Base of every sink's configuration; ``type`` selects the sink."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    type: str
    retries: int = Field(3, ge=0, description="retries of a range commit after a transient storage error")
    retry_backoff_s: float = Field(0.5, ge=0, description="first retry delay; doubles on each retry (with jitter)")

    def fingerprint(self) -> dict[str, Any]:
        """Options that change what the sink writes (part of the checkpoint's config hash)."""
        return {}

    def describe(self) -> str:
        """Where the sink writes, without secrets."""
        return self.type


@dataclass(frozen=True)
class RunContext:
    """What a sink needs to record a committed range: pipeline name and config hash."""

    pipeline: str
    config_hash: str
    dead_letter_ranges: frozenset[tuple[int, int]] = frozenset()


@dataclass(frozen=True)
class RangeRecord:
    """A committed ledger range of a pipeline, as recorded by one sink."""

    pipeline: str
    start: int
    end: int
    config_hash: str
    rows: dict[str, int] = field(default_factory=dict)
    committed_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["committed_at"] = self.committed_at.isoformat() if self.committed_at else None
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "RangeRecord":
        at = doc.get("committed_at")
        return cls(
            doc["pipeline"], int(doc["start"]), int(doc["end"]), doc["config_hash"],
            {k: int(v) for k, v in (doc.get("rows") or {}).items()},
            datetime.fromisoformat(at) if at else None,
        )


@dataclass(frozen=True)
class DeadLetter:
    """A ledger range that was quarantined: which file and ledger failed, and why."""

    pipeline: str
    start: int
    end: int
    ledger: int | None
    key: str | None
    error: str
    message: str
    at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["at"] = self.at.isoformat()
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "DeadLetter":
        return cls(
            doc["pipeline"], int(doc["start"]), int(doc["end"]),
            None if doc.get("ledger") is None else int(doc["ledger"]), doc.get("key"),
            doc["error"], doc["message"], datetime.fromisoformat(doc["at"]),
        )


def require_ledger_column(processors: list[Processor]) -> None:
    """Sinks replace a range's rows by each table's ledger column: refuse a table without one."""
    for p in processors:
        if p.sequence_column is None:
            raise SinkError(
                f"table {p.name!r} has no ledger column, so a replayed range cannot replace its rows",
                hint="declare ledger_column= in the processor (a column holding each row's ledger sequence)",
            )


class TableSpool:
    """A range's tables spooled to local Arrow IPC files while its chunk runs (one stream per table, in
    ``schema(processor)``), so that a sink commits them at the end without holding them in memory;
    ``rows`` counts each table's rows."""

    def __init__(self, names: list[str], prefix: str, schema: Callable[[Processor], pa.Schema] = lambda p: p.schema):
        self.dir = tempfile.TemporaryDirectory(prefix=prefix)
        self.schema = schema
        self.rows = {n: 0 for n in names}
        self._writers: dict[str, tuple[pa.NativeFile, pa.ipc.RecordBatchStreamWriter]] = {}
        self._open = True

    def write(self, tables: Tables) -> None:
        for name, (proc, table) in tables.items():
            if table.num_rows == 0:
                continue
            target = self.schema(proc)
            if name not in self._writers:
                f = pa.OSFile(os.path.join(self.dir.name, f"{name}.arrow"), "wb")
                self._writers[name] = (f, pa.ipc.new_stream(f, target))
            table = table.cast(proc.schema)
            self._writers[name][1].write_table(table if target is proc.schema else table.cast(target))
            self.rows[name] += table.num_rows

    def close(self) -> None:
        """End the streams (once); their files stay until :meth:`cleanup`."""
        if self._open:
            self._open = False
            for f, writer in self._writers.values():
                writer.close()
                f.close()

    def path(self, name: str) -> str | None:
        """The file of ``name``'s rows; None when it had none."""
        return os.path.join(self.dir.name, f"{name}.arrow") if name in self._writers else None

    def read(self, name: str) -> pa.Table | None:
        """``name``'s rows; None when it had none."""
        path = self.path(name)
        if path is None:
            return None
        with pa.memory_map(path) as source:
            return pa.ipc.open_stream(source).read_all()

    def cleanup(self) -> None:
        self.dir.cleanup()


def with_retries(
    what: str,
    fn: Callable[[], T],
    *,
    retries: int,
    backoff_s: float,
    transient: tuple[type[BaseException], ...],
    permanent: tuple[type[BaseException], ...] = (),
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Call ``fn``; on a ``transient`` error wait (exponential backoff, jitter) and call it again.

    The last error is re-raised after ``retries`` retries; ``permanent`` errors are never retried.
    """
    delay = backoff_s
    for attempt in range(retries + 1):
        try:
            return fn()
        except permanent:
            raise
        except transient as exc:
            if attempt == retries:
                raise
            if on_retry:
                on_retry(exc)
            time.sleep(delay * (0.5 + random.random()))
            delay *= 2
    raise AssertionError(what)


Tables = dict[str, tuple[Processor, pa.Table]]


class RangeWriter(ABC):
    """One ledger range's output in one sink: ``write`` batches of tables, then ``commit`` or ``abort``."""

    @abstractmethod
    def write(self, tables: Tables) -> None:
        """Add rows to the range (every processor's table for the same ledgers)."""

    @abstractmethod
    def commit(self) -> dict[str, int]:
        """Make the range's rows visible atomically, replacing earlier rows of its ledgers; bytes per table."""

    @abstractmethod
    def abort(self) -> None:
        """Drop everything written; the sink is as it was."""


class SinkLock(ABC):
    """A pipeline's run lock in one sink, held for the whole run."""

    def renew(self) -> None:
        """Keep a lease-based lock alive (called every few seconds by the run)."""

    @abstractmethod
    def release(self) -> None:
        """Let the next run in."""


class Sink(ABC):
    """Writes per-range tables and keeps the checkpoint of the ranges it committed.

    Instances live on Ray workers, one per worker, and on the driver for planning and checkpoints.
    """

    config: SinkConfig

    def __init__(self, config: SinkConfig):
        self.config = config

    def prepare(self, processors: list[Processor], pipeline: str | None = None) -> None:
        """Once per run, on the driver, before any range: create or check the destination, claim its
        tables for ``pipeline`` (:class:`~cdp_ray.errors.OwnershipError` when another pipeline owns one)
        and finish or undo commits a killed run left half done."""

    @abstractmethod
    def lock(self, pipeline: str) -> SinkLock:
        """Take ``pipeline``'s run lock; :class:`~cdp_ray.errors.PipelineBusyError` when a run holds it."""

    @abstractmethod
    def open_range(
        self, start: int, end: int, processors: list[Processor], run: RunContext | None = None,
        replaces: tuple[tuple[int, int], ...] = (),
    ) -> RangeWriter:
        """Start writing ``[start, end]``. With ``run``, its commit records the range and drops its dead
        letter. ``replaces`` lists the committed ranges of this sink overlapping it, as planned: rows of
        theirs outside ``[start, end]`` survive the commit."""

    def write_range(self, start: int, end: int, tables: Tables, run: RunContext | None = None) -> dict[str, int]:
        """Write every table of ``[start, end]`` in one commit; return bytes written per table."""
        writer = self.open_range(start, end, [p for p, _ in tables.values()], run, self.overlapping(run, start, end))
        try:
            writer.write(tables)
            return writer.commit()
        except BaseException:
            writer.abort()
            raise

    def overlapping(self, run: RunContext | None, start: int, end: int) -> tuple[tuple[int, int], ...]:
        """Committed ranges of ``run``'s pipeline overlapping ``[start, end]`` (for one-off writes)."""
        if run is None:
            return ()
        return tuple((r.start, r.end) for r in self.committed(run.pipeline) if r.start <= end and r.end >= start)

    def finish(self, pipeline: str) -> None:
        """At the end of a run, on the driver: remove what killed or retried writers left behind."""

    @abstractmethod
    def committed(self, pipeline: str) -> list[RangeRecord]:
        """The ranges ``pipeline`` committed to this sink, by start ledger (rows and times may be left
        out where reading them would cost a request per range; :meth:`committed_detail` has them)."""

    def committed_detail(self, pipeline: str) -> list[RangeRecord]:
        """:meth:`committed` with every record's rows and commit time."""
        return self.committed(pipeline)

    @abstractmethod
    def pipelines(self) -> list[str]:
        """Pipelines with a checkpoint or dead letters in this sink."""

    @abstractmethod
    def discard(self, pipeline: str, records: list[RangeRecord]) -> None:
        """Delete ranges written by an earlier run (rows and checkpoint records)."""

    @abstractmethod
    def forget(self, pipeline: str, records: list[RangeRecord] | None = None) -> int:
        """Delete checkpoint records (all of ``pipeline``'s when ``records`` is None), keeping the rows."""

    @abstractmethod
    def release(self, pipeline: str) -> list[str]:
        """Give up ``pipeline``'s claims on tables; returns the tables released."""

    @abstractmethod
    def record_dead_letter(self, letter: DeadLetter) -> None:
        """Store the dead-letter record of a quarantined range (replacing one for the same range)."""

    @abstractmethod
    def dead_letters(self, pipeline: str) -> list[DeadLetter]:
        """The open dead-letter records of ``pipeline``."""

    @abstractmethod
    def forget_dead_letters(self, pipeline: str) -> int:
        """Delete ``pipeline``'s dead-letter records."""

    def close(self) -> None:
        """Release connections."""


SINKS: dict[str, tuple[type[SinkConfig], type[Sink]]] = {}


def sink(name: str, config: type[SinkConfig]) -> Callable[[type[Sink]], type[Sink]]:
    """Register a sink class under ``name`` with its config model."""

    def register(cls: type[Sink]) -> type[Sink]:
        SINKS[name] = (config, cls)
        return cls

    return register


def sink_config(doc: dict | SinkConfig) -> SinkConfig:
    """Validate a sink config document against its type's model."""
    if isinstance(doc, SinkConfig):
        return doc
    kind = doc.get("type")
    if kind is None:
        near = difflib.get_close_matches("type", [k for k in doc if isinstance(k, str)], n=1, cutoff=0.5)
        raise ConfigError("the sink has no `type`" + (f" ({near[0]!r}: a misspelling of `type`?)" if near else ""),
                          hint=f"give `type:` ({', '.join(sorted(SINKS))}), or write the sink as a URI: "
                               "parquet://out, postgresql://host/db")
    if kind not in SINKS:
        raise UnknownComponentError("sink", str(kind), list(SINKS))
    return SINKS[kind][0].model_validate(doc)


def make_sink(config: dict | SinkConfig) -> Sink:
    cfg = sink_config(config)
    return SINKS[cfg.type][1](cfg)
