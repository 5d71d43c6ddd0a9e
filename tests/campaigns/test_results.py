"""Stage 3: a campaign's results add up to its grants, the ledger, the coupons and the
orders; the uplift and its interval are Welch's, recomputed here from the orders."""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from campaigns.helpers import (
    body,
    campaign,
    coupon_template,
    coupons_of,
    grants,
    ledger,
    make,
    run,
)
from loyalty.helpers import order_body
from nestpoint.campaigns.results import results, welch
from nestpoint.jobs.tenants import run_for_tenant
from nestpoint.orders.models import Order
from segments.helpers import enrol, line, order


def test_welch_matches_its_formula() -> None:
    treated, control = [10.0, 0.0, 30.0, 20.0], [0.0, 10.0, 5.0]
    got = welch(
        4, sum(treated), sum(x * x for x in treated), 3, sum(control), sum(x * x for x in control)
    )
    d = statistics.mean(treated) - statistics.mean(control)
    half = 1.96 * math.sqrt(statistics.variance(treated) / 4 + statistics.variance(control) / 3)
    assert got.difference == d
    assert got.low is not None
    assert got.high is not None
    assert math.isclose(got.low, d - half)
    assert math.isclose(got.high, d + half)
    assert welch(1, 5.0, 25.0, 3, 3.0, 5.0).low is None  # one member: no interval


async def test_results_add_up_to_the_ledger_coupons_and_orders(
    client: Any, make_tenant: Any
) -> None:
    tenant = await make_tenant()
    # Holdout is drawn per member at 40%: with 24 members, fewer than two in control (the
    # interval needs two) happens about once in 12,000 runs; with 12 it was once in 50.
    members = [await enrol(client, tenant) for _ in range(24)]
    old = members[0]
    await order(client, tenant, old, [line("feeding", 7000)], days_ago=5)  # before the window
    await coupon_template(tenant.id, "r20")
    start = datetime.now(UTC) - timedelta(hours=2)
    cid = await make(
        tenant.id,
        body(
            "results",
            actions=[
                {"type": "grant_points", "points": 100},
                {"type": "issue_coupon", "template_code": "r20"},
            ],
            holdout_percent=40,
            starts_at=start.isoformat(),
            goal={"metric": "orders", "target": 8},
        ),
    )
    await run(tenant.id, cid)
    rows = await grants(tenant.id, cid)
    treated = sorted(str(g.member_id) for g in rows if g.status == "granted")
    control = sorted(str(g.member_id) for g in rows if g.status == "holdout")
    assert treated
    assert len(control) >= 2
    assert len(treated) + len(control) == len(members)
    for i, member in enumerate(members):
        for n in range(i % 3):
            await order(client, tenant, member, [line("feeding", 1000 * (i + 1) + 100 * n)])
    [redeemed, *_] = await coupons_of(tenant.id, cid)
    # A treated member pays part of an order with the campaign's coupon, at the till.
    paying = order_body(member={"id": str(redeemed.member_id)}, lines=[line("feeding", 10000)])
    paying["payment"] = {"cash_fen": 8000, "coupons": [{"code": redeemed.code, "amount_fen": 2000}]}
    r = await client.post("/api/v1/orders", json=paying, headers=tenant.hq())
    assert r.status_code == 201, r.text
    assert [c["amount_fen"] for c in r.json()["coupons"]] == [2000]

    async def compute(session: Any) -> Any:
        found = await campaign(tenant.id, cid)
        return await results(session, found)

    got = await run_for_tenant(tenant.id, compute, name="test")

    # The orders, read here directly: per member in the window.
    async def orders_in_window(session: Any) -> dict[str, list[int]]:
        found = await session.execute(
            select(Order.member_id, Order.total_fen - Order.refunded_fen).where(
                Order.paid_at >= start, Order.status.in_(("paid", "partially_refunded"))
            )
        )
        by_member: dict[str, list[int]] = {}
        for member_id, fen in found:
            by_member.setdefault(str(member_id), []).append(int(fen))
        return by_member

    paid = await run_for_tenant(tenant.id, orders_in_window, name="test")
    revenue = {m: sum(paid.get(m, [])) for m in members}
    count = {m: len(paid.get(m, [])) for m in members}
    assert got.reach == len(treated)
    assert got.holdout_members == len(control)
    assert got.treated.members == len(treated)
    assert got.holdout.members == len(control)
    assert got.treated.orders == sum(count[m] for m in treated)
    assert got.holdout.orders == sum(count[m] for m in control)
    assert got.treated.revenue_fen == sum(revenue[m] for m in treated)
    assert got.holdout.revenue_fen == sum(revenue[m] for m in control)
    assert got.treated.buyers == sum(1 for m in treated if count[m])
    # Every order in the window is a treated or a control member's (no one was refused).
    assert got.treated.revenue_fen + got.holdout.revenue_fen == sum(revenue.values())
    t_rev, c_rev = [revenue[m] for m in treated], [revenue[m] for m in control]
    d = statistics.mean(t_rev) - statistics.mean(c_rev)
    half = (
        1.96
        * math.sqrt(
            statistics.variance(t_rev) / len(t_rev) + statistics.variance(c_rev) / len(c_rev)
        )
        if len(t_rev) > 1
        else None
    )
    assert math.isclose(got.revenue_uplift_fen.difference, d)
    if half is not None:
        assert got.revenue_uplift_fen.low is not None
        assert math.isclose(got.revenue_uplift_fen.low, d - half)
    # Cost: the ledger's points, the coupons' redeemed value.
    assert got.points_granted == sum((await ledger(tenant.id, cid)).values())
    assert got.points_granted == 100 * len(treated) == (await campaign(tenant.id, cid)).spent_points
    assert got.points_granted == sum(g.points for g in rows)
    assert (got.coupons_issued, got.coupons_redeemed) == (len(treated), 1)
    assert got.coupon_value_redeemed_fen == 2000
    # Recruited: every member joined within the window's two hours.
    assert got.recruited == len(treated)
    assert got.recruited_repurchased == sum(1 for m in treated if count[m] >= 2)
    assert got.attainment is not None
    assert (got.attainment.actual, got.attainment.target) == (got.treated.orders, 8)
