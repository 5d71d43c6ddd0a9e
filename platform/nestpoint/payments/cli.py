"""``nestpoint payments``: a chain's payments and Stripe events, and the sweep run now."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Annotated, Any

import typer

from nestpoint.jobs.cli import run_in_tenant as _run

payments_app = typer.Typer(
    help="Payments through Stripe: a chain's payments, its webhook events, the sweep now.",
    no_args_is_help=True,
)

Tenant = Annotated[str, typer.Option(help="The chain's slug.")]


@payments_app.command("list")
def list_payments(
    tenant: Tenant,
    status: Annotated[
        str | None, typer.Option(help="pending, submitted, succeeded, failed.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """The chain's latest payments: purpose, amount, state, Stripe's intent."""
    from nestpoint.payments import service

    async def go(session: Any) -> Any:
        return await service.list_payments(
            session, status=status, purpose=None, member_id=None, limit=limit, cursor=None
        )

    for p in _run(tenant, "nestpoint payments list", go).items:
        intent = p.stripe_payment_intent or "-"
        typer.echo(
            f"{p.created_at:%Y-%m-%d %H:%M} {p.id} {p.purpose:<18} {p.amount_fen:>10} fen "
            f"{p.status:<10} {intent} {p.failure}"
        )


@payments_app.command("events")
def events(
    tenant: Tenant,
    held: Annotated[bool, typer.Option(help="Only the events not applied yet.")] = False,
) -> None:
    """The Stripe events the chain's account sent, newest first, with what applying did."""
    from sqlalchemy import select

    from nestpoint.payments.models import StripeEvent

    async def go(session: Any) -> Any:
        query = select(StripeEvent).order_by(StripeEvent.received_at.desc()).limit(100)
        if held:
            query = query.where(StripeEvent.status.in_(("received", "held")))
        return list((await session.scalars(query)).all())

    for e in _run(tenant, "nestpoint payments events", go):
        typer.echo(f"{e.received_at:%Y-%m-%d %H:%M:%S} {e.event_id} {e.type:<32} {e.status}")


@payments_app.command("sweep")
def sweep(tenant: Tenant) -> None:
    """Work the chain's unfinished payments, refunds and events now (what the periodic
    sweep does every minute): useful after an outage, with no worker running."""
    from nestpoint.payments import webhooks, worker

    payments, refunds = _run(tenant, "nestpoint payments sweep", worker.due)
    held = _run(tenant, "nestpoint payments sweep", webhooks.due_chain_events)
    tenant_id = _run(tenant, "nestpoint payments sweep", _tenant_id)

    async def go() -> None:
        for payment_id in payments:
            await worker.submit_payment(tenant_id, payment_id)
        for refund_id in refunds:
            await worker.submit_refund(tenant_id, refund_id)

    asyncio.run(go())
    for row_id in held:
        _run(tenant, "nestpoint payments sweep", partial(webhooks.apply_chain_event, row_id=row_id))
    typer.echo(f"payments {len(payments)}, refunds {len(refunds)}, events {len(held)}")


async def _tenant_id(session: Any) -> Any:
    from nestpoint.context import require_tenant

    return require_tenant().tenant_id
