"""The control plane: tool cards, plan/apply under policies, cost estimates, pipeline stats.

``create_app(settings)`` builds the FastAPI app; ``cdp_ray.control.serve`` deploys it on Ray Serve.
"""

from cdp_ray.control.app import create_app
from cdp_ray.control.settings import ControlSettings

__all__ = ["ControlSettings", "create_app"]
