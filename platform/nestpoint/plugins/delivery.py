"""Bookkeeping of event delivery to plugins: per-plugin deliveries, failures, retries.

An outbox event is published once every plugin enabled for it has taken it. When some
plugin fails, the event is retried with exponential back-off (``events.service.backoff``),
and the hooks that did take it are written to ``plugin_deliveries`` so they are not called
again for that event: consumers see each event once per success, at least once overall.
After ``plugins_max_delivery_attempts`` the failure is recorded as final and the event is
published anyway, so one broken plugin never holds the outbox forever.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.db import utcnow
from nestpoint.events.models import OutboxEvent
from nestpoint.events.service import Event, backoff
from nestpoint.plugins.models import PluginDelivery, PluginFailure
from nestpoint.settings import get_settings

if TYPE_CHECKING:
    from nestpoint.plugins.manager import DeliveryOutcome


async def delivered_hooks(
    session: AsyncSession, event_ids: list[uuid.UUID]
) -> dict[uuid.UUID, frozenset[tuple[str, str]]]:
    """(plugin id, hook) pairs that already took each of these events."""
    if not event_ids:
        return {}
    found: dict[uuid.UUID, set[tuple[str, str]]] = defaultdict(set)
    rows = await session.execute(
        select(PluginDelivery.event_id, PluginDelivery.plugin_id, PluginDelivery.hook).where(
            PluginDelivery.event_id.in_(event_ids)
        )
    )
    for event_id, plugin_id, hook in rows.all():
        found[event_id].add((plugin_id, hook))
    return {k: frozenset(v) for k, v in found.items()}


async def record_outcomes(
    session: AsyncSession, outcomes: list[tuple[Event, DeliveryOutcome]]
) -> int:
    """Write what a batch of deliveries did, in the caller's one transaction (the rows read
    in one query); returns how many events are now published.

    Recording a batch at once rather than event by event halves the relay's transactions;
    a relay lost before it commits leaves the batch to be delivered again when its claim
    lapses, which at-least-once delivery allows (consumers deduplicate on the event id)."""
    if not outcomes:
        return 0
    ids = [uuid.UUID(event.id) for event, _ in outcomes]
    (await session.scalars(select(OutboxEvent).where(OutboxEvent.id.in_(ids)))).all()  # cached
    published = 0
    for event, outcome in outcomes:
        published += await record_outcome(session, event, outcome)
    return published


async def record_outcome(session: AsyncSession, event: Event, outcome: DeliveryOutcome) -> bool:
    """Write what one delivery did; returns ``True`` when the event is now published."""
    tenant_id = uuid.UUID(event.tenant_id)
    event_id = uuid.UUID(event.id)
    row = await session.get(OutboxEvent, {"tenant_id": tenant_id, "id": event_id})
    if row is None or row.published_at is not None:
        return False
    now = utcnow()
    if not outcome.failures:
        row.published_at = now
        row.last_error = None
        return True
    row.attempts += 1
    final = row.attempts >= get_settings().plugins_max_delivery_attempts
    store_id = uuid.UUID(event.store_id) if event.store_id else None
    session.add_all(
        PluginDelivery(event_id=event_id, plugin_id=plugin_id, hook=hook, delivered_at=now)
        for plugin_id, hook in outcome.delivered
    )
    session.add_all(
        PluginFailure(
            plugin_id=f.plugin_id,
            hook=f.hook,
            store_id=store_id,
            event_id=event_id,
            event_type=event.type,
            attempt=row.attempts,
            kind=f.kind,
            error=f.error,
            final=final,
            occurred_at=now,
        )
        for f in outcome.failures
    )
    row.last_error = "; ".join(f.describe() for f in outcome.failures)[:2000]
    if final:
        row.published_at = now
        return True
    row.next_attempt_at = now + backoff(row.attempts)
    return False
