"""Dramatiq actors of segments: the daily recomputation of the built-in segments, per
tenant (enqueued at each chain's local 02:30 by ``jobs.enqueue_due``)."""

from __future__ import annotations

import uuid

import dramatiq

from nestpoint.jobs.broker import broker
from nestpoint.jobs.tenants import run_for_tenant
from nestpoint.segments.builtin import JOB
from nestpoint.segments.jobs import recompute


@dramatiq.actor(broker=broker, actor_name=JOB, queue_name="default", max_retries=3)
async def recompute_builtin(tenant_id: str) -> None:
    """Recompute every member's RFM group, value circle and lifecycle stage. Idempotent."""
    await run_for_tenant(uuid.UUID(tenant_id), recompute, name=JOB)
