"""Dramatiq actors of the console: long-expired sessions deleted, per tenant."""

from __future__ import annotations

import uuid

import dramatiq
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.console import service
from nestpoint.jobs.broker import broker, periodic_actor
from nestpoint.jobs.tenants import active_tenant_ids, run_for_tenant


async def _purge(session: AsyncSession) -> int:
    return await service.purge_sessions(session)


@dramatiq.actor(
    broker=broker, actor_name="console.purge_sessions", queue_name="default", max_retries=3
)
async def purge_sessions(tenant_id: str) -> None:
    """Delete one chain's console sessions that expired more than ``PURGE_AFTER`` ago."""
    await run_for_tenant(uuid.UUID(tenant_id), _purge, name="console.purge_sessions")


@periodic_actor("console.purge_sessions_all")
async def purge_sessions_all() -> None:
    """Periodic: fan out ``console.purge_sessions`` to every active tenant."""
    for tenant_id in await active_tenant_ids():
        purge_sessions.send(str(tenant_id))
