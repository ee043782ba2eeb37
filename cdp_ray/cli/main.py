"""``cdp-ray``: run pipelines, inspect lakes. Exit codes: 0 ok, 1 failed run, 2 bad input."""

from __future__ import annotations

import json
import os
import sys
from typing import Optional

import typer

from cdp_ray.errors import CdpRayError, ConfigError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Batch analytics for Stellar ledgers on Ray.")

EXIT_FAILED, EXIT_BAD_INPUT = 1, 2


@app.callback()
def _root() -> None:
    """Batch analytics for Stellar ledgers on Ray."""


def _fail(exc: CdpRayError, as_json: bool) -> None:
    code = EXIT_BAD_INPUT if isinstance(exc, ConfigError) else EXIT_FAILED
    if as_json:
        typer.echo(json.dumps({"ok": False, "error": type(exc).__name__, "message": exc.message, "hint": exc.hint}))
    else:
        typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
        if exc.hint:
            typer.echo(f"hint: {exc.hint}", err=True)
    raise typer.Exit(code)


@app.command()
def run(
    spec: Optional[str] = typer.Argument(
        None,
        help="pipeline YAML, or one line: 'lake:///path?start=..&end=.. | transactions | parquet://out'. "
        "Without it, runs the bundled sample pipeline.",
    ),
    workers: Optional[int] = typer.Option(None, help="parallel workers (default: all CPUs of the cluster)"),
    as_json: bool = typer.Option(False, "--json", help="print the run summary as JSON"),
) -> None:
    """Run a pipeline on Ray: read the range, process, write the sinks."""
    from cdp_ray.pipeline.config import parse_pipeline
    from cdp_ray.pipeline.runner import run_pipeline

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        if spec is None:
            from cdp_ray.sample import sample_pipeline_path

            spec = str(sample_pipeline_path())
        cfg = parse_pipeline(spec)
        if workers:
            cfg.options.workers = workers
        total = cfg.source.end - cfg.source.start + 1
        done = 0

        def progress(row: dict) -> None:
            nonlocal done
            done += int(row["ledgers"])
            if not as_json:
                typer.echo(f"  ledgers {row['start']}-{row['end']}: {row['rows']} rows  [{done}/{total}]", err=True)

        if not as_json:
            typer.echo(f"running {cfg.name}: ledgers {cfg.source.start}-{cfg.source.end} from {cfg.source.uri}", err=True)
        summary = run_pipeline(cfg, on_chunk=progress)
    except CdpRayError as exc:
        _fail(exc, as_json)
    doc = {
        "ok": True,
        "pipeline": summary.pipeline,
        "ledgers": summary.ledgers,
        "rows": summary.rows_by_table,
        "xdr_bytes": summary.xdr_bytes,
        "bytes_written": summary.bytes_written,
        "seconds": round(summary.wall_seconds, 3),
        "sinks": [s.model_dump() for s in cfg.sinks],
    }
    if as_json:
        typer.echo(json.dumps(doc))
    else:
        rows = ", ".join(f"{k}={v}" for k, v in summary.rows_by_table.items())
        typer.echo(f"done: {summary.ledgers} ledgers in {summary.wall_seconds:.1f}s; rows: {rows}")
        for s in cfg.sinks:
            typer.echo(f"output: {getattr(s, 'uri', None) or s.type}")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
