"""HTTP request spans (Litestar's OpenTelemetry middleware), when tracing is on: each
span named by its route and carrying the request's ``x-request-id``."""

from __future__ import annotations

from typing import Any

from litestar.middleware.base import DefineMiddleware
from litestar.plugins.opentelemetry import OpenTelemetryConfig
from opentelemetry.sdk.trace import TracerProvider

from nestpoint.api.metrics import PATH as METRICS_PATH
from nestpoint.context import request_id

# Probes and scrapes every few seconds would drown the traces that matter.
UNTRACED = [METRICS_PATH, "/healthz", "/readyz"]


def _with_request_id(span: Any, scope: Any) -> None:
    if span is not None and span.is_recording() and (rid := request_id.get()):
        span.set_attribute("nestpoint.request_id", rid)


def http_tracing(provider: TracerProvider) -> DefineMiddleware:
    config = OpenTelemetryConfig(
        tracer_provider=provider,
        exclude=UNTRACED,
        server_request_hook_handler=_with_request_id,
        exclude_spans=["receive", "send"],  # one span per request, not one per ASGI message
    )
    return config.middleware
