"""``GET /metrics``: Prometheus metrics of this API process (no API key: scrape it from
inside the cluster; the Helm chart's Ingress does not route it).

HTTP requests are counted and timed by Litestar's Prometheus middleware, by method, route
template (``/api/v1/members/{member_id}``: bounded label values) and status; the rest comes
from ``nestpoint.observability``. With several server processes (``NESTPOINT_WORKERS``),
set ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode) or run one process
per pod, as the chart does.
"""

from __future__ import annotations

from litestar.middleware.base import DefineMiddleware
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController

from nestpoint.observability import collectors

PATH = "/metrics"


class MetricsController(PrometheusController):
    path = PATH
    include_in_schema = False


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
