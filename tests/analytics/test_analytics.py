"""The figures HQ watches, asserted exactly on a small known world: members and anonymous
orders, refunds (part and whole), a redemption, orders either side of the period's local
midnight and of UTC's (Asia/Shanghai, UTC+8), a store filter and a store key's reach, and
another tenant's orders that are never counted. Runs on SQLite and PostgreSQL alike."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from commands import nestpoint
from loyalty.helpers import new_phone, order_body
from loyalty.support import adjust, post_order, refund
from nestpoint.analytics import service
from nestpoint.context import Actor, acting_as, tenant_context
from nestpoint.db import scoped_session
from nestpoint.db.base import utcnow
from nestpoint.errors import Forbidden
from nestpoint.loyalty.service import get_program
from nestpoint.points import service as points_service

ZONE = ZoneInfo("Asia/Shanghai")


def at(day: date, hour: int, minute: int = 0) -> str:
    """A local time of the tenant's zone as the ISO instant an order carries."""
    return datetime.combine(day, time(hour, minute), tzinfo=ZONE).isoformat()


def line(paid: int, category: str, quantity: int = 1, sku: str = "SKU-1") -> dict[str, Any]:
    return {
        "sku": sku,
        "name": "item",
        "category": category,
        "quantity": quantity,
        "unit_price_fen": paid // quantity,
        "paid_fen": paid,
    }


def last(weekday: int, before: date) -> date:
    """The last day of ``weekday`` (Monday 0) strictly before ``before``."""
    day = before - timedelta(days=1)
    while day.weekday() != weekday:
        day -= timedelta(days=1)
    return day


@dataclass
class World:
    t: Any
    today: date
    wed: date
    sat: date
    members: dict[str, str]  # A, B, C, D -> id
    earned: dict[str, int]  # points earned per order label
    clawed_back: int  # points a refund of order 1 reversed

    def period(self, **extra: Any) -> dict[str, Any]:
        return {
            "from": (self.today - timedelta(days=13)).isoformat(),
            "to": self.today.isoformat(),
        } | extra


async def order(
    client: Any,
    t: Any,
    paid_at: str,
    lines: list[dict[str, Any]],
    *,
    member: str | None = None,
    store: str = "S1",
    points_used: int = 0,
) -> Any:
    body = order_body(
        member={"id": member} if member else None,
        lines=lines,
        store_code=store,
        points_used=points_used,
    )
    body["paid_at"] = paid_at
    return await post_order(client, t.hq(), body)


async def build(client: Any, t: Any) -> World:
    today = datetime.now(ZONE).date()
    wed, sat = last(2, today - timedelta(days=1)), last(5, today - timedelta(days=1))
    first = today - timedelta(days=13)  # the period: 14 local days, today the last
    members = {}
    for name, home in (("A", "S1"), ("B", "S1"), ("C", "S1"), ("D", "S2")):
        r = await client.post(
            "/api/v1/members",
            headers=t.hq(),
            json={"phone": new_phone(), "name": name, "home_store_code": home},
        )
        assert r.status_code == 201, r.text
        members[name] = r.json()["id"]
    a, b, c, d = (members[k] for k in "ABCD")
    assert (await adjust(client, t.hq(), a, 1000)).status_code == 201  # spendable now
    earned = {}
    # In the period.
    o1 = await order(client, t, at(wed, 7, 30), [line(20000, "feeding", 2)], member=a)
    o2 = await order(
        client,
        t,
        at(sat, 0, 30),
        [line(5000, "feeding"), line(3000, "toys", sku="T")],
        member=a,
        points_used=500,
    )
    o3 = await order(client, t, at(wed, 18, 15), [line(6000, "toys")], member=b, store="S2")
    o4 = await order(client, t, at(wed, 19), [line(4000, "toys")], member=b, store="S2")
    await order(client, t, at(wed, 8, 10), [line(5000, "feeding")])
    o6 = await order(client, t, at(sat, 10), [line(3000, "")])
    o7 = await order(
        client, t, at(wed, 17, 45), [line(5000, "feeding"), line(2000, "toys", sku="T")], store="S2"
    )
    o9 = await order(client, t, at(wed, 12), [line(9000, "gear")], member=d, store="S2")
    await order(client, t, at(first, 0, 15), [line(1000, "feeding")])  # 16:15 UTC the day before
    # Before it: the previous period (14 days), and earlier.
    o8 = await order(
        client, t, at(today - timedelta(days=20), 12), [line(10000, "feeding")], member=c
    )
    o10 = await order(
        client, t, at(today - timedelta(days=15), 12), [line(1000, "feeding")], member=a
    )
    o11 = await order(
        client, t, at(today - timedelta(days=40), 12), [line(9000, "gear")], member=d, store="S2"
    )
    await order(client, t, at(first - timedelta(days=1), 23, 30), [line(1500, "feeding")])
    for label, o in (
        ("1", o1),
        ("2", o2),
        ("3", o3),
        ("4", o4),
        ("9", o9),
        ("8", o8),
        ("10", o10),
        ("11", o11),
    ):
        earned[label] = o["points_earned"]
    # Refunds: half of order 1, all of order 6, the toys line of order 7.
    r1 = await refund(
        client, t.hq(), o1, {"external_id": "r1", "lines": [{"line_no": 1, "quantity": 1}]}
    )
    assert r1.status_code == 201, r1.text
    r6 = await refund(client, t.hq(), o6, {"external_id": "r6"})
    r7 = await refund(
        client, t.hq(), o7, {"external_id": "r7", "lines": [{"line_no": 2, "quantity": 1}]}
    )
    assert (r6.status_code, r7.status_code) == (201, 201)
    assert r1.json()["points_returned"] == 0
    return World(t, today, wed, sat, members, earned, r1.json()["points_reversed"])


async def get(client: Any, path: str, headers: dict[str, str], **params: Any) -> Any:
    r = await client.get(f"/api/v1/analytics/{path}", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
async def world(client, make_tenant) -> World:  # type: ignore[no-untyped-def]
    # Another chain first, with orders at the same times: never counted.
    other = await make_tenant()
    await build(client, other)
    return await build(client, await make_tenant())


async def test_summary_of_the_chain(client, world):
    w = world
    s = await get(client, "summary", w.t.hq(), **w.period())
    assert s["period"] | {"store_id": None} == {
        "start": (w.today - timedelta(days=13)).isoformat(),
        "end": w.today.isoformat(),
        "days": 14,
        "previous_start": (w.today - timedelta(days=27)).isoformat(),
        "previous_end": (w.today - timedelta(days=14)).isoformat(),
        "timezone": "Asia/Shanghai",
        "store_id": None,
    }
    assert s["sales"] == {
        "net_fen": 48000,
        "member_net_fen": 37000,
        "non_member_net_fen": 11000,
        "refunded_fen": 15000,
        "orders": 8,
        "member_orders": 5,
        "non_member_orders": 3,
    }
    assert s["member_share"] == {
        "numerator": 37000,
        "denominator": 48000,
        "rate": 0.7708,
        "target": 0.7,
    }
    assert s["average_order"] == {
        "member_fen": 7400,
        "non_member_fen": 3667,
        "uplift": 1.018,
        "target_uplift": 0.25,
    }
    # A and B bought twice in the period, D once.
    assert s["repurchase"] == {"numerator": 2, "denominator": 3, "rate": 0.6667, "target": None}
    # Every entry was written today: earned on all members' orders, less the claw-back.
    issued = sum(w.earned.values()) - w.clawed_back
    assert issued > 500
    assert s["points_redemption"] == {
        "issued": issued,
        "redeemed": 500,
        "rate": round(500 / issued, 4),
        "before": 0.12,
        "industry": 0.25,
    }
    # A and C bought in the previous period, C not since; D was silent through it, back now.
    assert s["churn"] == {
        "previous_active": 2,
        "churned": 1,
        "churn_rate": 0.5,
        "target_churn_rate": 0.15,
        "lapsed": 1,
        "reactivated": 1,
        "reactivation_rate": 1.0,
        "target_reactivation_uplift": 0.35,
    }
    assert s["new_members"] == 4


async def test_summary_of_one_store_and_a_store_keys_reach(client, world):
    w = world
    s = await get(client, "summary", w.t.hq(), **w.period(store="S1"))
    assert s["period"]["store_id"] == str(w.t.stores["S1"])
    assert s["sales"] == {
        "net_fen": 24000,
        "member_net_fen": 18000,
        "non_member_net_fen": 6000,
        "refunded_fen": 13000,
        "orders": 4,
        "member_orders": 2,
        "non_member_orders": 2,
    }
    assert s["member_share"]["rate"] == 0.75
    assert s["average_order"]["member_fen"] == 9000
    assert s["average_order"]["non_member_fen"] == 3000
    assert s["repurchase"]["numerator"] == s["repurchase"]["denominator"] == 1
    issued_s1 = sum(w.earned[k] for k in ("1", "2", "8", "10")) - w.clawed_back
    assert s["points_redemption"]["issued"] == issued_s1
    assert s["points_redemption"]["redeemed"] == 500
    churn = s["churn"]
    assert (churn["previous_active"], churn["churned"], churn["lapsed"]) == (2, 1, 0)
    assert churn["reactivation_rate"] is None
    assert s["new_members"] == 3
    # A store key: its own store by default, the same figures as HQ's for it; never another.
    r = await client.post(
        "/api/v1/api-keys",
        headers=w.t.hq(),
        json={
            "name": "S2 analytics",
            "kind": "store",
            "store_code": "S2",
            "scopes": ["analytics:read"],
        },
    )
    assert r.status_code == 201, r.text
    s2 = {"Authorization": f"Bearer {r.json()['key']}"}
    own = await get(client, "summary", s2, **w.period())
    assert own == await get(client, "summary", w.t.hq(), **w.period(store="S2"))
    assert own["sales"]["net_fen"] == 6000 + 4000 + 5000 + 9000
    r = await client.get("/api/v1/analytics/summary", params=w.period(store="S1"), headers=s2)
    assert r.status_code == 403
    assert r.json()["errors"] == [{"field": "query.store", "message": "not this key's store"}]
    # The till's keys hold no analytics:read.
    r = await client.get("/api/v1/analytics/summary", headers=w.t.store("S1"))
    assert r.status_code == 403


async def test_hourly_sales_in_the_tenants_time_zone(client, world):
    w = world
    h = await get(client, "hourly-sales", w.t.hq(), **w.period())
    assert h["peak_hours"] == ["07:00-09:00", "17:00-20:00"]
    got = {
        (kind, x["hour"]): (x["orders"], x["net_fen"], x["member_orders"], x["member_net_fen"])
        for kind in ("weekday", "weekend")
        for x in h[kind]
        if x["orders"] or x["net_fen"]
    }
    first = "weekend" if (w.today - timedelta(days=13)).weekday() >= 5 else "weekday"
    expected = {
        ("weekday", 7): (1, 10000, 1, 10000),  # 23:30 UTC the day before
        ("weekday", 8): (1, 5000, 0, 0),
        ("weekday", 12): (1, 9000, 1, 9000),
        ("weekday", 17): (1, 5000, 0, 0),
        ("weekday", 18): (1, 6000, 1, 6000),
        ("weekday", 19): (1, 4000, 1, 4000),
        ("weekend", 0): (1, 8000, 1, 8000),  # Friday 16:30 UTC
    }
    key = (first, 0)
    expected[key] = tuple(
        a + b for a, b in zip(expected.get(key, (0, 0, 0, 0)), (1, 1000, 0, 0), strict=True)
    )
    assert got == expected
    assert [x["hour"] for x in h["weekday"]] == list(range(24))
    assert sum(x["orders"] for x in h["weekday"] + h["weekend"]) == 8
    assert sum(x["net_fen"] for x in h["weekday"] + h["weekend"]) == 48000
    s1 = await get(client, "hourly-sales", w.t.hq(), **w.period(store="S1"))
    assert sum(x["net_fen"] for x in s1["weekday"] + s1["weekend"]) == 24000


async def test_repurchase_by_category(client, world):
    w = world
    got = await get(client, "repurchase-by-category", w.t.hq(), **w.period())
    assert got["categories"] == [
        {
            "category": "toys",
            "buyers": 2,
            "repeat_buyers": 1,
            "rate": 0.5,
            "member_net_fen": 13000,
            "net_fen": 13000,
            "benchmark": 0.52,
        },
        {
            "category": "feeding",
            "buyers": 1,
            "repeat_buyers": 1,
            "rate": 1.0,
            "member_net_fen": 15000,
            "net_fen": 26000,
            "benchmark": 0.68,
        },
        {
            "category": "gear",
            "buyers": 1,
            "repeat_buyers": 0,
            "rate": 0.0,
            "member_net_fen": 9000,
            "net_fen": 9000,
            "benchmark": None,
        },
    ]
    s2 = await get(client, "repurchase-by-category", w.t.hq(), **w.period(store="S2"))
    assert [
        (c["category"], c["buyers"], c["repeat_buyers"], c["net_fen"]) for c in s2["categories"]
    ] == [("toys", 1, 1, 10000), ("gear", 1, 0, 9000), ("feeding", 0, 0, 5000)]


async def test_tier_mix_and_funnel(client, world):
    w = world
    tiers = {}
    for name, member_id in w.members.items():
        r = await client.get(f"/api/v1/members/{member_id}", headers=w.t.hq())
        tiers[name] = r.json()["tier_code"]
    mix = await get(client, "tier-mix", w.t.hq(), **w.period())
    assert mix["members"] == 4
    counts = {x["code"]: x["members"] for x in mix["tiers"]}
    entry = mix["tiers"][0]["code"]
    expected: dict[str, int] = {}
    for code in tiers.values():
        expected[code or entry] = expected.get(code or entry, 0) + 1
    assert {k: v for k, v in counts.items() if v} == expected
    assert sum(x["share"] or 0 for x in mix["tiers"]) == pytest.approx(1.0, abs=1e-3)
    s1 = await get(client, "tier-mix", w.t.hq(), **w.period(store="S1"))
    assert s1["members"] == 3

    f = await get(client, "funnel", w.t.hq(), **w.period())
    assert {k: f[k] for k in ("active_days", "enrolled", "purchased", "repeated", "active")} == {
        "active_days": 90,
        "enrolled": 4,
        "purchased": 4,
        "repeated": 3,
        "active": 4,
    }
    f = await get(client, "funnel", w.t.hq(), **w.period(active_days=14))
    assert f["active"] == 3  # C bought 20 days ago
    f = await get(client, "funnel", w.t.hq(), **w.period(store="S1"))
    assert (f["enrolled"], f["purchased"], f["repeated"], f["active"]) == (3, 2, 1, 2)
    # A period that ended before anyone joined.
    old = {"from": "2020-01-01", "to": "2020-01-31"}
    f = await get(client, "funnel", w.t.hq(), **old)
    assert (f["enrolled"], f["purchased"]) == (0, 0)


async def test_empty_periods_and_bad_ones(client, make_tenant):
    t = await make_tenant()
    s = await get(client, "summary", t.hq())  # the default: the 30 days ending today
    assert s["period"]["days"] == 30
    assert s["sales"]["net_fen"] == 0
    assert s["member_share"]["rate"] is None
    assert s["average_order"] == {
        "member_fen": None,
        "non_member_fen": None,
        "uplift": None,
        "target_uplift": 0.25,
    }
    assert s["points_redemption"]["rate"] is None
    bad = [
        ({"from": "2026-02-01", "to": "2026-01-31"}, "query.to"),
        ({"from": "2025-01-01", "to": "2026-01-31"}, "query.to"),
        ({"from": "0001-01-01"}, "query.from"),
        ({"to": "9999-12-31"}, "query.to"),
        ({"store": "NOPE"}, "query.store"),
    ]
    for params, field in bad:
        r = await client.get("/api/v1/analytics/summary", params=params, headers=t.hq())
        assert r.status_code == 422, (params, r.text)
        assert [e["field"] for e in r.json()["errors"]] == [field]
    r = await client.get("/api/v1/analytics/funnel", params={"active_days": 0}, headers=t.hq())
    assert r.status_code == 400


async def test_the_cli_prints_the_same_figures(world):
    w = world
    args = (
        "analytics",
        "summary",
        "--tenant",
        w.t.slug,
        "--from",
        w.period()["from"],
        "--to",
        w.period()["to"],
    )
    done = await nestpoint(*args, "--json", "--store", "S1")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sales"]["net_fen"] == 24000
    done = await nestpoint(*args)
    assert done.returncode == 0, done.stderr
    assert "member share\t77.1% (target 70%)" in done.stdout
    assert "net sales\t480.00 (members 370.00, others 110.00; refunded 150.00)" in done.stdout
    done = await nestpoint(*args, "--store", "NOPE")
    assert done.returncode == 1
    assert "no store with code 'NOPE'" in done.stderr


async def test_the_service_is_the_apis_source_for_the_console(client, world):
    """The console calls the service with its user's context: the API's figures, and a store
    user gets its own store (another is refused naming the argument)."""
    w = world
    start, end = w.today - timedelta(days=13), w.today
    with tenant_context(w.t.id):
        async with scoped_session() as session:
            hq = await service.summary(session, start=start, end=end)
    assert hq.model_dump(mode="json") == await get(client, "summary", w.t.hq(), **w.period())
    s2 = w.t.stores["S2"]
    with tenant_context(w.t.id, s2), acting_as(Actor("store", name="user:manager")):
        async with scoped_session() as session:
            own = await service.funnel(session, start=start, end=end)
            assert own.period.store_id == s2
            with pytest.raises(Forbidden) as refused:
                await service.summary(session, start=start, end=end, store_id=w.t.stores["S1"])
    assert [e.field for e in refused.value.errors] == ["store_id"]
    api = await get(client, "funnel", w.t.hq(), **w.period(store="S2"))
    assert own.model_dump(mode="json") == api


async def test_points_redemption_counts_bonuses_and_nets_what_refunds_give_back(
    client, make_tenant
):
    t = await make_tenant()
    r = await client.post(
        "/api/v1/members",
        headers=t.hq(),
        json={"phone": new_phone(), "name": "E", "home_store_code": "S1"},
    )
    member = r.json()["id"]
    assert (await adjust(client, t.hq(), member, 5000)).status_code == 201  # neither
    paid = await order(
        client,
        t,
        datetime.now(ZONE).isoformat(),
        [line(10000, "feeding"), line(10000, "toys", sku="T")],
        member=member,
        points_used=2000,
    )
    back = await refund(
        client, t.hq(), paid, {"external_id": "r", "lines": [{"line_no": 2, "quantity": 1}]}
    )
    assert back.status_code == 201, back.text
    returned, clawed = back.json()["points_returned"], back.json()["points_reversed"]
    assert returned == 1000  # half the order: half the points that paid
    with tenant_context(t.id), acting_as(Actor("system", name="tests")):
        async with scoped_session() as session:
            await points_service.grant_bonus(
                session,
                await get_program(session),
                uuid.UUID(member),
                300,
                cause_type="campaign",
                cause_id="c:1",
                reason="welcome",
                now=utcnow(),
            )
    today = datetime.now(ZONE).date().isoformat()
    got = await get(client, "summary", t.hq(), **{"from": today, "to": today})
    issued = paid["points_earned"] - clawed + 300
    assert got["points_redemption"] | {"before": 0, "industry": 0} == {
        "issued": issued,
        "redeemed": 1000,
        "rate": round(1000 / issued, 4),
        "before": 0,
        "industry": 0,
    }
    # At the store: the order's and its refund's entries, not the campaign's bonus.
    at_s1 = await get(client, "summary", t.hq(), **{"from": today, "to": today, "store": "S1"})
    assert at_s1["points_redemption"]["issued"] == issued - 300
    assert at_s1["points_redemption"]["redeemed"] == 1000
    at_s2 = await get(client, "summary", t.hq(), **{"from": today, "to": today, "store": "S2"})
    assert (at_s2["points_redemption"]["issued"], at_s2["points_redemption"]["redeemed"]) == (0, 0)
