"""Orders and refunds through the API: earn rules, preview, idempotency, points as cash."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from loyalty.helpers import order_body
from loyalty.support import (
    adjust,
    assert_running_balance,
    balances,
    entries,
    events,
    post_order,
    refund,
)


def line(sku: str, category: str, paid_fen: int, quantity: int = 1) -> dict[str, Any]:
    return {
        "sku": sku,
        "name": sku,
        "category": category,
        "quantity": quantity,
        "unit_price_fen": paid_fen // quantity,
        "paid_fen": paid_fen,
    }


def earned_by_line(order: dict[str, Any]) -> list[int]:
    return [li["points_earned"] for li in order["lines"]]


async def give_points(client, t, member_id: str, amount: int) -> None:
    """HQ credits spendable points (an adjustment is available at once)."""
    r = await adjust(client, t.hq(), member_id, amount)
    assert r.status_code == 201, r.text


# ------------------------------------------------------------------ earning


async def test_earn_follows_the_members_tier(client, make_tenant, enrol):
    t = await make_tenant()
    m = await enrol(t.hq())
    ref = {"id": m["id"]}
    first = await post_order(client, t.hq(), order_body(member=ref))
    assert first["points_earned"] == 100  # 100 yuan at bronze, 1 point per yuan
    big = await post_order(
        client, t.hq(), order_body(member=ref, lines=[line("CRIB", "furniture", 100_000)])
    )
    assert big["points_earned"] == 1000  # earned at the tier held when paying
    assert big["member"]["tier_code"] == "silver"  # growth 1100 >= 1000
    assert big["member"]["upgraded_from"] == "bronze"
    assert big["member"]["growth_value"] == 1100
    silver = await post_order(client, t.hq(), order_body(member=ref))
    assert silver["points_earned"] == 120  # silver earns 120%
    assert silver["member"]["points_balance"] == 100 + 1000 + 120


async def test_category_and_store_multipliers(client, make_tenant, enrol, set_program):
    t = await make_tenant()
    await set_program(
        t.hq(),
        earn_rules={"category_multipliers": {"feeding": 200}, "store_multipliers": {"S2": 150}},
    )
    m = await enrol(t.hq())
    lines = [line("MILK-1", "feeding", 10_000), line("BLOCKS", "toys", 5_000)]
    at_s1 = await post_order(client, t.hq(), order_body(member={"id": m["id"]}, lines=lines))
    assert earned_by_line(at_s1) == [200, 50]
    assert at_s1["points_earned"] == 250
    at_s2 = await post_order(
        client, t.hq(), order_body(member={"id": m["id"]}, lines=lines, store_code="S2")
    )
    assert earned_by_line(at_s2) == [300, 75]  # x2 x1.5, and x1.5


async def test_excluded_categories_and_skus_earn_nothing(client, make_tenant, enrol, set_program):
    t = await make_tenant()
    await set_program(
        t.hq(), earn_rules={"excluded_categories": ["formula-0"], "excluded_skus": ["GIFTCARD"]}
    )
    m = await enrol(t.hq())
    lines = [
        line("STAGE1", "formula-0", 30_000),
        line("GIFTCARD", "cards", 20_000),
        line("WIPES", "care", 4_000),
    ]
    order = await post_order(client, t.hq(), order_body(member={"id": m["id"]}, lines=lines))
    assert earned_by_line(order) == [0, 0, 40]
    assert (await balances(client, t.hq(), m["id"]))["balance"] == 40


async def test_cap_per_order_trims_the_last_lines(client, make_tenant, enrol, set_program):
    t = await make_tenant()
    await set_program(t.hq(), earn_rules={"cap_per_order": 50})
    m = await enrol(t.hq())
    lines = [line("A", "care", 3_000), line("B", "care", 7_000)]
    order = await post_order(client, t.hq(), order_body(member={"id": m["id"]}, lines=lines))
    assert earned_by_line(order) == [30, 20]
    assert order["points_earned"] == 50


async def test_cap_per_day_across_orders(client, make_tenant, enrol, set_program):
    t = await make_tenant()
    await set_program(t.hq(), earn_rules={"cap_per_day": 150})
    m, other = await enrol(t.hq()), await enrol(t.hq())
    got = [
        (await post_order(client, t.hq(), order_body(member={"id": m["id"]})))["points_earned"]
        for _ in range(3)
    ]
    assert got == [100, 50, 0]
    r = await client.post(
        "/api/v1/orders/preview",
        headers=t.hq(),
        json={"store_code": "S1", "member": {"id": m["id"]}, "lines": [line("X", "care", 10_000)]},
    )
    assert r.json()["points"] == 0  # the preview knows today's earnings too
    # The cap is per member.
    assert (await post_order(client, t.hq(), order_body(member={"id": other["id"]})))[
        "points_earned"
    ] == 100


async def test_points_round_down_per_line(client, make_tenant, enrol, set_program):
    t = await make_tenant()
    await set_program(t.hq(), earn_rules={"category_multipliers": {"feeding": 150}})
    m = await enrol(t.hq())
    lines = [
        line("A", "care", 1_999),  # 19.99 -> 19
        line("B", "feeding", 99),  # 0.99 x 1.5 = 1.485 -> 1
        line("C", "care", 150),  # 1.5 -> 1
        line("D", "care", 150),  # 1.5 -> 1 (never 3 for C and D together)
        line("E", "care", 99),  # 0.99 -> 0
    ]
    order = await post_order(client, t.hq(), order_body(member={"id": m["id"]}, lines=lines))
    assert earned_by_line(order) == [19, 1, 1, 1, 0]
    assert order["points_earned"] == 22
    assert (await balances(client, t.hq(), m["id"]))["balance"] == 22
    # Silver: 19.99 x 1.2 = 23.988 -> 23.
    r = await client.post(
        "/api/v1/orders/preview",
        headers=t.hq(),
        json={"store_code": "S1", "tier_code": "silver", "lines": [line("A", "care", 1_999)]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["points"] == 23


async def test_points_paid_with_earn_nothing(client, make_tenant, enrol):
    t = await make_tenant()
    m = await enrol(t.hq())
    await give_points(client, t, m["id"], 1_000)
    order = await post_order(client, t.hq(), order_body(member={"id": m["id"]}, points_used=1_000))
    assert order["points_earned"] == 90  # 100 yuan less the 10 yuan paid with points
    assert (await balances(client, t.hq(), m["id"]))["balance"] == 1_000 - 1_000 + 90


# ------------------------------------------------------------------ preview


async def test_preview_matches_the_order_and_writes_nothing(
    client, make_tenant, enrol, set_program, row_counts
):
    t = await make_tenant()
    await set_program(
        t.hq(),
        earn_rules={"category_multipliers": {"feeding": 200}, "store_multipliers": {"S2": 110}},
    )
    m = await enrol(t.hq())
    await give_points(client, t, m["id"], 500)
    lines = [line("MILK-1", "feeding", 12_345, 3), line("BIB", "care", 6_789)]
    before = await row_counts(t.id)
    r = await client.post(
        "/api/v1/orders/preview",
        json={"store_code": "S2", "member": {"id": m["id"]}, "lines": lines, "points_used": 500},
        headers=t.hq(),
    )
    assert r.status_code == 200, r.text
    preview = r.json()
    assert await row_counts(t.id) == before
    assert preview["tier_code"] == "bronze"
    assert preview["points_value_fen"] == 500
    # 10% of the order (1,913 points) caps it, but the member has only 500.
    assert preview["max_points_usable"] == 500
    r = await client.post(
        "/api/v1/orders/preview",
        json={"store_code": "S2", "tier_code": "bronze", "lines": lines},
        headers=t.hq(),
    )
    assert r.json()["max_points_usable"] == (12_345 + 6_789) // 10  # no member: the cap only
    order = await post_order(
        client,
        t.hq(),
        order_body(member={"id": m["id"]}, lines=lines, store_code="S2", points_used=500),
    )
    assert order["points_earned"] == preview["points"] > 0
    assert earned_by_line(order) == [li["points_earned"] for li in preview["lines"]]


async def test_preview_of_an_unknown_tier_is_refused(client, make_tenant):
    t = await make_tenant()
    r = await client.post(
        "/api/v1/orders/preview",
        headers=t.hq(),
        json={"store_code": "S1", "tier_code": "platinum", "lines": [line("A", "care", 100)]},
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "tier_code"


# ------------------------------------------------------------------ anonymous and idempotent


async def test_anonymous_order_is_stored_with_an_event(client, make_tenant, row_counts):
    t = await make_tenant()
    body = order_body()
    before = await row_counts(t.id)
    order = await post_order(client, t.hq(), body)
    assert order["member_id"] is None
    assert order["member"] is None
    assert order["points_earned"] == 0
    after = await row_counts(t.id)
    assert after["orders"] == before["orders"] + 1
    assert after["point_entries"] == before["point_entries"]
    r = await client.get(f"/api/v1/orders/pos/{body['external_id']}", headers=t.hq())
    assert r.status_code == 200
    assert r.json()["id"] == order["id"]
    assert r.json()["total_fen"] == 10_000
    (paid,) = [
        e
        for e in await events(client, t.hq(), "order.paid")
        if e["payload"]["order_id"] == order["id"]
    ]
    assert paid["payload"]["member_id"] is None
    assert paid["payload"]["total_fen"] == 10_000
    # Points need a member.
    r = await client.post("/api/v1/orders", json=order_body(points_used=100), headers=t.hq())
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "payment.points_used"


async def test_order_replay_and_conflict_change_nothing(client, make_tenant, enrol, row_counts):
    t = await make_tenant()
    m = await enrol(t.hq())
    body = order_body(member={"id": m["id"]})
    r = await client.post("/api/v1/orders", json=body, headers=t.hq())
    assert r.status_code == 201
    first = r.json()
    before = await row_counts(t.id)
    r = await client.post("/api/v1/orders", json=body, headers=t.hq())
    assert r.status_code == 201
    assert r.headers["idempotent-replayed"] == "true"
    assert r.json() == first
    different = order_body(
        body["external_id"], member={"id": m["id"]}, lines=[line("MILK-1", "feeding", 20_000)]
    )
    r = await client.post("/api/v1/orders", json=different, headers=t.hq())
    assert r.status_code == 409
    assert r.json()["errors"][0]["field"] == "external_id"
    assert await row_counts(t.id) == before
    assert (await balances(client, t.hq(), m["id"]))["balance"] == 100
    # The id is unique per channel: the mall's order with the same id is another order.
    r = await client.post("/api/v1/orders", json=body | {"channel": "mall"}, headers=t.hq())
    assert r.status_code == 201
    assert r.json()["id"] != first["id"]


async def test_concurrent_retries_record_the_order_once(
    client, concurrent_client, make_tenant, enrol
):
    t = await make_tenant()
    m = await enrol(t.hq())
    body = order_body(member={"id": m["id"]})
    replies = await asyncio.gather(
        *[concurrent_client.post("/api/v1/orders", json=body, headers=t.hq()) for _ in range(5)]
    )
    assert [r.status_code for r in replies] == [201] * 5
    assert len({r.text for r in replies}) == 1  # every retry got the first response
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in replies) == 4
    assert (await balances(client, t.hq(), m["id"]))["balance"] == 100
    # Different orders at once all count, and the ledger stays a running sum.
    bodies = [order_body(member={"id": m["id"]}) for _ in range(6)]
    replies = await asyncio.gather(
        *[concurrent_client.post("/api/v1/orders", json=b, headers=t.hq()) for b in bodies]
    )
    assert [r.status_code for r in replies] == [201] * 6
    assert (await balances(client, t.hq(), m["id"]))["balance"] == 700
    assert_running_balance(await entries(client, t.hq(), m["id"]))


# ------------------------------------------------------------------ stores


async def test_store_key_records_and_reads_only_its_own_store(client, make_tenant, enrol, till):
    t = await make_tenant()
    m = await enrol(t.hq())
    s1, s2 = await till(t, "S1"), await till(t, "S2")
    own = await post_order(client, s1, order_body(member={"id": m["id"]}, store_code=None))
    assert own["store_id"] == str(t.stores["S1"])
    named = await post_order(client, s1, order_body(member={"id": m["id"]}, store_code="S1"))
    assert named["store_id"] == str(t.stores["S1"])
    r = await client.post("/api/v1/orders", json=order_body(store_code="S2"), headers=s1)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "store_code"
    r = await client.post("/api/v1/orders", json=order_body(store_code="NOPE"), headers=s1)
    assert r.status_code == 422
    for headers, status in ((s1, 200), (t.hq(), 200), (s2, 404)):
        r = await client.get(f"/api/v1/orders/pos/{own['external_id']}", headers=headers)
        assert r.status_code == status, headers
    r = await refund(client, s2, own, {"external_id": "r-other-store"})
    assert r.status_code == 404
    # An HQ key must name the store.
    r = await client.post("/api/v1/orders", json=order_body(store_code=None), headers=t.hq())
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "store_code"


# ------------------------------------------------------------------ payment


async def test_payment_must_add_up(client, make_tenant, enrol, row_counts):
    t = await make_tenant()
    m = await enrol(t.hq())
    before = await row_counts(t.id)
    for cash in (9_999, 10_001, 0):
        r = await client.post(
            "/api/v1/orders",
            json=order_body(member={"id": m["id"]}, cash_fen=cash),
            headers=t.hq(),
        )
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == "payment"
    assert await row_counts(t.id) == before
    body = order_body(member={"id": m["id"]}, cash_fen=8_000)
    body["payment"]["coupons"] = [{"code": "NEW20", "amount_fen": 2_000}]
    r = await client.post("/api/v1/orders", json=body, headers=t.hq())
    assert r.status_code == 422, r.text  # a coupon is one the chain issued (test_coupons.py)
    assert r.json()["errors"][0]["field"] == "payment.coupons.0"
    assert await row_counts(t.id) == before


async def test_points_as_cash_is_capped_by_tier(client, make_tenant, enrol, row_counts):
    t = await make_tenant()
    m = await enrol(t.hq())
    await give_points(client, t, m["id"], 5_000)
    before = await row_counts(t.id)
    # Bronze may pay 10% of 100 yuan: 10 yuan = 1000 points.
    r = await client.post(
        "/api/v1/orders", headers=t.hq(), json=order_body(member={"id": m["id"]}, points_used=1_001)
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "payment.points_used"
    assert await row_counts(t.id) == before
    order = await post_order(client, t.hq(), order_body(member={"id": m["id"]}, points_used=1_000))
    assert order["points_used"] == 1_000
    points = await balances(client, t.hq(), m["id"])
    assert points["available"] == 5_000 - 1_000
    assert points["balance"] == 5_000 - 1_000 + order["points_earned"]
    # Silver may pay 15%.
    await post_order(
        client,
        t.hq(),
        order_body(member={"id": m["id"]}, lines=[line("CRIB", "furniture", 100_000)]),
    )
    r = await client.post(
        "/api/v1/orders", headers=t.hq(), json=order_body(member={"id": m["id"]}, points_used=1_500)
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        "/api/v1/orders", headers=t.hq(), json=order_body(member={"id": m["id"]}, points_used=1_501)
    )
    assert r.status_code == 422


async def test_points_as_cash_needs_available_points(client, make_tenant, enrol, row_counts):
    t = await make_tenant()
    m = await enrol(t.hq())
    await give_points(client, t, m["id"], 500)
    before = await row_counts(t.id)
    r = await client.post(
        "/api/v1/orders", headers=t.hq(), json=order_body(member={"id": m["id"]}, points_used=800)
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "payment.points_used"
    assert await row_counts(t.id) == before
    assert (await balances(client, t.hq(), m["id"]))["available"] == 500


async def test_earned_points_are_pending_for_the_pending_days(
    client, make_tenant, enrol, set_program
):
    t = await make_tenant()
    m = await enrol(t.hq())
    await post_order(client, t.hq(), order_body(member={"id": m["id"]}))
    points = await balances(client, t.hq(), m["id"])
    assert (points["balance"], points["pending"], points["available"]) == (100, 100, 0)
    r = await client.post(
        "/api/v1/orders", headers=t.hq(), json=order_body(member={"id": m["id"]}, points_used=100)
    )
    assert r.status_code == 422  # pending points do not spend
    await set_program(t.hq(), points={"pending_days": 0})
    await post_order(client, t.hq(), order_body(member={"id": m["id"]}))
    points = await balances(client, t.hq(), m["id"])
    # The first order's points keep their pending period; the new ones spend at once.
    assert (points["balance"], points["pending"], points["available"]) == (200, 100, 100)
    order = await post_order(client, t.hq(), order_body(member={"id": m["id"]}, points_used=100))
    assert order["points_used"] == 100


async def test_order_for_an_unknown_member_is_refused(client, make_tenant):
    t = await make_tenant()
    r = await client.post(
        "/api/v1/orders", headers=t.hq(), json=order_body(member={"id": str(uuid.uuid4())})
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "member"


# ------------------------------------------------------------------ refunds


async def test_partial_refunds_reverse_exactly_what_the_lines_earned(client, make_tenant, enrol):
    t = await make_tenant()
    m = await enrol(t.hq())
    lines = [line("MILK-1", "feeding", 10_000, quantity=3), line("BLOCKS", "toys", 5_000)]
    order = await post_order(client, t.hq(), order_body(member={"id": m["id"]}, lines=lines))
    assert earned_by_line(order) == [100, 50]
    reversed_ = []
    for i in range(3):
        r = await refund(
            client,
            t.hq(),
            order,
            {"external_id": f"r{i}", "lines": [{"line_no": 1, "quantity": 1}]},
        )
        assert r.status_code == 201, r.text
        reversed_.append(r.json()["points_reversed"])
    # A third each, rounded down; the last refund of the line takes the remainder.
    assert reversed_ == [33, 33, 34]
    assert sum(reversed_) == 100
    assert (await balances(client, t.hq(), m["id"]))["balance"] == 50
    r = await client.get(f"/api/v1/orders/pos/{order['external_id']}", headers=t.hq())
    assert r.json()["status"] == "partially_refunded"
    r = await refund(client, t.hq(), order, {"external_id": "rest"})
    assert r.status_code == 201, r.text
    assert r.json()["points_reversed"] == 50
    assert r.json()["amount_fen"] == 5_000
    assert (await balances(client, t.hq(), m["id"]))["balance"] == 0
    r = await client.get(f"/api/v1/orders/pos/{order['external_id']}", headers=t.hq())
    assert r.json()["status"] == "refunded"
    r = await refund(client, t.hq(), order, {"external_id": "again"})
    assert r.status_code == 422  # nothing left
    assert_running_balance(await entries(client, t.hq(), m["id"]))


async def test_full_refund_returns_the_points_that_paid(client, make_tenant, enrol):
    t = await make_tenant()
    m = await enrol(t.hq())
    await give_points(client, t, m["id"], 999)
    lines = [line("A", "care", 3_333), line("B", "care", 6_667)]
    order = await post_order(
        client, t.hq(), order_body(member={"id": m["id"]}, lines=lines, points_used=999)
    )
    earned = order["points_earned"]
    assert (await balances(client, t.hq(), m["id"]))["balance"] == earned
    r = await refund(
        client, t.hq(), order, {"external_id": "r1", "lines": [{"line_no": 1, "quantity": 1}]}
    )
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["amount_fen"] == 3_333
    assert first["points_returned"] == 999 * 3_333 // 10_000  # the refunded share, rounded down
    assert first["points_reversed"] == order["lines"][0]["points_earned"]
    r = await refund(client, t.hq(), order, {"external_id": "r2"})
    assert r.status_code == 201, r.text
    second = r.json()
    assert first["points_returned"] + second["points_returned"] == 999  # no rounding loss
    assert first["points_reversed"] + second["points_reversed"] == earned
    points = await balances(client, t.hq(), m["id"])
    assert points["balance"] == points["available"] == 999
    assert_running_balance(await entries(client, t.hq(), m["id"]))


async def test_refund_is_idempotent_by_its_id(client, make_tenant, enrol, row_counts):
    t = await make_tenant()
    m = await enrol(t.hq())
    lines = [line("A", "care", 4_000), line("B", "care", 6_000)]
    order = await post_order(client, t.hq(), order_body(member={"id": m["id"]}, lines=lines))
    body = {"external_id": "refund-1", "lines": [{"line_no": 1, "quantity": 1}]}
    r = await refund(client, t.hq(), order, body)
    assert r.status_code == 201
    first = r.json()
    before = await row_counts(t.id)
    r = await refund(client, t.hq(), order, body)
    assert r.status_code == 201
    assert r.headers["idempotent-replayed"] == "true"
    assert r.json() == first
    r = await refund(
        client, t.hq(), order, {"external_id": "refund-1", "lines": [{"line_no": 2, "quantity": 1}]}
    )
    assert r.status_code == 409
    assert r.json()["errors"][0]["field"] == "external_id"
    assert await row_counts(t.id) == before
    assert (await balances(client, t.hq(), m["id"]))["balance"] == 60


async def test_refunding_more_than_is_left_is_refused(client, make_tenant, enrol, row_counts):
    t = await make_tenant()
    m = await enrol(t.hq())
    order = await post_order(
        client,
        t.hq(),
        order_body(
            member={"id": m["id"]}, lines=[line("A", "care", 6_000, 2), line("B", "care", 1_000)]
        ),
    )
    r = await refund(
        client, t.hq(), order, {"external_id": "r1", "lines": [{"line_no": 1, "quantity": 1}]}
    )
    assert r.status_code == 201
    before = await row_counts(t.id)
    for lines, field in (
        ([{"line_no": 1, "quantity": 2}], "lines.0.quantity"),
        ([{"line_no": 2, "quantity": 1}, {"line_no": 1, "quantity": 5}], "lines.1.quantity"),
        ([{"line_no": 3, "quantity": 1}], "lines.0.line_no"),
        # The same line twice must not be read as once.
        ([{"line_no": 1, "quantity": 1}, {"line_no": 1, "quantity": 1}], "lines.1.line_no"),
    ):
        r = await refund(client, t.hq(), order, {"external_id": "r2", "lines": lines})
        assert r.status_code == 422, (lines, r.text)
        assert field in [e["field"] for e in r.json()["errors"]], r.json()
    assert await row_counts(t.id) == before


async def test_refund_takes_back_the_lines_own_points_first(client, make_tenant, enrol):
    t = await make_tenant()
    m = await enrol(t.hq())
    await give_points(client, t, m["id"], 500)  # available at once
    order = await post_order(client, t.hq(), order_body(member={"id": m["id"]}))  # 100 pending
    points = await balances(client, t.hq(), m["id"])
    assert (points["available"], points["pending"]) == (500, 100)
    r = await refund(client, t.hq(), order, {"external_id": "r1"})
    assert r.status_code == 201, r.text
    points = await balances(client, t.hq(), m["id"])
    # The refunded order's own (pending) points go, not the member's other points.
    assert (points["balance"], points["available"], points["pending"]) == (500, 500, 0)


async def test_clawback_of_spent_points_becomes_debt(client, make_tenant, enrol, set_program):
    t = await make_tenant()
    await set_program(t.hq(), points={"pending_days": 0})
    m = await enrol(t.hq())
    order = await post_order(client, t.hq(), order_body(member={"id": m["id"]}))
    assert order["points_earned"] == 100
    r = await adjust(client, t.hq(), m["id"], -60)  # 60 of them are spent
    assert r.status_code == 201, r.text
    r = await refund(client, t.hq(), order, {"external_id": "r1"})
    assert r.status_code == 201, r.text
    assert r.json()["points_reversed"] == 100
    assert (r.json()["member_points_balance"], r.json()["member_debt"]) == (-60, 60)
    points = await balances(client, t.hq(), m["id"])
    assert (points["balance"], points["debt"], points["available"]) == (-60, 60, 0)
    # The next order's earnings repay the debt first.
    nxt = await post_order(
        client, t.hq(), order_body(member={"id": m["id"]}, lines=[line("A", "care", 5_000)])
    )
    assert nxt["points_earned"] == 50
    points = await balances(client, t.hq(), m["id"])
    assert (points["balance"], points["debt"], points["available"]) == (-10, 10, 0)
    await post_order(client, t.hq(), order_body(member={"id": m["id"]}))
    points = await balances(client, t.hq(), m["id"])
    assert (points["balance"], points["debt"], points["available"]) == (90, 0, 90)
    ledger = await entries(client, t.hq(), m["id"])
    assert [e["kind"] for e in ledger] == ["earn", "adjust", "reverse", "earn", "earn"]
    assert_running_balance(ledger)


async def test_order_path_never_waits_for_a_second_connection(
    client, make_tenant, enrol, monkeypatch
):
    """Under load a request that held its connection (and an account lock) while waiting
    for another pooled connection deadlocked the pool: when the plugin enablement cache is
    stale, the order must load it through its own session, not open a second one."""
    from loyalty.helpers import order_body
    from nestpoint.plugins.enablement import EnablementCache
    from nestpoint.plugins.manager import get_plugin_host

    t = await make_tenant()
    member = await enrol(t.hq())
    loads: list[bool] = []
    real_get = EnablementCache.get

    async def spy(self, tenant_id, session=None):  # type: ignore[no-untyped-def]
        if self.cached(tenant_id) is None:
            loads.append(session is not None)
        return await real_get(self, tenant_id, session)

    monkeypatch.setattr(EnablementCache, "get", spy)
    get_plugin_host().enablement.clear()  # stale: the order must load it
    r = await client.post(
        "/api/v1/orders", json=order_body(member={"id": member["id"]}), headers=t.hq()
    )
    assert r.status_code == 201, r.text
    assert loads == [True]  # loaded once, through the order's session
