"""``cdp-ray``: run pipelines, inspect lakes. Exit codes: 0 ok, 1 failed run, 2 bad input, 3 quarantined ranges."""

from __future__ import annotations

import json
import os
import sys
from typing import Optional

import typer

from cdp_ray.errors import CdpRayError, ConfigError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Batch analytics for Stellar ledgers on Ray.")

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_QUARANTINED = 1, 2, 3


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
    resume: bool = typer.Option(False, "--resume", help="skip ledger ranges every sink already committed"),
    force: bool = typer.Option(False, "--force", help="run although the sinks hold ranges written by another config"),
) -> None:
    """Run a pipeline on Ray: read the range, process, write the sinks.

    Exits 3 when the run finished but quarantined ranges (on_error: quarantine); rerun with --resume
    once the files are fixed.
    """
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
            if not as_json and row.get("status") == "quarantined":
                typer.secho(f"  ledgers {row['start']}-{row['end']}: QUARANTINED {row['error']}: {row['error_message']}", fg=typer.colors.YELLOW, err=True)
            elif not as_json:
                typer.echo(f"  ledgers {row['start']}-{row['end']}: {row['rows']} rows  [{done}/{total}]", err=True)

        if not as_json:
            typer.echo(f"running {cfg.name}: ledgers {cfg.source.start}-{cfg.source.end} from {cfg.source.uri}", err=True)
        summary = run_pipeline(cfg, on_chunk=progress, resume=resume, force=force)
    except CdpRayError as exc:
        _fail(exc, as_json)
    doc = {
        "ok": not summary.quarantined,
        "pipeline": summary.pipeline,
        "ledgers": summary.ledgers,
        "rows": summary.rows_by_table,
        "xdr_bytes": summary.xdr_bytes,
        "bytes_written": summary.bytes_written,
        "seconds": round(summary.wall_seconds, 3),
        "sinks": [{"type": s.type, "target": s.describe()} for s in cfg.sinks],
        "skipped_chunks": summary.skipped_chunks,
        "quarantined": [d.to_json() for d in summary.quarantined],
    }
    if as_json:
        typer.echo(json.dumps(doc))
    else:
        rows = ", ".join(f"{k}={v}" for k, v in summary.rows_by_table.items())
        typer.echo(f"done: {summary.ledgers} ledgers in {summary.wall_seconds:.1f}s; rows: {rows}")
        if summary.skipped_chunks:
            typer.echo(f"resumed: {summary.skipped_chunks} committed range(s) skipped")
        for s in cfg.sinks:
            typer.echo(f"output: {s.describe()}")
        for d in summary.quarantined:
            typer.secho(f"quarantined: ledgers {d.start}-{d.end} ({d.key}): {d.error}", fg=typer.colors.YELLOW, err=True)
    if summary.quarantined:
        raise typer.Exit(EXIT_QUARANTINED)


from cdp_ray.cli import control as _control  # noqa: E402  (control-plane commands)

_control.register(app)

from cdp_ray.cli.checkpoint import app as _checkpoint_app  # noqa: E402

app.add_typer(_checkpoint_app, name="checkpoint")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
