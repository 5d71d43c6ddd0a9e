"""Imports every actor module so a worker knows every actor, and lists periodic jobs.

A new context with actors adds its module to ``ACTOR_MODULES``; a periodic job adds a line
to ``PERIODIC_JOBS`` (actor name, APScheduler trigger and its arguments).
"""

from __future__ import annotations

import importlib
from typing import Any

from nestpoint.plugins.jobs import declare_actors  # the installed plugins' actors

ACTOR_MODULES = (
    "nestpoint.benefits.actors",
    "nestpoint.plugins.actors",
    "nestpoint.plugins.jobs",
    "nestpoint.points.actors",
    "nestpoint.tiers.actors",
)

# (actor name, trigger, trigger arguments). Each job is idempotent, so a second scheduler
# (two worker replicas) only costs a little duplicate work.
PERIODIC_JOBS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("events.sweep", "interval", {"seconds": 30}),
    ("points.release_holds_all", "interval", {"minutes": 1}),
    ("points.expire_all", "interval", {"hours": 1}),
    ("points.announce_expiring_all", "cron", {"hour": 1, "minute": 0}),  # 09:00 Asia/Shanghai
    ("tiers.evaluate_all", "cron", {"hour": 19, "minute": 30}),  # 03:30 Asia/Shanghai
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
