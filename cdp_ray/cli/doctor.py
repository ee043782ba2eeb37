"""``cdp-ray doctor``: what a run would use here, checked without running one.

The Ray cluster a run would join (found the way ``cdp-ray run`` finds it, without attaching to it), the
XDR decoder its workers would run and why, the versions that matter, and whether the pipeline's lake
answers (its first ledger is read).
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
from importlib import metadata
from typing import Any, Optional
from urllib.parse import urlparse

import typer

from cdp_ray.errors import CdpRayError

PACKAGES = ("cdp-ray", "ray", "pyarrow", "polars", "stellar-sdk", "pydantic", "typer", "fsspec", "s3fs", "psycopg")


def versions() -> dict[str, str | None]:
    """Python's and the installed packages' versions (None: not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def ray_target(address: str | None) -> dict[str, Any]:
    """The cluster ``cdp-ray run --address ADDRESS`` would use, and why (:func:`cdp_ray.cli.ray_env.resolve_address`)."""
    from cdp_ray.cli.ray_env import resolve_address

    found, why = resolve_address(address)
    if found is None:
        return {"address": None, "action": "start a local Ray", "why": why}
    if found == "auto":
        return {"address": "auto", "action": "join", "why": why + ": any Ray running on this machine", "reachable": None}
    return {"address": found, "action": "join", "why": why, **_reachable(found)}


def _reachable(address: str) -> dict[str, Any]:
    """Whether ``host:port`` (or a ``ray://``/``http://`` URL) accepts a TCP connection; no Ray session is made."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if not parsed.hostname or not parsed.port:
        return {"reachable": None}
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=3):
            return {"reachable": True}
    except OSError as exc:
        return {"reachable": False, "error": f"{type(exc).__name__}: {exc}"}


def decoder() -> dict[str, Any]:
    """The XDR engine a run's workers would use on this machine, and why."""
    from cdp_ray.xdr.fast import ENV_VAR, available, resolve_engine, unavailable_reason

    env = os.environ.get(ENV_VAR)
    try:
        engine = resolve_engine()
    except CdpRayError as exc:
        return {"engine": None, "why": exc.message, "hint": exc.hint}
    if env:
        why = f"${ENV_VAR}={env}"
    elif available():
        why = "the compiled decoder (cdp_ray/xdr/fast/_fastxdr) is built"
    else:
        why = f"the compiled decoder is not built ({unavailable_reason()}); reinstall with a C compiler for native speed"
    return {"engine": engine, "why": why}


def lake_check(spec: str) -> dict[str, Any]:
    """Open the pipeline's lake and read the first ledger of its range."""
    from datetime import datetime, timezone

    from cdp_ray.lake.formats import peek_header
    from cdp_ray.pipeline.config import validate_spec

    cfg = validate_spec(spec).config_or_raise()  # a bad pipeline is bad input: exit 2
    src = cfg.source
    doc: dict[str, Any] = {"pipeline": cfg.name, "uri": src.uri, "first_ledger": src.start}
    try:
        lake = src.open()
        raw = next(iter(lake.read_range(src.start, src.start, verify=False)))
        doc.update(ok=True, layout=lake.layout, closed_at=datetime.fromtimestamp(peek_header(raw.xdr, raw.key).close_time, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    except CdpRayError as exc:
        doc.update(ok=False, error=type(exc).__name__, message=exc.message, hint=exc.hint)
    return doc


def register(app: typer.Typer) -> None:
    @app.command()
    def doctor(
        spec: Optional[str] = typer.Argument(None, help="pipeline whose lake to check (default: the bundled sample)", show_default=False),
        address: Optional[str] = typer.Option(None, "--address", help="as for `cdp-ray run`"),
        as_json: bool = typer.Option(False, "--json", help="print one JSON document on stdout"),
    ) -> None:
        """What a run would use here: the Ray cluster, the XDR decoder and why, versions, whether the lake answers.

        Attaches to no Ray and writes nothing. Exits 0 when every check passes, 1 when one fails (the
        lake does not answer, the Ray address is unreachable), 2 on a bad pipeline.
        """
        from cdp_ray.cli.main import _fail, _spec_or_sample

        try:
            lake = lake_check(_spec_or_sample(spec))
        except CdpRayError as exc:
            _fail(exc, as_json)
        doc = {"versions": versions(), "ray": ray_target(address), "decoder": decoder(), "lake": lake}
        doc = {"ok": lake["ok"] and doc["ray"].get("reachable") is not False and doc["decoder"]["engine"] is not None, **doc}
        if as_json:
            typer.echo(json.dumps(doc))
        else:
            _print(doc)
        if not doc["ok"]:
            raise typer.Exit(1)


def _print(doc: dict[str, Any]) -> None:
    v = doc["versions"]
    typer.echo(f"cdp-ray {v['cdp-ray']} on Python {v['python']} ({sys.platform}); "
               + ", ".join(f"{k} {v[k]}" for k in PACKAGES[1:] if v[k]))
    r = doc["ray"]
    where = r["address"] or "a new local Ray"
    reach = {True: ", reachable", False: f", NOT reachable ({r.get('error')})", None: ""}[r.get("reachable")]
    typer.secho(f"ray: would {r['action']}: {where} ({r['why']}){reach}", fg=typer.colors.RED if r.get("reachable") is False else None)
    d = doc["decoder"]
    typer.secho(f"decoder: {d['engine'] or 'none'} ({d['why']})", fg=None if d["engine"] else typer.colors.RED)
    lk = doc["lake"]
    if lk["ok"]:
        typer.echo(f"lake: {lk['uri']} answers ({lk['layout']} layout; ledger {lk['first_ledger']} closed {lk['closed_at']})")
    else:
        typer.secho(f"lake: {lk['uri']} does not answer: {lk['message']}", fg=typer.colors.RED)
        typer.echo(f"hint: {lk['hint']}", err=True)
    typer.echo("ok" if doc["ok"] else "some checks failed")
