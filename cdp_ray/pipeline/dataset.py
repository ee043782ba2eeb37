"""The notebook-facing API: Ray Datasets of ledgers, and tables as pyarrow or polars.

Every function takes a range the way a pipeline does: ``start``/``end`` ledgers, or ``start_time``/
``end_time`` UTC times (``datetime`` or ISO 8601 strings; a time without offset is UTC), resolved to
ledgers by reading the lake's close times (:mod:`cdp_ray.pipeline.timerange`); ``where=`` a
transaction filter (:class:`~cdp_ray.processors.filters.TransactionFilter` or its dict); processor
options; and any :class:`LakeSource` field (``network``, ``anonymous``, ``endpoint_url``,
``storage_options``, ...).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import pyarrow as pa
from pydantic import ValidationError

from cdp_ray.collector import freeze_startup_objects
from cdp_ray.errors import ConfigError
from cdp_ray.pipeline.config import TIME_FIELDS, PipelineConfig, ProcessorStep, RunOptions, resolve_source_times
from cdp_ray.pipeline.datasource import LedgerRangeDatasource
from cdp_ray.pipeline.source import LakeSource
from cdp_ray.pipeline.runner import decode_raw, process_local
from cdp_ray.processors.base import earliest_rows, get_processor
from cdp_ray.processors.filters import TransactionFilter, select

Time = datetime | str
_RANGE_HINT = ("give start=/end= (ledgers) or start_time=/end_time= (datetimes or ISO 8601 UTC times), "
               "plus LakeSource options: network=, anonymous=, endpoint_url=, storage_options=, ...")


def resolve_source(
    source: str | LakeSource,
    start: int | None = None,
    end: int | None = None,
    *,
    start_time: Time | None = None,
    end_time: Time | None = None,
    **options: Any,
) -> LakeSource:
    """The :class:`LakeSource` of ``source`` (a lake URI, optionally with ``?start=..&end_time=..``, or a
    source) with the given bounds and options; UTC times are resolved to ledgers here."""
    doc = source.model_dump() if isinstance(source, LakeSource) else LakeSource.uri_fields(str(source))
    doc.update({k: v for k, v in options.items() if v is not None})
    for bound, ledger, when in (("start", start, start_time), ("end", end, end_time)):
        if ledger is not None and when is not None:
            raise ConfigError(f"both {bound}= and {bound}_time= given", hint=f"give the range's {bound} as a ledger or as a UTC time, not both")
        if ledger is not None:
            doc[bound] = ledger
            doc.pop(f"{bound}_time", None)
        elif when is not None:
            doc[f"{bound}_time"] = when
            doc.pop(bound, None)
    if any(doc.get(k) is not None for k in TIME_FIELDS):
        doc, _ = resolve_source_times(doc)
    try:
        return LakeSource.model_validate(doc)
    except ValidationError as exc:
        e = exc.errors()[0]
        field = ".".join(map(str, e["loc"])) or "source"
        raise ConfigError(f"source {field}: {e['msg'].removeprefix('Value error, ')}", hint=_RANGE_HINT) from None


def _where(where: TransactionFilter | dict | None) -> TransactionFilter | None:
    if where is None or isinstance(where, TransactionFilter):
        return where
    try:
        return TransactionFilter.model_validate(where)
    except ValidationError as exc:
        e = exc.errors()[0]
        raise ConfigError(f"where.{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}",
                          hint="where takes operation_types, accounts, contract_ids, assets, event_topics") from None


def _configs(names: list[str], config: dict | None, single: bool) -> dict[str, dict]:
    """Per-processor options: ``config`` is the one processor's options, or ``{name: options}`` for a list."""
    if not config:
        return {n: {} for n in names}
    if single:
        return {names[0]: config}
    unknown = sorted(set(config) - set(names))
    if unknown:
        raise ConfigError(f"config names processors not loaded: {', '.join(unknown)}",
                          hint="with a list of processors, config maps a processor name to its options")
    return {n: config.get(n) or {} for n in names}


def read_ledgers(
    source: str | LakeSource,
    start: int | None = None,
    end: int | None = None,
    *,
    start_time: Time | None = None,
    end_time: Time | None = None,
    ledgers_per_task: int | None = None,
    **source_options: Any,
):
    """A ``ray.data.Dataset`` of raw ledgers (``sequence``, ``xdr``, ``key``) for ``[start, end]``
    (or the ledgers closed in ``[start_time, end_time]``).

    Read tasks are planned from the range: no object listing. ``source_options`` are
    :class:`LakeSource` fields (``network``, ``anonymous``, ``endpoint_url``, ...).
    """
    import ray.data

    src = resolve_source(source, start, end, start_time=start_time, end_time=end_time, **source_options)
    ds = LedgerRangeDatasource(src.open(), src.start, src.end, ledgers_per_task=ledgers_per_task, verify=src.verify)
    return ray.data.read_datasource(ds)


class _Decoder:
    """Decodes a block of raw ledgers; with a ``where`` filter, skips ledgers that cannot match and narrows the rest."""

    def __init__(self, passphrase: str, verify: bool, where: dict | None):
        self.passphrase, self.verify = passphrase, verify
        self.where = TransactionFilter.model_validate(where) if where else None
        self.compiled = self.where.compile(passphrase) if self.where is not None and not self.where.empty else None

    def __call__(self, batch: pa.Table) -> list:
        ledgers = [
            decode_raw(x, self.passphrase, key=k, sequence=q, verify=self.verify)
            for q, x, k in zip(
                batch.column("sequence").to_pylist(), batch.column("xdr").to_pylist(), batch.column("key").to_pylist()
            )
            if self.compiled is None or self.compiled.may_match(x)
        ]
        return ledgers if self.compiled is None else select(ledgers, self.where)


class ProcessLedgers:
    """``map_batches`` callable: a block of raw ledgers -> one processor's table."""

    def __init__(self, processor: str, config: dict | None = None, network_passphrase: str = "", verify: bool = True,
                 where: dict | None = None):
        self.proc = get_processor(processor)
        self.config = self.proc.parse_config(config)
        self.decode = _Decoder(network_passphrase, verify, where)
        freeze_startup_objects()

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.proc.process(self.decode(batch), self.config)


class PackedTables:
    """``map_batches`` callable: a block of raw ledgers, decoded once -> every processor's table.

    Tables of different schemas cannot share a Ray block, so each comes back as Arrow IPC bytes in a
    row ``(first_sequence, processor, ipc)``; ``first_sequence`` restores the ledger order.
    """

    def __init__(self, processors: list[str], network_passphrase: str = "", verify: bool = True,
                 configs: dict[str, dict] | None = None, where: dict | None = None):
        self.procs = [(p, p.parse_config((configs or {}).get(p.name))) for p in map(get_processor, processors)]
        self.decode = _Decoder(network_passphrase, verify, where)
        freeze_startup_objects()

    def __call__(self, batch: pa.Table) -> pa.Table:
        ledgers = self.decode(batch)
        first = batch.column("sequence")[0].as_py()
        payloads = []
        for proc, config in self.procs:
            table = proc.process(ledgers, config)
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            payloads.append(sink.getvalue().to_pybytes())
        return pa.table(
            {
                "first_sequence": pa.array([first] * len(self.procs), pa.uint32()),
                "processor": pa.array([p.name for p, _ in self.procs], pa.string()),
                "ipc": pa.array(payloads, pa.large_binary()),
            }
        )


def table_dataset(
    processor: str,
    source: str | LakeSource,
    start: int | None = None,
    end: int | None = None,
    *,
    start_time: Time | None = None,
    end_time: Time | None = None,
    where: TransactionFilter | dict | None = None,
    config: dict | None = None,
    ledgers_per_task: int | None = None,
    **source_options: Any,
):
    """A ``ray.data.Dataset`` of one processor's rows over ``[start, end]`` (or ``[start_time, end_time]``),
    only of transactions matching ``where``; ``config``: the processor's options. For a first-seen table
    (``assets``) each block holds its own first sightings: :func:`cdp_ray.processors.base.earliest_rows`
    merges them."""
    import ray.data

    src = resolve_source(source, start, end, start_time=start_time, end_time=end_time, **source_options)
    proc = get_processor(processor)
    options, flt = proc.parse_config(config).model_dump(), _where(where)
    return read_ledgers(src, ledgers_per_task=ledgers_per_task).map_batches(
        ProcessLedgers,
        fn_constructor_kwargs={"processor": processor, "config": options, "network_passphrase": src.network_passphrase,
                               "verify": src.verify, "where": flt.model_dump() if flt else None},
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
    start_time: Time | None = None,
    end_time: Time | None = None,
    where: TransactionFilter | dict | None = None,
    config: dict | None = None,
    engine: Literal["local", "ray"] = "local",
    output: Literal["arrow", "polars"] = "arrow",
    **source_options: Any,
):
    """Processor tables for a range, without writing files.

    ``load("transactions", "s3://...", start_time="2026-06-19T00:21:00Z", end_time=datetime(...),
    where={"operation_types": ["payment"]}, anonymous=True)`` returns one table; a list of names returns
    ``{name: table}``. ``config``: the processor's options, or ``{name: options}`` with a list.
    ``engine="ray"`` spreads the work over the cluster (joined or started by ``ray.init``).
    A first-seen table (``assets``) has one row per key for the whole range, at its earliest ledger.
    """
    names = [processors] if isinstance(processors, str) else list(processors)
    src = resolve_source(source, start, end, start_time=start_time, end_time=end_time, **source_options)
    flt, configs = _where(where), _configs(names, config, isinstance(processors, str))
    configs = {n: get_processor(n).parse_config(c).model_dump() for n, c in configs.items()}  # fail on the driver
    if engine == "ray":
        import ray.data

        packed = read_ledgers(src).map_batches(
            PackedTables,
            fn_constructor_kwargs={"processors": names, "network_passphrase": src.network_passphrase, "verify": src.verify,
                                   "configs": configs, "where": flt.model_dump() if flt else None},
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
    elif engine == "local":
        cfg = PipelineConfig(source=src, where=flt, processors=[ProcessorStep(name=n, config=configs[n]) for n in names],
                             options=RunOptions())
        tables = process_local(cfg)
    else:
        raise ConfigError(f"unknown engine {engine!r}", hint='use engine="local" or engine="ray"')
    if output == "polars":
        import polars as pl

        tables = {n: pl.from_arrow(t) for n, t in tables.items()}
    return tables[names[0]] if isinstance(processors, str) else tables
