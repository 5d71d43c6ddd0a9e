"""The business and job counters, counted where things happen (Prometheus, this process).

A foundation module: it imports nothing of Nestpoint, so the outbox, the jobs and the
services can count without depending on what exports the numbers
(``nestpoint.observability.collectors`` and the ``/metrics`` endpoints).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "nestpoint_events_total",
    "Domain events committed to the outbox by this process, by type (set-based jobs excluded).",
    ["type"],
)
ORDERS = Counter("nestpoint_orders_total", "Orders recorded (a replayed retry is not counted).")
REFUNDS = Counter("nestpoint_refunds_total", "Refunds recorded.")
POINTS_EARNED = Counter("nestpoint_points_earned_total", "Points issued by orders.")
POINTS_REDEEMED = Counter("nestpoint_points_redeemed_total", "Points redeemed as order tender.")

JOBS = Counter(
    "nestpoint_jobs_total",
    "Jobs this worker processed, by actor and outcome (done, failed, skipped).",
    ["actor", "outcome"],
)
JOB_SECONDS = Histogram(
    "nestpoint_job_duration_seconds",
    "Time this worker spent on one job, by actor.",
    ["actor"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600),
)
SCHEDULER_LEADER = Gauge(
    "nestpoint_scheduler_leader", "1 while this process's scheduler is the elected leader."
)

# Event type -> what else it counts; the payload's "points" for the points counters.
_BUSINESS = {
    "order.paid": (ORDERS, None),
    "order.refunded": (REFUNDS, None),
    "points.earned": (None, POINTS_EARNED),
    "points.redeemed": (None, POINTS_REDEEMED),
}


def count_committed_events(events: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
    """Count the (type, payload) of events a transaction committed."""
    for event_type, payload in events:
        EVENTS.labels(event_type).inc()
        counter, points = _BUSINESS.get(event_type, (None, None))
        if counter is not None:
            counter.inc()
        amount = payload.get("points")
        if points is not None and isinstance(amount, int) and amount > 0:
            points.inc(amount)


PERIODIC_FAILURES = Counter(
    "nestpoint_periodic_job_failures_total",
    "Runs of a periodic job that failed (logged; the scheduler sends it again at its next "
    "tick, so it is neither retried nor dead-lettered).",
    ["actor"],
)
