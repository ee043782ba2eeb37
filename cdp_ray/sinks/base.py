"""The sink extension point.

A sink writes the tables of one ledger range at a time, atomically: after ``write_range`` returns,
the range's rows are all visible, replacing any rows an earlier run wrote for the same range.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from cdp_ray.errors import UnknownComponentError
from cdp_ray.processors.base import Processor


class SinkConfig(BaseModel):
    """Base of every sink's configuration; ``type`` selects the sink."""

    model_config = ConfigDict(extra="forbid")
    type: str


class Sink(ABC):
    """Writes per-range tables. Instances live on Ray workers, one per worker."""

    config: SinkConfig

    def __init__(self, config: SinkConfig):
        self.config = config

    @abstractmethod
    def write_range(self, start: int, end: int, tables: dict[str, tuple[Processor, pa.Table]]) -> dict[str, int]:
        """Write every table of ``[start, end]`` atomically; return bytes written per table."""

    def close(self) -> None:
        """Release connections."""


SINKS: dict[str, tuple[type[SinkConfig], type[Sink]]] = {}


def sink(name: str, config: type[SinkConfig]) -> Callable[[type[Sink]], type[Sink]]:
    """Register a sink class under ``name`` with its config model."""

    def register(cls: type[Sink]) -> type[Sink]:
        SINKS[name] = (config, cls)
        return cls

    return register


def sink_config(doc: dict | SinkConfig) -> SinkConfig:
    """Validate a sink config document against its type's model."""
    if isinstance(doc, SinkConfig):
        return doc
    kind = doc.get("type")
    if kind not in SINKS:
        raise UnknownComponentError("sink", str(kind), list(SINKS))
    return SINKS[kind][0].model_validate(doc)


def make_sink(config: dict | SinkConfig) -> Sink:
    cfg = sink_config(config)
    return SINKS[cfg.type][1](cfg)
