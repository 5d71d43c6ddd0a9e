"""OpenTelemetry tracing: off by default; ``NESTPOINT_TRACING_ENABLED=true`` turns it on.

When on, each process exports its spans over OTLP/HTTP (the standard ``OTEL_*`` variables
name the collector and the service) and traces:

- HTTP requests (Litestar's OpenTelemetry middleware, ``nestpoint.api.app``), each span
  carrying the request id;
- SQL statements (SQLAlchemy's instrumentation, on every engine made after start-up);
- jobs: a message carries the trace context and the request id of whoever enqueued it
  (``nestpoint.observability.jobs.JobContext``), so a job's span joins the request's trace
  and its log lines carry the request's id.

A foundation module: it imports no context.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from nestpoint.settings import get_settings

TRACER_NAME = "nestpoint"

_provider: TracerProvider | None = None


def enabled() -> bool:
    """Whether this process traces (``configure`` set a provider up)."""
    return _provider is not None


def configure(role: str, exporter: SpanExporter | None = None) -> TracerProvider | None:
    """Set up this process's tracer provider once (``role``: api, worker or scheduler
    names the service unless ``OTEL_SERVICE_NAME`` does). None when tracing is off and
    no ``exporter`` is given (tests pass an in-memory one)."""
    global _provider
    if _provider is not None:
        return _provider
    if exporter is None:
        if not get_settings().tracing_enabled:
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_ENDPOINT and friends
        # The process-wide provider, for any library that traces on its own.
        trace.set_tracer_provider(provider := _new_provider(role, exporter))
    else:
        provider = _new_provider(role, exporter)
    # Every engine made from now on traces its statements (``nestpoint.db`` makes its
    # engines through the module attribute this wraps).
    # The instrumentation declares SQLAlchemy < 2.1; the engine events it uses are the same
    # in 2.1 (tests/test_tracing.py checks the spans), so its version check is skipped.
    SQLAlchemyInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    _provider = provider
    return provider


def _new_provider(role: str, exporter: SpanExporter) -> TracerProvider:
    name = os.environ.get("OTEL_SERVICE_NAME") or f"nestpoint-{role}"
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME, tracer_provider=_provider)


def current_trace_id() -> str | None:
    """The active trace's id (hex) for log lines, or None outside a sampled span."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def reset() -> None:
    """Forget the provider and stop tracing new engines (tests)."""
    global _provider
    if _provider is not None:
        SQLAlchemyInstrumentor().uninstrument()
        _provider.shutdown()
    _provider = None
