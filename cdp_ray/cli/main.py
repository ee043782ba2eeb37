"""``cdp-ray``: run, check and scaffold pipelines; list processors; talk to the control plane.

Exit codes: 0 ok, 1 the run failed (lake, sink, Ray), 2 bad input (pipeline, options), 3 the run
finished but quarantined ranges, 4 the run finished but its success criteria failed, 130 interrupted or
stopped. ``--json`` prints one JSON document on stdout.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer

from cdp_ray.cli.style import click_metavars
from cdp_ray.errors import CdpRayError, ConfigError, ProcessingError

click_metavars()
app = typer.Typer(no_args_is_help=True, help="Batch analytics for Stellar ledgers on Ray.")
docs_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Reference docs generated from the processor registry.")
app.add_typer(docs_app, name="docs")

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_QUARANTINED, EXIT_CRITERIA, EXIT_INTERRUPTED = 1, 2, 3, 4, 130
JSON_OPT = typer.Option(False, "--json", help="print one JSON document on stdout")


def _version(value: bool) -> None:
    if value:
        from cdp_ray import __version__

        typer.echo(f"cdp-ray {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version"),
) -> None:
    """Batch analytics for Stellar ledgers on Ray.

    Start with `cdp-ray run` (the bundled sample), then `cdp-ray init payments` for a pipeline of
    your own. Exit codes: 0 ok, 1 run failed, 2 bad input, 3 quarantined ranges, 4 success criteria
    failed, 130 interrupted or stopped.
    """


def _fail(exc: CdpRayError, as_json: bool) -> None:
    from cdp_ray.pipeline.config import PipelineValidationError

    code = EXIT_BAD_INPUT if isinstance(exc, ConfigError) else EXIT_FAILED
    if as_json:
        doc: dict[str, Any] = {"ok": False, "error": type(exc).__name__, "message": exc.message, "hint": exc.hint}
        if isinstance(exc, PipelineValidationError):
            doc["problems"] = [p.to_json() for p in exc.problems]
        typer.echo(json.dumps(doc))
    else:
        typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
        if exc.hint:
            typer.echo(f"hint: {exc.hint}", err=True)
    raise typer.Exit(code)


def _spec_or_sample(spec: str | None) -> str:
    if spec is None or spec == "sample":
        from cdp_ray.sample import sample_pipeline_path

        return str(sample_pipeline_path())
    return spec


class _Progress:
    """Chunk progress on the terminal: a bar on a TTY, a line per ~10% (and every quarantine) elsewhere."""

    def __init__(self, stream, total: int, enabled: bool):
        self.stream, self.total, self.enabled = stream, max(total, 1), enabled
        self.done = self.rows = 0
        self.bar = None
        self._next_pct, self._last = 10, time.monotonic()
        if enabled and stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("ledgers"),
                                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                console=Console(file=stream), transient=True)
            self.task = self.bar.add_task("processing", total=total)
            self.bar.start()

    def say(self, msg: str, color: str | None = None) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.console.print(msg, style=color, markup=False, highlight=False)
        else:
            self.stream.write((typer.style(msg, fg=color) if color and self.stream.isatty() else msg) + "\n")

    def chunk(self, row: dict) -> None:
        self.done += int(row["ledgers"])
        self.rows += int(row["rows"])
        if row.get("status") == "quarantined":
            self.say(f"  ledgers {row['start']}-{row['end']}: quarantined: {row['error']}: {row['error_message']}", "yellow")
        if self.bar is not None:
            self.bar.update(self.task, advance=int(row["ledgers"]), description=f"{self.rows:,} rows")
            return
        pct = 100 * self.done // self.total
        if pct >= self._next_pct or time.monotonic() - self._last > 30:
            self.say(f"  {self.done}/{self.total} ledgers ({pct}%), {self.rows:,} rows")
            self._next_pct = (pct // 10 + 1) * 10
            self._last = time.monotonic()

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def summary_doc(cfg, summary, final=None) -> dict[str, Any]:
    """The run summary that ``--json`` prints (and ``jobs/backfill.py``); ``final``: the run's end as
    :class:`~cdp_ray.control.client.RunHooks` judged it (state, success criteria)."""
    return {
        "ok": not summary.quarantined and (final is None or final.state == "succeeded"),
        **({"state": final.state, "success": final.success} if final is not None else {}),
        "pipeline": summary.pipeline,
        "start": cfg.source.start,
        "end": cfg.source.end,
        "ledgers": summary.ledgers,
        "ledgers_decoded": summary.ledgers_decoded,
        "rows": summary.rows_by_table,
        "xdr_bytes": summary.xdr_bytes,
        "bytes_written": summary.bytes_written,
        "seconds": round(summary.wall_seconds, 3),
        "sinks": [{"type": s.type, "target": s.describe()} for s in cfg.sinks],
        "chunks": summary.chunks,
        "skipped_chunks": summary.skipped_chunks,
        "skipped_ledgers": summary.skipped_ledgers,
        "retried_chunks": summary.retried_chunks,
        "workers": summary.workers,
        "busy_seconds": round(summary.busy_seconds, 3),
        "scheduling_overhead": round(summary.scheduling_overhead(), 4),
        "idle_share": round(summary.idle_share(), 4),
        "decoders": summary.decoders,
        "decoder_warnings": summary.decoder_warnings,
        "stopped": summary.stopped,
        "quarantined_chunks": summary.quarantined_chunks,
        "quarantined": [d.to_json() for d in summary.quarantined],
    }


def _print_summary(cfg, summary) -> None:
    rate = summary.ledgers / summary.wall_seconds if summary.wall_seconds else 0.0
    typer.echo(f"done: {summary.ledgers} ledgers in {summary.wall_seconds:.1f}s ({rate:.1f} ledgers/s), "
               f"{summary.bytes_written / 1e6:.1f} MB written")
    if cfg.where is not None and not cfg.where.empty:
        typer.echo(f"filter: {summary.ledgers_decoded} of {summary.ledgers} ledgers could match and were decoded")
    width = max((len(k) for k in summary.rows_by_table), default=0)
    for table, n in summary.rows_by_table.items():
        typer.echo(f"  {table:<{width}}  {n:>10,} rows")
    if summary.skipped_chunks:
        typer.echo(f"resumed: {summary.skipped_chunks} committed range(s) skipped")
    if summary.decoders:
        typer.echo("decoder: " + ", ".join(f"{d} ({n} chunks)" for d, n in summary.decoders.items()))
    for w in summary.decoder_warnings:
        typer.secho(f"warning: {w}", fg=typer.colors.YELLOW, err=True)
    for s in cfg.sinks:
        typer.echo(f"output: {s.describe()}")
    parquet = [s for s in cfg.sinks if s.type == "parquet"]
    if parquet and summary.rows_by_table:
        table = next(iter(summary.rows_by_table))
        typer.echo(f"read it: cdp_ray.scan('{parquet[0].uri}', '{table}').collect()  (committed rows only)")
    for d in summary.quarantined:
        typer.secho(f"quarantined: ledgers {d.start}-{d.end} ({d.key}): {d.error}", fg=typer.colors.YELLOW, err=True)
    if summary.quarantined:
        typer.echo("hint: fix or re-export those files, then rerun with --resume", err=True)


def exit_code(cfg, summary, final) -> int:
    """The exit code of a finished run (documented in the module docstring)."""
    if final.state == "stopped":
        return EXIT_INTERRUPTED
    if final.success is not None and not final.success["passed"]:
        return EXIT_CRITERIA
    lenient = cfg.success is not None and cfg.success.max_quarantined is not None
    return EXIT_QUARANTINED if summary.quarantined and not lenient else 0


def _print_end(final) -> None:
    for c in (final.success or {}).get("checks", []):
        mark = {True: "pass", False: "FAIL", None: "not judged"}[c["passed"]]
        typer.secho(f"success {c['criterion']} {c['name']}: {mark}: {c['detail']}",
                    fg=typer.colors.RED if c["passed"] is False else None, err=c["passed"] is False)
    if final.state == "stopped":
        typer.secho("stopped on request: committed ranges are kept; rerun with --resume to continue",
                    fg=typer.colors.YELLOW, err=True)


def _print_plan(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"ok": True, **doc}))
        return
    a, b = doc["range"]
    typer.echo(f"plan for {doc['pipeline']}: ledgers {a}-{b} ({doc['ledgers']:,}), {doc['grid']}")
    typer.echo(f"  chunks: {doc['chunks']:,} in the range, {doc['chunks_committed']:,} committed, "
               f"{doc['chunks_to_run']:,} to run ({doc['ledgers_to_run']:,} ledgers)" + ("" if doc["resume"] else
               "; without --resume every chunk is rerun"))
    if doc["first_chunk"]:
        typer.echo(f"  first chunk to run: {doc['first_chunk'][0]}-{doc['first_chunk'][1]}; "
                   f"last: {doc['last_chunk'][0]}-{doc['last_chunk'][1]}")
    lake = doc.get("lake") or {}
    if lake.get("holds") == "all":
        typer.echo("  lake: holds the first and last ledger of the range")
    elif lake.get("message"):
        typer.secho(f"  lake: {lake['message']}", fg=typer.colors.YELLOW)
    if doc.get("stale_ranges"):
        typer.secho(f"  {doc['stale_ranges']} committed range(s) of another config: the run needs --force",
                    fg=typer.colors.YELLOW)
    typer.echo(f"  planned in {doc['planning_seconds']:.2f}s, peak RSS {doc['peak_rss_mb']:.0f} MB")


@app.command()
def run(
    spec: Optional[str] = typer.Argument(
        None,
        help="pipeline YAML, or one line: 'lake:///path?start=..&end=.. | transactions | parquet://out'. "
        "Without it, runs the bundled sample pipeline.",
        show_default=False,
    ),
    workers: Optional[int] = typer.Option(None, min=1, help="parallel workers (default: all CPUs of the cluster)"),
    as_json: bool = JSON_OPT,
    resume: bool = typer.Option(False, "--resume", help="skip ledger ranges every sink already committed"),
    force: bool = typer.Option(False, "--force", help="run although the sinks hold ranges written by another config"),
    address: Optional[str] = typer.Option(
        None, "--address", help="Ray cluster address; `local` starts a new local Ray (default: $RAY_ADDRESS, the cluster `ray start` started here, else a new local Ray)"
    ),
    engine: str = typer.Option("ray", "--engine", help="ray, or local: one process without Ray (small ranges, debugging)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show Ray's own logs instead of writing them to a file"),
    start: Optional[int] = typer.Option(None, help="first ledger (overrides the pipeline's)"),
    end: Optional[int] = typer.Option(None, help="last ledger (overrides the pipeline's)"),
    start_time: Optional[str] = typer.Option(None, help="start at the first ledger closed at or after this UTC time"),
    end_time: Optional[str] = typer.Option(None, help="end at the last ledger closed at or before this UTC time"),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="print the plan (ledgers, chunks committed and to run, what the lake holds) and exit; "
        "starts no Ray and writes nothing"
    ),
    control_url: Optional[str] = typer.Option(
        None, "--control-url", envvar="CDP_RAY_CONTROL_URL", help="report to this control plane: register, heartbeat, "
        "per-chunk stats; a stop requested there stops the run"),
    control_token: Optional[str] = typer.Option(None, "--control-token", envvar="CDP_RAY_TOKEN",
                                                help="bearer token with the apply scope for --control-url"),
) -> None:
    """Run a pipeline on Ray: read the range, process, write the sinks.

    Exits 3 when the run finished but quarantined ranges (on_error: quarantine); rerun with --resume
    once the files are fixed. Exits 4 when the pipeline's success criteria failed, 130 when stopped.
    """
    if engine not in ("ray", "local"):
        _fail(ConfigError(f"unknown engine {engine!r}", hint="use --engine ray or --engine local"), as_json)
    try:
        from cdp_ray.pipeline.config import validate_spec, with_range

        checked = validate_spec(_spec_or_sample(spec))
        cfg = with_range(checked.config_or_raise(), start=start, end=end, start_time=start_time, end_time=end_time)
        if not as_json:
            for w in checked.warnings:
                typer.secho(w.format(checked.where), fg=typer.colors.YELLOW, err=True)
        if workers:
            cfg.options.workers = workers
        cfg.source.open()  # fail fast, before Ray starts, on a wrong URI, missing root or credentials
        if dry_run:
            from cdp_ray.pipeline.runner import dry_run as plan

            _print_plan(plan(cfg, resume=resume, workers=workers or 1), as_json)
            return
    except CdpRayError as exc:
        _fail(exc, as_json)
    from contextlib import nullcontext

    from cdp_ray.cli.ray_env import connect, quiet_environment, ray_output_to, remote_user_error, run_log_path

    quiet_environment()

    from cdp_ray.control.client import RunHooks
    from cdp_ray.pipeline.runner import run_pipeline

    log_path = None if verbose or engine == "local" else run_log_path()
    error: BaseException | None = None
    summary = None
    try:
        hooks = RunHooks(cfg, url=control_url, token=control_token)
    except CdpRayError as exc:
        _fail(exc, as_json)
    with (ray_output_to(log_path) if log_path else nullcontext(sys.stderr)) as term:
        src = cfg.source
        total = src.end - src.start + 1
        progress = _Progress(term, total, enabled=not as_json)
        hooks.user_on_chunk = progress.chunk
        progress.say(f"running {cfg.name}: ledgers {src.start}-{src.end} ({total:,}) from {src.uri}"
                     + (f"; reporting to {control_url} as {hooks.pipeline_id}" if hooks.pipeline_id else ""))
        ours = False  # shut down at the end only a Ray this run connected to, not the caller's
        try:
            if engine == "ray":
                import ray

                ours = not ray.is_initialized()
                where = connect(address, verbose=verbose)
                progress.say(f"on {where}" + (f"; Ray logs: {log_path}" if log_path else ""))
            summary = run_pipeline(cfg, on_chunk=hooks.on_chunk, resume=resume, force=force, engine=engine,  # type: ignore[arg-type]
                                   should_stop=hooks.should_stop)
        except (KeyboardInterrupt, Exception) as exc:  # reported below, once the terminal is back
            error = exc
        finally:
            progress.stop()
            if ours:
                import ray

                ray.shutdown()
    if error is not None and not isinstance(error, (CdpRayError, KeyboardInterrupt)):
        error = remote_user_error(error) or error
    final = hooks.finish(summary, error)
    if isinstance(error, KeyboardInterrupt):
        msg, hint = "interrupted", "committed ranges are kept; rerun with --resume to continue"
        if as_json:
            typer.echo(json.dumps({"ok": False, "error": "Interrupted", "message": msg, "hint": hint}))
        else:
            typer.secho(f"{msg}: {hint}", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    if isinstance(error, CdpRayError):
        if verbose and isinstance(error, ProcessingError):
            typer.echo(error.traceback, err=True)
        if log_path and not isinstance(error, ConfigError):
            error.hint = f"{error.hint}; Ray's logs of this run: {log_path}" if error.hint else f"Ray's logs of this run: {log_path}"
        _fail(error, as_json)
    if error is not None:
        if verbose:
            raise error
        first = re.sub(r"\x1b\[[0-9;]*m", "", (str(error).strip().splitlines() or [""])[0])
        _fail(CdpRayError(f"unexpected {type(error).__name__}: {first}",
                          hint="rerun with --verbose for the traceback" + (f"; Ray's logs of this run: {log_path}" if log_path else "")),
              as_json)
    assert summary is not None
    if as_json:
        typer.echo(json.dumps(summary_doc(cfg, summary, final)))
    else:
        _print_summary(cfg, summary)
        _print_end(final)
    code = exit_code(cfg, summary, final)
    if code:
        raise typer.Exit(code)


@app.command()
def validate(
    spec: Optional[str] = typer.Argument(None, help="pipeline YAML or one-line spec (default: the bundled sample)", show_default=False),
    as_json: bool = JSON_OPT,
    resolve_times: bool = typer.Option(
        True, "--resolve-times/--no-resolve-times", help="read close times from the lake to resolve start_time/end_time"
    ),
    check_source: bool = typer.Option(False, "--check-source", help="also read the range's first and last ledger from the lake"),
) -> None:
    """Check a pipeline without running it: YAML, fields, processors and their options, sinks, and how
    tables flow from processors into sinks. Every problem is reported with its line and column.

    Exits 0 when the pipeline can run (warnings allowed), 2 when it cannot.
    """
    from cdp_ray.pipeline.config import Problem, validate_spec

    where = _spec_or_sample(spec)
    try:
        v = validate_spec(where, resolve_times=resolve_times)
    except CdpRayError as exc:
        _fail(exc, as_json)
    if v.config is not None and check_source:
        src = v.config.source
        try:
            lake = src.open()
            for seq in sorted({src.start, src.end}):
                next(iter(lake.read_range(seq, seq, verify=src.verify)))
        except CdpRayError as exc:
            v.problems.append(Problem(("source",), exc.message, exc.hint))
            v.config = None
    if as_json:
        doc: dict[str, Any] = {"ok": not v.errors, "file": v.where, "problems": [p.to_json() for p in v.problems],
                               "time_resolution_reads": v.time_resolution_reads}
        if v.config is not None:
            doc["pipeline"] = v.config.model_dump(mode="json")
        typer.echo(json.dumps(doc))
    else:
        for p in v.problems:
            typer.secho(p.format(v.where), fg=typer.colors.RED if p.severity == "error" else typer.colors.YELLOW, err=True)
        if v.config is not None:
            cfg = v.config
            n = cfg.source.end - cfg.source.start + 1
            via = f" (start_time/end_time resolved in {v.time_resolution_reads} ledger reads)" if v.time_resolution_reads else ""
            typer.echo(f"ok: {cfg.name}: ledgers {cfg.source.start}-{cfg.source.end} ({n:,}) on {cfg.source.network}{via}")
            typer.echo(f"  processors: {', '.join(s.name for s in cfg.processors)}")
            typer.echo(f"  sinks: {', '.join(s.describe() for s in cfg.sinks) or 'none'}")
        else:
            n = len(v.errors)
            typer.echo(f"{n} error{'s' if n != 1 else ''}; the pipeline cannot run", err=True)
    if v.errors:
        raise typer.Exit(EXIT_BAD_INPUT)


@app.command()
def init(
    template: Optional[str] = typer.Argument(None, help="core, payments, contract-events or token-transfers", show_default=False),
    output: Path = typer.Option(Path("pipeline.yaml"), "--output", "-o", help="file to write"),
    lake: Optional[str] = typer.Option(None, help="lake URI (default: the bundled sample lake)"),
    start: Optional[int] = typer.Option(None, help="first ledger"),
    end: Optional[int] = typer.Option(None, help="last ledger"),
    start_time: Optional[str] = typer.Option(None, help="range start as a UTC time, e.g. 2025-06-01T00:00:00Z"),
    end_time: Optional[str] = typer.Option(None, help="range end as a UTC time"),
    network: str = typer.Option("pubnet", help="pubnet, testnet, futurenet or a passphrase"),
    out: Optional[str] = typer.Option(None, help="Parquet output directory (default: out/<template>)"),
    contract: Optional[str] = typer.Option(None, help="C... contract id (contract-events)"),
    name: Optional[str] = typer.Option(None, help="pipeline name (default: the template's name)"),
    overwrite: bool = typer.Option(False, "--force", help="overwrite an existing file"),
    list_templates: bool = typer.Option(False, "--list", help="list the templates"),
    as_json: bool = JSON_OPT,
) -> None:
    """Write a pipeline YAML from a template. Defaults run on the bundled sample lake as is."""
    from pydantic import ValidationError

    from cdp_ray.cli.templates import TEMPLATES, TemplateParams, get_template, render
    from cdp_ray.pipeline.config import validate_text

    if as_json and list_templates:
        typer.echo(json.dumps([{"name": t.name, "title": t.title, "description": t.description} for t in TEMPLATES.values()]))
        return
    if list_templates or template is None:
        width = max(len(t) for t in TEMPLATES)
        for t in TEMPLATES.values():
            typer.echo(f"  {t.name:<{width}}  {t.description}")
        if template is None and not list_templates:
            typer.echo("usage: cdp-ray init TEMPLATE [-o pipeline.yaml] [--lake URI --start N --end M]", err=True)
            raise typer.Exit(EXIT_BAD_INPUT)
        return
    try:
        get_template(template)
        fields = {"lake": lake, "start": start, "end": end, "start_time": start_time, "end_time": end_time,
                  "network": network, "out": out, "contract": contract, "name": name}
        try:
            params = TemplateParams(**{k: v for k, v in fields.items() if v is not None})
        except ValidationError as exc:
            e = exc.errors()[0]
            raise ConfigError(f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg'].removeprefix('Value error, ')}",
                              hint="see `cdp-ray init --help`") from None
        if output.exists() and not overwrite:
            raise ConfigError(f"{output} already exists", hint="pass --force to overwrite it, or -o another path")
        text = render(template, params, str(output))
        v = validate_text(text, str(output), resolve_times=False)
        if v.errors:
            raise ConfigError("the template produced an invalid pipeline:\n  " + "\n  ".join(p.format(str(output)) for p in v.errors),
                              hint="check the values passed to init")
    except CdpRayError as exc:
        _fail(exc, as_json)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    if as_json:
        typer.echo(json.dumps({"ok": True, "template": template, "path": str(output)}))
        return
    typer.echo(f"wrote {output} ({template})")
    typer.echo(f"  check it:  cdp-ray validate {output}")
    typer.echo(f"  run it:    cdp-ray run {output}")


@app.command()
def schema(
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="write to this file instead of stdout"),
) -> None:
    """Print the JSON Schema of pipeline YAML files (for editors and CI checks)."""
    from cdp_ray.pipeline.config import pipeline_json_schema

    text = json.dumps(pipeline_json_schema(), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"wrote {output}", err=True)


@app.command()
def processors(
    name: Optional[str] = typer.Argument(None, help="show one processor: options and columns", show_default=False),
    as_json: bool = JSON_OPT,
) -> None:
    """List the registered processors, or show one processor's options and output columns."""
    from cdp_ray.cli.docgen import processor_doc
    from cdp_ray.processors import REGISTRY, get_processor

    try:
        procs = [get_processor(name)] if name else [REGISTRY[n] for n in sorted(REGISTRY)]
    except CdpRayError as exc:
        _fail(exc, as_json)
    if as_json:
        docs = [processor_doc(p) for p in procs]
        typer.echo(json.dumps(docs[0] if name else docs))
        return
    if name is None:
        width = max(len(p.name) for p in procs)
        for p in procs:
            first = p.description.split(". ")[0].rstrip(".")
            typer.echo(f"{p.name:<{width}}  {first}")
        typer.echo("\nshow one: cdp-ray processors NAME", err=True)
        return
    p = procs[0]
    typer.echo(f"{p.name}: {p.description}")
    typer.echo(f"primary key: ({', '.join(p.primary_key)})" + (f"; tags: {', '.join(p.tags)}" if p.tags else ""))
    fields = p.config_model.model_fields
    typer.echo("options:" if fields else "options: none")
    for fname, f in fields.items():
        typer.echo(f"  {fname} = {f.default!r}  {f.description or ''}")
    typer.echo("columns:")
    width = max(len(f.name) for f in p.schema)
    for f in p.schema:
        desc = (f.metadata or {}).get(b"description", b"").decode()
        typer.echo(f"  {f.name:<{width}}  {str(f.type):<14} {desc}")


@app.command()
def compact(
    spec: str = typer.Argument(..., help="pipeline YAML or one-line spec with an Iceberg sink"),
    target_mb: Optional[int] = typer.Option(None, "--target-mb", help="target data file size (default: the sink's target_file_mb)"),
    as_json: bool = JSON_OPT,
) -> None:
    """Rewrite the small data files of a pipeline's Iceberg tables into files near the target size (rows
    unchanged), and delete data files no snapshot references. Takes the pipeline's lock: not during a run."""
    from cdp_ray.pipeline.config import parse_pipeline
    from cdp_ray.sinks.base import make_sink

    out = []
    try:
        cfg = parse_pipeline(spec)
        sinks = [make_sink(s) for s in cfg.sinks if s.type == "iceberg"]
        if not sinks:
            raise ConfigError(f"pipeline {cfg.name!r} has no Iceberg sink to compact",
                              hint="compact applies to `type: iceberg` sinks (Parquet output is one file per table per range)")
        for s in sinks:
            lock = s.lock(cfg.name)
            try:
                out.append({"sink": s.config.describe(), "tables": s.compact(cfg.name, target_mb)})
            finally:
                lock.release()
                s.close()
    except CdpRayError as exc:
        _fail(exc, as_json)
    if as_json:
        typer.echo(json.dumps({"pipeline": cfg.name, "compacted": out}))
        return
    for d in out:
        typer.echo(f"{d['sink']}:")
        for table, r in d["tables"].items():
            typer.echo(f"  {table}: {r['files_before']} -> {r['files_after']} data files "
                       f"({r['files_rewritten']} rewritten, {r['orphans_deleted']} unreferenced deleted)")


@docs_app.command("generate")
def docs_generate(
    output: Path = typer.Option(Path("docs"), "--output", "-o", help="docs directory"),
    check: bool = typer.Option(False, "--check", help="write nothing; exit 1 if the docs are stale"),
) -> None:
    """Write docs/processors/*.md (one page per processor) and docs/pipeline.schema.json."""
    from cdp_ray.cli.docgen import generate

    stale = generate(output, check=check)
    if check:
        for path in stale:
            typer.secho(f"stale: {path}", fg=typer.colors.RED, err=True)
        if stale:
            typer.echo("hint: run `cdp-ray docs generate` and commit the result", err=True)
            raise typer.Exit(EXIT_FAILED)
        typer.echo("docs are up to date")
    else:
        typer.echo(f"wrote {len(stale)} file(s) under {output}" if stale else "docs are up to date")


from cdp_ray.cli import control as _control  # noqa: E402  (control-plane commands)

_control.register(app)

from cdp_ray.cli.checkpoint import app as _checkpoint_app  # noqa: E402

app.add_typer(_checkpoint_app, name="checkpoint")

from cdp_ray.cli import doctor as _doctor  # noqa: E402

_doctor.register(app)


def main() -> None:
    from cdp_ray.cli import run_app

    run_app(app)


if __name__ == "__main__":
    main()
