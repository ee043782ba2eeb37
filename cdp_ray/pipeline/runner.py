"""Run pipelines on Ray Data, and the same processing in-process for notebooks and tests.

A pipeline's range is cut into aligned chunks of ``ledgers_per_task`` ledgers. Each chunk is read,
decoded once, run through every processor and written to every sink by one Ray worker; the sinks
commit a chunk atomically, so a chunk is either fully written or not at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import pyarrow as pa

from cdp_ray.errors import CdpRayError
from cdp_ray.lake import LedgerLake
from cdp_ray.pipeline.config import PipelineConfig
from cdp_ray.pipeline.datasource import plan_chunks
from cdp_ray.processors.base import Processor, get_processor
from cdp_ray.sinks.base import make_sink
from cdp_ray.xdr import Ledger, decode_ledger


def decode_range(lake: LedgerLake, start: int, end: int, passphrase: str, *, verify: bool = True) -> tuple[list[Ledger], int]:
    """Read and decode ``[start, end]``; return the ledgers and the XDR bytes read."""
    ledgers, nbytes = [], 0
    for raw in lake.read_range(start, end, verify=verify):
        ledgers.append(decode_ledger(raw.xdr, passphrase, key=raw.key, verify=verify))
        nbytes += len(raw.xdr)
    return ledgers, nbytes


def run_processors(ledgers: list[Ledger], steps: Iterable[tuple[Processor, dict]]) -> dict[str, tuple[Processor, pa.Table]]:
    """Every processor over the same decoded ledgers: ``{name: (processor, table)}``."""
    return {p.name: (p, p.process(ledgers, cfg)) for p, cfg in steps}


@dataclass
class ChunkResult:
    start: int
    end: int
    ledgers: int
    xdr_bytes: int
    rows: dict[str, int]
    bytes_written: dict[str, int]
    seconds: float


class ChunkWorker:
    """Processes chunks on a Ray worker: read, decode, process, write. One per actor."""

    def __init__(self, pipeline_json: str):
        self.cfg = PipelineConfig.model_validate_json(pipeline_json)
        self.lake = self.cfg.source.open()
        self.steps = [(get_processor(s.name), s.config) for s in self.cfg.processors]
        self.sinks = [make_sink(s) for s in self.cfg.sinks]

    def process(self, start: int, end: int) -> ChunkResult:
        t0 = time.perf_counter()
        src = self.cfg.source
        ledgers, nbytes = decode_range(self.lake, start, end, src.network_passphrase, verify=src.verify)
        tables = run_processors(ledgers, self.steps)
        written: dict[str, int] = {}
        for s in self.sinks:
            for name, n in s.write_range(start, end, tables).items():
                written[name] = written.get(name, 0) + n
        return ChunkResult(
            start, end, len(ledgers), nbytes, {n: t.num_rows for n, (_, t) in tables.items()}, written,
            time.perf_counter() - t0,
        )

    def __call__(self, batch: dict) -> dict:
        results = [self.process(int(s), int(e)) for s, e in zip(batch["start"], batch["end"])]
        return {
            "start": [r.start for r in results],
            "end": [r.end for r in results],
            "ledgers": [r.ledgers for r in results],
            "xdr_bytes": [r.xdr_bytes for r in results],
            "rows": [sum(r.rows.values()) for r in results],
            "rows_by_table": [r.rows for r in results],
            "bytes_written": [sum(r.bytes_written.values()) for r in results],
            "seconds": [r.seconds for r in results],
        }


@dataclass
class RunSummary:
    """What a run did, summed over its chunks."""

    pipeline: str
    chunks: int = 0
    ledgers: int = 0
    xdr_bytes: int = 0
    rows_by_table: dict[str, int] = field(default_factory=dict)
    bytes_written: int = 0
    wall_seconds: float = 0.0

    def add(self, row: dict) -> None:
        self.chunks += 1
        self.ledgers += int(row["ledgers"])
        self.xdr_bytes += int(row["xdr_bytes"])
        self.bytes_written += int(row["bytes_written"])
        for k, v in row["rows_by_table"].items():
            if v is not None:
                self.rows_by_table[k] = self.rows_by_table.get(k, 0) + int(v)


def run_pipeline(
    cfg: PipelineConfig,
    *,
    on_chunk: Callable[[dict], None] | None = None,
) -> RunSummary:
    """Run ``cfg`` on the current Ray cluster (started locally if none is connected)."""
    import ray

    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True, log_to_driver=False)
    src = cfg.source
    chunks = plan_chunks(src.start, src.end, cfg.options.ledgers_per_task)
    workers = cfg.options.workers or max(1, int(ray.available_resources().get("CPU", 1)))
    workers = min(workers, len(chunks))
    summary = RunSummary(cfg.name)
    t0 = time.perf_counter()
    ds = ray.data.from_items([{"start": s, "end": e} for s, e in chunks], override_num_blocks=len(chunks))
    ds = ds.map_batches(
        ChunkWorker,
        fn_constructor_kwargs={"pipeline_json": cfg.model_dump_json()},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=workers),
        num_cpus=1,
    )
    try:
        for row in ds.iter_rows():
            summary.add(row)
            if on_chunk:
                on_chunk(row)
    except Exception as exc:
        cause = _user_error(exc)
        if cause is None:
            raise
        raise cause from None
    summary.wall_seconds = time.perf_counter() - t0
    return summary


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
    """Run ``cfg``'s processors in this process and return the tables (no Ray, no sinks)."""
    lake = cfg.source.open()
    steps = [(get_processor(s.name), s.config) for s in cfg.processors]
    parts: dict[str, list[pa.Table]] = {p.name: [] for p, _ in steps}
    for s, e in plan_chunks(cfg.source.start, cfg.source.end, cfg.options.ledgers_per_task):
        ledgers, _ = decode_range(lake, s, e, cfg.source.network_passphrase, verify=cfg.source.verify)
        for name, (_, table) in run_processors(ledgers, steps).items():
            parts[name].append(table)
    return {n: pa.concat_tables(ts) if ts else get_processor(n).schema.empty_table() for n, ts in parts.items()}
