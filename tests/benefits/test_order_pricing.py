"""Member price, member day and the points multiplier in the order preview and the order
(``benefits.pricing``): offered per line, claimed by the till, checked, recorded on the
order's lines as a use of the benefit's quota, and given back when the order is refunded.
On PostgreSQL and SQLite; the concurrent cases use a connection per request."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from benefits.support import benefits, held, make_gold, use
from loyalty.helpers import order_body
from nestpoint.benefits.pricing import Occasions, Standing, best_multiplier, is_member_day
from nestpoint.benefits.schemas import BenefitSpec
from nestpoint.benefits.service import CatalogItem

TIERS = [
    {"code": "bronze", "name": "Bronze", "threshold": 0, "earn_rate_percent": 100,
     "redeem_cap_percent": 10, "benefits": ["birthday-double"]},
    {"code": "gold", "name": "Gold", "threshold": 5000, "earn_rate_percent": 150,
     "redeem_cap_percent": 20,
     "benefits": ["member-price", "member-day", "birthday-double", "free-shipping"]},
]  # fmt: skip


def catalog(weekday: int) -> dict[str, dict[str, Any]]:
    """Member day falls on ``weekday`` (the chain's today in the tests that want it)."""
    return {
        "member-price": {
            "name": "会员价 95折",
            "type": "core.member_price",
            "options": {"discount_percent": 95, "categories": ["feeding"]},
            "quota": 100,
            "period": "day",
        },
        "member-day": {
            "name": "会员日 8折",
            "type": "core.member_day",
            "options": {"weekday": weekday, "discount_percent": 80},
            "quota": 1,
            "period": "month",
        },
        "birthday-double": {
            "name": "生日月双倍积分",
            "type": "core.points_multiplier",
            "options": {"multiplier_percent": 200, "occasion": "member_birthday_month"},
            "quota": 100,
            "period": "month",
        },
        "free-shipping": {"name": "包邮", "type": "core.free_shipping", "quota": 4},
    }


def local_today() -> date:
    return datetime.now(ZoneInfo("Asia/Shanghai")).date()


def not_today() -> int:
    return local_today().isoweekday() % 7 + 1


async def set_up(client, hq: dict[str, str], set_program, *, member_day: int) -> None:  # type: ignore[no-untyped-def]
    await set_program(hq, tiers=TIERS, points={"pending_days": 0})
    for code, body in catalog(member_day).items():
        r = await client.put(f"/api/v1/benefits/{code}", json=body, headers=hq)
        assert r.status_code == 200, r.text


def line(sku: str, category: str, fen: int, **claim: Any) -> dict[str, Any]:
    return {
        "sku": sku,
        "category": category,
        "quantity": 1,
        "unit_price_fen": fen,
        "paid_fen": fen - claim.get("discount_fen", 0),
    } | claim


# A formula line at 80% on member day: 100 yuan, 20 off.
MEMBER_DAY_LINE = line("MILK", "feeding", 10_000, benefit_code="member-day", discount_fen=2_000)


async def preview(client, headers, member_id: str, lines: list[dict[str, Any]]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    body = {"store_code": "S1", "member": {"id": member_id}, "lines": lines}
    r = await client.post("/api/v1/orders/preview", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def record(client, headers, member_id: str | None, lines, external_id=None):  # type: ignore[no-untyped-def]
    member = {"id": member_id} if member_id else None
    body = order_body(external_id, member=member, lines=lines)
    return await client.post("/api/v1/orders", json=body, headers=headers)


async def gold_member(client, t, enrol, set_program, *, member_day: int, **extra: Any) -> str:  # type: ignore[no-untyped-def]
    await set_up(client, t.hq(), set_program, member_day=member_day)
    member = await enrol(t.hq(), **extra)
    await make_gold(client, t.hq(), member["id"])
    await benefits(client, t.hq(), member["id"])  # the look-up grants the gold benefits
    return str(member["id"])


# ------------------------------------------------------------------ preview and order


async def test_the_preview_offers_member_price_and_the_order_records_it_as_a_use(
    client, make_tenant, enrol, set_program
):
    t = await make_tenant()
    member_id = await gold_member(client, t, enrol, set_program, member_day=not_today())
    basket = [line("MILK", "feeding", 10_001), line("CAR", "toys", 5_000)]
    offer = await preview(client, t.hq(), member_id, basket)
    assert [(ln["benefit_code"], ln["discount_fen"], ln["paid_fen"]) for ln in offer["lines"]] == [
        ("member-price", 501, 9_500),  # 95% of 100.01 yuan, rounded down to the fen
        (None, 0, 5_000),
    ]
    assert (offer["payable_fen"], offer["discount_fen"]) == (14_500, 501)
    assert offer["points"] == 95 * 150 // 100 + 50 * 150 // 100  # on what is left to pay
    assert [b["code"] for b in offer["benefits"]] == ["member-price"]

    claimed = [line("MILK", "feeding", 10_001, benefit_code="member-price", discount_fen=501),
               line("CAR", "toys", 5_000)]  # fmt: skip
    body = order_body("A-1", member={"id": member_id}, lines=claimed)
    r = await client.post("/api/v1/orders", json=body, headers=t.hq())
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["discount_fen"] == 501
    assert order["lines"][0]["benefit_code"] == "member-price"
    assert order["points_earned"] == offer["points"]
    [applied] = order["benefits"]
    assert (applied["code"], applied["discount_fen"]) == ("member-price", 501)
    view = held(await benefits(client, t.hq(), member_id))
    assert view[("member-price", "tier")]["used"] == 1
    r = await client.get("/api/v1/orders/pos/A-1", headers=t.hq())
    assert r.json()["lines"][0]["discount_fen"] == 501

    again = await client.post("/api/v1/orders", json=body, headers=t.hq())  # a retry
    assert again.status_code == 201
    assert again.json()["benefits"][0]["use_id"] == applied["use_id"]
    assert held(await benefits(client, t.hq(), member_id))[("member-price", "tier")]["used"] == 1


async def test_member_day_gives_the_deeper_discount_once_a_month(
    client, make_tenant, enrol, set_program
):
    t = await make_tenant()
    member_id = await gold_member(
        client, t, enrol, set_program, member_day=local_today().isoweekday()
    )
    basket = [line("MILK", "feeding", 10_000), line("CAR", "toys", 5_000)]
    offer = await preview(client, t.hq(), member_id, basket)
    assert [ln["benefit_code"] for ln in offer["lines"]] == ["member-day", "member-day"]
    assert offer["discount_fen"] == 2_000 + 1_000
    claimed = [MEMBER_DAY_LINE]
    assert (await record(client, t.hq(), member_id, claimed)).status_code == 201
    # Its quota (one order a month) is used: the next preview falls back to member price.
    offer = await preview(client, t.hq(), member_id, basket)
    assert [ln["benefit_code"] for ln in offer["lines"]] == ["member-price", None]
    r = await record(client, t.hq(), member_id, claimed)
    assert r.status_code == 422
    assert r.json()["type"].endswith("benefit-used-up")
    assert [e["field"] for e in r.json()["errors"]] == ["lines.0.benefit_code"]


async def test_a_birthday_month_doubles_the_points_of_every_order_in_it(
    client, make_tenant, enrol, set_program
):
    t = await make_tenant()
    birthday = local_today().replace(year=1990, day=1)
    await set_up(client, t.hq(), set_program, member_day=not_today())
    member = await enrol(t.hq(), birthday=str(birthday))
    other = await enrol(t.hq(), birthday=str(birthday.replace(month=birthday.month % 12 + 1)))
    for m in (member, other):
        await benefits(client, t.hq(), m["id"])
    basket = [line("MILK", "feeding", 10_000)]
    assert (await preview(client, t.hq(), member["id"], basket))["points"] == 200
    assert (await preview(client, t.hq(), other["id"], basket))["points"] == 100
    r = await record(client, t.hq(), member["id"], basket)
    assert r.status_code == 201, r.text
    assert r.json()["points_earned"] == 200
    [applied] = r.json()["benefits"]
    assert (applied["code"], applied["points_multiplier_percent"]) == ("birthday-double", 200)
    r = await record(client, t.hq(), other["id"], basket)
    assert (r.json()["points_earned"], r.json()["benefits"]) == (100, [])


async def test_claims_the_member_cannot_make_are_refused_naming_the_line_and_write_nothing(
    client, make_tenant, enrol, set_program, row_counts
):
    t = await make_tenant()
    member_id = await gold_member(client, t, enrol, set_program, member_day=not_today())
    bronze = await enrol(t.hq())
    cases = [
        (member_id, line("CAR", "toys", 5_000, benefit_code="member-price", discount_fen=250),
         "lines.0.benefit_code", "invalid"),  # not a discount on toys
        (member_id, line("MILK", "feeding", 10_000, benefit_code="member-price",
                         discount_fen=501), "lines.0.discount_fen", "invalid"),  # 5% is 500
        (member_id, line("MILK", "feeding", 10_000, benefit_code="member-day",
                         discount_fen=2_000), "lines.0.benefit_code", "invalid"),  # not today
        (bronze["id"], line("MILK", "feeding", 10_000, benefit_code="member-price",
                            discount_fen=500), "lines.0.benefit_code", "benefit-not-held"),
        (None, line("MILK", "feeding", 10_000, benefit_code="member-price", discount_fen=500),
         "lines.0.benefit_code", "invalid"),  # an anonymous order
        (member_id, line("MILK", "feeding", 10_000, benefit_code="member-price"),
         "lines.0.discount_fen", "invalid"),  # a benefit without its discount
    ]  # fmt: skip
    before = await row_counts(t.id)
    for who, bad, field, problem in cases:
        r = await record(client, t.hq(), who, [bad])
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["type"].endswith(problem), (bad, r.json())
        assert field in [e["field"] for e in r.json()["errors"]], (bad, r.json())
    assert await row_counts(t.id) == before
    body = {"store_code": "S1", "lines": [line("M", "feeding", 100, benefit_code="member-price",
                                               discount_fen=5)]}  # fmt: skip
    r = await client.post("/api/v1/orders/preview", json=body, headers=t.hq())
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "lines.0.benefit_code"


# ------------------------------------------------------------------ refunds


async def test_refunding_the_whole_order_gives_its_benefit_uses_back_a_partial_refund_does_not(
    client, make_tenant, enrol, set_program
):
    t = await make_tenant()
    member_id = await gold_member(client, t, enrol, set_program, member_day=not_today())
    claimed = [line("MILK", "feeding", 10_000, benefit_code="member-price", discount_fen=500),
               line("CAR", "toys", 5_000)]  # fmt: skip
    r = await record(client, t.hq(), member_id, claimed, "R-1")
    assert r.status_code == 201, r.text
    price_use = r.json()["benefits"][0]["use_id"]
    # The till also waived the delivery fee for this order.
    shipped = await use(client, t.hq(), member_id, "free-shipping", store_code="S1",
                        reference="order:pos/R-1")  # fmt: skip
    assert shipped.status_code == 201, shipped.text

    refunds = "/api/v1/orders/pos/R-1/refunds"
    r = await client.post(refunds, json={"external_id": "R-1a", "lines": [
        {"line_no": 2, "quantity": 1}]}, headers=t.hq())  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["benefit_uses_reversed"] == []
    r = await client.post(refunds, json={"external_id": "R-1b"}, headers=t.hq())
    assert r.status_code == 201, r.text
    assert sorted(r.json()["benefit_uses_reversed"]) == sorted([price_use, shipped.json()["id"]])
    view = held(await benefits(client, t.hq(), member_id))
    assert (view[("member-price", "tier")]["used"], view[("free-shipping", "tier")]["used"]) == (
        0,
        0,
    )
    r = await client.post(refunds, json={"external_id": "R-1b"}, headers=t.hq())  # a retry
    assert r.status_code == 201
    params = {"type": "benefit.use_reversed", "limit": 200}
    r = await client.get("/api/v1/events", headers=t.hq(), params=params)
    assert len(r.json()["items"]) == 2


# ------------------------------------------------------------------ at once


@pytest.fixture
def racing(concurrent_client: httpx.AsyncClient) -> httpx.AsyncClient:
    return concurrent_client


async def test_two_tills_claiming_the_last_member_day_one_wins(
    racing, make_tenant, enrol, set_program
):
    client = racing
    t = await make_tenant()
    member_id = await gold_member(
        client, t, enrol, set_program, member_day=local_today().isoweekday()
    )
    claimed = [MEMBER_DAY_LINE]
    responses = await asyncio.gather(
        *[record(client, t.hq(), member_id, claimed) for _ in range(8)]
    )
    assert Counter(r.status_code for r in responses) == {201: 1, 422: 7}
    assert held(await benefits(client, t.hq(), member_id))[("member-day", "tier")]["used"] == 1


async def test_retries_of_one_discounted_order_record_one_use(
    racing, make_tenant, enrol, set_program
):
    client = racing
    t = await make_tenant()
    member_id = await gold_member(
        client, t, enrol, set_program, member_day=local_today().isoweekday()
    )
    claimed = [MEMBER_DAY_LINE]
    body = order_body(uuid.uuid4().hex, member={"id": member_id}, lines=claimed)
    responses = await asyncio.gather(
        *[client.post("/api/v1/orders", json=body, headers=t.hq()) for _ in range(8)]
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["benefits"][0]["use_id"] for r in responses}) == 1
    assert held(await benefits(client, t.hq(), member_id))[("member-day", "tier")]["used"] == 1


def test_the_member_day_of_a_short_month_is_its_last_day() -> None:
    assert is_member_day({"day_of_month": 31}, date(2026, 2, 28))
    assert not is_member_day({"day_of_month": 31}, date(2026, 3, 30))
    assert is_member_day({"weekday": 1}, date(2026, 11, 30))  # a Monday
    assert not is_member_day({"weekday": 2}, date(2026, 11, 30))


def _standing(code: str, kind: str, options: dict[str, Any], left: int = 1) -> Standing:
    spec = BenefitSpec(code=code, name=code, type=kind, options=options)
    return Standing(uuid.uuid4(), CatalogItem(uuid.uuid4(), spec), "grant", left, None)


def test_the_largest_multiplier_of_the_day_applies_and_a_child_s_birthday_month_counts() -> None:
    monday = date(2026, 11, 30)
    held_now = [
        _standing("child-double", "core.points_multiplier",
                  {"multiplier_percent": 200, "occasion": "child_birthday_month"}),
        _standing("member-day", "core.member_day",
                  {"weekday": 1, "points_multiplier_percent": 300}),
        _standing("used-up", "core.member_day",
                  {"weekday": 1, "points_multiplier_percent": 500}, left=0),
    ]  # fmt: skip
    born = (date(2025, 11, 2),)

    def best(day: date) -> tuple[str, int] | None:
        found = best_multiplier(held_now, Occasions(day, None, born))
        return None if found is None else (found[0].item.code, found[1])

    assert best(monday) == ("member-day", 300)  # the largest usable one, not stacked
    assert best(date(2026, 11, 24)) == ("child-double", 200)  # a Tuesday in the month
    assert best(date(2026, 12, 1)) is None
    festival = _standing("festival-double", "core.points_multiplier",
                         {"multiplier_percent": 250, "occasion": "while_held"})  # fmt: skip
    found = best_multiplier([*held_now, festival], Occasions(date(2026, 12, 1), None, born))
    assert found is not None
    assert (found[0].item.code, found[1]) == ("festival-double", 250)  # any day while held
