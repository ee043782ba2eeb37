"""The control plane on uvicorn in a background thread: for notebooks, tests and benchmarks."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from cdp_ray.control.app import create_app
from cdp_ray.control.settings import ControlSettings


class BackgroundServer:
    """``with BackgroundServer(settings) as srv: ...`` serves on ``srv.url`` (127.0.0.1, a free port
    unless ``port`` is given); leaving the block runs the app's shutdown and stops the server."""

    def __init__(self, settings: ControlSettings | None = None, *, host: str = "127.0.0.1", port: int = 0, **app_kw):
        self.app = create_app(settings, **app_kw)
        if port == 0:
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        self.host, self.port = host, port
        self.url = f"http://{host}:{port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, host=host, port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True, name=f"cdp-ray-control:{port}")

    def start(self, timeout: float = 20.0) -> "BackgroundServer":
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the control plane did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
