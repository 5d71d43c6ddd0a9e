"""Stripe's webhook events: received, verified, stored once, applied once, in any order.

Receiving (the HTTP route) only verifies the signature (HMAC-SHA256 with the endpoint's
secret, at most 300 s old: ``stripe_api.verify_event``) and stores the raw body once per
event id, in the same short transaction (an inbox: a replayed or retried delivery finds its
id and changes nothing). After the commit a worker applies it (``payments.apply_event``);
the sweep applies any a lost message left. Applying locks the stored event, so two workers
never apply one event twice, and records what it did:

* ``payment_intent.*`` and ``charge.refunded`` settle the payment (or refund) they name,
  found by its ``nestpoint_payment`` metadata or its Stripe id; an event about a payment not
  recorded here yet (Stripe can be quicker than our own write) is **held** and applied as
  soon as the worker records it (:func:`retry_held`), never lost;
* other types go to the handler a domain registered (``registry.register_event``);
* anything else is ``ignored`` (kept for audit all the same).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

import stripe
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from nestpoint.context import require_tenant
from nestpoint.db.base import table_of, utcnow
from nestpoint.db.session import on_commit
from nestpoint.errors import Malformed, Unauthorized
from nestpoint.jobs.broker import JobRef, enqueue_best_effort
from nestpoint.payments import service, stripe_api
from nestpoint.payments.models import (
    Payment,
    PaymentRefund,
    PlatformStripeEvent,
    StripeEvent,
)
from nestpoint.payments.registry import Account, EventOutcome, event_handler
from nestpoint.settings import get_settings

APPLY_CHAIN = JobRef("payments.apply_event")
APPLY_PLATFORM = JobRef("payments.apply_platform_event")
_AFTER_COMMIT = "nestpoint.stripe_events_new"
AnyEvent = StripeEvent | PlatformStripeEvent


def _later(session: AsyncSession, job: JobRef, *args: str) -> None:
    session.info.setdefault(_AFTER_COMMIT, []).append((job, args))


def enqueue_after_commit(session: Session) -> None:
    """Session hook: apply the events this commit stored (best effort: the sweep too)."""
    for job, args in session.info.pop(_AFTER_COMMIT, []):
        enqueue_best_effort(job, *args)


on_commit(enqueue_after_commit)


# ---- receiving --------------------------------------------------------------------------


def _verified(payload: bytes, signature: str | None, secret: str | None) -> dict[str, Any]:
    if not secret:
        raise Unauthorized("no webhook signing secret is configured for this account")
    if not signature:
        raise Unauthorized("no Stripe-Signature header")
    try:
        event = stripe_api.verify_event(payload, signature, secret)
    except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as error:
        raise Unauthorized(f"the signature does not verify: {error}") from None
    return event


def _fields(event: dict[str, Any]) -> dict[str, Any]:
    """The columns of an event, checked (a signed body is Stripe's, but may still be
    something this version does not understand)."""
    obj = (event.get("data") or {}).get("object") if isinstance(event, dict) else None
    if not (
        isinstance(event.get("id"), str)
        and isinstance(event.get("type"), str)
        and isinstance(event.get("created"), int)
        and isinstance(obj, dict)
    ):
        raise Malformed.field("body", "not a Stripe event (id, type, created, data.object)")
    return {
        "event_id": event["id"][:255],
        "type": event["type"][:100],
        "created": event["created"],
        "object_id": str(obj.get("id", ""))[:255],
    }


def _insert(session: AsyncSession, model: type[AnyEvent]) -> Any:
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(table_of(model))


async def receive_chain_event(
    session: AsyncSession, payload: bytes, signature: str | None
) -> tuple[bool, uuid.UUID | None]:
    """Verify and store an event of the current chain's account; (duplicate, row id)."""
    event = _verified(payload, signature, await service.chain_webhook_secret(session))
    row_id = uuid.uuid4()
    statement = (
        _insert(session, StripeEvent)
        .values(
            id=row_id,
            tenant_id=require_tenant().tenant_id,
            payload=payload.decode(),
            status="received",
            attempts=0,
            note="",
            received_at=utcnow(),
            **_fields(event),
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "event_id"])
    )
    stored = (await session.execute(statement)).rowcount  # type: ignore[attr-defined]
    if not stored:
        return True, None
    _later(session, APPLY_CHAIN, str(require_tenant().tenant_id), str(row_id))
    return False, row_id


async def receive_platform_event(
    session: AsyncSession, payload: bytes, signature: str | None
) -> tuple[bool, uuid.UUID | None]:
    """Verify and store an event of the platform's own account; (duplicate, row id)."""
    event = _verified(payload, signature, get_settings().stripe_platform_webhook_secret)
    row_id = uuid.uuid4()
    statement = (
        _insert(session, PlatformStripeEvent)
        .values(
            id=row_id,
            payload=payload.decode(),
            status="received",
            attempts=0,
            note="",
            received_at=utcnow(),
            **_fields(event),
        )
        .on_conflict_do_nothing(index_elements=["event_id"])
    )
    stored = (await session.execute(statement)).rowcount  # type: ignore[attr-defined]
    if not stored:
        return True, None
    _later(session, APPLY_PLATFORM, str(row_id))
    return False, row_id


# ---- applying ---------------------------------------------------------------------------


async def _payment_of(session: AsyncSession, intent: dict[str, Any]) -> Payment | None:
    metadata = intent.get("metadata") or {}
    payment_id = None
    with contextlib.suppress(ValueError):
        payment_id = uuid.UUID(str(metadata.get("nestpoint_payment")))
    if payment_id is not None:
        found = await session.scalar(
            select(Payment).where(Payment.id == payment_id).with_for_update()
        )
        if found is not None:
            return found
    return await session.scalar(
        select(Payment)
        .where(Payment.stripe_payment_intent == str(intent.get("id")))
        .with_for_update()
    )


INTENT_EVENTS: dict[str, service.Outcome] = {
    "payment_intent.succeeded": "succeeded",
    "payment_intent.payment_failed": "failed",
    "payment_intent.canceled": "failed",
}


async def _apply_intent(session: AsyncSession, event: dict[str, Any]) -> EventOutcome:
    outcome = INTENT_EVENTS.get(event["type"])
    if outcome is None:
        return "ignored"  # created, processing, requires_action: the outcome comes later
    intent = event["data"]["object"]
    payment = await _payment_of(session, intent)
    if payment is None:
        return "held"
    error = intent.get("last_payment_error") or {}
    failure = str(error.get("message") or "") if outcome == "failed" else ""
    await service.settle(session, payment, outcome, intent_id=str(intent["id"]), failure=failure)
    return "applied"


async def _apply_charge_refunded(session: AsyncSession, event: dict[str, Any]) -> EventOutcome:
    """``charge.refunded``: the refunds it lists that we asked for succeeded."""
    charge = event["data"]["object"]
    refunds = ((charge.get("refunds") or {}).get("data")) or []
    applied = False
    for item in refunds:
        metadata = item.get("metadata") or {}
        try:
            refund_id = uuid.UUID(str(metadata.get("nestpoint_refund")))
        except ValueError:
            continue
        refund = await session.scalar(select(PaymentRefund).where(PaymentRefund.id == refund_id))
        if refund is None:
            return "held"
        if item.get("status") == "succeeded":
            await service.settle_refund(session, refund, "succeeded", stripe_refund=str(item["id"]))
            applied = True
    return "applied" if applied else "ignored"


async def _apply(session: AsyncSession, account: Account, event: dict[str, Any]) -> EventOutcome:
    if account == "chain" and event["type"].startswith("payment_intent."):
        return await _apply_intent(session, event)
    if account == "chain" and event["type"] == "charge.refunded":
        return await _apply_charge_refunded(session, event)
    handler = event_handler(account, event["type"])
    if handler is None:
        return "ignored"
    return await handler(session, event)


async def _apply_row(session: AsyncSession, account: Account, row: AnyEvent | None) -> str:
    if row is None or row.status in ("applied", "ignored"):
        return "done"
    outcome = await _apply(session, account, json.loads(row.payload))
    row.status, row.attempts = outcome, row.attempts + 1
    if outcome != "held":
        row.applied_at = utcnow()
    return outcome


async def apply_chain_event(session: AsyncSession, row_id: uuid.UUID) -> str:
    """Apply one stored event of the chain's account (locked: once, whoever else tries)."""
    row = await session.scalar(
        select(StripeEvent).where(StripeEvent.id == row_id).with_for_update()
    )
    return await _apply_row(session, "chain", row)


async def apply_platform_event(session: AsyncSession, row_id: uuid.UUID) -> str:
    row = await session.scalar(
        select(PlatformStripeEvent).where(PlatformStripeEvent.id == row_id).with_for_update()
    )
    return await _apply_row(session, "platform", row)


async def retry_held(session: AsyncSession, object_id: str) -> int:
    """Apply again, after this commit, the chain's held events about ``object_id`` (call it
    when the record they were waiting for now exists); returns how many."""
    ids = list(
        (
            await session.scalars(
                select(StripeEvent.id).where(
                    StripeEvent.object_id == object_id, StripeEvent.status == "held"
                )
            )
        ).all()
    )
    for row_id in ids:
        _later(session, APPLY_CHAIN, str(require_tenant().tenant_id), str(row_id))
    return len(ids)


async def retry_held_platform(session: AsyncSession, object_id: str) -> int:
    """The same for the platform's account (tenant billing)."""
    ids = list(
        (
            await session.scalars(
                select(PlatformStripeEvent.id).where(
                    PlatformStripeEvent.object_id == object_id, PlatformStripeEvent.status == "held"
                )
            )
        ).all()
    )
    for row_id in ids:
        _later(session, APPLY_PLATFORM, str(row_id))
    return len(ids)


async def due_chain_events(session: AsyncSession) -> list[uuid.UUID]:
    """Stored events not applied yet, and held ones (the sweep tries them again)."""
    rows = await session.scalars(
        select(StripeEvent.id)
        .where(StripeEvent.status.in_(("received", "held")))
        .order_by(StripeEvent.received_at)
        .limit(500)
    )
    return list(rows.all())


async def due_platform_events(session: AsyncSession) -> list[uuid.UUID]:
    rows = await session.scalars(
        select(PlatformStripeEvent.id)
        .where(PlatformStripeEvent.status.in_(("received", "held")))
        .order_by(PlatformStripeEvent.received_at)
        .limit(500)
    )
    return list(rows.all())
