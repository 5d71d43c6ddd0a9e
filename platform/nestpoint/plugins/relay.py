"""The outbox relay: hands committed events to the plugins enabled for them.

The read side of the outbox (``nestpoint.events.service`` is the write side, and never
imports this module). ``drain_pending`` (``relay_pending`` batch after batch) runs in the
``events.relay`` job that a commit which wrote events enqueues by name, and ``relay_all`` in
the periodic ``events.sweep`` (``nestpoint.plugins.actors``). Delivery is at least once:
consumers deduplicate on the event id.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, bindparam, func, select, tuple_

from nestpoint.context import tenant_context
from nestpoint.db import Database, scoped_session, utcnow
from nestpoint.events.models import OutboxEvent
from nestpoint.events.service import Event
from nestpoint.jobs.tenants import active_tenant_ids
from nestpoint.observability import backlog
from nestpoint.plugins.delivery import delivered_hooks, record_outcomes
from nestpoint.plugins.manager import get_plugin_host
from nestpoint.settings import get_settings

# How long a relay holds the events it claimed before another relay may take them.
CLAIM_LEASE = timedelta(minutes=5)


# Where a drain has got to: the (occurred_at, id) of the last event it claimed.
Position = tuple[datetime, uuid.UUID]


async def relay_pending(tenant_id: uuid.UUID, database: Database | None = None) -> int:
    """Deliver one batch of due events of one tenant; returns how many were published."""
    published, _ = await relay_batch(tenant_id, database)
    return published


async def relay_batch(
    tenant_id: uuid.UUID, database: Database | None = None, after: Position | None = None
) -> tuple[int, Position | None]:
    """Deliver one batch of due events of one tenant (those after ``after`` only, when
    given); returns how many were published and the position of the last one claimed.

    1. Claim: in one short transaction, lock the due rows (``SKIP LOCKED`` on PostgreSQL),
       push their ``next_attempt_at`` a lease ahead so no other relay takes them, read the
       tenant's plugin enablement afresh, and publish at once every event no plugin wants.
       An event goes to the plugins enabled for its store now that were already enabled
       when it happened (``enabled_at <= occurred_at``): enabling a plugin never hands it
       the events of before.
    2. Deliver each claimed event to the plugins enabled for its tenant and store, outside
       any transaction (a plugin may open sessions of its own).
    3. Record the batch's outcomes in one transaction: published, or retried with back-off
       for the plugins that failed only (see ``nestpoint.plugins.delivery``).
    """
    host = get_plugin_host()
    published = 0
    with tenant_context(tenant_id):
        async with scoped_session(database) as session:
            now = utcnow()
            due = select(OutboxEvent).where(
                OutboxEvent.published_at.is_(None), OutboxEvent.next_attempt_at <= now
            )
            if after is not None:  # keyset: the index scan starts where the last batch ended
                due = due.where(_after(after))
            rows = (
                await session.scalars(
                    due.order_by(OutboxEvent.occurred_at, OutboxEvent.id)
                    .limit(get_settings().outbox_batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0, None
            position = (rows[-1].occurred_at, rows[-1].id)
            snapshot = await host.snapshot(tenant_id, session)
            claimed: list[tuple[Event, int, dict[str, Any]]] = []
            for row in rows:
                enabled = snapshot.enabled_when(
                    snapshot.enabled_for(row.store_id, host.loaded, host.merge_config),
                    row.store_id,
                    row.occurred_at,
                )
                if not enabled:
                    row.published_at = now
                    row.last_error = None
                    published += 1
                    continue
                row.next_attempt_at = now + CLAIM_LEASE
                claimed.append((Event.from_row(row), row.attempts, enabled))
            done = await delivered_hooks(
                session, [uuid.UUID(e.id) for e, attempts, _ in claimed if attempts > 0]
            )
        outcomes = [
            (
                event,
                await host.deliver_event(
                    event, enabled=enabled, skip=done.get(uuid.UUID(event.id), frozenset())
                ),
            )
            for event, _, enabled in claimed
        ]
        async with scoped_session(database) as session:
            published += await record_outcomes(session, outcomes)
    return published, position


def _after(position: Position) -> ColumnElement[bool]:
    """``(occurred_at, id) > position``, each value bound with its column's type."""
    at = bindparam("after_at", position[0], type_=OutboxEvent.occurred_at.type)
    event_id = bindparam("after_id", position[1], type_=OutboxEvent.id.type)
    return tuple_(OutboxEvent.occurred_at, OutboxEvent.id) > tuple_(at, event_id)


async def drain_pending(
    tenant_id: uuid.UUID, database: Database | None = None, *, budget_seconds: float = 60.0
) -> int:
    """Relay one tenant's due events batch after batch until none is left to claim (those
    a plugin failed on wait for their retry), for at most ``budget_seconds``
    (a job stays bounded; the sweep takes up the rest). A backlog (a bulk import, the
    demo's seeding, a plugin down for an hour) drains at the relay's speed, not one batch
    per sweep. Returns how many were published."""
    deadline = time.monotonic() + budget_seconds
    total, position = 0, None
    while time.monotonic() < deadline:
        # Each batch starts after the last one (its index scan does not walk past the
        # events published meanwhile: draining stays linear in the backlog). An event
        # committed meanwhile with an earlier time is the next relay job's.
        published, position = await relay_batch(tenant_id, database, position)
        total += published
        if position is None:  # nothing left to claim
            break
    return total


async def relay_all(database: Database | None = None) -> int:
    """Drain every tenant's due events, then publish the backlog left (the metrics)."""
    total, pending, oldest = 0, 0, None
    for tenant_id in await active_tenant_ids(database):  # RLS hides other tenants' rows
        total += await drain_pending(tenant_id, database)
        count, first = await pending_events(tenant_id, database)
        pending += count
        oldest = first if oldest is None or (first is not None and first < oldest) else oldest
    backlog.publish(pending, oldest.timestamp() if oldest is not None else None)
    return total


async def pending_events(
    tenant_id: uuid.UUID, database: Database | None = None
) -> tuple[int, datetime | None]:
    """How many of one tenant's events wait to be published, and the oldest one's time."""
    with tenant_context(tenant_id):
        async with scoped_session(database) as session:
            row = (
                await session.execute(
                    select(func.count(), func.min(OutboxEvent.occurred_at)).where(
                        OutboxEvent.published_at.is_(None)
                    )
                )
            ).one()
    return int(row[0]), row[1]
