"""The control plane deployed on Ray Serve answers over HTTP."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from cdp_ray.control import ControlSettings
from cdp_ray.control.settings import DEFAULT_TOOLCARDS


def test_serve_deployment_serves_tools(tmp_path: Path, ray_cluster) -> None:
    from ray import serve

    from cdp_ray.control.serve import run

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = ControlSettings(database=str(tmp_path / "serve.sqlite3"), toolcards_dir=DEFAULT_TOOLCARDS)
    try:
        run(settings, port=port, blocking=False)
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=30).json()
        assert health["ok"] is True and health["store"] == "sqlite" and health["executor"] == "local"
        tools = httpx.get(f"http://127.0.0.1:{port}/tools", timeout=30).json()
        assert "processor.ledgers" in {t["id"] for t in tools}
        assert (tmp_path / "serve.sqlite3").exists()  # the replica opened the store
    finally:
        serve.shutdown()
