"""Dramatiq actors of the benefits context: expiry and the recent-member sync, per tenant."""

from __future__ import annotations

import uuid

import dramatiq
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.benefits.jobs import BenefitJobResult, expire_entitlements, sync_recent_members
from nestpoint.jobs.broker import broker, periodic_actor
from nestpoint.jobs.tenants import active_tenant_ids, run_for_tenant


async def _expire(session: AsyncSession) -> BenefitJobResult:
    return await expire_entitlements(session)


async def _sync(session: AsyncSession) -> BenefitJobResult:
    return await sync_recent_members(session)


@dramatiq.actor(broker=broker, actor_name="benefits.expire", queue_name="default", max_retries=3)
async def expire(tenant_id: str) -> None:
    """End one tenant's entitlements whose time is up. Idempotent."""
    await run_for_tenant(uuid.UUID(tenant_id), _expire, name="benefits.expire")


@periodic_actor("benefits.expire_all")
async def expire_all() -> None:
    """Periodic: fan out ``benefits.expire`` to every active tenant."""
    for tenant_id in await active_tenant_ids():
        expire.send(str(tenant_id))


@dramatiq.actor(
    broker=broker, actor_name="benefits.sync_recent", queue_name="default", max_retries=3
)
async def sync_recent(tenant_id: str) -> None:
    """Grant and lapse the benefits of one tenant's recently changed members. Idempotent."""
    await run_for_tenant(uuid.UUID(tenant_id), _sync, name="benefits.sync_recent")


@periodic_actor("benefits.sync_recent_all")
async def sync_recent_all() -> None:
    """Periodic: fan out ``benefits.sync_recent`` to every active tenant."""
    for tenant_id in await active_tenant_ids():
        sync_recent.send(str(tenant_id))
