"""Dramatiq actors of paid membership: the daily renewal job per chain (enqueued at each
chain's local 10:00 by ``jobs.enqueue_due``)."""

from __future__ import annotations

import uuid

import dramatiq

from nestpoint.jobs.broker import broker
from nestpoint.jobs.tenants import run_for_tenant
from nestpoint.membership import service


@dramatiq.actor(broker=broker, actor_name=service.JOB, queue_name="default", max_retries=3)
async def renew_due(tenant_id: str) -> None:
    """Reminders, renewal payments, retries in grace, lapses: one chain's due cards.
    Idempotent (each card is re-checked under its row lock)."""
    await run_for_tenant(uuid.UUID(tenant_id), service.renew_due, name=service.JOB)
