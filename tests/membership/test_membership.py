"""Paid membership (付费会员): plans, a purchase activated by its payment (benefits and the
multiplier at once, exactly once however often or concurrently the handler runs), idempotent
purchases, renewal with its reminder, a failed renewal's grace and lapse, upgrades and
cancellations with each refund rule's exact amount, savings, sales per store.

Payments are settled here through ``nestpoint.payments.service.settle`` (what its worker or
Stripe's webhook does) on the real payment rows the purchase asked for; the end-to-end test
through ``localstripe`` is in test_stripe.py."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from loyalty.helpers import order_body
from loyalty.support import audit
from nestpoint.benefits.models import Entitlement
from nestpoint.context import Actor, acting_as, tenant_context
from nestpoint.db import scoped_session
from nestpoint.members.models import Member
from nestpoint.membership import service
from nestpoint.membership.models import PaidMembership, PaidMembershipCharge
from nestpoint.membership.schemas import PaidMembershipSettings
from nestpoint.messaging.models import Message
from nestpoint.payments import service as payments
from nestpoint.payments.models import Payment, PaymentRefund

CATALOG = {
    "double-points": {"name": "双倍积分 Double points", "type": "core.points_multiplier",
                      "options": {"multiplier_percent": 200, "occasion": "while_held"},
                      "quota": 1000, "period": "day"},
    "triple-points": {"name": "三倍积分 Triple points", "type": "core.points_multiplier",
                      "options": {"multiplier_percent": 300, "occasion": "while_held"},
                      "quota": 1000, "period": "day"},
    "gift": {"name": "会员礼 Welcome gift", "type": "core.gift",
             "options": {"sku": "GIFT-1", "value_fen": 8900}, "quota": 1, "period": "grant"},
}  # fmt: skip
BLACK = {"name": "黑金卡 Black card", "period": "year", "price_fen": 29_900,
         "benefits": ["double-points", "gift"]}  # fmt: skip
PLUS = {"name": "黑金卡 Plus", "period": "year", "price_fen": 59_900,
        "benefits": ["triple-points", "gift"]}  # fmt: skip


async def in_tenant(t: Any, work: Any) -> Any:
    with acting_as(Actor("system", name="tests")), tenant_context(t.id):
        async with scoped_session() as session:
            return await work(session)


async def chain(client: Any, make_tenant: Any, set_program: Any) -> Any:
    t = await make_tenant()
    stripe = {"secret_key": "sk_test_nestpoint", "webhook_secret": "whsec_nestpointtests",
              "publishable_key": "pk_test_x"}  # fmt: skip
    r = await client.put("/api/v1/payments/stripe", json=stripe, headers=t.hq())
    assert r.status_code == 200, r.text
    await set_program(t.hq(), points={"pending_days": 0})
    for code, body in CATALOG.items():
        r = await client.put(f"/api/v1/benefits/{code}", json=body, headers=t.hq())
        assert r.status_code == 200, r.text
    for code, body in (("black", BLACK), ("plus", PLUS)):
        r = await client.put(f"/api/v1/paid-plans/{code}", json=body, headers=t.hq())
        assert r.status_code == 200, r.text
    return t


async def buy(
    client: Any, t: Any, member_id: str, plan: str = "black", **extra: Any
) -> dict[str, Any]:
    body = {"plan": plan, "payment_method": "pm_card_visa", "store_code": "S1",
            "idempotency_key": uuid.uuid4().hex} | extra  # fmt: skip
    r = await client.post(f"/api/v1/members/{member_id}/paid-memberships", json=body,
                          headers=t.hq())  # fmt: skip
    assert r.status_code == 201, r.text
    return dict(r.json())


async def settle(t: Any, payment_id: Any, outcome: str = "succeeded") -> bool:
    async def work(session: Any) -> bool:
        payment = await payments.lock_payment(session, uuid.UUID(str(payment_id)))
        failure = "card_declined" if outcome == "failed" else ""
        return await payments.settle(session, payment, outcome, failure=failure)  # type: ignore[arg-type]

    return bool(await in_tenant(t, work))


async def card(client: Any, t: Any, member_id: str, card_id: str) -> dict[str, Any]:
    r = await client.get(f"/api/v1/members/{member_id}/paid-memberships/{card_id}",
                         headers=t.hq())  # fmt: skip
    assert r.status_code == 200, r.text
    return dict(r.json())


async def paid_entitlements(t: Any, member_id: str) -> list[tuple[str, str, datetime | None]]:
    async def work(session: Any) -> list[tuple[str, str, datetime | None]]:
        rows = await session.execute(
            select(Entitlement.source_ref, Entitlement.status, Entitlement.expires_at)
            .where(Entitlement.member_id == uuid.UUID(member_id), Entitlement.source == "paid")
            .order_by(Entitlement.granted_at, Entitlement.id)
        )
        return [tuple(r) for r in rows]

    return await in_tenant(t, work)


async def order_points(client: Any, t: Any, member_id: str) -> int:
    r = await client.post("/api/v1/orders", json=order_body(member={"id": member_id}),
                          headers=t.hq())  # fmt: skip
    assert r.status_code == 201, r.text
    return int(r.json()["points_earned"])


async def active_card(client: Any, t: Any, member_id: str, plan: str = "black") -> dict[str, Any]:
    bought = await buy(client, t, member_id, plan)
    assert await settle(t, bought["charges"][0]["payment_id"])
    return await card(client, t, member_id, bought["id"])


async def run_job(t: Any, now: datetime) -> service.RenewalRun:
    return await in_tenant(t, lambda s: service.renew_due(s, now))


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# ------------------------------------------------------------------ plans


async def test_plans_are_checked_against_the_catalog_and_audited(client, make_tenant, set_program):
    t = await chain(client, make_tenant, set_program)
    bad = BLACK | {"benefits": ["gift", "no-such"]}
    r = await client.put("/api/v1/paid-plans/bad", json=bad, headers=t.hq())
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "benefits.1"
    r = await client.put("/api/v1/paid-plans/trial", json=BLACK | {"period": "trial"},
                         headers=t.hq())  # fmt: skip
    assert r.status_code in (400, 422)
    assert "trial_days" in r.text
    r = await client.put("/api/v1/paid-plans/black", json=BLACK, headers=t.hq())  # the same
    assert r.status_code == 200
    assert r.json()["earn_multiplier_percent"] == 200
    assert len(await audit(client, t.hq(), "membership.plan_created")) == 2
    assert await audit(client, t.hq(), "membership.plan_updated") == []
    r = await client.get("/api/v1/paid-plans", headers=t.hq())
    assert [p["code"] for p in r.json()["items"]] == ["black", "plus"]
    r = await client.get("/api/v1/paid-plans/nope", headers=t.hq())
    assert r.status_code == 404


# ------------------------------------------------------------------ buying


async def test_a_paid_card_gives_its_benefits_and_multiplier_at_once(
    client, make_tenant, set_program, enrol
):
    t = await chain(client, make_tenant, set_program)
    m = await enrol(t.hq())
    bought = await buy(client, t, m["id"])
    assert bought["status"] == "pending"
    assert bought["store_code"] == "S1"
    [charge] = bought["charges"]
    assert (charge["kind"], charge["amount_fen"], charge["status"]) == ("purchase", 29_900,
                                                                        "pending")  # fmt: skip
    assert await order_points(client, t, m["id"]) == 100  # not paid yet: ¥100 earns 100
    assert await paid_entitlements(t, m["id"]) == []

    assert await settle(t, charge["payment_id"])
    got = await card(client, t, m["id"], bought["id"])
    assert got["status"] == "active"
    start, end = at(got["period_start"]), at(got["period_end"])
    assert end == start.replace(year=start.year + 1)
    held = await paid_entitlements(t, m["id"])
    assert [(ref, status) for ref, status, _ in held] == [(charge["id"], "active")] * 2
    assert all(expires == end for _, _, expires in held)
    assert await order_points(client, t, m["id"]) == 200  # the very next order: doubled
    assert len(await audit(client, t.hq(), "membership.activated")) == 1

    async def protected(session: Any) -> datetime | None:
        member = await session.get(Member, (t.id, uuid.UUID(m["id"])))
        return member.tier_protected_until  # type: ignore[no-any-return]

    assert await in_tenant(t, protected) == end  # 保级 while the card is held


async def test_a_failed_purchase_grants_nothing_and_may_be_bought_again(
    client, make_tenant, set_program, enrol
):
    t = await chain(client, make_tenant, set_program)
    m = await enrol(t.hq())
    bought = await buy(client, t, m["id"])
    r = await client.post(f"/api/v1/members/{m['id']}/paid-memberships",
                          json={"plan": "black", "payment_method": "pm_card_visa",
                                "idempotency_key": uuid.uuid4().hex}, headers=t.hq())  # fmt: skip
    assert r.status_code == 409  # one card at a time, a pending one too
    assert await settle(t, bought["charges"][0]["payment_id"], "failed")
    got = await card(client, t, m["id"], bought["id"])
    assert (got["status"], got["charges"][0]["status"]) == ("failed", "failed")
    assert await paid_entitlements(t, m["id"]) == []
    assert await order_points(client, t, m["id"]) == 100
    again = await buy(client, t, m["id"])
    assert again["id"] != bought["id"]


async def test_the_succeeded_handler_applies_once_called_twice_and_at_once(
    client, make_tenant, set_program, enrol
):
    t = await chain(client, make_tenant, set_program)
    m = await enrol(t.hq())
    bought = await buy(client, t, m["id"])
    payment_id = uuid.UUID(bought["charges"][0]["payment_id"])

    async def handle(session: Any) -> None:
        payment = await payments.lock_payment(session, payment_id)
        await service.payment_succeeded(session, payment)

    await asyncio.gather(*(in_tenant(t, handle) for _ in range(4)))
    first = await card(client, t, m["id"], bought["id"])
    await in_tenant(t, handle)
    assert await card(client, t, m["id"], bought["id"]) == first
    assert first["status"] == "active"
    assert len(await paid_entitlements(t, m["id"])) == 2
    assert len(await audit(client, t.hq(), "membership.activated")) == 1


async def test_a_purchase_retried_replays_and_another_body_is_409(
    client, make_tenant, set_program, enrol
):
    t = await chain(client, make_tenant, set_program)
    m = await enrol(t.hq())
    url = f"/api/v1/members/{m['id']}/paid-memberships"
    body = {"plan": "black", "payment_method": "pm_card_visa", "store_code": "S1",
            "idempotency_key": "buy-card-0001"}  # fmt: skip
    first = await client.post(url, json=body, headers=t.hq())
    again = await client.post(url, json=body, headers=t.hq())
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    other = await client.post(url, json=body | {"store_code": "S2"}, headers=t.hq())
    assert other.status_code == 409
    assert other.json()["errors"][0]["field"] == "idempotency_key"

    async def counts(session: Any) -> tuple[int, int]:
        cards = (await session.scalars(select(PaidMembership))).all()
        paid = (await session.scalars(select(Payment))).all()
        return len(cards), len(paid)

    assert await in_tenant(t, counts) == (1, 1)


# ------------------------------------------------------------------ renewal


async def test_a_card_is_reminded_and_renewed_into_the_next_period_once(
    client, make_tenant, set_program, enrol
):
    t = await chain(client, make_tenant, set_program)
    m = await enrol(t.hq())
    got = await active_card(client, t, m["id"])
    end = at(got["period_end"])

    assert (await run_job(t, end - timedelta(days=5))).reminded == 1
    assert (await run_job(t, end - timedelta(days=4))).reminded == 0  # once a period

    async def messages(session: Any) -> list[str]:
        return list((await session.scalars(select(Message.purpose))).all())

    assert await in_tenant(t, messages) == ["paid_membership_renewal"]
    assert (await run_job(t, end - timedelta(hours=2))).requested == 1
    assert (await run_job(t, end - timedelta(hours=1))).requested == 0  # one pending at a time
    got = await card(client, t, m["id"], got["id"])
    renewal = got["charges"][-1]
    assert (renewal["kind"], renewal["amount_fen"], renewal["status"]) == ("renewal", 29_900,
                                                                          "pending")  # fmt: skip
    # While it is being paid the benefits run past the end (up to the grace period).
    assert {e for _, _, e in await paid_entitlements(t, m["id"])} == {end + timedelta(days=7)}

    assert await settle(t, renewal["payment_id"])
    assert not await settle(t, renewal["payment_id"])  # a second delivery: nothing
    renewed = await card(client, t, m["id"], got["id"])
    assert renewed["status"] == "active"
    assert at(renewed["period_start"]) == end
    assert at(renewed["period_end"]) == end.replace(year=end.year + 1)
    held = await paid_entitlements(t, m["id"])
    assert sorted((ref, status) for ref, status, _ in held) == sorted(
        [(got["charges"][0]["id"], "revoked")] * 2 + [(renewal["id"], "active")] * 2
    )
    assert len(await audit(client, t.hq(), "membership.renewed")) == 1
    assert await order_points(client, t, m["id"]) == 200


async def test_a_failed_renewal_keeps_the_benefits_in_grace_then_lapses(
    client, make_tenant, set_program, enrol
):
    t = await chain(client, make_tenant, set_program)
    m = await enrol(t.hq())
    got = await active_card(client, t, m["id"])
    end = at(got["period_end"])
    await run_job(t, end - timedelta(hours=1))
    first_try = (await card(client, t, m["id"], got["id"]))["charges"][-1]
    assert await settle(t, first_try["payment_id"], "failed")

    graced = await card(client, t, m["id"], got["id"])
    assert graced["status"] == "grace"
    assert at(graced["grace_until"]) == end + timedelta(days=7)
    held = await paid_entitlements(t, m["id"])
    assert {(s, e) for _, s, e in held} == {("active", end + timedelta(days=7))}
    assert await order_points(client, t, m["id"]) == 200  # benefits kept in grace

    # Another attempt a day later (the chain's retry_days), failing again.
    assert (await run_job(t, end + timedelta(days=2))).requested == 1
    second_try = (await card(client, t, m["id"], got["id"]))["charges"][-1]
    assert second_try["id"] != first_try["id"]
    assert await settle(t, second_try["payment_id"], "failed")
    assert (await card(client, t, m["id"], got["id"]))["status"] == "grace"

    done = await run_job(t, end + timedelta(days=7, seconds=1))
    assert done.lapsed == 1
    assert (await run_job(t, end + timedelta(days=8))).lapsed == 0
    lapsed = await card(client, t, m["id"], got["id"])
    assert lapsed["status"] == "lapsed"
    assert {s for _, s, _ in await paid_entitlements(t, m["id"])} == {"revoked"}
    assert await order_points(client, t, m["id"]) == 100  # no multiplier any more
    assert len(await audit(client, t.hq(), "membership.lapsed")) == 1


async def test_a_card_not_renewing_lapses_at_its_end(client, make_tenant, set_program, enrol):
    t = await chain(client, make_tenant, set_program)
    m = await enrol(t.hq())
    got = await active_card(client, t, m["id"])
    url = f"/api/v1/members/{m['id']}/paid-memberships/{got['id']}/cancel"
    r = await client.post(url, json={"when": "period_end", "idempotency_key": "cancel-at-end-1"},
                          headers=t.hq())  # fmt: skip
    assert r.status_code == 201, r.text
    assert (r.json()["refund_fen"], r.json()["membership"]["auto_renew"]) == (0, False)
    end = at(got["period_end"])
    run = await run_job(t, end - timedelta(days=3))
    assert (run.reminded, run.requested, run.lapsed) == (0, 0, 0)
    run = await run_job(t, end + timedelta(seconds=1))
    assert (run.requested, run.lapsed) == (0, 1)
    assert (await card(client, t, m["id"], got["id"]))["status"] == "lapsed"


# ------------------------------------------------------------------ upgrade and cancel


def test_an_upgrade_pays_the_difference_for_the_days_left_rounded_up() -> None:
    start = datetime(2027, 1, 1, tzinfo=UTC)
    end = datetime(2028, 1, 1, tzinfo=UTC)  # 365 days
    mid = datetime(2027, 7, 2, 12, tzinfo=UTC)  # 182.5 days left: 183 counted
    assert service.upgrade_amount(29_900, 59_900, start, end, mid) == 15_042  # 15041.10 up
    assert service.upgrade_amount(29_900, 59_900, start, end, start) == 30_000
    assert service.upgrade_amount(29_900, 59_900, start, end, end - timedelta(seconds=1)) == 83


def test_each_refund_rule_gives_its_exact_amount() -> None:
    start = datetime(2027, 1, 1, tzinfo=UTC)
    end = datetime(2028, 1, 1, tzinfo=UTC)
    later = datetime(2027, 3, 1, 6, tzinfo=UTC)  # 305.75 days unused: 305 counted
    rule = PaidMembershipSettings
    assert service.refund_amount(rule(refund_rule="none"), 29_900, start, start, end, later) == 0
    pro_rata = rule(refund_rule="pro_rata")
    assert service.refund_amount(pro_rata, 29_900, start, start, end, later) == 24_984  # .93 down
    assert service.refund_amount(pro_rata, 29_900, start, start, end, start) == 29_900
    full = rule(refund_rule="full_within", full_refund_days=7)
    assert (
        service.refund_amount(full, 29_900, start, start, end, start + timedelta(days=7)) == 29_900
    )
    assert service.refund_amount(full, 29_900, start, start, end, start + timedelta(days=8)) == 0


async def test_an_upgrade_charges_the_difference_and_swaps_the_benefits(
    client, make_tenant, set_program, enrol
):
    t = await chain(client, make_tenant, set_program)
    m = await enrol(t.hq())
    got = await active_card(client, t, m["id"])
    url = f"/api/v1/members/{m['id']}/paid-memberships/{got['id']}/upgrade"
    r = await client.post(url, json={"plan": "black", "idempotency_key": "upgrade-0001"},
                          headers=t.hq())  # fmt: skip
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "plan"
    r = await client.post(url, json={"plan": "plus", "idempotency_key": "upgrade-0002"},
                          headers=t.hq())  # fmt: skip
    assert r.status_code == 201, r.text
    upgrade = r.json()["charges"][-1]
    # Bought moments ago: the whole year is left, the whole difference is due.
    assert (upgrade["kind"], upgrade["amount_fen"]) == ("upgrade", 30_000)
    assert r.json()["plan_code"] == "black"  # until it is paid
    assert await settle(t, upgrade["payment_id"])
    upgraded = await card(client, t, m["id"], got["id"])
    assert upgraded["plan_code"] == "plus"
    assert upgraded["period_end"] == got["period_end"]
    assert await order_points(client, t, m["id"]) == 300


async def test_cancelling_now_refunds_by_the_chains_rule(client, make_tenant, set_program, enrol):
    t = await chain(client, make_tenant, set_program)
    refunds = {}
    for rule in ("none", "pro_rata", "full_within"):
        r = await client.put("/api/v1/paid-memberships/settings",
                             json={"refund_rule": rule, "full_refund_days": 7},
                             headers=t.hq())  # fmt: skip
        assert r.status_code == 200, r.text
        m = await enrol(t.hq())
        got = await active_card(client, t, m["id"])
        url = f"/api/v1/members/{m['id']}/paid-memberships/{got['id']}/cancel"
        body = {"when": "now", "reason": "moving away", "idempotency_key": f"cancel-{rule}"}
        r = await client.post(url, json=body, headers=t.hq())
        assert r.status_code == 201, r.text
        again = await client.post(url, json=body, headers=t.hq())
        assert again.json() == r.json()
        assert r.json()["membership"]["status"] == "cancelled"
        assert {s for _, s, _ in await paid_entitlements(t, m["id"])} == {"revoked"}
        refunds[rule] = (r.json()["refund_fen"], got["charges"][0]["payment_id"])
    # Bought a moment ago: 364 whole days of 365 unused (a begun day is used).
    assert {k: v[0] for k, v in refunds.items()} == {
        "none": 0, "pro_rata": 29_900 * 364 // 365, "full_within": 29_900}  # fmt: skip

    async def asked(session: Any) -> dict[str, int]:
        rows = (await session.scalars(select(PaymentRefund))).all()
        return {str(r.payment_id): r.amount_fen for r in rows}

    assert await in_tenant(t, asked) == {
        refunds["pro_rata"][1]: 29_818, refunds["full_within"][1]: 29_900}  # fmt: skip


# ------------------------------------------------------------------ savings and sales


async def test_savings_count_what_the_card_gave(client, make_tenant, set_program, enrol):
    t = await chain(client, make_tenant, set_program)
    m = await enrol(t.hq())
    got = await active_card(client, t, m["id"])
    assert got["savings"]["total_fen"] == 0
    assert await order_points(client, t, m["id"]) == 200  # 100 of them from the card
    r = await client.post(f"/api/v1/members/{m['id']}/benefits/gift/uses",
                          json={"quantity": 1, "store_code": "S1",
                                "idempotency_key": uuid.uuid4().hex}, headers=t.hq())  # fmt: skip
    assert r.status_code == 201, r.text
    savings = (await card(client, t, m["id"], got["id"]))["savings"]
    assert savings == {"total_fen": 9_000, "discounts_fen": 0, "benefits_fen": 8_900,
                       "extra_points": 100, "extra_points_fen": 100}  # fmt: skip


async def test_cards_sold_are_credited_to_the_store_that_sold_them(
    client, make_tenant, set_program, enrol
):
    t = await chain(client, make_tenant, set_program)
    for store in ("S1", "S1", None):
        m = await enrol(t.hq())
        bought = await buy(client, t, m["id"], store_code=store)
        await settle(t, bought["charges"][0]["payment_id"])
    unpaid = await enrol(t.hq())
    await buy(client, t, unpaid["id"], store_code="S2")
    r = await client.get("/api/v1/paid-memberships/sales", headers=t.hq())
    assert r.status_code == 200, r.text
    assert [(s["store_code"], s["cards_sold"], s["revenue_fen"]) for s in r.json()["stores"]] == [
        ("S1", 2, 59_800), (None, 1, 29_900)]  # fmt: skip
    r = await client.get("/api/v1/paid-memberships?store_code=S2", headers=t.hq())
    assert [(c["status"], c["store_code"]) for c in r.json()["items"]] == [("pending", "S2")]
    r = await client.get("/api/v1/paid-memberships?store_code=S9", headers=t.hq())
    assert r.status_code == 422


async def test_charges_are_one_per_payment(client, make_tenant, set_program, enrol):
    t = await chain(client, make_tenant, set_program)
    m = await enrol(t.hq())
    await active_card(client, t, m["id"])

    async def pairs(session: Any) -> list[tuple[Any, Any]]:
        rows = await session.execute(
            select(PaidMembershipCharge.id, Payment.subject_id).join(
                Payment, Payment.id == PaidMembershipCharge.payment_id
            )
        )
        return [tuple(r) for r in rows]

    [(charge_id, subject)] = await in_tenant(t, pairs)
    assert charge_id == subject
