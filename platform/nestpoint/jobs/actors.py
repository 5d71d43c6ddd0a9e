"""Dramatiq actors of the jobs foundation: the daily jobs at each chain's local time."""

from __future__ import annotations

from nestpoint.jobs.broker import periodic_actor
from nestpoint.jobs.daily import enqueue_due as enqueue_due_runs


@periodic_actor("jobs.enqueue_due")
async def enqueue_due() -> None:
    """Periodic: enqueue each tenant's daily jobs whose local time has come (once a day)."""
    await enqueue_due_runs()
