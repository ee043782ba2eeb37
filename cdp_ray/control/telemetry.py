"""OpenTelemetry spans around planning, applying and the processing stages of a run.

The control plane keeps its own ``TracerProvider`` so that embedding it never replaces an
application's global provider. ``configure`` picks the exporter: ``none``, ``console``, ``otlp``
(needs ``opentelemetry-exporter-otlp``) or any ``SpanExporter`` instance (tests pass an in-memory
one).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor, SpanExporter

from cdp_ray.errors import ConfigError

_provider = TracerProvider(resource=Resource.create({"service.name": "cdp-ray-control"}))
_configured: set[int] = set()


def configure(exporter: str | SpanExporter = "none") -> TracerProvider:
    """Attach an exporter to the control plane's tracer provider (once per exporter)."""
    if isinstance(exporter, SpanExporter):
        if id(exporter) not in _configured:
            _provider.add_span_processor(SimpleSpanProcessor(exporter))
            _configured.add(id(exporter))
        return _provider
    if exporter == "none" or exporter in _configured:
        return _provider
    if exporter == "console":
        _provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ConfigError(
                "tracing: otlp needs the OTLP exporter", hint="pip install opentelemetry-exporter-otlp-proto-http"
            ) from exc
        _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        raise ConfigError(f"unknown tracing exporter {exporter!r}", hint="use none, console or otlp")
    _configured.add(exporter)  # type: ignore[arg-type]
    return _provider


_tracer = _provider.get_tracer("cdp_ray.control")


def tracer() -> trace.Tracer:
    return _tracer


def span(name: str, **attributes: Any):
    """A span as a context manager; ``None`` attribute values are left out."""
    return tracer().start_as_current_span(name, attributes={k: v for k, v in attributes.items() if v is not None})


def record_stage(name: str, started: datetime, ended: datetime, **attributes: Any) -> None:
    """A finished span for work done elsewhere (a chunk processed on a Ray worker)."""
    s = tracer().start_span(name, start_time=int(started.timestamp() * 1e9),
                            attributes={k: v for k, v in attributes.items() if v is not None})
    s.end(end_time=int(ended.timestamp() * 1e9))
