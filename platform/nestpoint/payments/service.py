"""Payments through Stripe: the rules.

A domain asks for a payment (:func:`request_payment`) or a refund (:func:`request_refund`)
inside its own transaction: the row is written with the domain's change, so neither exists
without the other. Nothing talks to Stripe there. After the commit a worker
(``nestpoint.payments.worker``) makes the PaymentIntent or the refund in Stripe, outside
any transaction, with an idempotency key derived from the row; the answer, or Stripe's
webhook event, whichever comes first, settles the row through :func:`settle` /
:func:`settle_refund`, which run the purpose's handlers exactly once (the row is locked
and its state moves only forward).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Literal

import stripe
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from nestpoint.audit.service import record
from nestpoint.context import current_actor, require_tenant
from nestpoint.db.base import utcnow
from nestpoint.db.pagination import Page, paginate
from nestpoint.db.session import on_commit
from nestpoint.errors import Conflict, Invalid, NotFound
from nestpoint.events.service import emit
from nestpoint.jobs.broker import JobRef, enqueue_best_effort
from nestpoint.members import pii
from nestpoint.payments import stripe_api
from nestpoint.payments.models import FINAL_STATUSES, Payment, PaymentRefund, StripeAccount
from nestpoint.payments.registry import handlers_for
from nestpoint.payments.schemas import StripeAccountIn, StripeAccountRead

Outcome = Literal["succeeded", "failed"]
# The worker's actors, by name: the service never imports the worker that calls it.
SUBMIT_PAYMENT = JobRef("payments.submit_payment")
SUBMIT_REFUND = JobRef("payments.submit_refund")
_NEW_KEY = "nestpoint.payments_new"


# ---- the chain's Stripe account ---------------------------------------------------------


def _context(field: str) -> bytes:
    return pii.row_context(require_tenant().tenant_id, "stripe_accounts", field)


async def _account(session: AsyncSession) -> StripeAccount | None:
    return await session.scalar(select(StripeAccount))


def _account_read(row: StripeAccount | None) -> StripeAccountRead:
    if row is None:
        return StripeAccountRead(configured=False)
    return StripeAccountRead(
        configured=True,
        publishable_key=row.publishable_key,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


async def get_account(session: AsyncSession) -> StripeAccountRead:
    return _account_read(await _account(session))


async def put_account(session: AsyncSession, data: StripeAccountIn) -> StripeAccountRead:
    """Set the chain's Stripe keys (sealed; audited without them)."""
    ring = pii.keyring()
    secret = ring.encrypt(data.secret_key, context=_context("secret_key"))
    webhook = ring.encrypt(data.webhook_secret, context=_context("webhook_secret"))
    who = str(current_actor().key_id or current_actor().name)
    row = await _account(session)
    if row is None:
        row = StripeAccount(secret_key_enc=secret, webhook_secret_enc=webhook, updated_by=who)
        session.add(row)
    else:
        row.secret_key_enc, row.webhook_secret_enc, row.updated_by = secret, webhook, who
        row.updated_at = utcnow()
    row.publishable_key = data.publishable_key
    await session.flush()
    record(
        session,
        "payments.stripe_account_set",
        "tenant",
        require_tenant().tenant_id,
        {"publishable_key": data.publishable_key},
    )
    return _account_read(row)


async def chain_secret_key(session: AsyncSession) -> str:
    row = await _account(session)
    if row is None:
        raise stripe_api.StripeNotConfigured(
            "the chain has no Stripe account (PUT /api/v1/payments/stripe)"
        )
    return pii.keyring().decrypt(row.secret_key_enc, context=_context("secret_key"))


async def chain_webhook_secret(session: AsyncSession) -> str | None:
    row = await _account(session)
    if row is None:
        return None
    return pii.keyring().decrypt(row.webhook_secret_enc, context=_context("webhook_secret"))


async def tenant_client(session: AsyncSession) -> stripe.StripeClient:
    """A client on the current chain's own Stripe account."""
    return stripe_api.client_for_key(await chain_secret_key(session))


# ---- asking -----------------------------------------------------------------------------


def _enqueue_after_commit(session: AsyncSession, job: JobRef, row_id: uuid.UUID) -> None:
    tenant_id = require_tenant().tenant_id
    session.info.setdefault(_NEW_KEY, []).append((job, str(tenant_id), str(row_id)))


def enqueue_new_after_commit(session: Session) -> None:
    """Session hook: hand the payments and refunds this commit asked for to the workers
    (best effort: the sweep finds any a lost message missed)."""
    for job, tenant_id, row_id in session.info.pop(_NEW_KEY, []):
        enqueue_best_effort(job, tenant_id, row_id)


on_commit(enqueue_new_after_commit)


async def request_payment(
    session: AsyncSession,
    *,
    purpose: str,
    subject_id: uuid.UUID,
    amount_fen: int,
    currency: str,
    member_id: uuid.UUID | None,
    payment_method: str | None,
    store_id: uuid.UUID | None = None,
    description: str = "",
) -> Payment:
    """Ask for a payment in the caller's transaction: one per (purpose, subject); asking
    again for the same subject returns the first. A worker charges it after the commit."""
    handlers_for(purpose)  # a purpose nobody handles is a programming error: fail now
    if await _account(session) is None:
        raise stripe_api.StripeNotConfigured(
            "the chain has no Stripe account (PUT /api/v1/payments/stripe)"
        )
    if amount_fen <= 0:
        raise Invalid.field("amount_fen", "must be positive")
    existing = await session.scalar(
        select(Payment).where(Payment.purpose == purpose, Payment.subject_id == subject_id)
    )
    if existing is not None:
        return existing
    payment = Payment(
        purpose=purpose,
        subject_id=subject_id,
        member_id=member_id,
        store_id=store_id,
        amount_fen=amount_fen,
        currency=currency,
        payment_method=payment_method,
        description=description[:200],
    )
    session.add(payment)
    await session.flush()
    record(
        session,
        "payment.requested",
        "payment",
        payment.id,
        {"purpose": purpose, "subject_id": str(subject_id), "amount_fen": amount_fen},
    )
    _enqueue_after_commit(session, SUBMIT_PAYMENT, payment.id)
    return payment


async def lock_payment(session: AsyncSession, payment_id: uuid.UUID) -> Payment:
    payment = await session.scalar(
        select(Payment).where(Payment.id == payment_id).with_for_update()
    )
    if payment is None:
        raise NotFound(f"no payment {payment_id}")
    return payment


async def request_refund(
    session: AsyncSession, *, payment_id: uuid.UUID, amount_fen: int, cause: str, reason: str = ""
) -> PaymentRefund:
    """Ask for money back on a succeeded payment, once per ``cause`` (asking again with the
    same cause returns the first). The amount is reserved at once: refunds never add up to
    more than the payment. A worker makes the refund in Stripe after the commit."""
    payment = await lock_payment(session, payment_id)
    existing = await session.scalar(
        select(PaymentRefund).where(
            PaymentRefund.payment_id == payment_id, PaymentRefund.cause == cause
        )
    )
    if existing is not None:
        return existing
    if payment.status != "succeeded":
        raise Conflict(f"payment {payment_id} is {payment.status}: only a paid payment refunds")
    if amount_fen <= 0 or amount_fen > payment.amount_fen - payment.refunded_fen:
        left = payment.amount_fen - payment.refunded_fen
        raise Invalid.field("amount_fen", f"must be between 1 and {left} (what is left to refund)")
    payment.refunded_fen += amount_fen
    refund = PaymentRefund(
        payment_id=payment_id, amount_fen=amount_fen, cause=cause, reason=reason[:200]
    )
    session.add(refund)
    await session.flush()
    record(
        session,
        "payment.refund_requested",
        "payment",
        payment_id,
        {"refund_id": str(refund.id), "amount_fen": amount_fen, "cause": cause},
    )
    _enqueue_after_commit(session, SUBMIT_REFUND, refund.id)
    return refund


# ---- settling ---------------------------------------------------------------------------


async def settle(
    session: AsyncSession,
    payment: Payment,
    outcome: Outcome,
    *,
    intent_id: str | None = None,
    failure: str = "",
) -> bool:
    """Move a locked payment to its outcome and run its purpose's handler; False when it
    was already there (a second delivery of the same news changes nothing).

    Only forward: a succeeded payment never fails afterwards (a stale failure event), but
    a failed one that Stripe then reports succeeded does succeed: money taken is never
    ignored, and the purpose's ``succeeded`` handler copes with a subject it had failed."""
    if intent_id and payment.stripe_payment_intent is None:
        payment.stripe_payment_intent = intent_id
    if payment.status == outcome or payment.status == "succeeded":
        return False
    payment.status = outcome
    payment.failure = failure[:300]
    payment.settled_at = utcnow()
    payment.lease_until = None
    handlers = handlers_for(payment.purpose)
    record(
        session,
        f"payment.{outcome}",
        "payment",
        payment.id,
        {
            "purpose": payment.purpose,
            "amount_fen": payment.amount_fen,
            **({"failure": payment.failure} if failure else {}),
        },
    )
    emit(
        session,
        f"payment.{outcome}",
        "payment",
        payment.id,
        {
            "purpose": payment.purpose,
            "subject_id": str(payment.subject_id),
            "amount_fen": payment.amount_fen,
            "member_id": str(payment.member_id) if payment.member_id else None,
        },
        store_id=payment.store_id,
    )
    await (handlers.succeeded if outcome == "succeeded" else handlers.failed)(session, payment)
    return True


async def lock_refund(session: AsyncSession, refund_id: uuid.UUID) -> PaymentRefund:
    refund = await session.scalar(
        select(PaymentRefund).where(PaymentRefund.id == refund_id).with_for_update()
    )
    if refund is None:
        raise NotFound(f"no refund {refund_id}")
    return refund


async def settle_refund(
    session: AsyncSession,
    refund: PaymentRefund,
    outcome: Outcome,
    *,
    stripe_refund: str | None = None,
    failure: str = "",
) -> bool:
    """Move a refund to its outcome (the payment locked first, then the refund: the one
    lock order); a failed refund gives its reserved amount back to the payment."""
    payment = await lock_payment(session, refund.payment_id)
    refund = await lock_refund(session, refund.id)
    if stripe_refund and refund.stripe_refund is None:
        refund.stripe_refund = stripe_refund
    if refund.status in FINAL_STATUSES:
        return False
    refund.status, refund.failure = outcome, failure[:300]
    refund.settled_at, refund.lease_until = utcnow(), None
    record(
        session,
        f"payment.refund_{outcome}",
        "payment",
        payment.id,
        {"refund_id": str(refund.id), "amount_fen": refund.amount_fen},
    )
    if outcome == "failed":
        payment.refunded_fen -= refund.amount_fen
        return True
    emit(
        session,
        "payment.refunded",
        "payment",
        payment.id,
        {
            "purpose": payment.purpose,
            "subject_id": str(payment.subject_id),
            "refund_id": str(refund.id),
            "amount_fen": refund.amount_fen,
        },
        store_id=payment.store_id,
    )
    await handlers_for(payment.purpose).refunded(session, payment, refund)
    return True


# ---- leases (the worker's hold on a row while it talks to Stripe) ------------------------


async def _take_lease(
    session: AsyncSession,
    model: type[Payment] | type[PaymentRefund],
    row_id: uuid.UUID,
    seconds: int,
) -> bool:
    """Hold a row that is not final for ``seconds``, unless another worker holds it: one
    conditional UPDATE, so two workers never both get it."""
    now = utcnow()
    result = await session.execute(
        update(model)
        .where(
            model.id == row_id,
            model.status.in_(("pending", "submitted")),
            (model.lease_until.is_(None)) | (model.lease_until < now),
        )
        .values(lease_until=now + timedelta(seconds=seconds), attempts=model.attempts + 1)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def take_payment_lease(session: AsyncSession, payment_id: uuid.UUID, seconds: int) -> bool:
    return await _take_lease(session, Payment, payment_id, seconds)


async def take_refund_lease(session: AsyncSession, refund_id: uuid.UUID, seconds: int) -> bool:
    return await _take_lease(session, PaymentRefund, refund_id, seconds)


# ---- reading ----------------------------------------------------------------------------


async def get_payment(session: AsyncSession, payment_id: uuid.UUID) -> Payment:
    payment = await session.get(Payment, (require_tenant().tenant_id, payment_id))
    if payment is None:
        raise NotFound(f"no payment {payment_id}")
    return payment


async def refunds_of(session: AsyncSession, payment_id: uuid.UUID) -> list[PaymentRefund]:
    rows = await session.scalars(
        select(PaymentRefund)
        .where(PaymentRefund.payment_id == payment_id)
        .order_by(PaymentRefund.created_at)
    )
    return list(rows.all())


async def list_payments(
    session: AsyncSession,
    *,
    status: str | None,
    purpose: str | None,
    member_id: uuid.UUID | None,
    limit: int,
    cursor: str | None,
) -> Page[Payment]:
    query = select(Payment)
    if status:
        query = query.where(Payment.status == status)
    if purpose:
        query = query.where(Payment.purpose == purpose)
    if member_id:
        query = query.where(Payment.member_id == member_id)
    return await paginate(
        session, query, (Payment.created_at, Payment.id), cursor=cursor, limit=limit
    )
