"""Cost and time estimates of a pipeline run, scaled by ledger count from the tool cards.

The tool cards carry per-ledger figures measured on the bundled sample lake: compressed and XDR
bytes, decode CPU, and for each processor rows, Parquet bytes and CPU. An estimate multiplies them
by the range's ledger count and prices CPU-hours, bytes and object reads with :class:`CostRates`.

Per-ledger volume follows network activity (the sample, from 2026, has ~265 transactions per
ledger; 2020 ledgers have ~60). :func:`probe_volume` reads the sizes of a few lake objects spread
over the range (no downloads) and the estimate scales every volume-driven figure by their ratio to
the sample's object size; tables keyed by ledger sequence alone stay at one row per ledger.
``basis`` names what each figure rests on.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, Field

from cdp_ray.control.settings import CostRates
from cdp_ray.control.toolcards import ToolCard
from cdp_ray.pipeline.config import PipelineConfig
from cdp_ray.pipeline.datasource import EST_BYTES_PER_LEDGER

# Planning figures used when a card has no measurement.
DEFAULT_SOURCE = {"compressed_bytes_per_ledger": EST_BYTES_PER_LEDGER // 8, "xdr_bytes_per_ledger": EST_BYTES_PER_LEDGER,
                  "objects_per_ledger": 1.0, "cpu_seconds_per_ledger": 1.0}
DEFAULT_PROCESSOR = {"rows_per_ledger": 100.0, "parquet_bytes_per_ledger": 50_000, "arrow_bytes_per_ledger": 200_000,
                     "cpu_seconds_per_ledger": 0.2, "write_cpu_seconds_per_ledger": 0.01}
# Decoded Python XDR objects take about this many times their XDR size in memory.
DECODED_MEMORY_FACTOR = 6
WORKER_BASE_MEMORY = 400 * 2**20
RUN_OVERHEAD_SECONDS = 5.0


class Dollars(BaseModel):
    compute: float
    read: float
    write: float
    requests: float
    total: float


class Estimate(BaseModel):
    """What a run of the whole desired range is expected to read, write, use and cost."""

    ledgers: int
    chunks: int
    workers: int
    objects: int = Field(description="lake objects read")
    read_bytes: int = Field(description="compressed bytes read from the lake")
    xdr_bytes: int = Field(description="decompressed LedgerCloseMeta XDR bytes")
    rows: dict[str, int] = Field(description="rows per table")
    total_rows: int
    output_bytes: dict[str, int] = Field(description="bytes written per table per sink (Parquet zstd size)")
    bytes_written: int
    cpu_seconds: float
    cpu_hours: float
    wall_seconds: float = Field(description="expected duration with `workers` parallel workers")
    memory_bytes_per_worker: int
    memory_bytes: int
    dollars: Dollars
    basis: dict[str, str] = Field(description="card id -> `measured on ...` or `default planning figure`; "
                                  "`volume`: the probe's scaling")


def _figures(cards: dict[str, ToolCard], cid: str, default: dict[str, Any]) -> tuple[dict[str, Any], str]:
    card = cards.get(cid)
    if card is not None and card.cost:
        return {**default, **card.cost}, f"measured on {card.cost.get('sample', 'sample data')}"
    return default, "default planning figure"


class VolumeProbe(BaseModel):
    """Object sizes sampled over a range, relative to the sample lake."""

    objects: int
    compressed_bytes_per_ledger: float
    scale: float


def probe_volume(cfg: PipelineConfig, cards: dict[str, ToolCard], max_objects: int = 3) -> VolumeProbe | None:
    """Sizes of up to ``max_objects`` lake objects evenly spread over the range, or ``None`` when the
    source is not a SEP-54 lake or the source card has no measurement to compare with."""
    card = cards.get("source.lake")
    baseline = (card.cost or {}).get("compressed_bytes_per_ledger") if card else None
    src = cfg.source
    lake = src.open()
    if not baseline or lake.layout != "lake" or max_objects < 1:
        return None
    n = src.end - src.start + 1
    k = min(max_objects, n)
    seqs = sorted({src.start + (i * (n - 1)) // max(1, k - 1) for i in range(k)})
    keys = {lake.schema.key_for(q) for q in seqs}
    sizes = [lake.fs.size(f"{lake.root}/{key}") for key in sorted(keys)]
    per_ledger = sum(sizes) / (len(sizes) * lake.schema.ledgers_per_file)
    return VolumeProbe(objects=len(sizes), compressed_bytes_per_ledger=round(per_ledger, 1),
                       scale=round(per_ledger / baseline, 4))


def estimate(cfg: PipelineConfig, cards: dict[str, ToolCard], rates: CostRates, *, default_workers: int = 1,
             probe: VolumeProbe | None = None) -> Estimate:
    """Estimate a run of ``cfg`` over its whole source range, scaled by ``probe`` when given."""
    n = cfg.source.end - cfg.source.start + 1
    per_task = cfg.options.ledgers_per_task
    if per_task == "auto":
        per_ledger = probe.compressed_bytes_per_ledger if probe else float(DEFAULT_SOURCE["compressed_bytes_per_ledger"])
        chunks = max(1, math.ceil(n * per_ledger / (cfg.options.chunk_target_mb * 2**20)))
        per_task = max(1, n // chunks)
    else:
        chunks = len(range(cfg.source.start // per_task, cfg.source.end // per_task + 1))
    workers = max(1, min(cfg.options.workers or default_workers, chunks))
    basis: dict[str, str] = {}
    src, basis["source.lake"] = _figures(cards, "source.lake", DEFAULT_SOURCE)
    vol = probe.scale if probe else 1.0
    if probe:
        basis["volume"] = (f"x{probe.scale} of the sample: {probe.objects} objects of the range probed, "
                           f"{probe.compressed_bytes_per_ledger:.0f} compressed bytes per ledger")
        src = {**src, "compressed_bytes_per_ledger": probe.compressed_bytes_per_ledger,
               "xdr_bytes_per_ledger": src["xdr_bytes_per_ledger"] * vol,
               "cpu_seconds_per_ledger": src["cpu_seconds_per_ledger"] * vol}
    sinks = max(1, len(cfg.sinks))
    rows: dict[str, int] = {}
    out_bytes: dict[str, int] = {}
    cpu_per_ledger = float(src["cpu_seconds_per_ledger"])
    arrow_per_ledger = 0.0
    for step in cfg.processors:
        fig, basis[f"processor.{step.name}"] = _figures(cards, f"processor.{step.name}", DEFAULT_PROCESSOR)
        card = cards.get(f"processor.{step.name}")
        per_ledger_table = card is not None and card.primary_key == ["sequence"]
        scale = 1.0 if per_ledger_table else vol
        fig = {k: v * scale if isinstance(v, (int, float)) and k.endswith("_per_ledger") else v for k, v in fig.items()}
        rows[step.name] = round(fig["rows_per_ledger"] * n)
        out_bytes[step.name] = round(fig["parquet_bytes_per_ledger"] * n) * len(cfg.sinks)
        cpu_per_ledger += fig["cpu_seconds_per_ledger"] + fig["write_cpu_seconds_per_ledger"] * sinks
        arrow_per_ledger += fig["arrow_bytes_per_ledger"]
    objects = math.ceil(float(src["objects_per_ledger"]) * n)
    read_bytes = round(src["compressed_bytes_per_ledger"] * n)
    cpu_seconds = cpu_per_ledger * n
    per_chunk_cpu = cpu_per_ledger * min(per_task, n)
    wall = math.ceil(chunks / workers) * per_chunk_cpu + RUN_OVERHEAD_SECONDS
    # a worker decodes decode_batch_mb of XDR at a time, whatever the chunk size
    batch = max(1, min(per_task, int(cfg.options.decode_batch_mb * 2**20 // max(1.0, float(src["xdr_bytes_per_ledger"])))))
    mem_worker = WORKER_BASE_MEMORY + round(batch * (src["xdr_bytes_per_ledger"] * DECODED_MEMORY_FACTOR + arrow_per_ledger))
    written = sum(out_bytes.values())
    gb = 1e9
    dollars = {
        "compute": cpu_seconds / 3600 * rates.cpu_hour,
        "read": read_bytes / gb * rates.read_gb,
        "write": written / gb * rates.write_gb,
        "requests": objects / 1000 * rates.requests_per_1000,
    }
    dollars = {k: round(v, 6) for k, v in dollars.items()}
    return Estimate(
        ledgers=n, chunks=chunks, workers=workers, objects=objects, read_bytes=read_bytes,
        xdr_bytes=round(src["xdr_bytes_per_ledger"] * n), rows=rows, total_rows=sum(rows.values()),
        output_bytes=out_bytes, bytes_written=written, cpu_seconds=round(cpu_seconds, 3),
        cpu_hours=round(cpu_seconds / 3600, 6), wall_seconds=round(wall, 2),
        memory_bytes_per_worker=mem_worker, memory_bytes=mem_worker * workers,
        dollars=Dollars(**dollars, total=round(sum(dollars.values()), 6)), basis=basis,
    )


def compare(est: Estimate, actual: dict[str, Any]) -> dict[str, float | None]:
    """Ratio actual / estimate for the figures a run measures (1.0 is a perfect estimate)."""

    def ratio(a: float | None, e: float) -> float | None:
        return None if a is None or e == 0 else round(float(a) / e, 4)

    return {
        "rows": ratio(actual.get("rows"), est.total_rows),
        "xdr_bytes": ratio(actual.get("xdr_bytes"), est.xdr_bytes),
        "bytes_written": ratio(actual.get("bytes_written"), est.bytes_written),
        "cpu_seconds": ratio(actual.get("cpu_seconds"), est.cpu_seconds),
    }
