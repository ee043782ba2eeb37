"""``cdp-ray checkpoint list|show|clean SPEC``: the committed ranges and dead letters a pipeline left in its sinks.

The checkpoint lives in the sinks themselves (Postgres: ``cdp_ray_ranges`` and
``cdp_ray_dead_letters`` tables; Parquet: ``_cdp_ray/{pipeline}/`` manifests; Iceberg: each table's
``cdp-ray.ranges`` property, dead letters under ``{warehouse}/_cdp_ray/``), so these commands
take the pipeline SPEC to know where to look.
"""

from __future__ import annotations

import json
from typing import Optional

import typer

from cdp_ray.errors import CdpRayError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Checkpoints: committed ranges and dead letters.")

SPEC = typer.Argument(..., help="pipeline YAML or one-line spec whose sinks hold the checkpoint")
JSON = typer.Option(False, "--json", help="print JSON")
PIPELINE = typer.Option(None, "--pipeline", "-p", help="pipeline name (default: the spec's name)")


def _fail(exc: CdpRayError, as_json: bool) -> None:
    from cdp_ray.cli.main import _fail as fail

    fail(exc, as_json)


def _open(spec: str):
    from cdp_ray.pipeline.checkpoint import config_hash
    from cdp_ray.pipeline.config import parse_pipeline
    from cdp_ray.sinks.base import make_sink

    cfg = parse_pipeline(spec)
    return cfg, config_hash(cfg), [make_sink(s) for s in cfg.sinks]


@app.command("list")
def list_(spec: str = SPEC, as_json: bool = JSON) -> None:
    """Every pipeline with a checkpoint in the spec's sinks: ranges, ledgers, config hashes, dead letters."""
    from cdp_ray.pipeline.checkpoint import SinkCheckpoint

    try:
        cfg, current, sinks = _open(spec)
        out = []
        for s in sinks:
            for name in s.pipelines():
                view = SinkCheckpoint(s.config.describe(), s.committed(name), s.dead_letters(name))
                out.append({"pipeline": name, **view.to_json(current if name == cfg.name else None)})
            s.close()
    except CdpRayError as exc:
        _fail(exc, as_json)
    if as_json:
        typer.echo(json.dumps({"config_hash": current, "checkpoints": out}))
        return
    if not out:
        typer.echo("no checkpoints")
    for d in out:
        span = f"{d['first']}-{d['last']}" if d["ranges"] else "-"
        stale = f", {d['stale']} stale" if d.get("stale") else ""
        typer.echo(
            f"{d['pipeline']}  {d['sink']}: {d['ranges']} ranges, {d['ledgers']} ledgers ({span}){stale}, "
            f"config {','.join(d['config_hashes']) or '-'}, {d['dead_letters']} dead letters"
        )


@app.command()
def show(spec: str = SPEC, pipeline: Optional[str] = PIPELINE, as_json: bool = JSON) -> None:
    """A pipeline's committed ranges, the gaps left in the spec's range, stale ranges and dead letters."""
    from cdp_ray.pipeline import intervals
    from cdp_ray.pipeline.checkpoint import Checkpoint, SinkCheckpoint

    try:
        cfg, current, sinks = _open(spec)
        name = pipeline or cfg.name
        ckpt = Checkpoint(name, sinks, current)
        views = [SinkCheckpoint(s.config.describe(), s.committed_detail(name), s.dead_letters(name)) for s in sinks]
        span = (cfg.source.start, cfg.source.end)
        done = intervals.intersect(ckpt.done(), [span])
        for s in sinks:
            s.close()
    except CdpRayError as exc:
        _fail(exc, as_json)
    doc = {
        "pipeline": ckpt.pipeline,
        "config_hash": current,
        "range": list(span),
        "ledgers": span[1] - span[0] + 1,
        "ledgers_done": intervals.size(done),
        "gaps": [list(g) for g in intervals.subtract(span, done)],
        "sinks": [
            {
                **v.to_json(current),
                "records": [r.to_json() for r in v.records],
                "dead_letters": [d.to_json() for d in v.dead_letters],
            }
            for v in views
        ],
    }
    if as_json:
        typer.echo(json.dumps(doc, default=str))
        return
    typer.echo(f"pipeline {doc['pipeline']} (config {current}): {doc['ledgers_done']:,}/{doc['ledgers']:,} ledgers of "
               f"{cfg.source.start}-{cfg.source.end} committed in every sink")
    if doc["gaps"]:
        typer.echo("not committed: " + ", ".join(f"{a}-{b}" for a, b in doc["gaps"]))
    for v in views:
        typer.echo(f"{v.sink}:")
        for r in v.records:
            mark = "" if r.config_hash == current else f"  STALE (config {r.config_hash})"
            rows = ", ".join(f"{k}={n}" for k, n in r.rows.items())
            at = r.committed_at.isoformat(timespec="seconds") if r.committed_at else "?"
            typer.echo(f"  {r.start}-{r.end}  {at}  {rows}{mark}")
        for d in v.dead_letters:
            where = f"ledger {d.ledger} " if d.ledger is not None else ""
            typer.echo(f"  DEAD LETTER {d.start}-{d.end}: {where}{d.key}: {d.error}: {d.message}")


@app.command()
def clean(
    spec: str = SPEC,
    pipeline: Optional[str] = PIPELINE,
    stale_only: bool = typer.Option(False, "--stale-only", help="only records written by another config"),
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation"),
    as_json: bool = JSON,
) -> None:
    """Delete a pipeline's checkpoint records and dead letters and release its tables for other pipelines
    (the written rows stay; a rerun replaces them). Refused while a run of the pipeline holds its lock."""
    try:
        cfg, current, sinks = _open(spec)
        name = pipeline or cfg.name
        if not yes and not as_json:
            what = "stale checkpoint records" if stale_only else "checkpoint and dead letters, and release its tables"
            typer.confirm(f"delete the {what} of pipeline {name!r} in {len(sinks)} sink(s)?", abort=True)
        out = []
        for s in sinks:
            lock = s.lock(name)
            try:
                if stale_only:
                    records = [r for r in s.committed(name) if r.config_hash != current]
                    out.append({"sink": s.config.describe(), "records": s.forget(name, records), "dead_letters": 0,
                                "released": []})
                else:
                    out.append({"sink": s.config.describe(), "records": s.forget(name),
                                "dead_letters": s.forget_dead_letters(name), "released": s.release(name)})
            finally:
                lock.release()
                s.close()
    except CdpRayError as exc:
        _fail(exc, as_json)
    if as_json:
        typer.echo(json.dumps({"pipeline": name, "deleted": out}))
        return
    for d in out:
        released = f", released tables {', '.join(d['released'])}" if d["released"] else ""
        typer.echo(f"{d['sink']}: deleted {d['records']} range records, {d['dead_letters']} dead letters{released}")
