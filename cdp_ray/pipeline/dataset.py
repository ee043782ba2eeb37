"""The notebook-facing API: Ray Datasets of ledgers, and tables as pyarrow or polars."""

from __future__ import annotations

from typing import Any, Literal

import pyarrow as pa

from cdp_ray.collector import freeze_startup_objects
from cdp_ray.pipeline.config import PipelineConfig, ProcessorStep, RunOptions
from cdp_ray.pipeline.datasource import LedgerRangeDatasource
from cdp_ray.pipeline.source import LakeSource
from cdp_ray.pipeline.runner import decode_raw, process_local
from cdp_ray.processors.base import earliest_rows, get_processor


def _source(source: str | LakeSource, start: int | None, end: int | None, **kw: Any) -> LakeSource:
    if isinstance(source, LakeSource):
        return source.model_copy(update={k: v for k, v in {"start": start, "end": end, **kw}.items() if v is not None})
    fields = {k: v for k, v in {"start": start, "end": end, **kw}.items() if v is not None}
    if "?" in source:
        return LakeSource.from_uri(source, **fields)
    return LakeSource(uri=source, **fields)


def read_ledgers(
    source: str | LakeSource,
    start: int | None = None,
    end: int | None = None,
    *,
    ledgers_per_task: int | None = None,
    **source_options: Any,
):
    """A ``ray.data.Dataset`` of raw ledgers (``sequence``, ``xdr``, ``key``) for ``[start, end]``.

    Read tasks are planned from the range: no object listing. ``source_options`` are
    :class:`LakeSource` fields (``network``, ``anonymous``, ``endpoint_url``, ...).
    """
    import ray.data

    src = _source(source, start, end, **source_options)
    ds = LedgerRangeDatasource(src.open(), src.start, src.end, ledgers_per_task=ledgers_per_task, verify=src.verify)
    return ray.data.read_datasource(ds)


def _decode_block(batch: pa.Table, passphrase: str, verify: bool) -> list:
    return [
        decode_raw(x, passphrase, key=k, sequence=q, verify=verify)
        for q, x, k in zip(
            batch.column("sequence").to_pylist(), batch.column("xdr").to_pylist(), batch.column("key").to_pylist()
        )
    ]


class ProcessLedgers:
    """``map_batches`` callable: a block of raw ledgers -> one processor's table."""

    def __init__(self, processor: str, config: dict | None = None, network_passphrase: str = "", verify: bool = True):
        self.proc = get_processor(processor)
        self.config = self.proc.parse_config(config)
        self.passphrase, self.verify = network_passphrase, verify
        freeze_startup_objects()

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.proc.process(_decode_block(batch, self.passphrase, self.verify), self.config)


class PackedTables:
    """``map_batches`` callable: a block of raw ledgers, decoded once -> every processor's table.

    Tables of different schemas cannot share a Ray block, so each comes back as Arrow IPC bytes in a
    row ``(first_sequence, processor, ipc)``; ``first_sequence`` restores the ledger order.
    """

    def __init__(self, processors: list[str], network_passphrase: str = "", verify: bool = True):
        self.procs = [get_processor(n) for n in processors]
        self.passphrase, self.verify = network_passphrase, verify
        freeze_startup_objects()

    def __call__(self, batch: pa.Table) -> pa.Table:
        ledgers = _decode_block(batch, self.passphrase, self.verify)
        first = batch.column("sequence")[0].as_py()
        payloads = []
        for proc in self.procs:
            table = proc.process(ledgers)
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            payloads.append(sink.getvalue().to_pybytes())
        return pa.table(
            {
                "first_sequence": pa.array([first] * len(self.procs), pa.uint32()),
                "processor": pa.array([p.name for p in self.procs], pa.string()),
                "ipc": pa.array(payloads, pa.large_binary()),
            }
        )


def table_dataset(processor: str, source: str | LakeSource, start: int | None = None, end: int | None = None, *, config: dict | None = None, **source_options: Any):
    """A ``ray.data.Dataset`` of one processor's rows over ``[start, end]``. For a first-seen table (``assets``)
    each block holds its own first sightings: :func:`cdp_ray.processors.base.earliest_rows` merges them."""
    import ray.data

    src = _source(source, start, end, **source_options)
    return read_ledgers(src).map_batches(
        ProcessLedgers,
        fn_constructor_kwargs={"processor": processor, "config": config, "network_passphrase": src.network_passphrase, "verify": src.verify},
        batch_format="pyarrow",
        batch_size=None,
        compute=ray.data.ActorPoolStrategy(min_size=1),
    )


def load(
    processors: str | list[str],
    source: str | LakeSource,
    start: int | None = None,
    end: int | None = None,
    *,
    engine: Literal["local", "ray"] = "local",
    output: Literal["arrow", "polars"] = "arrow",
    **source_options: Any,
):
    """Processor tables for a range, without writing files.

    ``load("transactions", "s3://...", 5e7, 5e7+9, anonymous=True)`` returns one table;
    a list of names returns ``{name: table}``. ``engine="ray"`` spreads the work over the cluster.
    A first-seen table (``assets``) has one row per key for the whole range, at its earliest ledger.
    """
    names = [processors] if isinstance(processors, str) else list(processors)
    src = _source(source, start, end, **source_options)
    if engine == "ray":
        import ray.data

        packed = read_ledgers(src).map_batches(
            PackedTables,
            fn_constructor_kwargs={"processors": names, "network_passphrase": src.network_passphrase, "verify": src.verify},
            batch_format="pyarrow",
            batch_size=None,
            compute=ray.data.ActorPoolStrategy(min_size=1),
        )
        parts: dict[str, list[tuple[int, pa.Table]]] = {n: [] for n in names}
        for row in packed.iter_rows():
            parts[row["processor"]].append((row["first_sequence"], pa.ipc.open_stream(row["ipc"]).read_all()))
        tables = {}
        for n, found in parts.items():
            proc = get_processor(n)
            ordered = [t.cast(proc.schema) for _, t in sorted(found, key=lambda p: p[0])]
            tables[n] = earliest_rows(proc, pa.concat_tables(ordered)) if ordered else proc.schema.empty_table()
    else:
        cfg = PipelineConfig(source=src, processors=[ProcessorStep(name=n) for n in names], options=RunOptions())
        tables = process_local(cfg)
    if output == "polars":
        import polars as pl

        tables = {n: pl.from_arrow(t) for n, t in tables.items()}
    return tables[names[0]] if isinstance(processors, str) else tables
