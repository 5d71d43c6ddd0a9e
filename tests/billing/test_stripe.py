"""Tenant billing on the platform's Stripe account (``localstripe``): a subscription made
by the worker, a plan change, a crash between Stripe's answer and our write recovered by
the sweep; webhooks through the real route (signed locally), applied once when delivered
twice and in any order, held while the subscription is not recorded yet."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from billing.conftest import limits
from loyalty.support import audit
from nestpoint.billing import jobs
from nestpoint.billing.models import BillingSubscription
from nestpoint.context import Actor, acting_as
from nestpoint.db import scoped_session
from nestpoint.payments import webhooks
from nestpoint.payments.models import PlatformStripeEvent
from nestpoint.settings import get_settings
from stripe_fake import TEST_KEY, LocalStripe, event, signed_event

SECRET = "whsec_platformtests"
DAY = 86_400


@pytest.fixture
def platform_stripe(
    localstripe: LocalStripe, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalStripe]:
    """The platform's Stripe key and webhook secret, pointing at localstripe."""
    monkeypatch.setenv("NESTPOINT_STRIPE_PLATFORM_SECRET_KEY", TEST_KEY)
    monkeypatch.setenv("NESTPOINT_STRIPE_PLATFORM_WEBHOOK_SECRET", SECRET)
    get_settings.cache_clear()
    yield localstripe
    monkeypatch.undo()
    get_settings.cache_clear()


async def subscription(tenant_id: uuid.UUID) -> BillingSubscription:
    async with scoped_session() as session:
        sub = await session.scalar(
            select(BillingSubscription).where(BillingSubscription.tenant_id == tenant_id)
        )
        assert sub is not None
        return sub


async def deliver(client: Any, evt: dict[str, Any]) -> bool:
    """Post a signed event to the platform's webhook; whether it was a duplicate."""
    body, headers = signed_event(evt, SECRET)
    r = await client.post("/webhooks/stripe/platform", content=body, headers=headers)
    assert r.status_code == 200, r.text
    return bool(r.json()["duplicate"])


async def apply_due() -> None:
    """What the worker does after each delivery (and the sweep): apply every due event."""
    with acting_as(Actor("system", name="tests")):
        async with scoped_session() as session:
            rows = await webhooks.due_platform_events(session)
        for row_id in rows:
            async with scoped_session() as session:
                await webhooks.apply_platform_event(session, row_id)


async def outcome(event_id: str) -> str:
    async with scoped_session() as session:
        row = await session.scalar(
            select(PlatformStripeEvent).where(PlatformStripeEvent.event_id == event_id)
        )
        assert row is not None
        return str(row.status)


def invoice(sub_id: str, start: int, end: int) -> dict[str, Any]:
    return {
        "id": f"in_{uuid.uuid4().hex[:14]}",
        "object": "invoice",
        "subscription": sub_id,
        "lines": {"data": [{"type": "subscription", "period": {"start": start, "end": end}}]},
    }


def stripe_sub(sub_id: str, tenant_id: uuid.UUID, status: str, end: int) -> dict[str, Any]:
    return {
        "id": sub_id,
        "object": "subscription",
        "status": status,
        "metadata": {"nestpoint_tenant": str(tenant_id)},
        "current_period_start": end - 30 * DAY,
        "current_period_end": end,
    }


async def subscribed(billing: Any, make_tenant: Any, **limits_: int | None) -> tuple[Any, str]:
    t = await make_tenant(("S1",))
    code = await billing.plan(price_fen=69_900, **limits_)
    await billing.subscribe(t.id, code)
    assert await jobs.sync_subscription(t.id) == "synced"
    return t, code


async def test_the_worker_subscribes_the_chain_in_stripe_and_changes_its_plan(
    client, make_tenant, billing, platform_stripe
) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant(("S1",))
    code = await billing.plan(price_fen=69_900, max_members=100)
    view = await billing.subscribe(t.id, code)
    assert view["subscription"]["sync_state"] == "pending"
    assert view["subscription"]["stripe_subscription_id"] is None

    assert await jobs.sync_subscription(t.id) == "synced"
    assert await jobs.sync_subscription(t.id) == "nothing"  # again: nothing to do
    view = await billing.view(t.id)
    sub = view["subscription"]
    assert sub["sync_state"] == "synced"
    assert sub["sync_error"] == ""
    assert sub["stripe_customer_id"].startswith("cus_")
    assert sub["stripe_subscription_id"].startswith("sub_")
    assert limits(view)["members"][1] == 100

    r = platform_stripe.get(f"/v1/subscriptions?customer={sub['stripe_customer_id']}&status=all")
    in_stripe = r.json()["data"]
    assert [s["id"] for s in in_stripe] == [sub["stripe_subscription_id"]]
    assert in_stripe[0]["metadata"]["nestpoint_tenant"] == str(t.id)
    assert in_stripe[0]["items"]["data"][0]["plan"]["id"] == f"nestpoint-{code}-69900-cny"
    customer = platform_stripe.get(f"/v1/customers/{sub['stripe_customer_id']}").json()
    assert customer["metadata"]["nestpoint_tenant"] == str(t.id)

    # Another plan: the same Stripe subscription moves to it.
    bigger = await billing.plan(price_fen=299_900, max_members=1_000)
    await billing.subscribe(t.id, bigger)
    assert await jobs.sync_subscription(t.id) == "synced"
    after = (await billing.view(t.id))["subscription"]
    assert after["stripe_subscription_id"] == sub["stripe_subscription_id"]
    assert after["stripe_customer_id"] == sub["stripe_customer_id"]
    r = platform_stripe.get(f"/v1/subscriptions/{sub['stripe_subscription_id']}")
    assert r.json()["items"]["data"][0]["plan"]["id"] == f"nestpoint-{bigger}-299900-cny"
    assert len(await audit(client, t.hq(), "billing.subscription_created")) == 1
    assert len(await audit(client, t.hq(), "billing.plan_changed")) == 2


async def test_a_crash_after_stripe_answered_is_recovered_without_a_second_subscription(
    client, make_tenant, billing, platform_stripe
) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant(("S1",))
    await billing.subscribe(t.id, await billing.plan())

    async def crash(*_: Any) -> None:
        raise RuntimeError("the worker died")

    jobs.after_stripe_calls = crash
    try:
        with pytest.raises(RuntimeError):
            await jobs.sync_subscription(t.id)
    finally:
        jobs.after_stripe_calls = None
    sub = await subscription(t.id)
    assert sub.sync_state == "pending"
    assert sub.stripe_subscription_id is None
    assert sub.stripe_customer_id is not None  # recorded right after it was made

    assert await jobs.sync_due(grace=timedelta(0)) >= 1  # the sweep
    sub = await subscription(t.id)
    assert sub.sync_state == "synced"
    assert sub.stripe_subscription_id is not None
    r = platform_stripe.get(f"/v1/subscriptions?customer={sub.stripe_customer_id}&status=all")
    assert [s["id"] for s in r.json()["data"]] == [sub.stripe_subscription_id]


async def test_webhooks_apply_once_in_any_order(
    client, make_tenant, billing, platform_stripe
) -> None:  # type: ignore[no-untyped-def]
    t, _ = await subscribed(billing, make_tenant)
    sub_id = (await subscription(t.id)).stripe_subscription_id
    assert sub_id is not None
    now = int(time.time())
    p1, p2 = (now, now + 30 * DAY), (now + 30 * DAY, now + 60 * DAY)
    paid_p1 = event("invoice.paid", invoice(sub_id, *p1), created=now + 10)
    failed_p2 = event("invoice.payment_failed", invoice(sub_id, *p2), created=now + 20)
    went_past_due = event(
        "customer.subscription.updated",
        stripe_sub(sub_id, t.id, "past_due", p2[1]),
        created=now + 21,
    )
    paid_p2 = event("invoice.paid", invoice(sub_id, *p2), created=now + 30)

    # Newest first, each delivered twice: the duplicate changes nothing.
    for evt in (paid_p2, went_past_due, failed_p2, paid_p1):
        assert await deliver(client, evt) is False
        assert await deliver(client, evt) is True
        await apply_due()
    sub = await subscription(t.id)
    assert sub.status == "active"
    assert sub.current_period_end == datetime.fromtimestamp(p2[1], UTC)
    assert sub.paid_through == datetime.fromtimestamp(p2[1], UTC)
    assert [await outcome(e["id"]) for e in (paid_p2, went_past_due, failed_p2, paid_p1)] == [
        "applied",
        "ignored",
        "ignored",
        "ignored",
    ]
    updates = await audit(client, t.hq(), "billing.subscription_updated")
    assert [u["changes"]["status"] for u in updates] == [["trialing", "active"]]

    # A failed renewal: past due; Stripe's retry succeeds: active again, period advanced.
    p3 = (p2[1], p2[1] + 30 * DAY)
    failed_p3 = event("invoice.payment_failed", invoice(sub_id, *p3), created=now + 40)
    assert await deliver(client, failed_p3) is False
    await apply_due()
    assert (await subscription(t.id)).status == "past_due"
    r = await client.get("/api/v1/billing", headers=t.hq())
    assert r.json()["subscription"]["status"] == "past_due"
    paid_p3 = event("invoice.paid", invoice(sub_id, *p3), created=now + 50)
    assert await deliver(client, paid_p3) is False
    await apply_due()
    sub = await subscription(t.id)
    assert sub.status == "active"
    assert sub.current_period_end == datetime.fromtimestamp(p3[1], UTC)

    # Deleted: canceled for good; an older update or a late payment never revives it.
    deleted = event(
        "customer.subscription.deleted",
        stripe_sub(sub_id, t.id, "canceled", p3[1]),
        created=now + 60,
    )
    older = event(
        "customer.subscription.updated", stripe_sub(sub_id, t.id, "active", p3[1]), created=now + 55
    )
    for evt in (deleted, older, deleted):
        await deliver(client, evt)
        await apply_due()
    assert (await subscription(t.id)).status == "canceled"
    assert await outcome(deleted["id"]) == "applied"
    assert await outcome(older["id"]) == "ignored"
    assert len(await audit(client, t.hq(), "billing.subscription_canceled")) == 1


async def test_an_event_before_the_subscription_is_recorded_is_held_then_applied(
    client, make_tenant, billing, platform_stripe
) -> None:  # type: ignore[no-untyped-def]
    unknown = event("invoice.paid", invoice("sub_notrecordedyet", 1, 2))
    await deliver(client, unknown)
    await apply_due()
    assert await outcome(unknown["id"]) == "held"
    # Not ours at all (no nestpoint metadata): ignored, not held.
    foreign = event("customer.subscription.updated", {"id": "sub_foreign", "status": "active"})
    await deliver(client, foreign)
    await apply_due()
    assert await outcome(foreign["id"]) == "ignored"

    # Stripe is quicker than our write: its event arrives between the call and the record.
    t = await make_tenant(("S1",))
    await billing.subscribe(t.id, await billing.plan())
    early: dict[str, Any] = {}

    async def stripe_speaks_first(_: Any, current: dict[str, Any]) -> None:
        end = int(time.time()) + 30 * DAY
        early.update(
            event(
                "customer.subscription.updated",
                stripe_sub(str(current["id"]), t.id, "active", end),
            )
        )
        await deliver(client, early)
        await apply_due()

    jobs.after_stripe_calls = stripe_speaks_first
    try:
        assert await jobs.sync_subscription(t.id) == "synced"
    finally:
        jobs.after_stripe_calls = None
    assert await outcome(early["id"]) == "held"
    assert (await subscription(t.id)).status == "trialing"
    await apply_due()  # the retry the record asked for (or the sweep)
    assert await outcome(early["id"]) == "applied"
    assert (await subscription(t.id)).status == "active"
