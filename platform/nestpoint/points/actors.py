"""Dramatiq actors of the points context: expiry and hold timeouts, per tenant."""

from __future__ import annotations

import uuid

import dramatiq
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.jobs.broker import broker, periodic_actor
from nestpoint.jobs.tenants import active_tenant_ids, run_for_tenant
from nestpoint.points.jobs import (
    JobResult,
    announce_expiring,
    expire_points,
    release_expired_holds,
)


async def _expire(session: AsyncSession) -> JobResult:
    return await expire_points(session)


async def _release(session: AsyncSession) -> JobResult:
    return await release_expired_holds(session)


async def _announce(session: AsyncSession) -> JobResult:
    return await announce_expiring(session)


@dramatiq.actor(broker=broker, actor_name="points.expire", queue_name="default", max_retries=3)
async def expire(tenant_id: str) -> None:
    """Expire one tenant's due lots (积分清零). Idempotent: safe twice or concurrently."""
    await run_for_tenant(uuid.UUID(tenant_id), _expire, name="points.expire")


@periodic_actor("points.expire_all")
async def expire_all() -> None:
    """Periodic: fan out ``points.expire`` to every active tenant."""
    for tenant_id in await active_tenant_ids():
        expire.send(str(tenant_id))


@dramatiq.actor(
    broker=broker, actor_name="points.release_holds", queue_name="default", max_retries=3
)
async def release_holds(tenant_id: str) -> None:
    """Release one tenant's timed-out holds. Idempotent."""
    await run_for_tenant(uuid.UUID(tenant_id), _release, name="points.release_holds")


@periodic_actor("points.release_holds_all")
async def release_holds_all() -> None:
    for tenant_id in await active_tenant_ids():
        release_holds.send(str(tenant_id))


@dramatiq.actor(
    broker=broker, actor_name="points.announce_expiring", queue_name="default", max_retries=3
)
async def announce(tenant_id: str) -> None:
    """Announce one tenant's points about to expire (``points.expiring``). Once a day."""
    await run_for_tenant(uuid.UUID(tenant_id), _announce, name="points.announce_expiring")
