"""Dramatiq actors of messaging: deliver one message, and the sweep that finds the due ones."""

from __future__ import annotations

import uuid

import dramatiq
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.db.base import utcnow
from nestpoint.jobs.broker import broker, periodic_actor
from nestpoint.jobs.tenants import active_tenant_ids, run_for_tenant
from nestpoint.members.service import local_today as chain_today
from nestpoint.messaging import pipeline
from nestpoint.messaging.models import Message
from nestpoint.messaging.service import queue_birthdays

# Steps one job runs back to back (a refused channel falls back at once); past that, or
# when a step is due later (a back-off, quiet hours), the job sends itself again, delayed.
STEPS_PER_JOB = 10
SWEEP_BATCH = 500


@dramatiq.actor(broker=broker, actor_name="messaging.deliver", queue_name="default", max_retries=5)
async def deliver(tenant_id: str, message_id: str) -> None:
    """Take one message through the pipeline (``nestpoint.messaging.pipeline``). Sending
    it twice, or again after a crash, never sends the message twice."""
    tid, mid = uuid.UUID(tenant_id), uuid.UUID(message_id)
    for _ in range(STEPS_PER_JOB):
        wait = await pipeline.step(tid, mid)
        if wait is None:
            return
        if wait > 0:
            deliver.send_with_options(args=(tenant_id, message_id), delay=int(wait * 1000))
            return
    deliver.send(tenant_id, message_id)


async def due_messages(session: AsyncSession) -> list[uuid.UUID]:
    """Queued messages that are due, and sending ones whose worker's lease ran out."""
    now = utcnow()
    rows = await session.scalars(
        select(Message.id)
        .where(
            or_(
                (Message.status == "queued") & (Message.not_before <= now),
                (Message.status == "sending") & (Message.lease_until < now),
            )
        )
        .order_by(Message.not_before)
        .limit(SWEEP_BATCH)
    )
    return list(rows.all())


@dramatiq.actor(broker=broker, actor_name="messaging.sweep", queue_name="default", max_retries=3)
async def sweep(tenant_id: str) -> None:
    """Enqueue the tenant's due messages (those a lost or delayed job did not take)."""
    ids = await run_for_tenant(uuid.UUID(tenant_id), due_messages, name="messaging.sweep")
    for message_id in ids:
        deliver.send(tenant_id, str(message_id))


async def _birthdays(session: AsyncSession) -> int:
    return await queue_birthdays(session, (await chain_today(session)))


@dramatiq.actor(
    broker=broker, actor_name="messaging.birthdays", queue_name="default", max_retries=3
)
async def birthdays(tenant_id: str) -> None:
    """Queue the day's birthday greetings of one tenant (its local date). Once a day;
    idempotent (one message per member and year)."""
    await run_for_tenant(uuid.UUID(tenant_id), _birthdays, name="messaging.birthdays")


@periodic_actor("messaging.sweep_all")
async def sweep_all() -> None:
    """Periodic: fan out ``messaging.sweep`` to every active tenant."""
    for tenant_id in await active_tenant_ids():
        sweep.send(str(tenant_id))
