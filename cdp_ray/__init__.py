"""cdp-ray: batch analytics for Stellar ledgers on Ray.

Notebook use::

    import cdp_ray
    txs = cdp_ray.load("transactions", "s3://aws-public-blockchain/v1.1/stellar/ledgers/pubnet",
                       63092982, 63092991, anonymous=True, output="polars")
"""

from cdp_ray.errors import CdpRayError
from cdp_ray.pipeline.config import PipelineConfig, load_pipeline, parse_pipeline
from cdp_ray.pipeline.dataset import load, read_ledgers, table_dataset
from cdp_ray.pipeline.runner import run_pipeline
from cdp_ray.pipeline.source import LakeSource

__version__ = "0.1.0"

__all__ = [
    "CdpRayError",
    "LakeSource",
    "PipelineConfig",
    "load",
    "load_pipeline",
    "parse_pipeline",
    "read_ledgers",
    "run_pipeline",
    "table_dataset",
]
