"""Dramatiq actors of tenant billing: the Stripe sync and its sweep, usage refreshes."""

from __future__ import annotations

import logging
import uuid

import dramatiq

from nestpoint.billing import jobs, service
from nestpoint.context import Actor, acting_as
from nestpoint.db import scoped_session
from nestpoint.jobs.broker import broker, periodic_actor

log = logging.getLogger("nestpoint.billing")


@dramatiq.actor(
    broker=broker, actor_name="billing.sync_subscription", queue_name="default", max_retries=8
)
async def sync_subscription(tenant_id: str) -> None:
    """Make Stripe match the tenant's plan choice (after its commit); Stripe's transient
    errors are retried, with the same idempotency keys. The sweep catches what is left."""
    await jobs.sync_subscription(uuid.UUID(tenant_id))


@periodic_actor("billing.sync_due")
async def sync_due() -> None:
    """Periodic: every plan choice still waiting for Stripe (a lost message, a crash)."""
    await jobs.sync_due()


async def _refresh(tenant_id: uuid.UUID) -> None:
    with acting_as(Actor("system", name="billing.usage")):
        async with scoped_session() as session:
            await service.refresh_usage(session, tenant_id)


@dramatiq.actor(
    broker=broker, actor_name="billing.refresh_usage", queue_name="default", max_retries=3
)
async def refresh_usage(tenant_id: str) -> None:
    """Record one chain's usage now (asked by a refusal at a limit)."""
    await _refresh(uuid.UUID(tenant_id))


@periodic_actor("billing.refresh_usage_all")
async def refresh_usage_all() -> None:
    """Periodic: record every active chain's usage and warn of limits crossed."""
    async with scoped_session() as session:
        tenant_ids = await service.all_tenant_ids(session)
    for tenant_id in tenant_ids:
        try:
            await _refresh(tenant_id)
        except Exception:  # one chain's failure does not hold the others
            log.exception("billing: usage refresh failed", extra={"tenant_id": str(tenant_id)})
