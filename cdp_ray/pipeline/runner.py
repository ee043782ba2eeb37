"""Run pipelines on a Ray cluster, and the same processing in-process for notebooks and tests.

A run locks its pipeline in every sink, claims the sinks' tables, finishes or undoes commits a killed
run left half done, and plans what is left (:mod:`cdp_ray.pipeline.planning`): the range minus the
ledgers every sink committed (with ``resume``), cut along the pipeline's chunk grid. Chunks are
generated lazily and run on a pool of Ray actors (:mod:`cdp_ray.pipeline.scheduler`); each worker
reads its chunk, checks that its first ledger chains to the ledger before it, decodes and processes
a batch of ledgers at a time, streams the tables into every sink and commits the chunk in each, with
its checkpoint record, atomically. A chunk whose worker died is rerun; its commit replaces whatever
a dead attempt left. The driver keeps counters, never per-chunk state.

A pipeline's ``where`` filter is pushed down into decoding: a ledger whose raw XDR cannot hold a
matching transaction is read (and verified by the lake) but never decoded, and every processor sees
only the matching transactions.
"""

from __future__ import annotations

import base64
import collections
import json
import logging
import os
import pickle
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal

import pyarrow as pa

from cdp_ray.collector import freeze_startup_objects
from cdp_ray.errors import (
    CdpRayError, ConfigError, CorruptLedgerFileError, LedgerGapError, LedgerIntegrityError, LedgerNotFoundError,
    ProcessingError,
)
from cdp_ray.lake import LedgerLake
from cdp_ray.lake.store import RawLedger
from cdp_ray.pipeline.checkpoint import Checkpoint
from cdp_ray.pipeline.config import PipelineConfig
from cdp_ray.pipeline.planning import Chunk, RunPlan
from cdp_ray.processors.base import Processor, earliest_rows, get_processor, shipped_modules
from cdp_ray.processors.filters import PushDownStats, TransactionFilter, select
from cdp_ray.sinks.base import DeadLetter, RunContext, Sink, SinkLock, make_sink
from cdp_ray.xdr import Ledger, decode_ledger
from cdp_ray.xdr.fast import fallback_warning, resolve_engine
from cdp_ray.pipeline.memory import peak_rss_mb

QUARANTINABLE = (CorruptLedgerFileError, LedgerIntegrityError, LedgerGapError)
# first ledger of a SEP-54 object key: ``.../FC3D4709--63092982[-63092985].xdr.zst``
_KEY_LEDGER = re.compile(r"--(\d+)(?:-\d+)?\.xdr")
LOCK_RENEW_S = 15.0
MAX_QUARANTINED_LISTED = 1000

log = logging.getLogger(__name__)


def decode_raw(xdr_bytes: bytes, passphrase: str, *, key: str, sequence: int, verify: bool = True) -> Ledger:
    """:func:`decode_ledger`, with the ledger's sequence (known from its header) in decoding errors."""
    try:
        return decode_ledger(xdr_bytes, passphrase, key=key, verify=verify)
    except CorruptLedgerFileError as exc:
        if exc.sequence is not None:
            raise
        raise CorruptLedgerFileError(exc.key, exc.reason, sequence=sequence) from exc


def decode_batches(
    lake: LedgerLake,
    start: int,
    end: int,
    passphrase: str,
    *,
    verify: bool = True,
    where: TransactionFilter | None = None,
    stats: PushDownStats | None = None,
    batch_bytes: int = 64 * 2**20,
    previous_hash: bytes | None = None,
) -> Iterator[tuple[list[Ledger], int]]:
    """Read ``[start, end]`` and yield ``(decoded ledgers, XDR bytes read)`` a batch at a time: a batch
    closes once it holds ``batch_bytes`` of XDR, so memory does not grow with the range.

    With ``where``, a ledger whose raw XDR cannot match is read but not decoded, and the decoded
    ledgers are narrowed to their matching transactions (:func:`~cdp_ray.processors.filters.select`):
    ledgers without any are dropped. ``stats`` accumulates the ledgers read, decoded and kept.
    ``previous_hash`` (the hash of ledger ``start - 1``) extends the hash chain check to ``start``.
    """
    active = where is not None and not where.empty
    compiled = where.compile(passphrase) if active else None
    stats = stats if stats is not None else PushDownStats()
    raws: list[RawLedger] = []
    size = 0

    def flush() -> tuple[list[Ledger], int]:
        ledgers = [decode_raw(r.xdr, passphrase, key=r.key, sequence=r.sequence, verify=verify) for r in raws
                   if compiled is None or compiled.may_match(r.xdr)]
        stats.ledgers += len(raws)
        stats.decoded += len(ledgers)
        if active:
            ledgers = select(ledgers, where)
        stats.kept += len(ledgers)
        return ledgers, sum(len(r.xdr) for r in raws)

    for raw in lake.read_range(start, end, verify=verify, previous_hash=previous_hash):
        raws.append(raw)
        size += len(raw.xdr)
        if size >= batch_bytes:
            yield flush()
            raws, size = [], 0
    if raws:
        yield flush()


def decode_range(lake: LedgerLake, start: int, end: int, passphrase: str, *, verify: bool = True,
                 where: TransactionFilter | None = None, stats: PushDownStats | None = None) -> tuple[list[Ledger], int]:
    """Every ledger of ``[start, end]`` decoded (see :func:`decode_batches`) and the XDR bytes read."""
    ledgers, nbytes = [], 0
    for batch, n in decode_batches(lake, start, end, passphrase, verify=verify, where=where, stats=stats, batch_bytes=1 << 62):
        ledgers += batch
        nbytes += n
    return ledgers, nbytes


def run_processors(ledgers: list[Ledger], steps: Iterable[tuple[Processor, dict]]) -> dict[str, tuple[Processor, pa.Table]]:
    """Every processor over the same decoded ledgers: ``{name: (processor, table)}``."""
    return {p.name: (p, p.process(ledgers, cfg)) for p, cfg in steps}


class ChunkWorker:
    """Processes chunks: read, decode, process, write every sink. One per Ray actor (or in-process).

    A chunk whose ledger file is corrupt or fails verification (the hash chain to the previous chunk
    included) is quarantined when the pipeline's ``on_error`` is ``quarantine``: a dead-letter record
    goes to every sink and nothing of the chunk is committed. Other errors fail the run. Rerunning a
    chunk (after a worker died) is safe: each sink's commit of a range replaces the range's rows.
    """

    def __init__(self, pipeline_json: str, run_json: str | None = None, worker_process: bool = False,
                 processors: list[Processor] | None = None):
        self.cfg = PipelineConfig.model_validate_json(pipeline_json)
        self.lake = self.cfg.source.open()
        procs = processors or [get_processor(s.name) for s in self.cfg.processors]
        self.steps = [(p, s.config) for p, s in zip(procs, self.cfg.processors)]
        self.sinks = [make_sink(s) for s in self.cfg.sinks]
        self.run = _run_context_from_json(run_json) if run_json else None
        self.decoder = resolve_engine()
        self.decoder_warning = fallback_warning()
        self.node = None
        if worker_process:  # a Ray actor's own process, not the caller's interpreter
            import ray

            self.node = ray.get_runtime_context().get_node_id()
            freeze_startup_objects()

    def ping(self) -> int:
        """For the scheduler: answers once the actor is up."""
        return os.getpid()

    def process_chunk(self, chunk: Chunk) -> dict:
        """:meth:`process`, with every error packed into a ``failed`` row: the driver raises it again (Ray
        would wrap it). Exceptions other than :class:`CdpRayError` come back as :class:`ProcessingError`
        naming the range, with their traceback."""
        try:
            return self.process(chunk)
        except Exception as exc:
            error = exc if isinstance(exc, CdpRayError) else ProcessingError(chunk.start, chunk.end, exc)
            return {**_row(chunk.start, chunk.end, "failed"), "exception": _pack_error(error)}

    def process(self, chunk: Chunk | tuple[int, int]) -> dict:
        if not isinstance(chunk, Chunk):
            chunk = Chunk(*chunk)
        start, end = chunk.start, chunk.end
        t0, began = time.perf_counter(), time.time()
        src = self.cfg.source
        stats = PushDownStats()
        procs = [p for p, _ in self.steps]
        replaces = chunk.replaces or ((),) * len(self.sinks)
        writers = []
        rows: dict[str, int] = {p.name: 0 for p in procs}
        nbytes = 0
        try:
            previous = self._previous_hash(start) if chunk.link and src.verify else None
            writers = [s.open_range(start, end, procs, self.run, tuple(r)) for s, r in zip(self.sinks, replaces)]
            for ledgers, n in decode_batches(
                self.lake, start, end, src.network_passphrase, verify=src.verify, where=self.cfg.where, stats=stats,
                batch_bytes=int(self.cfg.options.decode_batch_mb * 2**20), previous_hash=previous,
            ):
                nbytes += n
                tables = run_processors(ledgers, self.steps)
                for name, (_, t) in tables.items():
                    rows[name] += t.num_rows
                for w in writers:
                    w.write(tables)
                del ledgers, tables  # freed inside the chunk's time, not in the gap before the next chunk
            written = 0
            while writers:  # a sink whose commit went through is not aborted if a later one fails
                written += sum(writers[0].commit().values())
                writers.pop(0)
        except QUARANTINABLE as exc:
            _abort(writers)
            if self.cfg.options.on_error != "quarantine":
                raise
            letter = self._dead_letter(start, end, exc)
            for s in self.sinks:
                s.record_dead_letter(letter)
            return {**_row(start, end, "quarantined", seconds=time.perf_counter() - t0, letter=letter, decoder=self.decoder,
                         decoder_warning=self.decoder_warning),
                    "node": self.node, "began": began}
        except BaseException:
            _abort(writers)
            raise
        return {**_row(start, end, "committed", stats.ledgers, nbytes, rows, written, time.perf_counter() - t0,
                       decoded=stats.decoded, decoder=self.decoder, decoder_warning=self.decoder_warning), "node": self.node, "began": began}

    def _previous_hash(self, start: int) -> bytes | None:
        """The hash of ledger ``start - 1``, so the chain is checked into the chunk. ``None`` before the
        run's first ledger when the lake does not hold it."""
        if start <= 1:
            return None
        try:
            return next(iter(self.lake.read_range(start - 1, start - 1, verify=True))).hash
        except LedgerNotFoundError:
            if start <= self.cfg.source.start:
                return None
            raise

    def _dead_letter(self, start: int, end: int, exc: CdpRayError) -> DeadLetter:
        key = getattr(exc, "key", None)
        ledger = getattr(exc, "sequence", None)
        if ledger is None and key:
            m = _KEY_LEDGER.search(key)
            ledger = int(m.group(1)) if m else None
        return DeadLetter(self.cfg.name, start, end, ledger, key, type(exc).__name__, exc.message)

    def close(self) -> None:
        for s in self.sinks:
            s.close()


def _abort(writers: list) -> None:
    for w in writers:
        try:
            w.abort()
        except Exception:  # already failing: the sink's next prepare cleans what this abort could not
            pass


def _pack_error(exc: CdpRayError) -> str:
    """``exc`` as text that survives the trip back to the driver (its attributes kept, ``__init__`` not rerun)."""
    return base64.b64encode(pickle.dumps((type(exc), exc.args, exc.__dict__))).decode()


def _unpack_error(text: str) -> CdpRayError:
    """The error :func:`_pack_error` packed (text from this run's own workers)."""
    cls, args, attrs = pickle.loads(base64.b64decode(text))
    exc = cls.__new__(cls)
    Exception.__init__(exc, *args)
    exc.__dict__.update(attrs)
    return exc


def _row(
    start: int, end: int, status: str, ledgers: int = 0, xdr_bytes: int = 0, rows: dict[str, int] | None = None,
    written: int = 0, seconds: float = 0.0, letter: DeadLetter | None = None, *, decoded: int | None = None,
    decoder: str | None = None, decoder_warning: str | None = None,
) -> dict:
    rows = rows or {}
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
        "worker_peak_rss_mb": peak_rss_mb(),
        "decoder": decoder,
        "decoder_warning": decoder_warning,
    }


def _run_context_json(ctx: RunContext) -> str:
    return json.dumps({"pipeline": ctx.pipeline, "config_hash": ctx.config_hash, "dead_letter_ranges": sorted(ctx.dead_letter_ranges)})


def _run_context_from_json(doc: str) -> RunContext:
    d = json.loads(doc)
    return RunContext(d["pipeline"], d["config_hash"], frozenset(tuple(r) for r in d["dead_letter_ranges"]))


@dataclass
class RunSummary:
    """What a run did, summed over its chunks: ``ledgers`` read, of which ``ledgers_decoded`` were decoded
    (fewer than read when the pipeline's ``where`` filter skips ledgers that cannot match).

    ``quarantined`` lists the first :data:`MAX_QUARANTINED_LISTED` dead letters (the sinks hold them
    all); ``quarantined_chunks`` counts them. ``busy_seconds`` is the workers' time inside chunks;
    ``gap_seconds`` the time workers waited between one chunk and their next (the scheduler's cost).
    ``decoders`` counts chunks by the XDR decoder that ran them; ``decoder_warnings`` says why workers
    fell back to stellar-sdk without being asked to.
    """

    pipeline: str
    chunks: int = 0
    ledgers: int = 0
    ledgers_decoded: int = 0
    xdr_bytes: int = 0
    rows_by_table: dict[str, int] = field(default_factory=dict)
    bytes_written: int = 0
    wall_seconds: float = 0.0
    busy_seconds: float = 0.0
    config_hash: str = ""
    chunks_planned: int = 0
    skipped_chunks: int = 0
    skipped_ledgers: int = 0
    discarded_stale: int = 0
    retried_chunks: int = 0
    workers: int = 1
    startup_seconds: float = 0.0
    worker_peak_rss_mb: float = 0.0
    stopped: bool = False
    decoders: dict[str, int] = field(default_factory=dict)
    decoder_warnings: list[str] = field(default_factory=list)
    quarantined: list[DeadLetter] = field(default_factory=list)
    quarantined_chunks: int = 0
    gap_seconds: float = 0.0
    _last_end: dict[int, float] = field(default_factory=dict, repr=False)

    def add(self, row: dict) -> None:
        self.chunks += 1
        seconds = float(row.get("seconds") or 0.0)
        self.busy_seconds += seconds
        if row.get("began") is not None:  # the same worker's clock: its idle time since its last chunk
            pid, began = int(row["worker_pid"]), float(row["began"])
            if pid in self._last_end:
                self.gap_seconds += max(0.0, began - self._last_end[pid])
            self._last_end[pid] = max(self._last_end.get(pid, 0.0), began + seconds)
        self.worker_peak_rss_mb = max(self.worker_peak_rss_mb, float(row.get("worker_peak_rss_mb") or 0.0))
        if row.get("decoder"):
            self.decoders[row["decoder"]] = self.decoders.get(row["decoder"], 0) + 1
        if row.get("decoder_warning") and row["decoder_warning"] not in self.decoder_warnings:
            self.decoder_warnings.append(row["decoder_warning"])
            log.warning("%s", row["decoder_warning"])
        if row.get("status") == "quarantined":
            self.quarantined_chunks += 1
            if len(self.quarantined) < MAX_QUARANTINED_LISTED:
                self.quarantined.append(DeadLetter(
                    self.pipeline, int(row["start"]), int(row["end"]),
                    None if row.get("error_ledger") is None else int(row["error_ledger"]),
                    row.get("error_key"), row["error"], row["error_message"],
                ))
            return
        self.ledgers += int(row["ledgers"])
        self.ledgers_decoded += int(row.get("ledgers_decoded", row["ledgers"]))
        self.xdr_bytes += int(row["xdr_bytes"])
        self.bytes_written += int(row["bytes_written"])
        for k, v in row["rows_by_table"].items():
            if v is not None:
                self.rows_by_table[k] = self.rows_by_table.get(k, 0) + int(v)

    def scheduling_overhead(self) -> float:
        """The workers' waits between consecutive chunks against their time inside chunks: what dispatching
        costs per unit of chunk work (start-up and the tail, where workers have no chunk left, are apart)."""
        return self.gap_seconds / self.busy_seconds if self.busy_seconds else 0.0

    def idle_share(self) -> float:
        """Share of the workers' time, once the first was up, spent outside chunks: dispatch, and the tail."""
        capacity = self.workers * (self.wall_seconds - self.startup_seconds)
        return max(0.0, 1.0 - self.busy_seconds / capacity) if capacity > 0 else 0.0


def resolve_paths(cfg: PipelineConfig, *, nodes: int = 1, in_job: bool = False) -> PipelineConfig:
    """``cfg`` with relative local paths (lake root, Parquet outputs) made absolute against this process's
    directory. Refused where workers would not see the same directory: on a cluster of several nodes, or
    in a Ray job (whose directory is Ray's temporary copy of the working dir)."""
    def absolute(uri: str, what: str) -> str:
        if "://" in uri or Path(uri).is_absolute():
            return uri
        if nodes > 1 or in_job:
            where = f"a Ray cluster of {nodes} nodes" if nodes > 1 else "a Ray job (its directory is a temporary copy)"
            raise ConfigError(
                f"{what} {uri!r} is a relative local path, and this run is on {where}: workers would each "
                "write under their own directory",
                hint="use shared storage: s3://bucket/prefix, gs://bucket/prefix, or an absolute path on a mount "
                "every node shares",
            )
        return str(Path(uri).resolve())

    src = cfg.source.model_copy(update={"uri": absolute(cfg.source.uri, "source")})
    sinks = [s.model_copy(update={"uri": absolute(s.uri, f"{s.type} sink")}) if isinstance(getattr(s, "uri", None), str) else s
             for s in cfg.sinks]
    return cfg.model_copy(update={"source": src, "sinks": sinks})


class _Locks:
    """The run's locks in every sink, renewed in the background until released."""

    def __init__(self, sinks: list[Sink], pipeline: str):
        self.locks: list[SinkLock] = []
        self.error: BaseException | None = None
        try:
            for s in sinks:
                self.locks.append(s.lock(pipeline))
        except BaseException:
            self.release()
            raise
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="cdp-ray-locks", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(LOCK_RENEW_S):
            try:
                for lock in self.locks:
                    lock.renew()
            except BaseException as exc:  # reported by check(); the run stops taking chunks
                self.error = exc
                return

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def release(self) -> None:
        if hasattr(self, "_stop"):
            self._stop.set()
        for lock in self.locks:
            try:
                lock.release()
            except Exception:  # a lock that cannot be released expires (lease) or goes with its connection
                pass


def _prepare(cfg: PipelineConfig, sinks: list[Sink], processors: list[Processor], *, resume: bool, force: bool,
             workers: int) -> tuple[RunPlan, RunContext, RunSummary]:
    """On the driver, under the run's locks: prepare the sinks, check the checkpoint, plan what is left."""
    for s in sinks:
        s.prepare(processors, cfg.name)
    ckpt = Checkpoint.load(cfg, sinks)
    discarded = ckpt.check(force=force, start=cfg.source.start, end=cfg.source.end)
    if discarded:
        ckpt = Checkpoint.load(cfg, sinks)
    lake = cfg.source.open()
    lake.resolve(cfg.source.start)
    plan = RunPlan.build(cfg, lake, [v.records for v in ckpt.views], ckpt.hash, resume=resume, workers=workers)
    ctx = RunContext(cfg.name, ckpt.hash, ckpt.dead_letter_ranges())
    summary = RunSummary(cfg.name, config_hash=ckpt.hash, discarded_stale=discarded, workers=workers,
                         skipped_ledgers=(cfg.source.end - cfg.source.start + 1) - plan.ledgers)
    return plan, ctx, summary


def dry_run(cfg: PipelineConfig, *, resume: bool = False, workers: int = 1) -> dict[str, Any]:
    """What a run would do, without running or writing anything: ledgers and chunks in the range, already
    committed and left to run, the first and last chunk, and which part of the range the lake holds."""
    t0 = time.perf_counter()
    processors = [get_processor(s.name) for s in cfg.processors]
    sinks = [make_sink(s) for s in cfg.sinks]
    try:
        ckpt = Checkpoint.load(cfg, sinks)
        stale = sum(len(rs) for _, rs in ckpt.stale())
        lake = cfg.source.open()
        lake.resolve(cfg.source.start)
        plan = RunPlan.build(cfg, lake, [v.records for v in ckpt.views], ckpt.hash, resume=resume, workers=workers)
        doc = plan.describe(lake)
    finally:
        for s in sinks:
            s.close()
    doc.update(config_hash=ckpt.hash, resume=resume, stale_ranges=stale, tables=[p.name for p in processors],
               sinks=[s.describe() for s in cfg.sinks], planning_seconds=round(time.perf_counter() - t0, 3))
    return doc


def run_pipeline(
    cfg: PipelineConfig,
    *,
    on_chunk: Callable[[dict], None] | None = None,
    resume: bool = False,
    force: bool = False,
    engine: Literal["ray", "local"] = "ray",
    should_stop: Callable[[], bool] | None = None,
    processors: list[Processor] | None = None,
) -> RunSummary:
    """Run ``cfg``: on the connected Ray cluster (a new local Ray if none is connected), or in-process.

    With ``resume``, ledgers every sink already committed with the same config are skipped. A changed
    config against an existing checkpoint is refused unless ``force``. ``should_stop`` is polled between
    chunks: once it returns true no chunk starts and the run ends after those in flight (``stopped``).
    ``processors`` are the pipeline's processors resolved by the caller (shipped to workers as objects).
    """
    t0 = time.monotonic()
    stop = should_stop or (lambda: False)
    procs = processors or [get_processor(s.name) for s in cfg.processors]
    nodes, in_job, workers = 1, False, 1
    if engine == "ray":
        import ray

        if not ray.is_initialized():
            ray.init(log_to_driver=False)
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        in_job = "job_submission_id" in os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR", "")  # a `ray job submit` driver
        workers = cfg.options.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    cfg = resolve_paths(cfg, nodes=nodes, in_job=in_job)
    sinks = [make_sink(s) for s in cfg.sinks]
    locks = _Locks(sinks, cfg.name)
    try:
        plan, ctx, summary = _prepare(cfg, sinks, procs, resume=resume, force=force, workers=workers)
        summary.chunks_planned = plan.chunk_count()
        summary.skipped_chunks = max(0, _cells_in_range(plan) - summary.chunks_planned)
        args = {"pipeline_json": cfg.model_dump_json(), "run_json": _run_context_json(ctx), "processors": procs}

        def tick() -> None:
            locks.check()

        if engine == "local" or not plan.todo:
            rows = _run_local(plan.chunks(), args, stop, tick)
        else:
            summary.workers = min(workers, max(1, summary.chunks_planned))
            rows = _run_ray(plan.chunks(), args, summary.workers, stop, tick, summary, t0, _worker_runtime_env(procs))
        try:
            for row in rows:
                if row.get("status") == "failed":
                    raise _unpack_error(row["exception"])
                summary.add(row)
                if on_chunk:
                    on_chunk(row)
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()
        summary.stopped = stop() and summary.chunks < summary.chunks_planned
        for s in sinks:
            s.finish(cfg.name)
    except Exception as exc:
        cause = _user_error(exc)
        if cause is None or cause is exc:
            raise
        raise cause from None
    finally:
        locks.release()
        for s in sinks:
            s.close()
    summary.wall_seconds = time.monotonic() - t0
    return summary


def _cells_in_range(plan: RunPlan) -> int:
    from cdp_ray.pipeline.chunking import count_cells

    src = plan.cfg.source
    return count_cells(plan.grid, src.start, src.end)


def _run_local(chunks: Iterator[Chunk], args: dict, stop: Callable[[], bool], tick: Callable[[], None]) -> Iterator[dict]:
    worker = ChunkWorker(**args)
    try:
        for chunk in chunks:
            tick()
            if stop():
                return
            yield worker.process_chunk(chunk)
    finally:
        worker.close()


def _run_ray(chunks: Iterator[Chunk], args: dict, workers: int, stop: Callable[[], bool], tick: Callable[[], None],
             summary: RunSummary, started: float, runtime_env: dict | None = None) -> Iterator[dict]:
    from cdp_ray.pipeline.scheduler import ActorPool

    pool = ActorPool(ChunkWorker, {**args, "worker_process": True}, workers, runtime_env=runtime_env)
    try:
        for chunk, row, died in pool.run(chunks, stop=stop, tick=tick):
            summary.retried_chunks = pool.retried
            if pool.ready_at is not None:
                summary.startup_seconds = pool.ready_at - started
            if died is not None:
                error = ProcessingError(chunk.start, chunk.end, died)
                error.hint = (f"the workers running these ledgers died {pool.attempts} times (killed, out of memory, or "
                              "their node was lost); check the Ray logs of the run, then rerun with --resume")
                yield {**_row(chunk.start, chunk.end, "failed"), "exception": _pack_error(error)}
                return
            yield row
    finally:
        pool.shutdown()


def _worker_runtime_env(procs: list[Processor]) -> dict | None:
    """The runtime env that lets Ray workers import the user processors' modules: those modules
    uploaded to the cluster (as ``ray.init(runtime_env={"py_modules": [...]})`` uploads local paths;
    an actor's runtime env accepts only URIs). None when every processor is cdp-ray's or installed."""
    import tempfile

    from ray._private.runtime_env.py_modules import upload_py_modules_if_needed

    modules = shipped_modules(procs)
    if not modules:
        return None
    with tempfile.TemporaryDirectory(prefix="cdp-ray-modules-") as scratch:
        return upload_py_modules_if_needed({"py_modules": modules}, include_gitignore=True, scratch_dir=scratch,
                                           logger=log)


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
    for ledgers, _ in decode_batches(lake, cfg.source.start, cfg.source.end, cfg.source.network_passphrase,
                                     verify=cfg.source.verify, where=cfg.where,
                                     batch_bytes=int(cfg.options.decode_batch_mb * 2**20)):
        for name, (_, table) in run_processors(ledgers, steps).items():
            parts[name].append(table)
    # First-seen tables (assets) hold one row per key for the whole range: the chunks' rows are merged.
    return {n: earliest_rows(get_processor(n), pa.concat_tables(ts)) if ts else get_processor(n).schema.empty_table()
            for n, ts in parts.items()}
