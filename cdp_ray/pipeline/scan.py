"""Read what a pipeline committed: the rows of its committed ranges only, never a half-written chunk.

``cdp_ray.scan("pipeline.yaml", "transactions")`` finds the table in the pipeline's sinks and returns a
polars LazyFrame (or a pyarrow Dataset, or a Ray Dataset). For Parquet the files are those of the
ranges the pipeline's manifests record as committed (see :mod:`cdp_ray.sinks.parquet`); for
PostgreSQL the rows whose ledger lies in a range recorded in ``cdp_ray_ranges``; for Iceberg the rows of the
table's current snapshot whose ledger lies in a range every table of the pipeline committed (see
:mod:`cdp_ray.sinks.iceberg`), read by pyiceberg (``polars.scan_iceberg`` for ``polars``).

A first-seen table (``assets``) has one row per key for the whole run. Its Parquet and Iceberg files hold
each chunk's first sightings (a chunk never reads another's output), so reading it here merges them: the
earliest row per key, in ledger order (the table is small: one row per distinct key). PostgreSQL
keeps the merged table itself. Reading the files directly gives every chunk's sightings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from cdp_ray.errors import ConfigError
from cdp_ray.pipeline.config import PipelineConfig, parse_pipeline
from cdp_ray.processors.base import earliest_rows, get_processor
from cdp_ray.sinks.base import Sink, make_sink
from cdp_ray.sinks.ddl import ident, qualified

Output = Literal["polars", "arrow", "ray"]


def scan(source: str | Path | PipelineConfig, table: str, *, pipeline: str | None = None, sink: str | int | None = None,
         output: Output = "polars", storage_options: dict[str, Any] | None = None) -> Any:
    """The committed rows of ``table``.

    ``source`` is a pipeline (YAML path, one-line spec or :class:`PipelineConfig`: its sinks are searched,
    ``sink`` picks one by type or position), or a Parquet output root (local path, ``s3://``, ``gs://``;
    ``pipeline`` names the pipeline when the root holds several). ``output``: ``polars`` (LazyFrame),
    ``arrow`` (``pyarrow.dataset.Dataset``) or ``ray`` (``ray.data.Dataset``).
    """
    chosen, name = _resolve(source, pipeline, sink, storage_options)
    get_processor(table)
    if chosen.config.type == "parquet":
        return _scan_parquet(chosen, name, table, output)
    if chosen.config.type == "postgres":
        return _scan_postgres(chosen, name, table, output)
    if chosen.config.type == "iceberg":
        return _scan_iceberg(chosen, name, table, output)
    raise ConfigError(f"scan reads Parquet, PostgreSQL and Iceberg sinks, not {chosen.config.type!r}",
                      hint="pick another sink of the pipeline with sink=")


def _resolve(source: Any, pipeline: str | None, pick: str | int | None, storage_options: dict | None) -> tuple[Sink, str]:
    if isinstance(source, PipelineConfig) or (isinstance(source, (str, Path)) and _is_spec(str(source))):
        cfg = source if isinstance(source, PipelineConfig) else parse_pipeline(str(source))
        sinks = [make_sink(s) for s in cfg.sinks]
        if not sinks:
            raise ConfigError(f"pipeline {cfg.name!r} has no sink to read", hint="add a parquet or postgres sink")
        if isinstance(pick, int):
            chosen = sinks[pick]
        else:
            chosen = next((s for s in sinks if pick in (None, s.config.type)), None)
            if chosen is None:
                raise ConfigError(f"pipeline {cfg.name!r} has no {pick!r} sink",
                                  hint=f"its sinks: {', '.join(s.config.type for s in sinks)}")
        return chosen, pipeline or cfg.name
    root = make_sink({"type": "parquet", "uri": str(source), "storage_options": storage_options or {}})
    if pipeline is None:
        names = root.pipelines()
        if len(names) != 1:
            raise ConfigError(
                f"{source} holds the output of {len(names)} pipelines ({', '.join(names) or 'none'})",
                hint="name one with pipeline=, or pass the pipeline's YAML file",
            )
        pipeline = names[0]
    return root, pipeline


def _is_spec(text: str) -> bool:
    return "|" in text or (text.endswith((".yaml", ".yml")) and Path(text).is_file())


def _scan_parquet(sink: Any, pipeline: str, table: str, output: Output) -> Any:
    files = sink.committed_files(pipeline, table)
    proc = get_processor(table)
    schema = proc.schema
    if proc.first_seen:
        return _first_seen(sink, files, proc, output)
    if output == "ray":
        import ray.data

        return ray.data.read_parquet(files, filesystem=None if sink.local else sink.fs, schema=schema) if files else \
            ray.data.from_arrow(schema.empty_table())
    import pyarrow.dataset as pads

    paths = [f if sink.local else f.split("://", 1)[1] for f in files]
    ds = pads.dataset(paths, schema=schema, filesystem=None if sink.local else sink.fs, format="parquet")
    if output == "arrow":
        return ds
    import polars as pl

    return pl.scan_pyarrow_dataset(ds)


def _first_seen(sink: Any, files: list[str], proc: Any, output: Output) -> Any:
    """The chunks' sightings of a first-seen table merged: the earliest row per key."""
    import pyarrow.dataset as pads

    paths = [f if sink.local else f.split("://", 1)[1] for f in files]
    rows = pads.dataset(paths, schema=proc.schema, filesystem=None if sink.local else sink.fs, format="parquet")
    return _in_memory(earliest_rows(proc, rows.to_table()), output)


def _in_memory(data: Any, output: Output) -> Any:
    """An Arrow table as the requested output."""
    if output == "arrow":
        import pyarrow.dataset as pads

        return pads.dataset(data)
    if output == "ray":
        import ray.data

        return ray.data.from_arrow(data)
    import polars as pl

    return pl.from_arrow(data).lazy()


def _scan_postgres(sink: Any, pipeline: str, table: str, output: Output) -> Any:
    import psycopg
    import pyarrow as pa

    proc = get_processor(table)
    query = (f"SELECT t.* FROM {qualified(sink.schema, table)} t WHERE EXISTS (SELECT 1 FROM "
             f"{qualified(sink.schema, 'cdp_ray_ranges')} r WHERE r.pipeline = %s AND t.{ident(proc.sequence_column)} "
             f"BETWEEN r.start_ledger AND r.end_ledger) ORDER BY t.{ident(proc.sequence_column)}")
    with psycopg.connect(sink.config.resolved_dsn()) as conn, conn.cursor() as cur:
        cur.execute(query, (pipeline,))
        names = [d.name for d in cur.description]
        rows = cur.fetchall()
    return _in_memory(pa.Table.from_pylist([dict(zip(names, r)) for r in rows], schema=proc.schema), output)


def _scan_iceberg(sink: Any, pipeline: str, table: str, output: Output) -> Any:
    tbl, row_filter, spans = sink.committed_filter(pipeline, table)
    proc = get_processor(table)
    if proc.first_seen:
        return _in_memory(earliest_rows(proc, tbl.scan(row_filter=row_filter).to_arrow()), output)
    if output == "polars":
        import polars as pl

        column = pl.col(sink.ledger_column(tbl))
        keep = pl.any_horizontal([column.is_between(s, e) for s, e in spans]) if spans else pl.lit(False)
        return pl.scan_iceberg(tbl).filter(keep)
    if output == "ray":
        import ray.data

        return ray.data.from_arrow(tbl.scan(row_filter=row_filter).to_arrow())
    import pyarrow.dataset as pads

    return pads.dataset(tbl.scan(row_filter=row_filter).to_arrow())
