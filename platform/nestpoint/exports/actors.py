"""Dramatiq actor of exports: run one export job (``nestpoint.exports.service``)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import dramatiq
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.context import Actor, acting_as, tenant_context
from nestpoint.db.base import utcnow
from nestpoint.exports import service
from nestpoint.exports.models import Export
from nestpoint.jobs.broker import broker, periodic_actor
from nestpoint.jobs.tenants import active_tenant_ids, run_for_tenant

# A million rows take minutes; Dramatiq's default limit is ten.
TIME_LIMIT_MS = 2 * 60 * 60 * 1000


@dramatiq.actor(
    broker=broker,
    actor_name="exports.run",
    queue_name="default",
    max_retries=2,
    time_limit=TIME_LIMIT_MS,
)
async def run(tenant_id: str, export_id: str) -> None:
    """Write one export's file. Again after a failure or a lost worker, it starts over (the
    chunks written so far are dropped); a finished export is left alone."""
    with acting_as(Actor("system", name="exports.run")), tenant_context(uuid.UUID(tenant_id)):
        await service.run_export(uuid.UUID(export_id))


# A job still queued this long after it was requested lost its message (the broker was
# down when it was enqueued): the sweep sends it again. Running twice is harmless (a
# finished export is left alone; another run starts over).
STALE_QUEUED = timedelta(minutes=2)


async def stale_queued(session: AsyncSession) -> list[uuid.UUID]:
    rows = await session.scalars(
        select(Export.id).where(
            Export.status == "queued", Export.created_at < utcnow() - STALE_QUEUED
        )
    )
    return list(rows.all())


@periodic_actor("exports.sweep_all")
async def sweep_all() -> None:
    """Periodic: send again the export jobs whose first message was lost."""
    for tenant_id in await active_tenant_ids():
        for export_id in await run_for_tenant(tenant_id, stale_queued, name="exports.sweep"):
            run.send(str(tenant_id), str(export_id))
