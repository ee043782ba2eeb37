"""Run pipelines on Ray Data, and the same processing in-process for notebooks and tests.

A pipeline's range is cut into aligned chunks of ``ledgers_per_task`` ledgers. Each chunk is read,
decoded once, run through every processor and written to every sink by one Ray worker; the sinks
commit a chunk atomically together with its checkpoint record, so a chunk is either fully written
and recorded or not at all. ``resume`` skips the chunks every sink recorded; a chunk retried after a
worker died, or rerun, replaces its rows instead of duplicating them.

A pipeline's ``where`` filter is pushed down into decoding: a ledger whose raw XDR cannot hold a
matching transaction is read (and verified by the lake) but never decoded, and every processor sees
only the matching transactions.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Literal

import pyarrow as pa

from cdp_ray.collector import freeze_startup_objects
from cdp_ray.errors import CdpRayError, CorruptLedgerFileError, LedgerIntegrityError, ProcessingError
from cdp_ray.lake import LedgerLake
from cdp_ray.pipeline.checkpoint import Checkpoint
from cdp_ray.pipeline.config import PipelineConfig
from cdp_ray.pipeline.dataset import decode_raw
from cdp_ray.pipeline.datasource import plan_chunks
from cdp_ray.processors.base import Processor, get_processor
from cdp_ray.processors.filters import PushDownStats, TransactionFilter, select
from cdp_ray.sinks.base import DeadLetter, RunContext, make_sink
from cdp_ray.xdr import Ledger


def decode_range(
    lake: LedgerLake,
    start: int,
    end: int,
    passphrase: str,
    *,
    verify: bool = True,
    where: TransactionFilter | None = None,
    stats: PushDownStats | None = None,
    ends: dict | None = None,
) -> tuple[list[Ledger], int]:
    """Read and decode ``[start, end]``; return the ledgers and the XDR bytes read.

    With ``where``, a ledger whose raw XDR cannot match is read but not decoded, and the decoded
    ledgers are narrowed to their matching transactions (:func:`~cdp_ray.processors.filters.select`):
    ledgers without any are dropped. ``stats`` accumulates the ledgers read, decoded and kept;
    ``ends`` receives the range's ``previous_hash`` (of its first ledger) and ``hash`` (of its last).
    Decoding errors name the file and the ledger sequence.
    """
    active = where is not None and not where.empty
    compiled = where.compile(passphrase) if active else None
    stats = stats if stats is not None else PushDownStats()
    ledgers, nbytes, read = [], 0, 0
    for raw in lake.read_range(start, end, verify=verify):
        if ends is not None:
            ends.setdefault("previous_hash", raw.previous_hash.hex())
            ends["hash"] = raw.hash.hex()
        read += 1
        nbytes += len(raw.xdr)
        if compiled is None or compiled.may_match(raw.xdr):
            ledgers.append(decode_raw(raw.xdr, passphrase, key=raw.key, sequence=raw.sequence, verify=verify))
    stats.ledgers += read
    stats.decoded += len(ledgers)
    if active:
        ledgers = select(ledgers, where)
    stats.kept += len(ledgers)
    return ledgers, nbytes


def run_processors(ledgers: list[Ledger], steps: Iterable[tuple[Processor, dict]]) -> dict[str, tuple[Processor, pa.Table]]:
    """Every processor over the same decoded ledgers: ``{name: (processor, table)}``."""
    return {p.name: (p, p.process(ledgers, cfg)) for p, cfg in steps}


QUARANTINABLE = (CorruptLedgerFileError, LedgerIntegrityError)
# first ledger of a SEP-54 object key: ``.../FC3D4709--63092982[-63092985].xdr.zst``
_KEY_LEDGER = re.compile(r"--(\d+)(?:-\d+)?\.xdr")


def _empty_tables(steps: Iterable[tuple[Processor, dict]]) -> dict[str, int]:
    return {p.name: 0 for p, _ in steps}


class ChunkWorker:
    """Processes chunks: read, decode, process, write every sink. One per Ray actor (or in-process).

    A chunk whose ledger file is corrupt or fails verification is quarantined when the pipeline's
    ``on_error`` is ``quarantine``: a dead-letter record goes to every sink and nothing of the chunk is
    written. Other errors propagate and fail the run. Retrying a chunk (after a worker died) is safe:
    each sink commit of a range is atomic and replaces the range's rows.
    """

    def __init__(self, pipeline_json: str, run_json: str | None = None, worker_process: bool = False):
        self.cfg = PipelineConfig.model_validate_json(pipeline_json)
        self.lake = self.cfg.source.open()
        self.steps = [(get_processor(s.name), s.config) for s in self.cfg.processors]
        self.sinks = [make_sink(s) for s in self.cfg.sinks]
        self.run = _run_context_from_json(run_json) if run_json else None
        if worker_process:  # a Ray actor's own process, not the caller's interpreter
            freeze_startup_objects()

    def process(self, start: int, end: int) -> dict:
        t0 = time.perf_counter()
        src = self.cfg.source
        stats = PushDownStats()
        ends: dict = {}
        try:
            ledgers, nbytes = decode_range(
                self.lake, start, end, src.network_passphrase, verify=src.verify, where=self.cfg.where, stats=stats,
                ends=ends,
            )
        except QUARANTINABLE as exc:
            if self.cfg.options.on_error != "quarantine":
                raise
            key = getattr(exc, "key", None)
            ledger = getattr(exc, "sequence", None)
            if ledger is None and key:
                m = _KEY_LEDGER.search(key)
                ledger = int(m.group(1)) if m else None
            letter = DeadLetter(self.cfg.name, start, end, ledger, key, type(exc).__name__, exc.message)
            for s in self.sinks:
                s.record_dead_letter(letter)
            return _row(start, end, "quarantined", 0, 0, _empty_tables(self.steps), 0, time.perf_counter() - t0, letter)
        tables = run_processors(ledgers, self.steps)
        written = 0
        for s in self.sinks:
            written += sum(s.write_range(start, end, tables, self.run).values())
        rows = {n: t.num_rows for n, (_, t) in tables.items()}
        return _row(
            start, end, "committed", stats.ledgers, nbytes, rows, written, time.perf_counter() - t0,
            decoded=stats.decoded, ends=ends,
        )

    def __call__(self, batch: dict) -> dict:
        """Ray Data entry point. An error comes back as a ``failed`` row carrying it, which the driver raises
        again: Ray Data would wrap it and drop it from the exception chain. Exceptions other than
        :class:`CdpRayError` come back as :class:`ProcessingError` naming the range, with their traceback."""
        results = []
        for s, e in zip(batch["start"], batch["end"]):
            try:
                results.append(self.process(int(s), int(e)))
            except Exception as exc:
                error = exc if isinstance(exc, CdpRayError) else ProcessingError(int(s), int(e), exc)
                failed = _row(int(s), int(e), "failed", 0, 0, _empty_tables(self.steps), 0, 0.0)
                results.append({**failed, "exception": _pack_error(error)})
                break
        return {k: [r.get(k) for r in results] for k in {**results[0], "exception": None}}


def _pack_error(exc: CdpRayError) -> str:
    """``exc`` as text that survives a Ray Data row (its attributes kept, its ``__init__`` not rerun)."""
    return base64.b64encode(pickle.dumps((type(exc), exc.args, exc.__dict__))).decode()


def _unpack_error(text: str) -> CdpRayError:
    """The error :func:`_pack_error` packed (text from this run's own workers)."""
    cls, args, attrs = pickle.loads(base64.b64decode(text))
    exc = cls.__new__(cls)
    Exception.__init__(exc, *args)
    exc.__dict__.update(attrs)
    return exc


def _row(
    start: int, end: int, status: str, ledgers: int, xdr_bytes: int, rows: dict[str, int], written: int,
    seconds: float, letter: DeadLetter | None = None, *, decoded: int | None = None, ends: dict | None = None,
) -> dict:
    return {
        "start": start,
        "end": end,
        "status": status,
        "ledgers": ledgers,
        "ledgers_decoded": ledgers if decoded is None else decoded,
        "xdr_bytes": xdr_bytes,
        "rows": sum(rows.values()),
        "rows_by_table": rows,
        "bytes_written": written,
        "seconds": seconds,
        "error": letter.error if letter else None,
        "error_message": letter.message if letter else None,
        "error_ledger": letter.ledger if letter else None,
        "error_key": letter.key if letter else None,
        "worker_pid": os.getpid(),
        "previous_hash": (ends or {}).get("previous_hash"),
        "hash": (ends or {}).get("hash"),
    }


def _run_context_json(ctx: RunContext) -> str:
    return json.dumps({"pipeline": ctx.pipeline, "config_hash": ctx.config_hash, "dead_letter_ranges": sorted(ctx.dead_letter_ranges)})


def _run_context_from_json(doc: str) -> RunContext:
    d = json.loads(doc)
    return RunContext(d["pipeline"], d["config_hash"], frozenset(tuple(r) for r in d["dead_letter_ranges"]))


@dataclass
class RunSummary:
    """What a run did, summed over its chunks: ``ledgers`` read, of which ``ledgers_decoded`` were decoded
    (fewer than read when the pipeline's ``where`` filter skips ledgers that cannot match)."""

    pipeline: str
    chunks: int = 0
    ledgers: int = 0
    ledgers_decoded: int = 0
    xdr_bytes: int = 0
    rows_by_table: dict[str, int] = field(default_factory=dict)
    bytes_written: int = 0
    wall_seconds: float = 0.0
    config_hash: str = ""
    skipped_chunks: int = 0
    discarded_stale: int = 0
    quarantined: list[DeadLetter] = field(default_factory=list)

    def add(self, row: dict) -> None:
        self.chunks += 1
        if row.get("status") == "quarantined":
            self.quarantined.append(
                DeadLetter(
                    self.pipeline, int(row["start"]), int(row["end"]),
                    None if row.get("error_ledger") is None else int(row["error_ledger"]),
                    row.get("error_key"), row["error"], row["error_message"],
                )
            )
            return
        self.ledgers += int(row["ledgers"])
        self.ledgers_decoded += int(row.get("ledgers_decoded", row["ledgers"]))
        self.xdr_bytes += int(row["xdr_bytes"])
        self.bytes_written += int(row["bytes_written"])
        for k, v in row["rows_by_table"].items():
            if v is not None:
                self.rows_by_table[k] = self.rows_by_table.get(k, 0) + int(v)


def plan_run(cfg: PipelineConfig, *, resume: bool = False, force: bool = False) -> tuple[list[tuple[int, int]], RunContext, RunSummary]:
    """On the driver: prepare the sinks, check the checkpoint, and list the chunks still to run.

    Raises :class:`CheckpointMismatchError` when the sinks hold ranges of this pipeline written with
    another config and ``force`` is off.
    """
    src = cfg.source
    chunks = plan_chunks(src.start, src.end, cfg.options.ledgers_per_task)
    processors = [get_processor(s.name) for s in cfg.processors]
    sinks = [make_sink(s) for s in cfg.sinks]
    try:
        for s in sinks:
            s.prepare(processors)
        ckpt = Checkpoint.load(cfg, sinks)
        discarded = ckpt.check(force=force, start=src.start, end=src.end)
        done = ckpt.done() if resume else set()
        ctx = RunContext(cfg.name, ckpt.hash, ckpt.dead_letter_ranges())
    finally:
        for s in sinks:
            s.close()
    todo = [c for c in chunks if c not in done]
    summary = RunSummary(cfg.name, config_hash=ctx.config_hash, skipped_chunks=len(chunks) - len(todo), discarded_stale=discarded)
    return todo, ctx, summary


def run_pipeline(
    cfg: PipelineConfig,
    *,
    on_chunk: Callable[[dict], None] | None = None,
    resume: bool = False,
    force: bool = False,
    engine: Literal["ray", "local"] = "ray",
) -> RunSummary:
    """Run ``cfg``: on the current Ray cluster (started locally if none is connected), or in-process.

    With ``resume``, ranges every sink already committed with the same config are skipped. A
    changed config against an existing checkpoint is refused unless ``force``. A Ray actor that dies
    mid-range is restarted and its chunk retried: Ray Data's actor pool defaults to
    ``max_restarts=-1`` and ``max_task_retries=-1``, and a retried chunk replaces its rows.

    With the source's ``verify``, the hash chain is checked across chunks too, as they come back: a
    chunk whose first ledger does not chain to the previous chunk's last raises
    :class:`LedgerIntegrityError` (both chunks are written by then; ranges skipped by ``resume`` were
    checked against their neighbours when they ran).
    """
    t0 = time.perf_counter()
    chunks, ctx, summary = plan_run(cfg, resume=resume, force=force)
    args = {"pipeline_json": cfg.model_dump_json(), "run_json": _run_context_json(ctx)}
    if not chunks:
        rows: Iterable[dict] = []
    elif engine == "local":
        rows = _run_local(chunks, args)
    else:
        rows = _run_ray(cfg, chunks, args)
    chain = ChainCheck() if cfg.source.verify else None
    try:
        for row in rows:
            summary.add(row)
            if chain is not None:
                chain.add(row)
            if on_chunk:
                on_chunk(row)
    except Exception as exc:
        cause = _user_error(exc)
        if cause is None:
            raise
        raise cause from None
    summary.wall_seconds = time.perf_counter() - t0
    return summary


class ChainCheck:
    """Checks the hash chain between chunks read by different tasks, in whatever order they finish."""

    def __init__(self) -> None:
        self.by_start: dict[int, tuple[int, str]] = {}  # first ledger -> (last ledger, previous_hash)
        self.by_end: dict[int, tuple[int, str]] = {}  # last ledger -> (first ledger, hash)

    def add(self, row: dict) -> None:
        """Record a committed chunk's end hashes; raise if it does not chain to a neighbour already seen."""
        if row.get("status") != "committed" or not row.get("hash"):
            return
        start, end = int(row["start"]), int(row["end"])
        self.by_start[start] = (end, row["previous_hash"])
        self.by_end[end] = (start, row["hash"])
        before, after = self.by_end.get(start - 1), self.by_start.get(end + 1)
        if before is not None:
            self._check(before[0], start - 1, before[1], end, start, row["previous_hash"])
        if after is not None:
            self._check(start, end, row["hash"], after[0], end + 1, after[1])

    @staticmethod
    def _check(first: int, last: int, last_hash: str, next_end: int, next_first: int, previous_hash: str) -> None:
        if last_hash != previous_hash:
            raise LedgerIntegrityError(
                f"ledger {next_first}: previous_ledger_hash {previous_hash} is not the hash of ledger {last} "
                f"({last_hash}); chunks {first}-{last} and {next_first}-{next_end} were already written: the "
                "range mixes ledgers of different chains",
                sequence=next_first,
            )


def _run_local(chunks: list[tuple[int, int]], args: dict) -> Iterator[dict]:
    worker = ChunkWorker(**args)
    try:
        for s, e in chunks:
            yield worker.process(s, e)
    finally:
        for sink in worker.sinks:
            sink.close()


def _run_ray(cfg: PipelineConfig, chunks: list[tuple[int, int]], args: dict) -> Iterator[dict]:
    import ray

    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True, log_to_driver=False)
    workers = cfg.options.workers or max(1, int(ray.available_resources().get("CPU", 1)))
    workers = min(workers, len(chunks))
    ds = ray.data.from_items([{"start": s, "end": e} for s, e in chunks], override_num_blocks=len(chunks))
    ds = ds.map_batches(
        ChunkWorker,
        fn_constructor_kwargs={**args, "worker_process": True},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=workers),
        num_cpus=1,
    )
    for row in ds.iter_rows():
        if row.get("status") == "failed":
            raise _unpack_error(row["exception"])
        yield {k: v for k, v in row.items() if k != "exception"}


def _user_error(exc: BaseException) -> CdpRayError | None:
    """The :class:`CdpRayError` behind an exception that Ray wrapped, if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, CdpRayError):
            return exc
        cause = getattr(exc, "cause", None)
        exc = cause if isinstance(cause, BaseException) else exc.__cause__
    return None


def process_local(cfg: PipelineConfig) -> dict[str, pa.Table]:
    """Run ``cfg``'s processors (after its ``where`` filter) in this process and return the tables (no Ray, no sinks)."""
    lake = cfg.source.open()
    steps = [(get_processor(s.name), s.config) for s in cfg.processors]
    parts: dict[str, list[pa.Table]] = {p.name: [] for p, _ in steps}
    for s, e in plan_chunks(cfg.source.start, cfg.source.end, cfg.options.ledgers_per_task):
        ledgers, _ = decode_range(lake, s, e, cfg.source.network_passphrase, verify=cfg.source.verify, where=cfg.where)
        for name, (_, table) in run_processors(ledgers, steps).items():
            parts[name].append(table)
    return {n: pa.concat_tables(ts) if ts else get_processor(n).schema.empty_table() for n, ts in parts.items()}
