"""Issue 7's money-like holes, each as it was found: debt spent as points, retries applied
twice, merges racing the till, holds used across stores. Every test here runs on SQLite and
on PostgreSQL (the concurrent ones too: SQLite serialises writers, PostgreSQL locks rows)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from loyalty.helpers import new_phone, order_body
from loyalty.invariants import check_ledger
from loyalty.support import (
    adjust,
    assert_running_balance,
    balances,
    entries,
    events,
    post_order,
    refund,
    run_job,
)
from nestpoint.context import Actor, acting_as, tenant_context
from nestpoint.db import scoped_session, utcnow
from nestpoint.members.merge import merge_members
from nestpoint.members.models import Member
from nestpoint.orders.schemas import OrderIn
from nestpoint.orders.service import create_order
from nestpoint.points import service as points
from nestpoint.points.jobs import announce_expiring, release_expired_holds
from nestpoint.points.models import PointAccount, PointLot

RETRIES = 16


@pytest.fixture
def client(concurrent_client: httpx.AsyncClient) -> httpx.AsyncClient:
    """Every request of these tests goes through the truly concurrent client (Litestar's
    test client would serve gathered requests one after another)."""
    return concurrent_client


def big_line(paid_fen: int) -> list[dict[str, Any]]:
    return [
        {
            "sku": "CRIB",
            "name": "Crib",
            "category": "furniture",
            "quantity": 1,
            "unit_price_fen": paid_fen,
            "paid_fen": paid_fen,
        }
    ]


@pytest.fixture
def spendable(set_program):  # type: ignore[no-untyped-def]
    """A programme whose points are spendable at once and may move within a family."""

    async def apply(t: Any) -> None:
        await set_program(
            t.hq(), points={"pending_days": 0, "family_transfer": True, "hold_timeout_minutes": 5}
        )

    return apply


async def hold(
    client: Any, headers: dict[str, str], member_id: str, points: int, **extra: Any
) -> Any:
    body = {"member_id": member_id, "points": points} | extra
    return await client.post("/api/v1/points/holds", headers=headers, json=body)


async def earn(client: Any, t: Any, member_id: str, points: int) -> dict[str, Any]:
    """An order earning ``points`` (1 point per yuan)."""
    order = await post_order(
        client, t.hq(), order_body(member={"id": member_id}, lines=big_line(points * 100))
    )
    assert order["points_earned"] == points
    return order


async def owes(client: Any, t: Any, member_id: str, points: int) -> None:
    """The member earns ``points`` with an order, spends them, and the order is refunded:
    the clawback of points already spent becomes debt."""
    order = await earn(client, t, member_id, points)
    r = await adjust(client, t.hq(), member_id, -points)
    assert r.status_code == 201, r.text
    r = await refund(client, t.hq(), order, {"external_id": "full"})
    assert r.status_code == 201, r.text
    assert (r.json()["member_points_balance"], r.json()["member_debt"]) == (-points, points)


def shown(points: dict[str, Any]) -> tuple[int, int, int]:
    return points["balance"], points["available"], points["debt"]


# ------------------------------------------------------------------ debt (7.1)


async def test_a_released_hold_repays_debt_before_anything_is_spent(
    client, make_tenant, enrol, spendable
):
    """Earn 1,000, hold 1,000, refund the order (debt 1,000), release the hold: the points
    released repay the debt, so nothing can be spent (it used to redeem 1,000 more)."""
    t = await make_tenant()
    await spendable(t)
    m = await enrol(t.hq())
    order = await earn(client, t, m["id"], 1_000)
    held = (await hold(client, t.hq(), m["id"], 1_000)).json()
    r = await refund(client, t.hq(), order, {"external_id": "full"})
    assert (r.json()["member_points_balance"], r.json()["member_debt"]) == (-1_000, 1_000)
    r = await client.post(f"/api/v1/points/holds/{held['id']}/release", headers=t.hq())
    assert r.status_code == 200, r.text
    assert shown(await balances(client, t.hq(), m["id"])) == (0, 0, 0)
    r = await hold(client, t.hq(), m["id"], 1_000)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "points"
    r = await adjust(client, t.hq(), m["id"], -1_000)
    assert r.status_code == 422
    assert shown(await balances(client, t.hq(), m["id"])) == (0, 0, 0)
    assert_running_balance(await entries(client, t.hq(), m["id"]))


async def test_a_timed_out_hold_repays_debt_too(client, make_tenant, enrol, spendable):
    t = await make_tenant()
    await spendable(t)
    m = await enrol(t.hq())
    order = await earn(client, t, m["id"], 1_000)
    assert (await hold(client, t.hq(), m["id"], 600)).status_code == 201
    await refund(client, t.hq(), order, {"external_id": "full"})
    assert shown(await balances(client, t.hq(), m["id"])) == (-600, 0, 600)
    later = datetime.now(UTC) + timedelta(minutes=6)
    result = await run_job(t.id, lambda s: release_expired_holds(s, later), "points.release_holds")
    assert (result.rows, result.points) == (1, 600)
    assert shown(await balances(client, t.hq(), m["id"])) == (0, 0, 0)
    assert (await hold(client, t.hq(), m["id"], 1)).status_code == 422


async def test_merging_in_a_member_who_owes_points_settles_the_debt(
    client, make_tenant, enrol, spendable
):
    t = await make_tenant()
    await spendable(t)
    target, debtor = await enrol(t.hq()), await enrol(t.hq())
    assert (await adjust(client, t.hq(), target["id"], 500)).status_code == 201
    await owes(client, t, debtor["id"], 1_000)
    r = await client.post(
        f"/api/v1/members/{target['id']}/merge",
        json={"source_member_id": debtor["id"]},
        headers=t.hq(),
    )
    assert r.status_code == 200, r.text
    # The target's 500 points paid half the debt: nothing left to spend.
    assert shown(await balances(client, t.hq(), target["id"])) == (-500, 0, 500)
    assert (await hold(client, t.hq(), target["id"], 1)).status_code == 422
    assert (await adjust(client, t.hq(), target["id"], -1)).status_code == 422
    assert (await adjust(client, t.hq(), target["id"], 800)).status_code == 201
    assert shown(await balances(client, t.hq(), target["id"])) == (300, 300, 0)


async def test_a_transfer_into_a_member_who_owes_repays_the_debt(
    client, make_tenant, enrol, spendable
):
    t = await make_tenant()
    await spendable(t)
    mum, dad = await enrol(t.hq()), await enrol(t.hq())
    r = await client.post(
        f"/api/v1/members/{mum['id']}/family", json={"member_id": dad["id"]}, headers=t.hq()
    )
    assert r.status_code == 204
    assert (await adjust(client, t.hq(), mum["id"], 1_000)).status_code == 201
    await owes(client, t, dad["id"], 300)
    r = await client.post(
        f"/api/v1/members/{mum['id']}/points/transfers",
        json={"to_member_id": dad["id"], "amount": 500, "idempotency_key": uuid.uuid4().hex},
        headers=t.hq(),
    )
    assert r.status_code == 201, r.text
    assert shown(await balances(client, t.hq(), dad["id"])) == (200, 200, 0)
    assert shown(await balances(client, t.hq(), mum["id"])) == (500, 500, 0)


# ------------------------------------------------------------------ one idempotency (7.3)


async def _order(client, t, m):  # type: ignore[no-untyped-def]
    body = order_body(member={"id": m["id"]})

    async def effect() -> Any:
        return (await balances(client, t.hq(), m["id"]))["balance"]

    return "/api/v1/orders", body, effect


async def _refund(client, t, m):  # type: ignore[no-untyped-def]
    order = await earn(client, t, m["id"], 100)
    url = f"/api/v1/orders/pos/{order['external_id']}/refunds"

    async def effect() -> Any:
        return (await balances(client, t.hq(), m["id"]))["balance"]

    return url, {"external_id": "r-1"}, effect


async def _hold(client, t, m):  # type: ignore[no-untyped-def]
    assert (await adjust(client, t.hq(), m["id"], 1_000)).status_code == 201
    body = {"member_id": m["id"], "points": 300, "idempotency_key": uuid.uuid4().hex}

    async def effect() -> Any:
        points = await balances(client, t.hq(), m["id"])
        return points["held"], points["available"]

    return "/api/v1/points/holds", body, effect


async def _adjustment(client, t, m):  # type: ignore[no-untyped-def]
    body = {"amount": 250, "reason": "goodwill", "idempotency_key": uuid.uuid4().hex}

    async def effect() -> Any:
        return (await balances(client, t.hq(), m["id"]))["balance"]

    return f"/api/v1/members/{m['id']}/points/adjustments", body, effect


async def _transfer(client, t, m):  # type: ignore[no-untyped-def]
    partner = (
        await client.post("/api/v1/members", json={"phone": new_phone()}, headers=t.hq())
    ).json()
    await client.post(
        f"/api/v1/members/{m['id']}/family", json={"member_id": partner["id"]}, headers=t.hq()
    )
    assert (await adjust(client, t.hq(), m["id"], 1_000)).status_code == 201
    body = {"to_member_id": partner["id"], "amount": 100, "idempotency_key": uuid.uuid4().hex}

    async def effect() -> Any:
        return (await balances(client, t.hq(), partner["id"]))["balance"]

    return f"/api/v1/members/{m['id']}/points/transfers", body, effect


async def _growth(client, t, m):  # type: ignore[no-untyped-def]
    body = {"amount": 600, "reason": "class", "idempotency_key": uuid.uuid4().hex}

    async def effect() -> Any:
        r = await client.get(f"/api/v1/members/{m['id']}", headers=t.hq())
        return r.json()["growth_value"], r.json()["tier_code"]

    return f"/api/v1/members/{m['id']}/growth", body, effect


WRITES = {
    "order": (_order, 100),
    "refund": (_refund, 0),
    "hold": (_hold, (300, 700)),
    "adjustment": (_adjustment, 250),
    "transfer": (_transfer, 100),
    "growth": (_growth, (600, "bronze")),
}


@pytest.mark.parametrize("write", sorted(WRITES))
async def test_concurrent_retries_get_the_first_answer_and_apply_once(
    client, make_tenant, enrol, spendable, write
):
    """Sixteen identical requests at once: one effect, sixteen identical 201 answers (the
    first, and fifteen replays of it, marked as such)."""
    t = await make_tenant()
    await spendable(t)
    m = await enrol(t.hq())
    setup, expected = WRITES[write]
    url, body, effect = await setup(client, t, m)
    replies = await asyncio.gather(
        *[client.post(url, json=body, headers=t.hq()) for _ in range(RETRIES)]
    )
    assert [r.status_code for r in replies] == [201] * RETRIES, [r.text for r in replies]
    assert len({r.text for r in replies}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in replies) == RETRIES - 1
    assert await effect() == expected
    # Later retries still get the same answer; the key with another request is a conflict.
    again = await client.post(url, json=body, headers=t.hq())
    assert (again.status_code, again.text) == (201, replies[0].text)


async def test_a_client_key_names_one_request_of_any_kind(client, make_tenant, enrol, spendable):
    t = await make_tenant()
    await spendable(t)
    m = await enrol(t.hq())
    key = uuid.uuid4().hex
    assert (await adjust(client, t.hq(), m["id"], 500, key)).status_code == 201
    for r in [
        await hold(client, t.hq(), m["id"], 100, idempotency_key=key),
        await client.post(
            f"/api/v1/members/{m['id']}/growth",
            json={"amount": 5, "reason": "class", "idempotency_key": key},
            headers=t.hq(),
        ),
    ]:
        assert r.status_code == 409, r.text
        assert r.json()["errors"][0]["field"] == "idempotency_key"
    assert shown(await balances(client, t.hq(), m["id"])) == (500, 500, 0)


# ------------------------------------------------------------------ merges and the till (7.4)


async def test_orders_racing_a_merge_follow_the_member_to_the_target(
    client, make_tenant, enrol, spendable
):
    """A merge and orders naming the merged-away member at once: no deadlock, no error, and
    every point lands on the target (none on the tombstone)."""
    t = await make_tenant()
    await spendable(t)
    for _ in range(5):
        source, target = await enrol(t.hq()), await enrol(t.hq())
        assert (await adjust(client, t.hq(), source["id"], 1_000)).status_code == 201
        refs = [{"id": source["id"]}, {"phone": source["phone"]}] * 6
        requests = [
            client.post("/api/v1/orders", json=order_body(member=ref), headers=t.hq())
            for ref in refs
        ]
        # The merge in the middle: some orders lock the source before it, some after.
        requests.insert(
            len(refs) // 2,
            client.post(
                f"/api/v1/members/{target['id']}/merge",
                json={"source_member_id": source["id"]},
                headers=t.hq(),
            ),
        )
        replies = await asyncio.gather(*requests)
        merged = replies.pop(len(refs) // 2)
        assert merged.status_code == 200, merged.text
        assert [r.status_code for r in replies] == [201] * len(refs), [r.text for r in replies]
        earned = sum(r.json()["points_earned"] for r in replies)  # tiers may rise on the way
        assert earned >= 100 * len(refs)
        balance = (await balances(client, t.hq(), target["id"]))["balance"]
        assert balance == 1_000 + earned
        await assert_ledgers(t.id, [source["id"], target["id"]], tombstone=source["id"])


async def assert_ledgers(tenant_id: uuid.UUID, ids: list[str], *, tombstone: str) -> None:
    """Every ledger invariant holds, and the merged-away member's account is empty."""
    with tenant_context(tenant_id):
        async with scoped_session() as session:
            await check_ledger(session, [uuid.UUID(i) for i in ids])
            left = await session.scalar(
                select(PointAccount.balance).where(PointAccount.member_id == uuid.UUID(tombstone))
            )
    assert left == 0


async def _in_tenant(tenant_id: uuid.UUID, work: Any) -> Any:
    """Run ``work(session)`` in its own transaction, as a request of that tenant would."""
    with acting_as(Actor("system", name="tests")), tenant_context(tenant_id):
        async with scoped_session() as session:
            return await work(session)


async def test_an_order_that_waited_on_a_merge_credits_the_target(
    client, make_tenant, enrol, spendable
):
    """The merge holds its locks; an order naming the source waits; the merge commits: the
    order follows the member to the target (it used to credit the tombstone)."""
    t = await make_tenant()
    await spendable(t)
    source, target = await enrol(t.hq()), await enrol(t.hq())
    assert (await adjust(client, t.hq(), source["id"], 1_000)).status_code == 201
    body = OrderIn.model_validate(order_body(member={"id": source["id"]}))
    with acting_as(Actor("system", name="tests")), tenant_context(t.id):
        async with scoped_session() as merging:
            await merge_members(merging, uuid.UUID(target["id"]), uuid.UUID(source["id"]))
            order = asyncio.create_task(_in_tenant(t.id, lambda s: create_order(s, body)))
            await asyncio.sleep(0.5)
            assert not order.done()  # it waits for the merge
    answer = await order
    assert (answer.status_code, answer.body["member_id"]) == (201, target["id"])
    assert (await balances(client, t.hq(), target["id"]))["balance"] == 1_100
    await assert_ledgers(t.id, [source["id"], target["id"]], tombstone=source["id"])


async def test_a_merge_waits_for_a_till_in_progress_without_deadlock(
    client, make_tenant, enrol, spendable
):
    """A till holds the source's account and is about to write the member row (as every
    order does at its end) when a merge starts: one lock order, so the merge waits and both
    succeed (it used to lock the member row first: a deadlock, 500 on both sides)."""
    t = await make_tenant()
    await spendable(t)
    source, target = await enrol(t.hq()), await enrol(t.hq())
    source_id, target_id = uuid.UUID(source["id"]), uuid.UUID(target["id"])
    with acting_as(Actor("system", name="tests")), tenant_context(t.id):
        async with scoped_session() as till_session:
            await points.lock_account(till_session, source_id)
            merge = asyncio.create_task(
                _in_tenant(t.id, lambda s: merge_members(s, target_id, source_id))
            )
            await asyncio.sleep(0.5)
            await till_session.execute(
                update(Member).where(Member.id == source_id).values(last_order_at=utcnow())
            )
    merged = await merge
    assert merged.id == target_id


async def test_opposite_merges_at_once_do_not_deadlock(client, make_tenant, enrol, spendable):
    t = await make_tenant()
    await spendable(t)
    a, b = await enrol(t.hq()), await enrol(t.hq())
    for member in (a, b):
        assert (await adjust(client, t.hq(), member["id"], 100)).status_code == 201
    replies = await asyncio.gather(
        client.post(
            f"/api/v1/members/{a['id']}/merge", json={"source_member_id": b["id"]}, headers=t.hq()
        ),
        client.post(
            f"/api/v1/members/{b['id']}/merge", json={"source_member_id": a["id"]}, headers=t.hq()
        ),
    )
    assert sorted(r.status_code for r in replies) in ([200, 404], [200, 409])
    winner = a if replies[0].status_code == 200 else b
    assert (await balances(client, t.hq(), winner["id"]))["balance"] == 200


# ------------------------------------------------------------------ holds and stores (7.6)


async def test_a_hold_belongs_to_the_store_that_made_it(
    client, make_tenant, enrol, till, spendable
):
    t = await make_tenant()
    await spendable(t)
    m = await enrol(t.hq())
    assert (await adjust(client, t.hq(), m["id"], 1_000)).status_code == 201
    s1, s2 = await till(t, "S1"), await till(t, "S2")
    held = (await hold(client, s1, m["id"], 500)).json()
    url = f"/api/v1/points/holds/{held['id']}"
    assert (await client.get(url, headers=s2)).status_code == 404
    assert (await client.post(f"{url}/release", headers=s2)).status_code == 404
    paying = order_body(
        member={"id": m["id"]}, store_code=None, points_used=500, hold_id=held["id"]
    )
    for headers, body in [(s2, paying), (t.hq(), paying | {"store_code": "S2"})]:
        r = await client.post("/api/v1/orders", json=body, headers=headers)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == "payment.hold_id"
    assert (await client.get(url, headers=t.hq())).json()["status"] == "held"
    await post_order(client, s1, paying)
    assert (await client.get(url, headers=s1)).json()["status"] == "captured"


# ------------------------------------------------------------------ smaller defects (7.18)


async def test_an_adjustment_emits_points_adjusted(client, make_tenant, enrol):
    t = await make_tenant()
    m = await enrol(t.hq())
    assert (await adjust(client, t.hq(), m["id"], 250)).status_code == 201
    (event,) = await events(client, t.hq(), "points.adjusted")
    assert event["payload"] == {
        "member_id": m["id"],
        "points": 250,
        "balance": 250,
        "reason": "goodwill",
    }


async def test_points_about_to_expire_are_announced_once(client, make_tenant, enrol, set_program):
    t = await make_tenant()
    await set_program(
        t.hq(),
        points={
            "pending_days": 0,
            "expiry": "rolling",
            "expiry_months": 2,
            "expiring_soon_days": 30,
        },
    )
    m, other = await enrol(t.hq()), await enrol(t.hq())
    assert (await adjust(client, t.hq(), m["id"], 300)).status_code == 201
    assert (await adjust(client, t.hq(), m["id"], 200)).status_code == 201
    assert (await adjust(client, t.hq(), other["id"], 50)).status_code == 201
    assert (await adjust(client, t.hq(), other["id"], -50)).status_code == 201  # nothing left
    lot_expiry = await _earliest_expiry(t.id, m["id"])

    async def announce(day: datetime) -> Any:
        return await run_job(t.id, lambda s: announce_expiring(s, day), "points.announce_expiring")

    before = lot_expiry - timedelta(days=31)
    assert (await announce(before)).rows == 0  # not yet within 30 days
    on_the_day = lot_expiry - timedelta(days=30)
    assert (await announce(on_the_day)).rows == 1
    assert (await announce(on_the_day + timedelta(minutes=1))).rows == 0  # once a day
    assert (await announce(on_the_day + timedelta(days=1))).rows == 0  # announced already
    (event,) = await events(client, t.hq(), "points.expiring")
    assert event["subject_id"] == m["id"]
    assert event["payload"]["member_id"] == m["id"]
    assert event["payload"]["points"] == 500


async def _earliest_expiry(tenant_id: uuid.UUID, member_id: str) -> datetime:
    with tenant_context(tenant_id):
        async with scoped_session() as session:
            expiry = await session.scalar(
                select(func.min(PointLot.expires_at)).where(
                    PointLot.member_id == uuid.UUID(member_id), PointLot.remaining > 0
                )
            )
    assert expiry is not None
    return expiry
