"""OpenTelemetry: spans around planning, applying, HTTP requests and the processing stages of a run.

Spans go through the global tracer provider, so an application that embeds the control plane (or runs
it under ``opentelemetry-instrument``) gets them in its own traces. When no SDK provider is installed
yet, :func:`configure` installs one whose resource follows the standard variables
(``OTEL_SERVICE_NAME``, default ``cdp-ray-control``; ``OTEL_RESOURCE_ATTRIBUTES``) and whose exporters
are the ``tracing`` setting, else ``$OTEL_TRACES_EXPORTER`` (comma-separated: ``otlp``, ``console``,
``none``; ``otlp`` speaks ``$OTEL_EXPORTER_OTLP_PROTOCOL``, ``http/protobuf`` by default, and reads the
``OTEL_EXPORTER_OTLP_*`` endpoint and header variables). The OTLP exporter comes with the ``otlp``
extra: ``pip install 'cdp-ray[otlp]'``. Tests pass a ``SpanExporter`` instance.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import OTEL_SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor, SpanExporter

from cdp_ray.errors import ConfigError

SERVICE_NAME = "cdp-ray-control"
_added: set[Any] = set()


def provider() -> TracerProvider:
    """The global SDK provider, installed with the standard resource when there is none yet."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    attrs = {} if os.environ.get(OTEL_SERVICE_NAME) else {"service.name": SERVICE_NAME}
    trace.set_tracer_provider(TracerProvider(resource=Resource.create(attrs)))
    return trace.get_tracer_provider()  # type: ignore[return-value]


def _otlp() -> SpanExporter:
    proto = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
    try:
        if proto == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[assignment]
    except ImportError as exc:
        raise ConfigError("tracing: otlp needs the OTLP exporter", hint="pip install 'cdp-ray[otlp]'") from exc
    return OTLPSpanExporter()


def configure(exporter: str | SpanExporter | None = None) -> TracerProvider:
    """Attach span exporters to the global provider, once each: an instance, a name (``none``,
    ``console``, ``otlp``, comma-separated), or ``None`` for ``$OTEL_TRACES_EXPORTER`` (default none)."""
    prov = provider()
    if isinstance(exporter, SpanExporter):
        if id(exporter) not in _added:
            prov.add_span_processor(SimpleSpanProcessor(exporter))
            _added.add(id(exporter))
        return prov
    names = exporter if exporter is not None else os.environ.get("OTEL_TRACES_EXPORTER", "none")
    for name in (n.strip() for n in names.split(",")):
        if name in ("", "none") or name in _added:
            continue
        if name == "console":
            prov.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif name == "otlp":
            prov.add_span_processor(BatchSpanProcessor(_otlp()))
        else:
            raise ConfigError(f"unknown tracing exporter {name!r}", hint="use none, console or otlp")
        _added.add(name)
    return prov


def instrument(app: Any) -> None:
    """Trace every HTTP request of the FastAPI ``app`` (server spans named after the route)."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls="health,metrics")


def tracer() -> trace.Tracer:
    return trace.get_tracer("cdp_ray.control")


def span(name: str, **attributes: Any):
    """A span as a context manager; ``None`` attribute values are left out."""
    return tracer().start_as_current_span(name, attributes={k: v for k, v in attributes.items() if v is not None})


def trace_id() -> str | None:
    """The current trace's id in hex (as trace backends show it), if a span is recording."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def record_stage(name: str, started: datetime, ended: datetime, **attributes: Any) -> None:
    """A finished span for work done elsewhere (a chunk processed on a Ray worker)."""
    s = tracer().start_span(name, start_time=int(started.timestamp() * 1e9),
                            attributes={k: v for k, v in attributes.items() if v is not None})
    s.end(end_time=int(ended.timestamp() * 1e9))
