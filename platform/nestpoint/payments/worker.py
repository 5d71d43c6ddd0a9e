"""The worker's side of payments: talking to Stripe, outside any transaction.

Each step is a short transaction of its own (:func:`run_for_tenant`), and the Stripe calls
happen between them, never inside one. A payment is worked on by one worker at a time (its
lease); a worker that dies leaves the lease to run out, and the next one first looks in
Stripe for what the dead one made (by the ``nestpoint_payment`` metadata) before making
anything: with Stripe's idempotency keys as a second guard, a crash between the call and
the local write never charges twice.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from functools import partial

import stripe
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.context import require_tenant
from nestpoint.db.base import table_of, utcnow
from nestpoint.jobs.tenants import run_for_tenant
from nestpoint.payments import service, stripe_api, webhooks
from nestpoint.payments.models import Payment, PaymentRefund, StripeCustomer
from nestpoint.settings import get_settings

log = logging.getLogger(__name__)
# What a PaymentIntent's status means here: final outcomes; anything else (processing,
# requires_action) waits for Stripe's webhook.
INTENT_OUTCOMES: dict[str, service.Outcome] = {
    "succeeded": "succeeded",
    "requires_payment_method": "failed",  # declined: the member must pay again
    "canceled": "failed",
}
REFUND_OUTCOMES: dict[str, service.Outcome] = {
    "succeeded": "succeeded",
    "failed": "failed",
    "canceled": "failed",
}


@dataclass(frozen=True, slots=True)
class Charge:
    """What a worker needs of a payment it holds, read in one short transaction."""

    payment_id: uuid.UUID
    amount_fen: int
    currency: str
    member_id: uuid.UUID | None
    payment_method: str | None
    intent_id: str | None
    attempts: int
    api_key: str
    customer_id: str | None


def _name(payment_id: uuid.UUID) -> str:
    return f"payments.submit:{payment_id}"


async def _take_payment(session: AsyncSession, payment_id: uuid.UUID) -> Charge | None:
    if not await service.take_payment_lease(
        session, payment_id, get_settings().payments_lease_seconds
    ):
        return None  # final already, or another worker holds it
    payment = await service.lock_payment(session, payment_id)
    customer = None
    if payment.member_id is not None:
        customer = await session.scalar(
            select(StripeCustomer.customer_id).where(StripeCustomer.member_id == payment.member_id)
        )
    try:
        api_key = await service.chain_secret_key(session)
    except stripe_api.StripeNotConfigured as error:
        await service.settle(session, payment, "failed", failure=error.detail)
        return None
    return Charge(
        payment.id,
        payment.amount_fen,
        payment.currency,
        payment.member_id,
        payment.payment_method,
        payment.stripe_payment_intent,
        payment.attempts,
        api_key,
        customer,
    )


def _insert_ignore(session: AsyncSession) -> type[postgresql.Insert] | type[sqlite.Insert]:
    return postgresql.Insert if session.get_bind().dialect.name == "postgresql" else sqlite.Insert


async def _save_customer(session: AsyncSession, member_id: uuid.UUID, customer_id: str) -> str:
    """Record the member's customer, or keep the one another worker recorded first."""
    table = table_of(StripeCustomer)
    insert = _insert_ignore(session)(table).values(
        tenant_id=require_tenant().tenant_id, member_id=member_id, customer_id=customer_id
    )
    await session.execute(insert.on_conflict_do_nothing(index_elements=["tenant_id", "member_id"]))
    saved = await session.scalar(
        select(StripeCustomer.customer_id).where(StripeCustomer.member_id == member_id)
    )
    return saved or customer_id


async def _customer(
    tenant_id: uuid.UUID, client: stripe.StripeClient, charge: Charge
) -> str | None:
    if charge.member_id is None or charge.customer_id:
        return charge.customer_id
    made = await stripe_api.call(
        stripe_api.create_customer,
        client,
        metadata={"nestpoint_tenant": str(tenant_id), "nestpoint_member": str(charge.member_id)},
        idempotency_key=f"nestpoint-customer-{tenant_id}-{charge.member_id}",
    )
    return await run_for_tenant(
        tenant_id,
        partial(_save_customer, member_id=charge.member_id, customer_id=made.id),
        name=_name(charge.payment_id),
    )


async def _intent(
    tenant_id: uuid.UUID, client: stripe.StripeClient, charge: Charge, customer: str | None
) -> stripe.PaymentIntent:
    """The payment's PaymentIntent: the one recorded, the one a crashed worker made (a
    later attempt looks), or a new one."""
    if charge.intent_id:
        return await stripe_api.call(stripe_api.retrieve_payment_intent, client, charge.intent_id)
    if charge.attempts > 1:
        found = await stripe_api.call(
            stripe_api.find_payment_intent, client, str(charge.payment_id)
        )
        if found is not None:
            return found
    return await stripe_api.call(
        stripe_api.create_payment_intent,
        client,
        amount=charge.amount_fen,
        currency=charge.currency,
        customer=customer,
        payment_method=charge.payment_method,
        metadata={"nestpoint_tenant": str(tenant_id), "nestpoint_payment": str(charge.payment_id)},
        idempotency_key=f"nestpoint-payment-{charge.payment_id}",
    )


async def _record_intent(session: AsyncSession, payment_id: uuid.UUID, intent_id: str) -> None:
    payment = await service.lock_payment(session, payment_id)
    if payment.stripe_payment_intent is None:
        payment.stripe_payment_intent = intent_id
    if payment.status == "pending":
        payment.status = "submitted"


async def _confirm(
    client: stripe.StripeClient, intent: stripe.PaymentIntent, payment_id: uuid.UUID
) -> tuple[stripe.PaymentIntent, str]:
    """Confirm an intent that waits for it; a declined card is an answer, not an error."""
    if intent.status != "requires_confirmation":
        return intent, ""
    try:
        confirmed = await stripe_api.call(
            stripe_api.confirm_payment_intent,
            client,
            intent.id,
            idempotency_key=f"nestpoint-payment-{payment_id}-confirm",
        )
        return confirmed, ""
    except stripe.CardError as error:
        again = await stripe_api.call(stripe_api.retrieve_payment_intent, client, intent.id)
        return again, str(error.user_message or error.code or "declined")


async def conclude_payment(
    session: AsyncSession, payment_id: uuid.UUID, intent_id: str, status: str, failure: str = ""
) -> None:
    """Settle the payment by its intent's status (or leave it to the webhook), free it,
    and apply the webhook events that arrived before the intent was recorded."""
    payment = await service.lock_payment(session, payment_id)
    outcome = INTENT_OUTCOMES.get(status)
    if outcome is not None:
        await service.settle(session, payment, outcome, intent_id=intent_id, failure=failure)
    payment.lease_until = None
    await webhooks.retry_held(session, intent_id)


async def _release_payment(session: AsyncSession, payment_id: uuid.UUID) -> None:
    payment = await service.lock_payment(session, payment_id)
    payment.lease_until = None


async def submit_payment(tenant_id: uuid.UUID, payment_id: uuid.UUID) -> None:
    """Charge one payment in Stripe (the ``payments.submit_payment`` job). Running it
    again, at once or after a crash, charges nothing twice."""
    name = _name(payment_id)
    charge = await run_for_tenant(
        tenant_id, partial(_take_payment, payment_id=payment_id), name=name
    )
    if charge is None:
        return
    client = stripe_api.client_for_key(charge.api_key)
    try:
        customer = await _customer(tenant_id, client, charge)
        intent = await _intent(tenant_id, client, charge, customer)
        await run_for_tenant(
            tenant_id,
            partial(_record_intent, payment_id=payment_id, intent_id=intent.id),
            name=name,
        )
        intent, failure = await _confirm(client, intent, payment_id)
    except stripe.StripeError as error:
        if stripe_api.is_retryable(error):
            await run_for_tenant(
                tenant_id, partial(_release_payment, payment_id=payment_id), name=name
            )
            raise  # the job's retry (and the sweep) try again
        log.warning("payment %s refused by Stripe: %s", payment_id, error)
        await run_for_tenant(
            tenant_id,
            partial(_fail_refused, payment_id=payment_id, failure=str(error.user_message or error)),
            name=name,
        )
        return
    await run_for_tenant(
        tenant_id,
        partial(
            conclude_payment,
            payment_id=payment_id,
            intent_id=intent.id,
            status=str(intent.status),
            failure=failure,
        ),
        name=name,
    )


async def _fail_refused(session: AsyncSession, payment_id: uuid.UUID, failure: str) -> None:
    payment = await service.lock_payment(session, payment_id)
    await service.settle(session, payment, "failed", failure=failure)


# ---- refunds ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefundJob:
    refund_id: uuid.UUID
    intent_id: str
    amount_fen: int
    stripe_refund: str | None
    attempts: int
    api_key: str


async def _take_refund(session: AsyncSession, refund_id: uuid.UUID) -> RefundJob | None:
    if not await service.take_refund_lease(
        session, refund_id, get_settings().payments_lease_seconds
    ):
        return None
    refund = await service.lock_refund(session, refund_id)
    payment = await session.get(Payment, (require_tenant().tenant_id, refund.payment_id))
    assert payment is not None
    assert payment.stripe_payment_intent is not None
    return RefundJob(
        refund.id,
        payment.stripe_payment_intent,
        refund.amount_fen,
        refund.stripe_refund,
        refund.attempts,
        await service.chain_secret_key(session),
    )


async def conclude_refund(
    session: AsyncSession, refund_id: uuid.UUID, stripe_refund: str, status: str, failure: str = ""
) -> None:
    refund = await service.lock_refund(session, refund_id)
    outcome = REFUND_OUTCOMES.get(status)
    if outcome is not None:
        await service.settle_refund(
            session, refund, outcome, stripe_refund=stripe_refund, failure=failure
        )
    else:
        refund.stripe_refund = refund.stripe_refund or stripe_refund
        refund.status = "submitted" if refund.status == "pending" else refund.status
    refund.lease_until = None


async def _release_refund(session: AsyncSession, refund_id: uuid.UUID) -> None:
    refund = await service.lock_refund(session, refund_id)
    refund.lease_until = None


async def submit_refund(tenant_id: uuid.UUID, refund_id: uuid.UUID) -> None:
    """Make one refund in Stripe (the ``payments.submit_refund`` job); idempotent."""
    name = f"payments.refund:{refund_id}"
    job = await run_for_tenant(tenant_id, partial(_take_refund, refund_id=refund_id), name=name)
    if job is None:
        return
    client = stripe_api.client_for_key(job.api_key)
    failure = ""
    try:
        made: stripe.Refund | None = None
        if job.attempts > 1 or job.stripe_refund:
            made = await stripe_api.call(stripe_api.find_refund, client, str(refund_id))
        if made is None:
            made = await stripe_api.call(
                stripe_api.create_refund,
                client,
                payment_intent=job.intent_id,
                amount=job.amount_fen,
                metadata={"nestpoint_refund": str(refund_id)},
                idempotency_key=f"nestpoint-refund-{refund_id}",
            )
        stripe_id, status = made.id, str(made.status)
    except stripe.StripeError as error:
        if stripe_api.is_retryable(error):
            await run_for_tenant(
                tenant_id, partial(_release_refund, refund_id=refund_id), name=name
            )
            raise
        stripe_id, status, failure = "", "failed", str(error.user_message or error)
    await run_for_tenant(
        tenant_id,
        partial(
            conclude_refund,
            refund_id=refund_id,
            stripe_refund=stripe_id,
            status=status,
            failure=failure,
        ),
        name=name,
    )


# ---- the sweep --------------------------------------------------------------------------


async def due(session: AsyncSession) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """Payments and refunds no worker holds that are not final yet (a lost message, a dead
    worker, an intent waiting for Stripe)."""
    now = utcnow()
    free_payment = Payment.lease_until.is_(None) | (Payment.lease_until < now)
    free_refund = PaymentRefund.lease_until.is_(None) | (PaymentRefund.lease_until < now)
    payments = await session.scalars(
        select(Payment.id)
        .where(Payment.status.in_(("pending", "submitted")), free_payment)
        .order_by(Payment.created_at)
        .limit(500)
    )
    refunds = await session.scalars(
        select(PaymentRefund.id)
        .where(PaymentRefund.status.in_(("pending", "submitted")), free_refund)
        .order_by(PaymentRefund.created_at)
        .limit(500)
    )
    return list(payments.all()), list(refunds.all())
