"""The control plane as a Ray Serve application.

One replica: plans and pipeline stats live in the store, but in-process runs and event streams
are tied to the replica that started them. The app is built inside the replica, so the store
connection and executor are opened where they are used.
"""

from __future__ import annotations

from ray import serve
from ray.serve import Application

from cdp_ray.control.settings import ControlSettings


@serve.ingress()
class ControlPlane:
    """Serve deployment hosting :func:`cdp_ray.control.app.create_app`."""

    def __init__(self, settings_json: str):
        self.settings = ControlSettings.model_validate_json(settings_json)

    def __serve_build_asgi_app__(self):
        from cdp_ray.control.app import create_app

        return create_app(self.settings)


def build(settings: ControlSettings | None = None, *, num_cpus: float = 0) -> Application:
    """A bound Serve application for ``serve.run`` (or ``serve run cdp_ray.control.serve:app``)."""
    settings = settings or ControlSettings.load()
    deployment = serve.deployment(
        ControlPlane, name="cdp-ray-control", num_replicas=1, ray_actor_options={"num_cpus": num_cpus}
    )
    return deployment.bind(settings.model_dump_json())


def run(settings: ControlSettings | None = None, *, host: str = "127.0.0.1", port: int = 8000, blocking: bool = True):
    """Start Serve's HTTP proxy on ``host:port`` and deploy the control plane at ``/``."""
    serve.start(http_options={"host": host, "port": port})
    return serve.run(build(settings), name="cdp-ray-control", route_prefix="/", blocking=blocking)
