"""Imports every actor module so a worker knows every actor, and lists periodic jobs.

A new context with actors adds its module to ``ACTOR_MODULES``; a periodic job adds a line
to ``PERIODIC_JOBS`` (actor name, APScheduler trigger and its arguments, in UTC); a job due
once a day at each chain's local time, to ``DAILY_JOBS`` in ``nestpoint.jobs.daily``.
"""

from __future__ import annotations

import importlib
from typing import Any

from nestpoint.plugins.jobs import declare_actors  # the installed plugins' actors

ACTOR_MODULES = (
    "nestpoint.benefits.actors",
    "nestpoint.jobs.actors",
    "nestpoint.plugins.actors",
    "nestpoint.plugins.jobs",
    "nestpoint.points.actors",
    "nestpoint.tiers.actors",
)

# (actor name, trigger, trigger arguments). One scheduler enqueues them (the elected leader,
# ``nestpoint.jobs.scheduler``); each job is idempotent besides.
PERIODIC_JOBS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("events.sweep", "interval", {"seconds": 30}),
    ("points.release_holds_all", "interval", {"minutes": 1}),
    ("points.expire_all", "interval", {"hours": 1}),
    ("jobs.enqueue_due", "interval", {"minutes": 1}),  # the daily jobs, at local times
    ("benefits.expire_all", "interval", {"hours": 1}),
    ("benefits.sync_recent_all", "interval", {"minutes": 5}),
)


def load_actors() -> None:
    # Every model first: a worker process imports no routes, and the ORM can flush a row
    # (an outbox event) only once the tables its foreign keys name (tenants) are known.
    importlib.import_module("nestpoint.db.models")
    for module in ACTOR_MODULES:
        importlib.import_module(module)
    declare_actors()
