"""Control-plane commands: ``serve``, ``tools``, ``estimate``, ``plan``, ``approve``, ``apply``, ``status``,
``stop``, ``mcp``.

``plan``/``approve``/``apply``/``status``/``stop``/``mcp`` talk to a running control plane at ``--url``
(``$CDP_RAY_CONTROL_URL``, default http://127.0.0.1:8000) with ``--token`` (``$CDP_RAY_TOKEN``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import typer

from cdp_ray.errors import CdpRayError

DEFAULT_URL = "http://127.0.0.1:8000"
URL = typer.Option(DEFAULT_URL, "--url", envvar="CDP_RAY_CONTROL_URL", help="control-plane URL")
TOKEN = typer.Option(None, "--token", envvar="CDP_RAY_TOKEN", help="bearer token")
JSON = typer.Option(False, "--json", help="print JSON")

tools_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Tool cards: list, show, generate, check.")


def _fail(exc: CdpRayError, as_json: bool) -> None:
    from cdp_ray.cli.main import _fail as fail

    fail(exc, as_json)


def _client(url: str, token: str | None):
    from cdp_ray.control.client import ControlClient

    return ControlClient(url, token=token)


def _pipeline_doc(spec: str) -> dict[str, Any]:
    """A pipeline file or one-liner, resolved locally (env interpolation happens here, not on the server)."""
    from cdp_ray.pipeline.config import parse_pipeline

    if spec == "sample":
        from cdp_ray.sample import sample_pipeline_path

        spec = str(sample_pipeline_path())
    return parse_pipeline(spec).model_dump(mode="json")


def _echo(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=2, default=str))


def _show_plan(plan: dict[str, Any]) -> None:
    est = plan["estimate"]
    typer.echo(f"plan {plan['id']}: {plan['status']}  (expires {plan['expires_at']})")
    for c in plan["changes"]:
        typer.echo(f"  {c['op']:>6} {c['path']}: {c['impact']}")
    for c in plan["checks"]:
        typer.echo(f"  check {c['name']}: {c['status']} - {c['detail']}")
    for msg in plan["policy"]["blocking"]:
        typer.secho(f"  blocked by {msg}", fg=typer.colors.RED)
    for msg in plan["policy"]["warnings"]:
        typer.secho(f"  warning {msg}", fg=typer.colors.YELLOW)
    typer.echo(f"  estimate: {est['ledgers']} ledgers, {est['total_rows']} rows, read {est['read_bytes'] / 1e6:.1f} MB, "
               f"write {est['bytes_written'] / 1e6:.1f} MB, {est['cpu_hours']:.4f} CPU-h, ~{est['wall_seconds']:.0f}s, "
               f"${est['dollars']['total']:.4f}")
    if plan["status"] == "pending_approval":
        typer.echo(f"  needs approval: cdp-ray approve {plan['id']}")
    elif plan["status"] in ("ready", "approved"):
        typer.echo(f"  apply with: cdp-ray apply {plan['id']}")


def register(app: typer.Typer) -> None:
    """Add the control-plane commands to the ``cdp-ray`` app."""
    app.add_typer(tools_app, name="tools")
    _stop_and_mcp(app)

    @app.command()
    def serve(
        host: str = typer.Option("127.0.0.1", help="address to listen on"),
        port: int = typer.Option(8000, help="port"),
        config: Optional[Path] = typer.Option(None, help="settings YAML (default: $CDP_RAY_CONTROL_CONFIG)"),
        plain: bool = typer.Option(False, "--plain", help="plain uvicorn instead of Ray Serve"),
        address: Optional[str] = typer.Option(
            None, help="Ray cluster to deploy on (default: $RAY_ADDRESS, else a local cluster)"
        ),
    ) -> None:
        """Run the control plane: Ray Serve by default, or plain FastAPI on uvicorn."""
        from cdp_ray.control.settings import ControlSettings

        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        try:
            settings = ControlSettings.load(config)
            if plain:
                import uvicorn

                from cdp_ray.control.app import create_app

                if not settings.ray_address:  # in-process runs need Ray, started here in the main thread
                    import ray

                    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
                uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
            else:
                import ray

                from cdp_ray.control import serve as serve_mod

                if address:
                    ray.init(address=address)
                typer.echo(f"cdp-ray control plane on Ray Serve at http://{host}:{port}", err=True)
                serve_mod.run(settings, host=host, port=port, blocking=True)
        except CdpRayError as exc:
            _fail(exc, False)

    @app.command()
    def estimate(
        spec: str = typer.Argument(..., help="pipeline YAML, one-liner, or `sample`"),
        as_json: bool = JSON,
    ) -> None:
        """Estimate a pipeline's cost and time locally from the tool cards (no server needed)."""
        from cdp_ray.control.estimate import estimate as run_estimate
        from cdp_ray.control.estimate import probe_volume
        from cdp_ray.control.settings import ControlSettings
        from cdp_ray.control.toolcards import current_cards
        from cdp_ray.pipeline.config import PipelineConfig

        try:
            settings = ControlSettings.load()
            cfg = PipelineConfig.model_validate(_pipeline_doc(spec))
            cards = current_cards(settings.toolcards_dir)
            est = run_estimate(cfg, cards, settings.rates, default_workers=settings.default_workers,
                               probe=probe_volume(cfg, cards, settings.probe_objects))
        except CdpRayError as exc:
            _fail(exc, as_json)
        if as_json:
            typer.echo(est.model_dump_json())
            return
        typer.echo(f"{cfg.name}: {est.ledgers} ledgers in {est.chunks} chunks on {est.workers} workers")
        for t, n in est.rows.items():
            typer.echo(f"  {t}: ~{n} rows, ~{est.output_bytes[t] / 1e6:.2f} MB")
        typer.echo(f"  read {est.read_bytes / 1e6:.1f} MB ({est.objects} objects), {est.cpu_hours:.4f} CPU-hours, "
                   f"~{est.wall_seconds:.0f}s wall, ~{est.memory_bytes_per_worker / 2**30:.2f} GiB per worker")
        if "volume" in est.basis:
            typer.echo(f"  volume: {est.basis['volume']}")
        typer.echo(f"  ${est.dollars.total:.4f} (compute ${est.dollars.compute:.4f}, read ${est.dollars.read:.4f}, "
                   f"write ${est.dollars.write:.4f}, requests ${est.dollars.requests:.4f})")

    @app.command()
    def plan(
        spec: str = typer.Argument(..., help="desired pipeline: YAML, one-liner, or `sample`"),
        current: Optional[str] = typer.Option(None, help="the pipeline as it runs now, to diff against"),
        comment: str = typer.Option("", help="why; recorded with the plan"),
        url: str = URL, token: Optional[str] = TOKEN, as_json: bool = JSON,
    ) -> None:
        """Ask the control plane for a plan: diff, checks, policy verdict, estimate."""
        try:
            doc = _client(url, token).request("POST", "/plans", {
                "desired": _pipeline_doc(spec), "current": _pipeline_doc(current) if current else None,
                "comment": comment})
        except CdpRayError as exc:
            _fail(exc, as_json)
        _echo(doc) if as_json else _show_plan(doc)

    @app.command()
    def approve(
        plan_id: str, comment: str = typer.Option("", help="recorded in the audit trail"),
        reject: bool = typer.Option(False, "--reject", help="reject instead"),
        url: str = URL, token: Optional[str] = TOKEN, as_json: bool = JSON,
    ) -> None:
        """Approve (or reject) a plan that waits for approval."""
        try:
            doc = _client(url, token).request("POST", f"/plans/{plan_id}/{'reject' if reject else 'approve'}",
                                              {"comment": comment})
        except CdpRayError as exc:
            _fail(exc, as_json)
        _echo(doc) if as_json else typer.echo(f"plan {plan_id}: {doc['status']}")

    @app.command()
    def apply(
        plan_id: str,
        wait: bool = typer.Option(False, "--wait", help="follow the run until it finishes"),
        url: str = URL, token: Optional[str] = TOKEN, as_json: bool = JSON,
    ) -> None:
        """Apply an approved (or ready) plan: the pipeline starts running."""
        client = _client(url, token)
        try:
            doc = client.apply(plan_id)
            if wait:
                doc = _follow(client, doc["pipeline_id"], quiet=as_json)
        except CdpRayError as exc:
            _fail(exc, as_json)
        if as_json:
            _echo(doc)
        elif not wait:
            typer.echo(f"pipeline {doc['pipeline_id']} started; follow it with: cdp-ray status {doc['pipeline_id']}")
        if wait and doc.get("state") != "succeeded":
            raise typer.Exit(1)

    @app.command()
    def status(
        pipeline_id: Optional[str] = typer.Argument(None, help="a pipeline id; none: list pipelines"),
        follow: bool = typer.Option(False, "--follow", "-f", help="stream progress until it finishes"),
        url: str = URL, token: Optional[str] = TOKEN, as_json: bool = JSON,
    ) -> None:
        """Pipelines and their progress."""
        client = _client(url, token)
        try:
            if pipeline_id is None:
                doc = client.request("GET", "/pipelines")
                if not as_json:
                    for p in doc:
                        typer.echo(f"{p['id']}  {p['state']:<10} {p['name']}  progress={p['progress']}")
                    return
            elif follow:
                doc = _follow(client, pipeline_id, quiet=as_json)
            else:
                doc = client.status(pipeline_id)
                if not as_json:
                    _show_status(doc)
                    return
        except CdpRayError as exc:
            _fail(exc, as_json)
        if as_json:
            _echo(doc)


def _stop_and_mcp(app: typer.Typer) -> None:
    @app.command()
    def stop(
        pipeline_id: str,
        force: bool = typer.Option(False, "--force", help="a Ray job: stop it through the dashboard now (chunks in "
                                   "flight are abandoned) instead of letting them commit"),
        comment: str = typer.Option("", help="recorded in the audit trail"),
        url: str = URL, token: Optional[str] = TOKEN, as_json: bool = JSON,
    ) -> None:
        """Stop a running pipeline: no chunk starts after it, chunks in flight commit, committed ranges stay
        (run again with --resume to continue)."""
        try:
            doc = _client(url, token).stop(pipeline_id, force=force, comment=comment)
        except CdpRayError as exc:
            _fail(exc, as_json)
        _echo(doc) if as_json else typer.echo(f"pipeline {pipeline_id}: {doc['state']} (stop requested)")

    @app.command()
    def mcp(url: str = URL, token: Optional[str] = TOKEN) -> None:
        """Serve the control plane's tools over the Model Context Protocol on stdin/stdout (for Claude, GPT or
        IDE agents); each tool call is an HTTP request to --url with --token."""
        import anyio

        from cdp_ray.control.mcp import serve_stdio

        anyio.run(serve_stdio, url, token)


def _show_status(doc: dict[str, Any]) -> None:
    s = doc.get("stats") or {}
    typer.echo(f"{doc['id']} {doc['name']}: {doc['state']}  {s.get('ledgers', 0)}/{s.get('total_ledgers', '?')} ledgers, "
               f"{s.get('rows', 0)} rows, {s.get('errors', 0)} errors")
    if doc.get("error"):
        typer.secho(f"  error: {doc['error']}", fg=typer.colors.RED)
    for c in (doc.get("success") or {}).get("checks", []):
        typer.echo(f"  success {c['criterion']} {c['name']}: {({True: 'pass', False: 'FAIL', None: 'not judged'})[c['passed']]}: "
                   f"{c['detail']}")
    if doc.get("trace_id"):
        typer.echo(f"  trace: {doc['trace_id']}")


def _follow(client, pipeline_id: str, *, quiet: bool) -> dict[str, Any]:
    """Read the SSE stream until the run ends; return the final status."""
    import urllib.request

    req = urllib.request.Request(f"{client.url}/pipelines/{pipeline_id}/events", headers={"Accept": "text/event-stream"})
    if client.token:
        req.add_header("Authorization", f"Bearer {client.token}")
    with urllib.request.urlopen(req, timeout=None) as resp:
        event = None
        for raw in resp:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "progress" and not quiet:
                d = json.loads(line[6:])
                s = d.get("stats") or {}
                typer.echo(f"  {d['state']}: {s.get('ledgers', 0)}/{s.get('total_ledgers', '?')} ledgers, "
                           f"{s.get('rows', 0)} rows", err=True)
            elif line.startswith("data: ") and event == "end":
                break
    doc = client.status(pipeline_id)
    if not quiet:
        _show_status(doc)
    return doc


@tools_app.command("list")
def tools_list(
    url: Optional[str] = typer.Option(None, "--url", help="ask a running control plane instead of the local registry"),
    token: Optional[str] = TOKEN, as_json: bool = JSON,
) -> None:
    """List tools: sources, processors, sinks."""
    from cdp_ray.control.settings import ControlSettings
    from cdp_ray.control.toolcards import current_cards

    try:
        cards = (_client(url, token).tools() if url else
                 [c.model_dump(mode="json") for c in current_cards(ControlSettings.load().toolcards_dir).values()])
    except CdpRayError as exc:
        _fail(exc, as_json)
    if as_json:
        _echo(cards)
        return
    for c in cards:
        typer.echo(f"{c['id']:<32} {c['danger']:<10} {c['description'].split('. ')[0][:90]}")


@tools_app.command("show")
def tools_show(tool_id: str) -> None:
    """Print one tool card as JSON."""
    from cdp_ray.control.settings import ControlSettings
    from cdp_ray.control.toolcards import current_cards

    cards = current_cards(ControlSettings.load().toolcards_dir)
    if tool_id not in cards:
        typer.secho(f"error: no tool {tool_id!r}; known: {', '.join(cards)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    _echo(cards[tool_id].model_dump(mode="json"))


@tools_app.command("generate")
def tools_generate(
    directory: Path = typer.Option(None, "--dir", help="cards directory (default: the package's cdp_ray/toolcards/)"),
    check: bool = typer.Option(False, "--check", help="only check: exit 1 when a card is stale, missing or extra"),
) -> None:
    """Generate tool cards from the registries (measuring costs on the sample lake), or check them."""
    from cdp_ray.control.settings import DEFAULT_TOOLCARDS
    from cdp_ray.control.toolcards import generate, stale_cards

    directory = directory or DEFAULT_TOOLCARDS
    if check:
        problems = stale_cards(directory)
        for p in problems:
            typer.secho(f"stale: {p}", fg=typer.colors.RED, err=True)
        if problems:
            typer.echo("regenerate with: cdp-ray tools generate", err=True)
            raise typer.Exit(1)
        typer.echo(f"tool cards in {directory} are up to date")
        return
    paths = generate(directory)
    typer.echo(f"wrote {len(paths)} tool cards to {directory}")
