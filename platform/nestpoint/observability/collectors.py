"""Metrics read when Prometheus scrapes: the database pool, the job queues, the outbox
backlog, the plugin hooks and the caches. Each collector reads numbers this process (or
Redis) already keeps; none touches the database.

``install()`` registers them once per process; ``nestpoint.api.app`` (``/metrics``) and
the worker and scheduler commands (their metrics port) call it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from nestpoint import cache
from nestpoint.db.session import current_database
from nestpoint.jobs.broker import queue_stats
from nestpoint.observability import backlog
from nestpoint.plugins.manager import get_plugin_host

log = logging.getLogger("nestpoint.metrics")


class DatabasePoolCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        size = GaugeMetricFamily("nestpoint_db_pool_size", "Connections kept in the pool.")
        used = GaugeMetricFamily(
            "nestpoint_db_pool_checked_out", "Connections in use (by requests or jobs)."
        )
        overflow = GaugeMetricFamily(
            "nestpoint_db_pool_overflow", "Connections open beyond the pool size."
        )
        database = current_database()
        usage = database.pool_usage() if database is not None else []
        size.add_metric([], sum(u[0] for u in usage))
        used.add_metric([], sum(u[1] for u in usage))
        overflow.add_metric([], sum(u[2] for u in usage))
        yield from (size, used, overflow)


class QueueCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {
            "waiting": GaugeMetricFamily(
                "nestpoint_queue_messages", "Jobs waiting in a queue.", labels=["queue"]
            ),
            "delayed": GaugeMetricFamily(
                "nestpoint_queue_delayed_messages",
                "Jobs waiting for a retry's back-off.",
                labels=["queue"],
            ),
            "dead": GaugeMetricFamily(
                "nestpoint_queue_dead_messages",
                "Jobs that exhausted their retries (the dead-letter queue).",
                labels=["queue"],
            ),
            "lag": GaugeMetricFamily(
                "nestpoint_queue_lag_seconds",
                "Age of the oldest waiting job (0 when none waits).",
                labels=["queue"],
            ),
        }
        try:
            stats = queue_stats()
        except Exception as exc:  # the broker is down: no queue figures, the rest still
            log.warning("queue metrics unavailable", extra={"error": str(exc)})
            stats = []
        for queue in stats:
            families["waiting"].add_metric([queue.queue], queue.waiting)
            families["delayed"].add_metric([queue.queue], queue.delayed)
            families["dead"].add_metric([queue.queue], queue.dead)
            families["lag"].add_metric([queue.queue], queue.oldest_age_seconds)
        yield from families.values()


class OutboxCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            seen = backlog.read()
        except Exception as exc:
            log.warning("outbox metrics unavailable", extra={"error": str(exc)})
            return
        if seen is None:  # no sweep yet (or none for ten minutes: no worker runs)
            return
        now = time.time()
        yield _gauge(
            "nestpoint_outbox_pending_events",
            "Events not yet delivered to every plugin, all tenants (at the last sweep).",
            seen.pending,
        )
        oldest = now - seen.oldest_pending_at if seen.oldest_pending_at is not None else 0.0
        yield _gauge(
            "nestpoint_outbox_oldest_pending_age_seconds",
            "Age of the oldest undelivered event (at the last sweep; 0 when none).",
            max(0.0, oldest),
        )
        yield _gauge(
            "nestpoint_outbox_swept_age_seconds",
            "Seconds since the sweep counted the backlog (it runs every 30 s).",
            max(0.0, now - seen.swept_at),
        )


class PluginHookCollector(Collector):
    """The counters the plugin host keeps per plugin and hook, in this process."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        labels = ["plugin", "hook"]
        calls = CounterMetricFamily(
            "nestpoint_plugin_hook_calls", "Calls of a plugin's hook.", labels=labels
        )
        failures = CounterMetricFamily(
            "nestpoint_plugin_hook_failures",
            "Calls that raised or timed out (timeouts included).",
            labels=labels,
        )
        timeouts = CounterMetricFamily(
            "nestpoint_plugin_hook_timeouts", "Calls over their time limit.", labels=labels
        )
        seconds = CounterMetricFamily(
            "nestpoint_plugin_hook_seconds", "Time spent in a plugin's hook.", labels=labels
        )
        for (plugin_id, hook), stats in sorted(get_plugin_host().metrics.items()):
            calls.add_metric([plugin_id, hook], stats.calls)
            failures.add_metric([plugin_id, hook], stats.failures)
            timeouts.add_metric([plugin_id, hook], stats.timeouts)
            seconds.add_metric([plugin_id, hook], stats.seconds)
        yield from (calls, failures, timeouts, seconds)


class CacheCollector(Collector):
    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        hits = CounterMetricFamily("nestpoint_cache_hits", "Cache hits.", labels=["cache"])
        misses = CounterMetricFamily("nestpoint_cache_misses", "Cache misses.", labels=["cache"])
        entries = GaugeMetricFamily("nestpoint_cache_entries", "Entries held.", labels=["cache"])
        for stats in cache.stats():
            hits.add_metric([stats.name], stats.hits)
            misses.add_metric([stats.name], stats.misses)
            entries.add_metric([stats.name], stats.size)
        yield from (hits, misses, entries)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation)
    family.add_metric([], value)
    return family


def register(registry: CollectorRegistry) -> None:
    """Register every collector with ``registry``."""
    for collector in (
        DatabasePoolCollector(),
        QueueCollector(),
        OutboxCollector(),
        PluginHookCollector(),
        CacheCollector(),
    ):
        registry.register(collector)


_installed = False


def install() -> None:
    """Register the collectors with the default registry, once per process."""
    global _installed
    if not _installed:
        register(REGISTRY)
        _installed = True
