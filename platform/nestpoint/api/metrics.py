"""``GET /metrics``: Prometheus metrics of this API process (no API key: scrape it from
inside the cluster; the Helm chart's Ingress does not route it).

HTTP requests are counted and timed by Litestar's Prometheus middleware, by method, route
template (``/api/v1/members/{member_id}``: bounded label values) and status; the rest comes
from ``nestpoint.observability``. With several server processes (``NESTPOINT_WORKERS``),
set ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode) or run one process
per pod, as the chart does.
"""

from __future__ import annotations

import os

from litestar import Response, get
from litestar.middleware.base import DefineMiddleware
from litestar.plugins.prometheus import PrometheusConfig
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from nestpoint.observability import collectors

PATH = "/metrics"


@get(PATH, include_in_schema=False, sync_to_thread=False)
def metrics() -> Response[bytes]:
    """The text exposition of this process's metrics (every server process's counters,
    summed, in multiprocess mode; the collectors' readings are this process's)."""
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        collectors.register(registry)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def http_metrics() -> DefineMiddleware:
    """The route middleware that counts and times requests (collectors registered too)."""
    collectors.install()
    config = PrometheusConfig(
        app_name="nestpoint",
        prefix="nestpoint_http",
        group_path=True,  # the route's template, not the path with its ids
        exclude=[PATH],
        exclude_unhandled_paths=True,
    )
    return config.middleware
