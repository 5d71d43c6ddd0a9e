"""Dramatiq actors of the member API: expired member tokens deleted, per tenant."""

from __future__ import annotations

import uuid

import dramatiq
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.jobs.broker import broker, periodic_actor
from nestpoint.jobs.tenants import active_tenant_ids, run_for_tenant
from nestpoint.memberapi import service


async def _purge(session: AsyncSession) -> int:
    return await service.purge_tokens(session, service.PURGE_AFTER)


@dramatiq.actor(
    broker=broker, actor_name="memberapi.purge_tokens", queue_name="default", max_retries=3
)
async def purge_tokens(tenant_id: str) -> None:
    """Delete one chain's tokens that expired more than ``PURGE_AFTER`` ago."""
    await run_for_tenant(uuid.UUID(tenant_id), _purge, name="memberapi.purge_tokens")


@periodic_actor("memberapi.purge_tokens_all")
async def purge_tokens_all() -> None:
    """Periodic: fan out ``memberapi.purge_tokens`` to every active tenant."""
    for tenant_id in await active_tenant_ids():
        purge_tokens.send(str(tenant_id))
