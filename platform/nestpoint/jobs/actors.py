"""Dramatiq actors of the jobs foundation: the daily jobs at each chain's local time."""

from __future__ import annotations

import dramatiq

from nestpoint.jobs.broker import broker
from nestpoint.jobs.daily import enqueue_due as enqueue_due_runs


@dramatiq.actor(broker=broker, actor_name="jobs.enqueue_due", queue_name="default", max_retries=0)
async def enqueue_due() -> None:
    """Periodic: enqueue each tenant's daily jobs whose local time has come (once a day)."""
    await enqueue_due_runs()
