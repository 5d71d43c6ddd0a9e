"""Dramatiq actors of members: phone changes long ended deleted, per tenant."""

from __future__ import annotations

import uuid
from datetime import timedelta

import dramatiq
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.jobs.broker import broker, periodic_actor
from nestpoint.jobs.tenants import active_tenant_ids, run_for_tenant
from nestpoint.members import phone
from nestpoint.settings import get_settings


async def purge_ended_changes(session: AsyncSession) -> int:
    """One chain's phone changes ended more than the retention period ago, deleted."""
    days = get_settings().phone_change_retention_days
    return await phone.purge_ended(session, timedelta(days=days))


@dramatiq.actor(
    broker=broker,
    actor_name="members.purge_phone_changes",
    queue_name="default",
    max_retries=3,
)
async def purge_phone_changes(tenant_id: str) -> None:
    """Delete one chain's phone changes past ``NESTPOINT_PHONE_CHANGE_RETENTION_DAYS``."""
    await run_for_tenant(
        uuid.UUID(tenant_id), purge_ended_changes, name="members.purge_phone_changes"
    )


@periodic_actor("members.purge_phone_changes_all")
async def purge_phone_changes_all() -> None:
    """Periodic: fan out ``members.purge_phone_changes`` to every active tenant."""
    for tenant_id in await active_tenant_ids():
        purge_phone_changes.send(str(tenant_id))
