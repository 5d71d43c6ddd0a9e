"""Concurrency: many clients at once never break the ledger, on PostgreSQL and on SQLite.

The API runs in-process; ``asyncio.gather`` sends the requests together, and each one gets
its own database connection and transaction, as on a real server. On SQLite (the embedded
default) write transactions are serialised by ``BEGIN IMMEDIATE``, so the same tests hold
there too: none of them is skipped.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from loyalty.helpers import order_body
from loyalty.invariants import check_ledger
from nestpoint.context import tenant_context
from nestpoint.db import scoped_session
from nestpoint.jobs.tenants import run_for_tenant
from nestpoint.points.jobs import expire_points
from nestpoint.points.models import PointEntry, PointLot


@pytest.fixture
def client(concurrent_client: httpx.AsyncClient) -> httpx.AsyncClient:
    """Every request of these tests goes through the truly concurrent client."""
    return concurrent_client


async def _member_with_points(client, t, enrol, set_program, points: int) -> dict:  # type: ignore[no-untyped-def]
    await set_program(t.hq(), points={"pending_days": 0})
    member = await enrol(t.hq())
    r = await client.post(
        f"/api/v1/members/{member['id']}/points/adjustments",
        headers=t.hq(),
        json={"amount": points, "reason": "opening balance", "idempotency_key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text
    return member


TOYS = [  # toys earn nothing in these tests (see ``excluded_categories``)
    {"sku": "X", "category": "toys", "quantity": 1, "unit_price_fen": 10000, "paid_fen": 10000}
]


async def _check(t, member_ids: list[str]) -> None:  # type: ignore[no-untyped-def]
    with tenant_context(t.id):
        async with scoped_session() as session:
            await check_ledger(session, [uuid.UUID(m) for m in member_ids])


async def test_concurrent_holds_never_overdraw(client, make_tenant, enrol, set_program):
    t = await make_tenant()
    member = await _member_with_points(client, t, enrol, set_program, 1000)
    responses = await asyncio.gather(
        *[
            client.post(
                "/api/v1/points/holds",
                headers=t.hq(),
                json={"member_id": member["id"], "points": 100},
            )
            for _ in range(20)
        ]
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 10, 422: 10}, statuses
    r = await client.get(f"/api/v1/members/{member['id']}/points", headers=t.hq())
    assert r.json()["available"] == 0
    assert r.json()["held"] == 1000
    await _check(t, [member["id"]])


def _toy_order(member_id: str, points_used: int) -> dict:  # type: ignore[type-arg]
    """An order of 100 yuan of toys (which earn nothing) paying ``points_used`` in points."""
    line = {"sku": "X", "category": "toys", "quantity": 1, "unit_price_fen": 10000}
    return order_body(
        member={"id": member_id}, points_used=points_used, lines=[line | {"paid_fen": 10000}]
    )


async def test_ten_parallel_redemptions_of_100_against_350_take_exactly_three(
    client, make_tenant, enrol, set_program
):
    t = await make_tenant()
    member = await _member_with_points(client, t, enrol, set_program, 350)
    await set_program(t.hq(), earn_rules={"excluded_categories": ["toys"]})
    responses = await asyncio.gather(
        *[
            client.post("/api/v1/orders", json=_toy_order(member["id"], 100), headers=t.hq())
            for _ in range(10)
        ]
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 3, 422: 7}, statuses
    r = await client.get(f"/api/v1/members/{member['id']}/points", headers=t.hq())
    assert r.json()["available"] == r.json()["balance"] == 50
    assert r.json()["held"] == 0
    r = await client.get(
        f"/api/v1/members/{member['id']}/points/entries", headers=t.hq(), params={"limit": 100}
    )
    after = [e["balance_after"] for e in r.json()["items"]]
    assert sorted(after) == [50, 150, 250, 350], after  # each redemption saw the one before
    await _check(t, [member["id"]])


async def test_ten_parallel_holds_and_captures_of_100_against_350_take_exactly_three(
    client, make_tenant, enrol, set_program
):
    t = await make_tenant()
    member = await _member_with_points(client, t, enrol, set_program, 350)
    await set_program(t.hq(), earn_rules={"excluded_categories": ["toys"]})  # no new points

    async def hold_and_capture() -> int:
        r = await client.post(
            "/api/v1/points/holds", headers=t.hq(), json={"member_id": member["id"], "points": 100}
        )
        if r.status_code != 201:
            return r.status_code
        body = order_body(
            member={"id": member["id"]}, points_used=100, hold_id=r.json()["id"], lines=TOYS
        )
        r = await client.post("/api/v1/orders", headers=t.hq(), json=body)  # captures the hold
        assert r.status_code == 201, r.text
        return 201

    statuses = Counter(await asyncio.gather(*[hold_and_capture() for _ in range(10)]))
    assert statuses == {201: 3, 422: 7}, statuses
    r = await client.get(f"/api/v1/members/{member['id']}/points", headers=t.hq())
    assert (r.json()["available"], r.json()["held"], r.json()["balance"]) == (50, 0, 50)
    await _check(t, [member["id"]])


async def test_concurrent_redeeming_orders_never_overdraw(client, make_tenant, enrol, set_program):
    t = await make_tenant()
    member = await _member_with_points(client, t, enrol, set_program, 1000)
    # Toys earn nothing here, so only the opening 1000 points can be spent.
    await set_program(t.hq(), earn_rules={"excluded_categories": ["toys"]})
    # Each order of 100 yuan pays 2.5 yuan (250 points, within the bronze cap) with points.
    bodies = [
        order_body(
            member={"id": member["id"]},
            points_used=1000 // 4,
            lines=[
                {
                    "sku": "X",
                    "category": "toys",
                    "quantity": 1,
                    "unit_price_fen": 10000,
                    "paid_fen": 10000,
                }
            ],
        )
        for _ in range(12)
    ]
    responses = await asyncio.gather(
        *[client.post("/api/v1/orders", json=body, headers=t.hq()) for body in bodies]
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 4, 422: 8}, statuses
    r = await client.get(f"/api/v1/members/{member['id']}/points", headers=t.hq())
    assert r.json()["balance"] == 0  # the 1000 opening points are all spent, once
    await _check(t, [member["id"]])


async def test_concurrent_retries_of_one_order_credit_once(client, make_tenant, enrol):
    t = await make_tenant()
    member = await enrol(t.hq())
    body = order_body(
        member={"id": member["id"]},
        lines=[
            {
                "sku": "A",
                "category": "feeding",
                "quantity": 2,
                "unit_price_fen": 5000,
                "paid_fen": 10000,
            },
            {
                "sku": "B",
                "category": "toys",
                "quantity": 1,
                "unit_price_fen": 3000,
                "paid_fen": 3000,
            },
        ],
    )
    responses = await asyncio.gather(
        *[client.post("/api/v1/orders", json=body, headers=t.hq()) for _ in range(16)]
    )
    assert [r.status_code for r in responses] == [201] * 16
    assert len({r.text for r in responses}) == 1  # every retry got the first answer
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 15
    order_id = responses[0].json()["id"]
    with tenant_context(t.id):
        async with scoped_session() as session:
            earns = await session.scalar(
                select(func.count())
                .select_from(PointEntry)
                .where(PointEntry.cause_id == order_id, PointEntry.kind == "earn")
            )
    assert earns == 2  # one per line, once
    r = await client.get(f"/api/v1/members/{member['id']}/points", headers=t.hq())
    assert r.json()["balance"] == responses[0].json()["points_earned"] == 130
    await _check(t, [member["id"]])


async def test_concurrent_capture_and_release_resolve_once(client, make_tenant, enrol, set_program):
    """The order paying with a hold (retried) and the till's release (retried), all at once:
    one of them wins, its retries are no-ops, the other is refused."""
    t = await make_tenant()
    member = await _member_with_points(client, t, enrol, set_program, 500)
    await set_program(t.hq(), earn_rules={"excluded_categories": ["toys"]})  # no new points
    r = await client.post(
        "/api/v1/points/holds", headers=t.hq(), json={"member_id": member["id"], "points": 300}
    )
    hold_id = r.json()["id"]
    paying = order_body(member={"id": member["id"]}, points_used=300, hold_id=hold_id, lines=TOYS)
    actions = ["capture", "release"] * 6
    responses = await asyncio.gather(
        *[
            client.post("/api/v1/orders", headers=t.hq(), json=paying)
            if action == "capture"
            else client.post(f"/api/v1/points/holds/{hold_id}/release", headers=t.hq())
            for action in actions
        ]
    )
    succeeded = {a for a, r in zip(actions, responses, strict=True) if r.status_code in (200, 201)}
    refused = {a for a, r in zip(actions, responses, strict=True) if r.status_code == 409}
    assert len(succeeded) == 1, succeeded  # one action won; repeating it is a no-op
    assert refused == {"capture", "release"} - succeeded
    final = (await client.get(f"/api/v1/points/holds/{hold_id}", headers=t.hq())).json()
    assert final["status"] == ("captured" if succeeded == {"capture"} else "released")
    with tenant_context(t.id):
        async with scoped_session() as session:
            kinds = Counter(
                (
                    await session.scalars(
                        select(PointEntry.kind).where(
                            PointEntry.member_id == uuid.UUID(member["id"])
                        )
                    )
                ).all()
            )
    assert kinds["release"] == 1
    assert kinds["redeem"] == (1 if succeeded == {"capture"} else 0)
    balance = (await client.get(f"/api/v1/members/{member['id']}/points", headers=t.hq())).json()[
        "balance"
    ]
    assert balance == (200 if succeeded == {"capture"} else 500)
    await _check(t, [member["id"]])


async def test_expiry_run_twice_in_parallel_expires_each_remainder_once(
    client, make_tenant, enrol, set_program
):
    t = await make_tenant()
    await set_program(t.hq(), points={"pending_days": 0, "expiry": "rolling", "expiry_months": 1})
    members = [await enrol(t.hq()) for _ in range(6)]
    for member in members:
        for _ in range(3):
            r = await client.post(
                "/api/v1/orders", headers=t.hq(), json=order_body(member={"id": member["id"]})
            )
            assert r.status_code == 201
    later = datetime.now(UTC) + timedelta(days=40)
    results = await asyncio.gather(
        *[run_for_tenant(t.id, lambda s: expire_points(s, later), name="test") for _ in range(2)]
    )
    # Together they expire each lot once: the runs take the chunks of members one after the
    # other (each chunk under the job's lock), so they may share the work.
    assert sum(r.rows for r in results) == 18
    with tenant_context(t.id):
        async with scoped_session() as session:
            expired = await session.scalar(
                select(func.count()).select_from(PointEntry).where(PointEntry.kind == "expire")
            )
            left = await session.scalar(select(func.sum(PointLot.remaining)))
    assert expired == 18
    assert left == 0
    await _check(t, [m["id"] for m in members])
