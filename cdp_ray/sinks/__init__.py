"""Sinks: where processor tables go. Importing this registers the built-in sinks."""

from cdp_ray.sinks.base import SINKS, Sink, SinkConfig, make_sink, sink
from cdp_ray.sinks import iceberg  # noqa: F401
from cdp_ray.sinks import parquet  # noqa: F401
from cdp_ray.sinks import postgres  # noqa: F401

__all__ = ["SINKS", "Sink", "SinkConfig", "make_sink", "sink"]
