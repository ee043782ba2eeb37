"""The bundled sample lake and pipeline."""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).parent
SAMPLE_LAKE = HERE / "lake"
SAMPLE_PIPELINE = HERE / "pipeline.yaml"
SAMPLE_RANGE = (63092982, 63092991)


def sample_pipeline_path() -> Path:
    """The sample pipeline's path, with ``CDP_RAY_SAMPLE_LAKE`` pointing at the bundled lake."""
    os.environ.setdefault("CDP_RAY_SAMPLE_LAKE", str(SAMPLE_LAKE))
    return SAMPLE_PIPELINE
