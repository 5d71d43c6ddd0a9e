"""Points through the API and the periodic jobs: holds, adjustments, transfers, expiry, ledger."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

from loyalty.helpers import order_body
from loyalty.support import (
    adjust,
    all_pages,
    assert_running_balance,
    balances,
    entries,
    events,
    parse_time,
    post_order,
    refund,
    run_job,
)
from nestpoint.points.jobs import expire_points, release_expired_holds

SECOND = timedelta(seconds=1)


def line(sku: str, paid_fen: int, category: str = "care") -> dict[str, Any]:
    return {
        "sku": sku,
        "name": sku,
        "category": category,
        "quantity": 1,
        "unit_price_fen": paid_fen,
        "paid_fen": paid_fen,
    }


async def credit(client, t, member_id: str, amount: int) -> dict[str, Any]:
    r = await adjust(client, t.hq(), member_id, amount)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def hold(client, headers, member_id: str, points: int, **extra: Any) -> Any:
    return await client.post(
        "/api/v1/points/holds",
        headers=headers,
        json={"member_id": member_id, "points": points} | extra,
    )


async def expire(t, now: datetime) -> Any:
    return await run_job(t.id, lambda session: expire_points(session, now), "points.expire")


async def release_due(t, now: datetime) -> Any:
    return await run_job(
        t.id, lambda session: release_expired_holds(session, now), "points.release_holds"
    )


def shown(points: dict[str, Any]) -> tuple[int, int, int, int]:
    return points["balance"], points["available"], points["pending"], points["held"]


# ------------------------------------------------------------------ holds


async def test_a_hold_is_captured_only_by_an_order(client, make_tenant, enrol, till):
    """No standalone capture: it spent points past the tier's cap and left nothing a
    refund could return. An order naming the hold is the only way to pay with it."""
    t = await make_tenant()
    m = await enrol(t.hq())
    await credit(client, t, m["id"], 1_000)
    key = await till(t)
    r = await hold(client, key, m["id"], 300, order_ref="basket-1")
    assert r.status_code == 201, r.text
    held = r.json()
    assert (held["status"], held["amount"], held["order_ref"]) == ("held", 300, "basket-1")
    assert shown(await balances(client, t.hq(), m["id"])) == (700, 700, 0, 300)
    url = f"/api/v1/points/holds/{held['id']}"
    r = await client.post(f"{url}/capture", headers=key)
    assert r.status_code in (404, 405)  # no such route
    r = await client.get(url, headers=key)
    assert r.json()["status"] == "held"
    assert shown(await balances(client, t.hq(), m["id"])) == (700, 700, 0, 300)
    schema = (await client.get("/schema/openapi.json")).json()
    assert not [path for path in schema["paths"] if path.endswith("/capture")]


async def test_hold_then_release_returns_the_points(client, make_tenant, enrol):
    t = await make_tenant()
    m = await enrol(t.hq())
    await credit(client, t, m["id"], 1_000)
    held = (await hold(client, t.hq(), m["id"], 400)).json()
    assert shown(await balances(client, t.hq(), m["id"])) == (600, 600, 0, 400)
    url = f"/api/v1/points/holds/{held['id']}"
    r = await client.post(f"{url}/release", headers=t.hq())
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "released"
    assert shown(await balances(client, t.hq(), m["id"])) == (1_000, 1_000, 0, 0)
    r = await client.post(f"{url}/release", headers=t.hq())
    assert r.status_code == 200
    r = await client.post(
        "/api/v1/orders",
        headers=t.hq(),
        json=order_body(member={"id": m["id"]}, points_used=400, hold_id=held["id"]),
    )
    assert r.status_code == 409  # a released hold pays nothing
    assert r.json()["errors"][0]["field"] == "payment.hold_id"
    assert shown(await balances(client, t.hq(), m["id"])) == (1_000, 1_000, 0, 0)
    ledger = await entries(client, t.hq(), m["id"])
    assert [e["kind"] for e in ledger] == ["adjust", "hold", "release"]
    assert_running_balance(ledger)


async def test_hold_needs_available_points_and_is_idempotent(client, make_tenant, enrol):
    t = await make_tenant()
    m = await enrol(t.hq())
    await credit(client, t, m["id"], 500)
    await post_order(client, t.hq(), order_body(member={"id": m["id"]}))  # 100 pending
    r = await hold(client, t.hq(), m["id"], 501)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "points"
    key = f"hold-{uuid.uuid4().hex}"
    first = await hold(client, t.hq(), m["id"], 200, idempotency_key=key)
    assert first.status_code == 201
    again = await hold(client, t.hq(), m["id"], 200, idempotency_key=key)
    assert again.json()["id"] == first.json()["id"]
    r = await hold(client, t.hq(), m["id"], 250, idempotency_key=key)
    assert r.status_code == 409
    assert r.json()["errors"][0]["field"] == "idempotency_key"
    points = await balances(client, t.hq(), m["id"])
    assert (points["available"], points["held"]) == (300, 200)


async def test_concurrent_holds_cannot_overspend(client, concurrent_client, make_tenant, enrol):
    t = await make_tenant()
    m = await enrol(t.hq())
    await credit(client, t, m["id"], 100)
    replies = await asyncio.gather(
        *[hold(concurrent_client, t.hq(), m["id"], 60) for _ in range(5)]
    )
    assert sorted(r.status_code for r in replies) == [201, 422, 422, 422, 422]
    assert shown(await balances(client, t.hq(), m["id"])) == (40, 40, 0, 60)


async def test_timed_out_holds_are_released_once(client, make_tenant, enrol, set_program):
    t = await make_tenant()
    await set_program(t.hq(), points={"hold_timeout_minutes": 10})
    m = await enrol(t.hq())
    await credit(client, t, m["id"], 1_000)
    first = (await hold(client, t.hq(), m["id"], 300)).json()
    second = (await hold(client, t.hq(), m["id"], 200)).json()
    first_due, second_due = parse_time(first["expires_at"]), parse_time(second["expires_at"])
    assert second_due - parse_time(second["created_at"]) == timedelta(minutes=10)
    assert first_due < second_due

    assert (await release_due(t, first_due - SECOND)).rows == 0
    assert shown(await balances(client, t.hq(), m["id"])) == (500, 500, 0, 500)
    result = await release_due(t, first_due)
    assert (result.rows, result.points) == (1, 300)  # only the first, older hold is due
    assert shown(await balances(client, t.hq(), m["id"])) == (800, 800, 0, 200)
    result = await release_due(t, second_due + SECOND)
    assert (result.rows, result.points) == (1, 200)
    result = await release_due(t, second_due + timedelta(hours=1))
    assert result.rows == 0
    assert shown(await balances(client, t.hq(), m["id"])) == (1_000, 1_000, 0, 0)
    for held in (first, second):
        r = await client.get(f"/api/v1/points/holds/{held['id']}", headers=t.hq())
        assert r.json()["status"] == "released"
    r = await client.post(
        "/api/v1/orders",
        headers=t.hq(),
        json=order_body(member={"id": m["id"]}, points_used=300, hold_id=first["id"]),
    )
    assert r.status_code == 409
    ledger = await entries(client, t.hq(), m["id"])
    assert [e["kind"] for e in ledger] == ["adjust", "hold", "hold", "release", "release"]
    assert {e["reason"] for e in ledger if e["kind"] == "release"} == {"timeout"}
    assert {e["cause_id"] for e in ledger if e["kind"] != "adjust"} == {first["id"], second["id"]}
    assert_running_balance(ledger)
    # The released points spend again.
    r = await hold(client, t.hq(), m["id"], 1_000)
    assert r.status_code == 201, r.text


async def test_order_pays_with_a_hold(client, make_tenant, enrol, till):
    t = await make_tenant()
    m, other = await enrol(t.hq()), await enrol(t.hq())
    await credit(client, t, m["id"], 800)
    key = await till(t)
    held = (await hold(client, key, m["id"], 500)).json()
    r = await client.post(
        "/api/v1/orders",
        headers=key,
        json=order_body(
            member={"id": other["id"]}, store_code=None, points_used=500, hold_id=held["id"]
        ),
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "payment.hold_id"
    r = await client.post(
        "/api/v1/orders",
        headers=key,
        json=order_body(
            member={"id": m["id"]}, store_code=None, points_used=400, hold_id=held["id"]
        ),
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "payment.hold_id"
    order = await post_order(
        client,
        key,
        order_body(member={"id": m["id"]}, store_code=None, points_used=500, hold_id=held["id"]),
    )
    assert order["points_used"] == 500
    assert order["points_earned"] == 95  # 100 yuan less 5 paid with points
    r = await client.get(f"/api/v1/points/holds/{held['id']}", headers=key)
    assert r.json()["status"] == "captured"
    assert shown(await balances(client, t.hq(), m["id"])) == (300 + 95, 300, 95, 0)
    r = await client.post(
        "/api/v1/orders",
        headers=key,
        json=order_body(
            member={"id": m["id"]}, store_code=None, points_used=500, hold_id=held["id"]
        ),
    )
    assert r.status_code == 409  # a captured hold pays once
    assert r.json()["errors"][0]["field"] == "payment.hold_id"
    ledger = await entries(client, t.hq(), m["id"])
    assert [e["kind"] for e in ledger] == ["adjust", "hold", "earn", "release", "redeem"]
    assert_running_balance(ledger)
    # Refunding the order returns the points that paid.
    r = await refund(client, key, order, {"external_id": "r1"})
    assert r.status_code == 201, r.text
    assert r.json()["points_returned"] == 500
    assert shown(await balances(client, t.hq(), m["id"])) == (800, 800, 0, 0)


# ------------------------------------------------------------------ adjustments


async def test_manual_adjustment_by_hq(client, make_tenant, enrol, till):
    t = await make_tenant()
    m = await enrol(t.hq())
    key = f"adj-{uuid.uuid4().hex}"
    body = {"amount": 250, "reason": "store opening gift", "idempotency_key": key}
    url = f"/api/v1/members/{m['id']}/points/adjustments"
    r = await client.post(url, json=body, headers=t.hq())
    assert r.status_code == 201, r.text
    entry = r.json()
    assert (entry["kind"], entry["amount"], entry["balance_after"]) == ("adjust", 250, 250)
    assert entry["reason"] == "store opening gift"
    assert entry["actor"]  # who did it
    r = await client.post(url, json=body, headers=t.hq())
    assert r.status_code in (200, 201)
    assert r.json()["id"] == entry["id"]
    r = await client.post(url, json=body | {"amount": 300}, headers=t.hq())
    assert r.status_code == 409
    assert r.json()["errors"][0]["field"] == "idempotency_key"
    assert shown(await balances(client, t.hq(), m["id"])) == (250, 250, 0, 0)

    r = await client.post(
        url, json=body | {"idempotency_key": f"k-{uuid.uuid4().hex}"}, headers=await till(t)
    )
    assert r.status_code == 403
    for bad, field in (
        ({"amount": -251}, "amount"),
        ({"amount": 0}, "amount"),
        ({"reason": "   "}, "reason"),
    ):
        r = await client.post(
            url, json=body | {"idempotency_key": f"k-{uuid.uuid4().hex}"} | bad, headers=t.hq()
        )
        assert r.status_code in (400, 422), (bad, r.text)
        assert any(e["field"].endswith(field) for e in r.json()["errors"]), r.json()
    r = await client.post(
        url,
        headers=t.hq(),
        json={"amount": -50, "reason": "correction", "idempotency_key": f"k-{uuid.uuid4().hex}"},
    )
    assert r.status_code == 201, r.text
    assert shown(await balances(client, t.hq(), m["id"])) == (200, 200, 0, 0)
    assert_running_balance(await entries(client, t.hq(), m["id"]))


# ------------------------------------------------------------------ transfers


async def test_transfers_only_within_a_family(client, make_tenant, enrol, set_program):
    t = await make_tenant()
    mum, dad, stranger = await enrol(t.hq()), await enrol(t.hq()), await enrol(t.hq())
    await credit(client, t, mum["id"], 500)

    async def transfer(frm: str, to: str, amount: int, key: str | None = None) -> Any:
        return await client.post(
            f"/api/v1/members/{frm}/points/transfers",
            headers=t.hq(),
            json={
                "to_member_id": to,
                "amount": amount,
                "idempotency_key": key or f"tr-{uuid.uuid4().hex}",
            },
        )

    r = await client.post(
        f"/api/v1/members/{mum['id']}/family", json={"member_id": dad["id"]}, headers=t.hq()
    )
    assert r.status_code == 204, r.text
    r = await transfer(mum["id"], dad["id"], 100)
    assert r.status_code == 422  # the programme does not allow transfers yet
    assert r.json()["errors"][0]["field"] == "to_member_id"

    await set_program(t.hq(), points={"family_transfer": True})
    key = f"tr-{uuid.uuid4().hex}"
    r = await transfer(mum["id"], dad["id"], 200, key)
    assert r.status_code == 201, r.text
    assert (r.json()["kind"], r.json()["amount"]) == ("transfer", -200)
    assert shown(await balances(client, t.hq(), mum["id"])) == (300, 300, 0, 0)
    assert shown(await balances(client, t.hq(), dad["id"])) == (200, 200, 0, 0)
    r = await transfer(mum["id"], dad["id"], 200, key)  # a retry
    assert r.status_code in (200, 201)
    r = await transfer(mum["id"], dad["id"], 50, key)  # the same key for another transfer
    assert r.status_code == 409
    assert r.json()["errors"][0]["field"] == "idempotency_key"
    assert shown(await balances(client, t.hq(), mum["id"])) == (300, 300, 0, 0)
    assert shown(await balances(client, t.hq(), dad["id"])) == (200, 200, 0, 0)

    r = await transfer(mum["id"], stranger["id"], 10)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "to_member_id"
    r = await transfer(mum["id"], dad["id"], 301)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "amount"
    assert shown(await balances(client, t.hq(), stranger["id"])) == (0, 0, 0, 0)
    for who in (mum, dad):
        ledger = await entries(client, t.hq(), who["id"])
        assert "transfer" in [e["kind"] for e in ledger]
        assert_running_balance(ledger)


async def test_adjustment_key_is_not_a_transfer_key(client, make_tenant, enrol, set_program):
    t = await make_tenant()
    await set_program(t.hq(), points={"family_transfer": True})
    mum, dad = await enrol(t.hq()), await enrol(t.hq())
    await client.post(
        f"/api/v1/members/{mum['id']}/family", json={"member_id": dad["id"]}, headers=t.hq()
    )
    key = f"shared-{uuid.uuid4().hex}"
    await credit(client, t, mum["id"], 500)
    r = await adjust(client, t.hq(), mum["id"], 100, key)
    assert r.status_code == 201
    r = await client.post(
        f"/api/v1/members/{mum['id']}/points/transfers",
        headers=t.hq(),
        json={"to_member_id": dad["id"], "amount": 100, "idempotency_key": key},
    )
    assert r.status_code == 409, r.text
    assert shown(await balances(client, t.hq(), dad["id"])) == (0, 0, 0, 0)


# ------------------------------------------------------------------ expiry


async def test_rolling_expiry_at_the_right_time(client, make_tenant, enrol, set_program):
    t = await make_tenant()
    await set_program(t.hq(), points={"expiry": "rolling", "expiry_months": 12, "pending_days": 0})
    m = await enrol(t.hq())
    order = await post_order(
        client,
        t.hq(),
        order_body(member={"id": m["id"]}, lines=[line("A", 6_000), line("B", 4_000)]),
    )
    assert order["points_earned"] == 100
    (earned_at,) = {
        parse_time(e["created_at"])
        for e in await entries(client, t.hq(), m["id"])
        if e["kind"] == "earn"
    }
    zone = ZoneInfo("Asia/Shanghai")
    due = (earned_at.astimezone(zone) + relativedelta(months=12)).astimezone(UTC)

    assert (await expire(t, due - SECOND)).rows == 0
    assert shown(await balances(client, t.hq(), m["id"]))[:2] == (100, 100)
    result = await expire(t, due)
    assert (result.rows, result.points) == (2, 100)  # one entry per lot (line)
    assert (await expire(t, due + SECOND)).rows == 0  # once
    assert shown(await balances(client, t.hq(), m["id"])) == (0, 0, 0, 0)
    ledger = await entries(client, t.hq(), m["id"])
    assert sorted(e["amount"] for e in ledger if e["kind"] == "expire") == [-60, -40]
    assert_running_balance(ledger)
    (expired,) = [
        e
        for e in await events(client, t.hq(), "points.expired")
        if e["payload"]["member_id"] == m["id"]
    ]
    assert expired["payload"]["points"] == 100


async def test_soonest_expiring_points_are_spent_first(client, make_tenant, enrol, set_program):
    t = await make_tenant()
    await set_program(
        t.hq(),
        points={
            "expiry": "rolling",
            "expiry_months": 24,
            "pending_days": 0,
            "expiring_soon_days": 365,
        },
    )
    m = await enrol(t.hq())
    await post_order(client, t.hq(), order_body(member={"id": m["id"]}))  # 100, for 24 months
    await set_program(t.hq(), points={"expiry_months": 6})
    await post_order(client, t.hq(), order_body(member={"id": m["id"]}, lines=[line("B", 5_000)]))
    ledger = await entries(client, t.hq(), m["id"])
    zone = ZoneInfo("Asia/Shanghai")
    late, soon = (
        (parse_time(e["created_at"]).astimezone(zone) + relativedelta(months=months)).astimezone(
            UTC
        )
        for e, months in zip(ledger, (24, 6), strict=True)
    )
    assert soon < late
    points = await balances(client, t.hq(), m["id"])
    assert points["expiring_soon"] == 50  # only the 6-month lot falls within 365 days
    assert (await adjust(client, t.hq(), m["id"], -30)).status_code == 201

    # The 30 came out of the lot expiring sooner: 20 of it is left to expire.
    result = await expire(t, soon + SECOND)
    assert result.points == 20
    assert shown(await balances(client, t.hq(), m["id"]))[:2] == (100, 100)
    result = await expire(t, late + SECOND)
    assert result.points == 100
    assert shown(await balances(client, t.hq(), m["id"]))[:2] == (0, 0)
    assert_running_balance(await entries(client, t.hq(), m["id"]))


async def test_expiring_soon_and_transfer_keep_the_expiry(client, make_tenant, enrol, set_program):
    t = await make_tenant()
    await set_program(
        t.hq(),
        points={
            "expiry": "rolling",
            "expiry_months": 1,
            "pending_days": 0,
            "expiring_soon_days": 45,
            "family_transfer": True,
        },
    )
    mum, dad = await enrol(t.hq()), await enrol(t.hq())
    await post_order(client, t.hq(), order_body(member={"id": mum["id"]}))  # expires in a month
    await set_program(t.hq(), points={"expiry_months": 6})
    await post_order(client, t.hq(), order_body(member={"id": mum["id"]}, lines=[line("B", 7_000)]))
    points = await balances(client, t.hq(), mum["id"])
    assert (points["balance"], points["expiring_soon"]) == (170, 100)
    assert parse_time(points["expiring_before"]) > datetime.now(UTC) + timedelta(days=44)

    await client.post(
        f"/api/v1/members/{mum['id']}/family", json={"member_id": dad["id"]}, headers=t.hq()
    )
    r = await client.post(
        f"/api/v1/members/{mum['id']}/points/transfers",
        headers=t.hq(),
        json={"to_member_id": dad["id"], "amount": 40, "idempotency_key": f"tr-{uuid.uuid4().hex}"},
    )
    assert r.status_code == 201, r.text
    # The soonest-expiring points moved, and they expire for dad when they would have for mum.
    assert (await balances(client, t.hq(), dad["id"]))["expiring_soon"] == 40
    assert (await balances(client, t.hq(), mum["id"]))["expiring_soon"] == 60
    first_earn = min(parse_time(e["created_at"]) for e in await entries(client, t.hq(), mum["id"]))
    due = (first_earn.astimezone(ZoneInfo("Asia/Shanghai")) + relativedelta(months=1)).astimezone(
        UTC
    )
    await expire(t, due + SECOND)
    assert shown(await balances(client, t.hq(), dad["id"]))[:2] == (0, 0)
    assert shown(await balances(client, t.hq(), mum["id"]))[:2] == (70, 70)


def year_end(earned_at: datetime, zone: str) -> datetime:
    """积分清零: midnight starting the second year after the year of earning, local time."""
    local_year = earned_at.astimezone(ZoneInfo(zone)).year
    return datetime.combine(date(local_year + 2, 1, 1), time(0), ZoneInfo(zone)).astimezone(UTC)


async def test_year_end_expiry_in_the_tenants_time_zone(
    client, make_tenant, enrol, set_program, platform_headers
):
    shanghai = await make_tenant()
    pacific = await make_tenant()
    r = await client.patch(
        f"/api/v1/tenants/{pacific.id}",
        json={"timezone": "America/Los_Angeles"},
        headers=platform_headers,
    )
    assert r.status_code == 200, r.text
    dues = {}
    members = {}
    for t, zone in ((shanghai, "Asia/Shanghai"), (pacific, "America/Los_Angeles")):
        program = await set_program(t.hq(), points={"pending_days": 0})
        assert program["points"]["expiry"] == "year_end"  # the default
        m = await enrol(t.hq())
        await post_order(client, t.hq(), order_body(member={"id": m["id"]}))
        (earn,) = await entries(client, t.hq(), m["id"])
        dues[t.id] = year_end(parse_time(earn["created_at"]), zone)
        members[t.id] = m
    assert dues[shanghai.id] != dues[pacific.id]
    for t in (shanghai, pacific):
        due, m = dues[t.id], members[t.id]
        assert (await expire(t, due - SECOND)).rows == 0
        assert (await balances(client, t.hq(), m["id"]))["balance"] == 100
        assert (await expire(t, due)).points == 100
        assert (await balances(client, t.hq(), m["id"]))["balance"] == 0
        assert (await expire(t, due + timedelta(days=400))).rows == 0


# ------------------------------------------------------------------ the ledger


async def test_ledger_shows_every_kind_with_a_running_balance(
    client, make_tenant, enrol, set_program
):
    t = await make_tenant()
    await set_program(
        t.hq(),
        points={
            "pending_days": 0,
            "family_transfer": True,
            "expiry": "rolling",
            "expiry_months": 3,
        },
    )
    m, partner = await enrol(t.hq()), await enrol(t.hq())
    await client.post(
        f"/api/v1/members/{m['id']}/family", json={"member_id": partner["id"]}, headers=t.hq()
    )
    await credit(client, t, m["id"], 700)  # adjust
    order = await post_order(
        client,
        t.hq(),
        order_body(
            member={"id": m["id"]},
            lines=[line("A", 5_000), line("B", 3_000), line("C", 2_000)],
            points_used=600,
        ),
    )  # redeem + earn
    held = (await hold(client, t.hq(), m["id"], 50)).json()  # hold
    await client.post(f"/api/v1/points/holds/{held['id']}/release", headers=t.hq())  # release
    r = await refund(
        client, t.hq(), order, {"external_id": "r1", "lines": [{"line_no": 2, "quantity": 1}]}
    )  # reverse
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/api/v1/members/{m['id']}/points/transfers",
        headers=t.hq(),
        json={
            "to_member_id": partner["id"],
            "amount": 10,
            "idempotency_key": f"tr-{uuid.uuid4().hex}",
        },
    )  # transfer
    assert r.status_code == 201, r.text
    await expire(t, datetime.now(UTC) + relativedelta(months=4))  # expire

    ledger = await all_pages(
        client, f"/api/v1/members/{m['id']}/points/entries", t.hq(), limit=3
    )  # across pages
    assert {e["kind"] for e in ledger} == {
        "adjust",
        "redeem",
        "earn",
        "hold",
        "release",
        "reverse",
        "transfer",
        "expire",
    }
    assert_running_balance(ledger)
    points = await balances(client, t.hq(), m["id"])
    assert ledger[-1]["balance_after"] == points["balance"] == sum(e["amount"] for e in ledger)
    assert points["balance"] == 0  # everything left has expired
    assert [e["kind"] for e in ledger if e["kind"] == "expire"]
