"""Dramatiq actors of the outbox relay (their names keep the events context's prefix).

``nestpoint.events.service`` enqueues ``events.relay`` by name after a commit that wrote
events; ``events.sweep`` is periodic (``nestpoint.jobs.registry``).
"""

from __future__ import annotations

import uuid

import dramatiq

from nestpoint.jobs.broker import broker, periodic_actor
from nestpoint.plugins.relay import drain_pending, relay_all


@dramatiq.actor(broker=broker, actor_name="events.relay", queue_name="events", max_retries=5)
async def relay(tenant_id: str) -> None:
    """Deliver a tenant's due outbox events (enqueued after each commit that wrote some),
    batch after batch until none is due."""
    await drain_pending(uuid.UUID(tenant_id))


@periodic_actor("events.sweep", queue_name="events")
async def sweep() -> None:
    """Periodic safety net: relay every tenant's due events, including retries."""
    await relay_all()
