"""Dramatiq actors of imports: run one import job (``nestpoint.imports.service``)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import dramatiq
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.context import Actor, acting_as, tenant_context
from nestpoint.db.base import utcnow
from nestpoint.imports import service
from nestpoint.imports.models import Import
from nestpoint.jobs.broker import broker, periodic_actor
from nestpoint.jobs.tenants import active_tenant_ids, run_for_tenant

# A million rows take minutes; Dramatiq's default limit is ten.
TIME_LIMIT_MS = 2 * 60 * 60 * 1000


@dramatiq.actor(
    broker=broker,
    actor_name="imports.run",
    queue_name="default",
    max_retries=2,
    time_limit=TIME_LIMIT_MS,
)
async def run(tenant_id: str, import_id: str) -> None:
    """Run one import. Again after a failure or a lost worker, it starts over (it wrote
    nothing: one transaction); a finished one (done or invalid) is left alone."""
    with acting_as(Actor("system", name="imports.run")), tenant_context(uuid.UUID(tenant_id)):
        await service.run_import(uuid.UUID(import_id))


# A job still queued this long after it was requested lost its message: the sweep sends it
# again. Running twice is harmless (a finished import is left alone; re-runs skip rows).
STALE_QUEUED = timedelta(minutes=2)


async def stale_queued(session: AsyncSession) -> list[uuid.UUID]:
    rows = await session.scalars(
        select(Import.id).where(
            Import.status == "queued", Import.created_at < utcnow() - STALE_QUEUED
        )
    )
    return list(rows.all())


@periodic_actor("imports.sweep_all")
async def sweep_all() -> None:
    """Periodic: send again the import jobs whose first message was lost."""
    for tenant_id in await active_tenant_ids():
        for import_id in await run_for_tenant(tenant_id, stale_queued, name="imports.sweep"):
            run.send(str(tenant_id), str(import_id))
