"""Dramatiq actor of settlement: last month's draft, per tenant, on the 1st of each month
(enqueued at each chain's local 06:00 on the 1st by ``jobs.enqueue_due``)."""

from __future__ import annotations

import uuid

import dramatiq

from nestpoint.jobs.broker import broker
from nestpoint.jobs.tenants import run_for_tenant
from nestpoint.settlement.service import compute_last_month

JOB = "settlement.compute_last_month"


@dramatiq.actor(broker=broker, actor_name=JOB, queue_name="default", max_retries=3)
async def compute_last_month_job(tenant_id: str) -> None:
    """Compute last month's draft (a closed month is left as it is). Idempotent: the same
    ledgers give the same draft."""
    await run_for_tenant(uuid.UUID(tenant_id), compute_last_month, name=JOB)
