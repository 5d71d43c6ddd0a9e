"""Dramatiq actors of the tiers context: the daily evaluation, per tenant (enqueued after
each chain's local night by ``jobs.enqueue_due``)."""

from __future__ import annotations

import uuid

import dramatiq
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.jobs.broker import broker
from nestpoint.jobs.tenants import run_for_tenant
from nestpoint.loyalty.service import load_program
from nestpoint.tiers.jobs import EvaluationResult, evaluate_tiers


async def _evaluate(session: AsyncSession) -> EvaluationResult:
    return await evaluate_tiers(session, await load_program(session))


@dramatiq.actor(broker=broker, actor_name="tiers.evaluate", queue_name="default", max_retries=3)
async def evaluate(tenant_id: str) -> None:
    """Recompute growth and move members between tiers. Idempotent."""
    await run_for_tenant(uuid.UUID(tenant_id), _evaluate, name="tiers.evaluate")
