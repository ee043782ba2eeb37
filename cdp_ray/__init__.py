"""cdp-ray: batch analytics for Stellar ledgers on Ray.

Notebook use::

    import cdp_ray
    txs = cdp_ray.load("transactions", "s3://aws-public-blockchain/v1.1/stellar/ledgers/pubnet",
                       start_time="2026-06-19T00:21:00Z", end_time="2026-06-19T00:22:00Z",
                       where={"operation_types": ["payment"]}, anonymous=True, output="polars")
    ops = cdp_ray.scan("pipeline.yaml", "operations")          # what a pipeline committed
    ops.with_columns(cdp_ray.detail("amount"))                  # typed JSON: Decimal(38, 7)
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "CdpRayError": "cdp_ray.errors",
    "LakeSource": "cdp_ray.pipeline.source",
    "PipelineConfig": "cdp_ray.pipeline.config",
    "amount": "cdp_ray.pipeline.typed",
    "detail": "cdp_ray.pipeline.typed",
    "details": "cdp_ray.pipeline.typed",
    "events": "cdp_ray.pipeline.typed",
    "load": "cdp_ray.pipeline.dataset",
    "load_pipeline": "cdp_ray.pipeline.config",
    "parse_pipeline": "cdp_ray.pipeline.config",
    "read_ledgers": "cdp_ray.pipeline.dataset",
    "run_pipeline": "cdp_ray.pipeline.runner",
    "scan": "cdp_ray.pipeline.scan",
    "table_dataset": "cdp_ray.pipeline.dataset",
    "topic": "cdp_ray.pipeline.typed",
}


def __getattr__(name: str) -> Any:
    """The public API, imported on first use: the CLI's light commands (dry runs, validation) never load Ray."""
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cdp_ray' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "CdpRayError",
    "LakeSource",
    "PipelineConfig",
    "amount",
    "detail",
    "details",
    "events",
    "load",
    "load_pipeline",
    "parse_pipeline",
    "read_ledgers",
    "run_pipeline",
    "scan",
    "table_dataset",
    "topic",
]
