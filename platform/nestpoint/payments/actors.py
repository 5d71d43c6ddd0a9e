"""Dramatiq actors of payments: charge, refund, apply a webhook event, and the sweep that
finds what a lost message or a dead worker left."""

from __future__ import annotations

import uuid
from functools import partial

import dramatiq

from nestpoint.context import Actor, acting_as
from nestpoint.db.session import scoped_session
from nestpoint.jobs.broker import broker, periodic_actor
from nestpoint.jobs.tenants import active_tenant_ids, run_for_tenant
from nestpoint.payments import webhooks, worker


@dramatiq.actor(
    broker=broker, actor_name="payments.submit_payment", queue_name="default", max_retries=10
)
async def submit_payment(tenant_id: str, payment_id: str) -> None:
    """Charge one payment in Stripe (idempotent; see ``nestpoint.payments.worker``)."""
    await worker.submit_payment(uuid.UUID(tenant_id), uuid.UUID(payment_id))


@dramatiq.actor(
    broker=broker, actor_name="payments.submit_refund", queue_name="default", max_retries=10
)
async def submit_refund(tenant_id: str, refund_id: str) -> None:
    """Make one refund in Stripe (idempotent)."""
    await worker.submit_refund(uuid.UUID(tenant_id), uuid.UUID(refund_id))


@dramatiq.actor(
    broker=broker, actor_name="payments.apply_event", queue_name="default", max_retries=5
)
async def apply_event(tenant_id: str, row_id: str) -> None:
    """Apply one stored webhook event of a chain's Stripe account (once, however often)."""
    await run_for_tenant(
        uuid.UUID(tenant_id),
        partial(webhooks.apply_chain_event, row_id=uuid.UUID(row_id)),
        name="payments.apply_event",
    )


async def apply_platform(row_id: uuid.UUID) -> str:
    with acting_as(Actor("system", name="payments.apply_platform_event")):
        async with scoped_session() as session:
            return await webhooks.apply_platform_event(session, row_id)


@dramatiq.actor(
    broker=broker, actor_name="payments.apply_platform_event", queue_name="default", max_retries=5
)
async def apply_platform_event(row_id: str) -> None:
    """Apply one stored webhook event of the platform's own account (tenant billing)."""
    await apply_platform(uuid.UUID(row_id))


@dramatiq.actor(broker=broker, actor_name="payments.sweep", queue_name="default", max_retries=3)
async def sweep(tenant_id: str) -> None:
    """Hand one chain's unfinished payments, refunds and events to the workers again."""
    tid = uuid.UUID(tenant_id)
    payments, refunds = await run_for_tenant(tid, worker.due, name="payments.sweep")
    events = await run_for_tenant(tid, webhooks.due_chain_events, name="payments.sweep")
    for payment_id in payments:
        submit_payment.send(tenant_id, str(payment_id))
    for refund_id in refunds:
        submit_refund.send(tenant_id, str(refund_id))
    for row_id in events:
        apply_event.send(tenant_id, str(row_id))


@periodic_actor("payments.sweep_all")
async def sweep_all() -> None:
    """Periodic: sweep every active chain, and the platform account's events."""
    for tenant_id in await active_tenant_ids():
        sweep.send(str(tenant_id))
    with acting_as(Actor("system", name="payments.sweep")):
        async with scoped_session() as session:
            events = await webhooks.due_platform_events(session)
    for row_id in events:
        apply_platform_event.send(str(row_id))
