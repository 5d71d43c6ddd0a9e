"""Dramatiq actors of campaigns: the periodic tick (scheduled runs, event triggers, ends)
over every chain, and the daily date triggers per chain (enqueued at each chain's local
08:00 by ``jobs.enqueue_due``)."""

from __future__ import annotations

import logging
import uuid

import dramatiq

from nestpoint.campaigns import jobs
from nestpoint.jobs.broker import broker, periodic_actor
from nestpoint.jobs.tenants import active_tenant_ids, run_for_tenant

log = logging.getLogger("nestpoint.campaigns")


@periodic_actor("campaigns.tick_all")
async def tick_all() -> None:
    """Periodic: for every chain, end what is over, make the due scheduled runs and read
    the new events past the chain's cursor. Idempotent (grants are exactly once)."""
    for tenant_id in await active_tenant_ids():
        try:
            await run_for_tenant(tenant_id, jobs.tick, name=jobs.TICK_JOB)
        except Exception:  # one chain's failure never holds the others; next tick retries
            log.exception("campaigns tick failed", extra={"tenant": str(tenant_id)})


@dramatiq.actor(broker=broker, actor_name=jobs.DAILY_JOB, queue_name="default", max_retries=3)
async def daily(tenant_id: str) -> None:
    """Grant the chain's date-triggered campaigns (birthdays, pregnancy weeks, children's
    ages) to who meets their condition today. Idempotent."""
    await run_for_tenant(uuid.UUID(tenant_id), jobs.daily, name=jobs.DAILY_JOB)
