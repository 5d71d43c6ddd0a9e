"""Tenant billing on the platform's Stripe account: the worker's sync and the webhooks.

The sync (``billing.sync_subscription``, and the sweep that runs it for every intent left
pending) makes Stripe match the local intent the operator recorded:

1. a short transaction reads the intent (plan, ids known so far);
2. with no transaction open, the Stripe calls, each with an idempotency key derived from
   the tenant or the intent: the customer (found first by its ``nestpoint_tenant``
   metadata: a crash after an earlier call made it), the product and plan (fixed ids made
   from the plan's code, price and currency: Stripe plans' prices never change, so a new
   price is a new Stripe plan), the subscription (found first among the customer's by its
   metadata, else created) or the change of its plan;
3. a second short transaction records the ids and the state, if the intent is still the
   one it made (else it is left pending and run again), and releases the webhook events
   held for that subscription.

A crash anywhere leaves the intent pending; the sweep runs it again and step 2 finds what
the earlier run made instead of making it twice.

The webhooks (registered here, applied by ``nestpoint.payments.webhooks``) move the
subscription's status: an invoice paid makes it active and advances the period, a payment
failed makes it past due, a deletion cancels it. They compare periods and Stripe's own
timestamps, never the order of arrival, and answer ``held`` for a subscription not recorded
here yet.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.billing.models import BillingPlan, BillingSubscription
from nestpoint.billing.service import audit_as_tenant, pending_syncs, subscription_of
from nestpoint.context import Actor, acting_as
from nestpoint.db import Database, scoped_session, utcnow
from nestpoint.payments import stripe_api, webhooks
from nestpoint.payments.registry import EventOutcome, register_event
from nestpoint.settings import get_settings
from nestpoint.tenancy.models import Tenant

log = logging.getLogger("nestpoint.billing")

SYNC_GRACE = timedelta(minutes=2)  # the sweep leaves a fresh intent to its own job
MAX_SYNC_ATTEMPTS = 20
TRIAL_DAYS = 14  # a new Stripe subscription starts trialing (docs/billing.md)
ACTOR = Actor("system", name="billing.sync")


@dataclass(frozen=True, slots=True)
class _Intent:
    tenant_id: uuid.UUID
    slug: str
    intent: uuid.UUID
    plan_code: str
    plan_name: str
    price_fen: int
    currency: str
    customer_id: str | None
    subscription_id: str | None


# ---- the Stripe calls (one small place; through stripe_api.call, never in a transaction)


def stripe_plan_id(plan: _Intent) -> str:
    return f"nestpoint-{plan.plan_code}-{plan.price_fen}-{plan.currency.lower()}"


def _data(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def _ensure_product_and_plan(client: stripe.StripeClient, it: _Intent) -> str:
    product_id = f"nestpoint-plan-{it.plan_code}"
    try:
        client.v1.products.retrieve(product_id)
    except stripe.InvalidRequestError as error:
        if error.http_status != 404:
            raise
        _create_or_exists(
            lambda: client.v1.products.create(
                params={
                    "id": product_id,
                    "name": f"Nestpoint {it.plan_name}"[:200],
                    "metadata": {"nestpoint_plan": it.plan_code},
                },
                options={"idempotency_key": f"np-billing-product-{product_id}"},
            ),
            lambda: client.v1.products.retrieve(product_id),
        )
    plan_id = stripe_plan_id(it)
    try:
        client.v1.plans.retrieve(plan_id)
    except stripe.InvalidRequestError as error:
        if error.http_status != 404:
            raise
        _create_or_exists(
            lambda: client.v1.plans.create(
                params={
                    "id": plan_id,
                    "product": product_id,
                    "amount": it.price_fen,
                    "currency": it.currency.lower(),
                    "interval": "month",
                    "metadata": {"nestpoint_plan": it.plan_code},
                },
                options={"idempotency_key": f"np-billing-plan-{plan_id}"},
            ),
            lambda: client.v1.plans.retrieve(plan_id),
        )
    return plan_id


def _create_or_exists(create: Any, retrieve: Any) -> None:
    """Create an object with a fixed id; another worker having made it first is fine."""
    try:
        create()
    except stripe.StripeError as error:
        if error.http_status not in (400, 409):
            raise
        retrieve()  # it exists (else this raises the real answer)


def _customer(client: stripe.StripeClient, it: _Intent) -> str:
    found = stripe_api.find_by_metadata(
        lambda params: client.v1.customers.list(params=params),  # type: ignore[arg-type]
        "nestpoint_tenant",
        str(it.tenant_id),
    )
    if found is not None:
        return str(found.id)
    made = stripe_api.create_customer(
        client,
        metadata={"nestpoint_tenant": str(it.tenant_id), "nestpoint_slug": it.slug},
        idempotency_key=f"np-billing-customer-{it.tenant_id}",
    )
    return str(made.id)


def _subscription(
    client: stripe.StripeClient, it: _Intent, customer_id: str, plan_id: str
) -> dict[str, Any]:
    metadata = {"nestpoint_tenant": str(it.tenant_id), "nestpoint_intent": str(it.intent)}
    if it.subscription_id is None:
        found = stripe_api.find_by_metadata(
            lambda params: client.v1.subscriptions.list(
                params={**params, "customer": customer_id}  # type: ignore[arg-type]
            ),
            "nestpoint_tenant",
            str(it.tenant_id),
        )
        if found is None:
            found = client.v1.subscriptions.create(
                params={
                    "customer": customer_id,
                    "items": [{"plan": plan_id}],
                    "metadata": metadata,
                    # A trial: no charge before the operator has the chain's payment
                    # method in Stripe (the dashboard); invoices follow from its end.
                    "trial_period_days": TRIAL_DAYS,
                },
                options={"idempotency_key": f"np-billing-subscription-{it.intent}"},
            )
        current = _data(found)
    else:
        current = _data(client.v1.subscriptions.retrieve(it.subscription_id))
    items = (current.get("items") or {}).get("data") or []
    on_plan = items[0]["plan"]["id"] if items and items[0].get("plan") else None
    if on_plan != plan_id and current.get("status") != "canceled" and items:
        current = _data(
            client.v1.subscriptions.update(
                str(current["id"]),
                params={
                    "items": [{"id": items[0]["id"], "plan": plan_id}],
                    "metadata": metadata,
                },
                options={"idempotency_key": f"np-billing-change-{it.intent}"},
            )
        )
    return current


# ---- the sync ------------------------------------------------------------------------------


async def _read_intent(database: Database | None, tenant_id: uuid.UUID) -> _Intent | None:
    async with scoped_session(database) as session:
        row = (
            await session.execute(
                select(BillingSubscription, BillingPlan, Tenant.slug)
                .join(BillingPlan, BillingPlan.code == BillingSubscription.plan_code)
                .join(Tenant, Tenant.id == BillingSubscription.tenant_id)
                .where(BillingSubscription.tenant_id == tenant_id)
            )
        ).one_or_none()
        if row is None or row[0].sync_state != "pending":
            return None
        sub, plan, slug = row
        return _Intent(
            tenant_id,
            slug,
            sub.sync_intent,
            plan.code,
            plan.name,
            plan.price_fen,
            plan.currency,
            sub.stripe_customer_id,
            sub.stripe_subscription_id,
        )


# A test's hook: awaited between the Stripe calls and the local write (a crash there).
after_stripe_calls: Any = None


async def sync_subscription(tenant_id: uuid.UUID, database: Database | None = None) -> str:
    """Make Stripe match the tenant's pending intent; what happened, in a word."""
    with acting_as(ACTOR):
        it = await _read_intent(database, tenant_id)
        if it is None:
            return "nothing"
        try:
            client = stripe_api.platform_client()
            customer_id: str
            if it.customer_id is not None:
                customer_id = it.customer_id
            else:
                customer_id = await stripe_api.call(_customer, client, it)
                await _record(database, it, customer_id=customer_id)
            plan_id = await stripe_api.call(_ensure_product_and_plan, client, it)
            current = await stripe_api.call(_subscription, client, it, customer_id, plan_id)
        except Exception as error:
            await _failed(database, it, error)
            if isinstance(error, stripe_api.StripeNotConfigured):
                return "unconfigured"
            if stripe_api.is_retryable(error):
                raise
            return "failed"
        if after_stripe_calls is not None:
            await after_stripe_calls(it, current)
        return await _record(database, it, customer_id=customer_id, current=current, plan=plan_id)


async def _failed(database: Database | None, it: _Intent, error: BaseException) -> None:
    log.warning(
        "billing: the Stripe sync failed",
        extra={"tenant_id": str(it.tenant_id), "error": f"{type(error).__name__}: {error}"},
    )
    async with scoped_session(database) as session:
        sub = await subscription_of(session, it.tenant_id, lock=True)
        if sub is not None and sub.sync_intent == it.intent:
            sub.sync_attempts += 1
            sub.sync_error = f"{type(error).__name__}: {error}"[:500]


async def _record(
    database: Database | None,
    it: _Intent,
    *,
    customer_id: str,
    current: dict[str, Any] | None = None,
    plan: str | None = None,
) -> str:
    async with scoped_session(database) as session:
        sub = await subscription_of(session, it.tenant_id, lock=True)
        if sub is None:
            return "nothing"
        if sub.stripe_customer_id is None:
            sub.stripe_customer_id = customer_id
        if current is None:
            return "customer"
        sub_id = str(current["id"])
        new_subscription = sub.stripe_subscription_id != sub_id
        if sub.stripe_subscription_id is None or sub.stripe_subscription_id == sub_id:
            sub.stripe_subscription_id = sub_id
        if sub.sync_intent != it.intent:  # the operator chose again meanwhile: run again
            return "superseded"
        sub.stripe_plan_id = plan
        sub.sync_state, sub.synced_at, sub.sync_error = "synced", utcnow(), ""
        if sub.state_event_at == 0:  # no webhook applied yet: Stripe's answer is the state
            _take_status(sub, str(current.get("status") or ""))
            _advance(sub, *_period_of_subscription(current))
        if new_subscription:
            await audit_as_tenant(
                session,
                it.tenant_id,
                "billing.subscription_created",
                {"stripe_subscription_id": sub_id, "plan_code": it.plan_code},
            )
        # Events Stripe sent before this write (its first invoice, the creation) apply now.
        await webhooks.retry_held_platform(session, sub_id)
        latest = current.get("latest_invoice")
        if latest:
            await webhooks.retry_held_platform(
                session, str(latest["id"] if isinstance(latest, dict) else latest)
            )
        return "synced"


async def sync_due(database: Database | None = None, *, grace: timedelta = SYNC_GRACE) -> int:
    """The sweep: run every intent left pending (a lost message, a crash, an outage)."""
    if not get_settings().stripe_platform_secret_key:
        return 0  # nothing can be synced; the intents wait for the key
    async with scoped_session(database) as session:
        due = await pending_syncs(session, older_than=utcnow() - grace)
        attempts = {
            s.tenant_id: s.sync_attempts
            for s in (
                await session.scalars(
                    select(BillingSubscription).where(BillingSubscription.tenant_id.in_(due))
                )
            ).all()
        }
    done = 0
    for tenant_id in due:
        if attempts.get(tenant_id, 0) >= MAX_SYNC_ATTEMPTS:
            continue  # left for the operator (the view shows the error)
        try:
            if await sync_subscription(tenant_id, database) == "synced":
                done += 1
        except Exception:
            log.exception("billing: sync failed; the sweep tries again")
    return done


# ---- webhooks ------------------------------------------------------------------------------

STRIPE_STATUS = {
    "trialing": "trialing",
    "active": "active",
    "past_due": "past_due",
    "unpaid": "past_due",
    "canceled": "canceled",
    "incomplete_expired": "canceled",
}  # "incomplete": the first invoice is not paid yet; the local status stays as it is


def _at(seconds: Any) -> datetime | None:
    return datetime.fromtimestamp(int(seconds), UTC) if isinstance(seconds, int) else None


def _period_of_subscription(obj: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    start, end = obj.get("current_period_start"), obj.get("current_period_end")
    items = (obj.get("items") or {}).get("data") or []
    if end is None and items:  # newer API versions keep the period on the item
        start, end = items[0].get("current_period_start"), items[0].get("current_period_end")
    return _at(start), _at(end)


def _period_of_invoice(obj: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    for line in (obj.get("lines") or {}).get("data") or []:
        period = line.get("period") or {}
        if line.get("type") == "subscription" or line.get("subscription"):
            return _at(period.get("start")), _at(period.get("end"))
    return _at(obj.get("period_start")), _at(obj.get("period_end"))


def _take_status(sub: BillingSubscription, stripe_status: str) -> None:
    status = STRIPE_STATUS.get(stripe_status)
    if status is not None and sub.status != "canceled":
        sub.status = status


def _advance(sub: BillingSubscription, start: datetime | None, end: datetime | None) -> None:
    if end is not None and (sub.current_period_end is None or end > sub.current_period_end):
        sub.current_period_start, sub.current_period_end = start, end


async def _by_stripe_id(session: AsyncSession, sub_id: str) -> BillingSubscription | None:
    return await session.scalar(
        select(BillingSubscription)
        .where(BillingSubscription.stripe_subscription_id == sub_id)
        .with_for_update()
    )


def _ours(obj: dict[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("nestpoint_tenant"))


async def on_subscription_event(session: AsyncSession, event: dict[str, Any]) -> EventOutcome:
    """``customer.subscription.*``: the status Stripe gives, unless a newer event was
    applied already; a deletion cancels, for good (a new plan choice makes a new one)."""
    obj = event["data"]["object"]
    sub = await _by_stripe_id(session, str(obj.get("id")))
    if sub is None:
        return "held" if _ours(obj) else "ignored"
    created = int(event["created"])
    if event["type"] == "customer.subscription.deleted":
        if sub.status == "canceled":
            return "ignored"
        sub.status = "canceled"
        sub.canceled_at = _at(obj.get("canceled_at") or obj.get("ended_at") or created)
        sub.state_event_at = max(sub.state_event_at, created)
        await audit_as_tenant(
            session, sub.tenant_id, "billing.subscription_canceled", {"event": event["id"]}
        )
        return "applied"
    if sub.status == "canceled" or created < sub.state_event_at:
        return "ignored"  # canceled for good, or older than what is applied
    before = (sub.status, sub.current_period_end)
    _take_status(sub, str(obj.get("status") or ""))
    _advance(sub, *_period_of_subscription(obj))
    sub.state_event_at = created
    if (sub.status, sub.current_period_end) != before:
        await _status_changed(session, sub, event, before[0])
    return "applied"


async def on_invoice_event(session: AsyncSession, event: dict[str, Any]) -> EventOutcome:
    """``invoice.paid`` (or ``payment_succeeded``): active, the period paid is current;
    ``invoice.payment_failed``: past due, unless that period is paid already."""
    kind = event["type"]
    if kind not in ("invoice.paid", "invoice.payment_succeeded", "invoice.payment_failed"):
        return "ignored"
    obj = event["data"]["object"]
    parent = ((obj.get("parent") or {}).get("subscription_details") or {}).get("subscription")
    sub_id = obj.get("subscription") or parent
    if not sub_id:
        return "ignored"  # not a subscription's invoice
    sub = await _by_stripe_id(session, str(sub_id))
    if sub is None:
        return "held"
    start, end = _period_of_invoice(obj)
    if end is None:
        return "ignored"
    created = int(event["created"])
    before = sub.status
    if kind == "invoice.payment_failed":
        if sub.paid_through is not None and end <= sub.paid_through:
            return "ignored"  # that period is paid: a late failure of an earlier attempt
        if sub.failed_through is not None and end <= sub.failed_through:
            return "ignored"
        sub.failed_through = end
        if sub.status != "canceled":
            sub.status = "past_due"
    else:
        if sub.paid_through is not None and end <= sub.paid_through:
            return "ignored"  # paid already (a duplicate, or an older period)
        sub.paid_through = end
        _advance(sub, start, end)
        if sub.status != "canceled" and (sub.failed_through is None or sub.failed_through <= end):
            sub.status = "active"
    sub.state_event_at = max(sub.state_event_at, created)
    await _status_changed(session, sub, event, before)
    return "applied"


async def _status_changed(
    session: AsyncSession, sub: BillingSubscription, event: dict[str, Any], before: str
) -> None:
    await audit_as_tenant(
        session,
        sub.tenant_id,
        "billing.subscription_updated",
        {
            "event": event["id"],
            "type": event["type"],
            "status": [before, sub.status],
            "current_period_end": sub.current_period_end.isoformat()
            if sub.current_period_end
            else None,
        },
    )


register_event("invoice.", on_invoice_event, account="platform")
register_event("customer.subscription.", on_subscription_event, account="platform")
