"""Tiers and growth value: upgrade at once, downgrade only at evaluation after protection,
the rolling growth window, and the programme's validation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from dateutil.relativedelta import relativedelta
from sqlalchemy import update

from loyalty.helpers import order_body
from loyalty.support import all_pages, events, member, parse_time, post_order, refund, run_job
from nestpoint.context import tenant_context
from nestpoint.db import scoped_session
from nestpoint.loyalty.schemas import TierSpec
from nestpoint.loyalty.service import load_program
from nestpoint.members.models import Member
from nestpoint.tiers.jobs import evaluate_tiers, removed_tier_moves

SECOND = timedelta(seconds=1)


def spend(yuan: int) -> list[dict[str, Any]]:
    fen = yuan * 100
    return [
        {
            "sku": "CRIB",
            "name": "Crib",
            "category": "furniture",
            "quantity": 1,
            "unit_price_fen": fen,
            "paid_fen": fen,
        }
    ]


async def evaluate(t, now: datetime) -> Any:
    async def job(session):  # type: ignore[no-untyped-def]
        return await evaluate_tiers(session, await load_program(session), now)

    return await run_job(t.id, job, "tiers.evaluate")


async def history(client, t, member_id: str) -> list[dict[str, Any]]:
    return await all_pages(client, f"/api/v1/members/{member_id}/tier-history", t.hq())


async def tier_events(client, t, member_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in await events(client, t.hq(), "tier.changed")
        if e["payload"]["member_id"] == member_id
    ]


async def test_upgrade_at_once_on_reaching_a_threshold(client, make_tenant, enrol):
    t = await make_tenant()
    m = await enrol(t.hq())
    ref = {"id": m["id"]}
    assert [
        (h["from_tier"], h["to_tier"], h["reason"]) for h in await history(client, t, m["id"])
    ] == [(None, "bronze", "join")]
    order = await post_order(client, t.hq(), order_body(member=ref, lines=spend(999)))
    assert order["member"]["tier_code"] == "bronze"
    assert (await member(client, t.hq(), m["id"]))["growth_value"] == 999
    assert await tier_events(client, t, m["id"]) == []

    order = await post_order(client, t.hq(), order_body(member=ref, lines=spend(1)))
    assert (order["member"]["tier_code"], order["member"]["upgraded_from"]) == ("silver", "bronze")
    shown = await member(client, t.hq(), m["id"])
    assert (shown["tier_code"], shown["growth_value"]) == ("silver", 1000)
    changes = await history(client, t, m["id"])
    assert [(h["from_tier"], h["to_tier"], h["reason"], h["growth_value"]) for h in changes] == [
        (None, "bronze", "join", 0),
        ("bronze", "silver", "upgrade", 1000),
    ]
    (event,) = await tier_events(client, t, m["id"])
    assert event["payload"] | {"member_id": None} == {
        "member_id": None,
        "from_tier": "bronze",
        "to_tier": "silver",
        "reason": "upgrade",
        "growth_value": 1000,
    }


async def test_one_order_of_1000_yuan_makes_silver_and_a_big_one_skips_tiers(
    client, make_tenant, enrol
):
    t = await make_tenant()
    silver, diamond = await enrol(t.hq()), await enrol(t.hq())
    order = await post_order(
        client, t.hq(), order_body(member={"id": silver["id"]}, lines=spend(1000))
    )
    assert order["member"]["tier_code"] == "silver"
    order = await post_order(
        client, t.hq(), order_body(member={"id": diamond["id"]}, lines=spend(15_000))
    )
    assert order["member"]["tier_code"] == "diamond"
    assert [(h["from_tier"], h["to_tier"]) for h in await history(client, t, diamond["id"])][
        1:
    ] == [("bronze", "diamond")]


async def test_no_downgrade_on_refund(client, make_tenant, enrol):
    t = await make_tenant()
    m = await enrol(t.hq())
    order = await post_order(client, t.hq(), order_body(member={"id": m["id"]}, lines=spend(1200)))
    assert order["member"]["tier_code"] == "silver"
    r = await refund(client, t.hq(), order, {"external_id": "r1"})
    assert r.status_code == 201, r.text
    shown = await member(client, t.hq(), m["id"])
    assert (shown["tier_code"], shown["growth_value"]) == ("silver", 0)
    assert len(await history(client, t, m["id"])) == 2
    assert len(await tier_events(client, t, m["id"])) == 1


async def test_evaluation_downgrades_only_after_the_protection_period(client, make_tenant, enrol):
    t = await make_tenant()
    m = await enrol(t.hq())
    order = await post_order(client, t.hq(), order_body(member={"id": m["id"]}, lines=spend(1000)))
    await refund(client, t.hq(), order, {"external_id": "r1"})  # growth back to 0
    upgraded_at = parse_time((await history(client, t, m["id"]))[-1]["changed_at"])
    protected_until = upgraded_at + timedelta(days=90)  # silver's default protection

    result = await evaluate(t, protected_until - SECOND)
    assert result.changed == 0
    assert (await member(client, t.hq(), m["id"]))["tier_code"] == "silver"

    result = await evaluate(t, protected_until)
    assert result.changed == 1
    shown = await member(client, t.hq(), m["id"])
    assert (shown["tier_code"], shown["growth_value"]) == ("bronze", 0)
    last = (await history(client, t, m["id"]))[-1]
    assert (last["from_tier"], last["to_tier"], last["reason"]) == (
        "silver",
        "bronze",
        "evaluation",
    )
    assert parse_time(last["changed_at"]) == protected_until
    downgrade = (await tier_events(client, t, m["id"]))[-1]["payload"]
    assert (downgrade["from_tier"], downgrade["to_tier"], downgrade["reason"]) == (
        "silver",
        "bronze",
        "evaluation",
    )

    # Idempotent: running again (at the same or a later time) changes nothing.
    for later in (protected_until, protected_until + timedelta(days=1)):
        result = await evaluate(t, later)
        assert (result.changed, result.growth_updated) == (0, 0)
    assert len(await history(client, t, m["id"])) == 3
    assert len(await tier_events(client, t, m["id"])) == 2


async def test_growth_is_counted_over_the_rolling_window(client, make_tenant, enrol):
    t = await make_tenant()
    m, steady = await enrol(t.hq()), await enrol(t.hq())
    await post_order(client, t.hq(), order_body(member={"id": m["id"]}, lines=spend(1500)))
    await post_order(client, t.hq(), order_body(member={"id": steady["id"]}, lines=spend(300)))
    now = datetime.now(UTC)

    result = await evaluate(t, now + relativedelta(months=11))
    assert result.changed == 0  # the spend still counts: still silver, protection or not
    assert (await member(client, t.hq(), m["id"]))["growth_value"] == 1500

    result = await evaluate(t, now + relativedelta(months=12, days=1))
    assert result.changed == 1  # only m had a tier to lose
    assert result.growth_updated == 2  # both members' spend left the window
    for who in (m, steady):
        shown = await member(client, t.hq(), who["id"])
        assert (shown["tier_code"], shown["growth_value"]) == ("bronze", 0)
    last = (await history(client, t, m["id"]))[-1]
    assert (last["from_tier"], last["to_tier"], last["reason"], last["growth_value"]) == (
        "silver",
        "bronze",
        "evaluation",
        0,
    )
    assert len(await history(client, t, steady["id"])) == 1  # only the join

    again = await evaluate(t, now + relativedelta(months=12, days=1))
    assert (again.changed, again.growth_updated) == (0, 0)


async def test_evaluation_upgrades_when_the_ladder_is_lowered(
    client, make_tenant, enrol, set_program
):
    t = await make_tenant()
    m = await enrol(t.hq())
    await post_order(client, t.hq(), order_body(member={"id": m["id"]}, lines=spend(600)))
    program = await set_program(t.hq())
    tiers = program["tiers"]
    tiers[1]["threshold"] = 500
    await set_program(t.hq(), tiers=tiers)
    assert (await member(client, t.hq(), m["id"]))["tier_code"] == "bronze"
    result = await evaluate(t, datetime.now(UTC))
    assert result.changed == 1
    shown = await member(client, t.hq(), m["id"])
    assert (shown["tier_code"], shown["growth_value"]) == ("silver", 600)
    last = (await history(client, t, m["id"]))[-1]
    assert (last["from_tier"], last["to_tier"], last["reason"]) == ("bronze", "silver", "upgrade")
    assert (await tier_events(client, t, m["id"]))[-1]["payload"]["to_tier"] == "silver"


async def test_removing_a_tier_moves_its_members_one_rung_down_keeping_their_protection(
    client, make_tenant, enrol, set_program
):
    t = await make_tenant()
    spender, refunded, silver = await enrol(t.hq()), await enrol(t.hq()), await enrol(t.hq())
    await post_order(client, t.hq(), order_body(member={"id": spender["id"]}, lines=spend(6000)))
    order = await post_order(
        client, t.hq(), order_body(member={"id": refunded["id"]}, lines=spend(5000))
    )
    await refund(client, t.hq(), order, {"external_id": "r1"})  # gold, protected, growth 0
    await post_order(client, t.hq(), order_body(member={"id": silver["id"]}, lines=spend(1000)))
    upgraded_at = parse_time((await history(client, t, refunded["id"]))[-1]["changed_at"])

    program = await set_program(t.hq())
    await set_program(t.hq(), tiers=[tier for tier in program["tiers"] if tier["code"] != "gold"])

    # At once, without waiting for an evaluation: gold's members go to silver, not below.
    for who, growth in ((spender, 6000), (refunded, 0)):
        shown = await member(client, t.hq(), who["id"])
        assert (shown["tier_code"], shown["growth_value"]) == ("silver", growth)
        last = (await history(client, t, who["id"]))[-1]
        assert (last["from_tier"], last["to_tier"], last["reason"]) == (
            "gold",
            "silver",
            "tier_removed",
        )
        payload = (await tier_events(client, t, who["id"]))[-1]["payload"]
        assert (payload["from_tier"], payload["to_tier"], payload["reason"]) == (
            "gold",
            "silver",
            "tier_removed",
        )
    assert len(await history(client, t, silver["id"])) == 2  # join, upgrade: not moved

    # Gold's protection carries over: no downgrade before it ends, then the usual one.
    protected_until = upgraded_at + timedelta(days=90)
    assert (await evaluate(t, protected_until - SECOND)).changed == 0
    assert (await evaluate(t, protected_until)).changed == 1
    assert (await member(client, t.hq(), refunded["id"]))["tier_code"] == "bronze"
    last = (await history(client, t, refunded["id"]))[-1]
    assert (last["from_tier"], last["to_tier"], last["reason"]) == (
        "silver",
        "bronze",
        "evaluation",
    )
    assert (await member(client, t.hq(), spender["id"]))["tier_code"] == "silver"


async def test_evaluation_names_a_move_off_an_unknown_tier_tier_removed(client, make_tenant, enrol):
    t = await make_tenant()
    m = await enrol(t.hq())
    await post_order(client, t.hq(), order_body(member={"id": m["id"]}, lines=spend(1000)))
    with tenant_context(t.id):  # a tier code left behind by an older version
        async with scoped_session() as session:
            await session.execute(
                update(Member).where(Member.id == uuid.UUID(m["id"])).values(tier_code="ghost")
            )
    assert (await evaluate(t, datetime.now(UTC))).changed == 1
    last = (await history(client, t, m["id"]))[-1]
    assert (last["from_tier"], last["to_tier"], last["reason"]) == (
        "ghost",
        "silver",
        "tier_removed",
    )


def test_a_removed_tier_moves_to_the_nearest_remaining_tier_below_it():
    def ladder(*codes: str) -> list[TierSpec]:
        return [TierSpec(code=c, name=c, threshold=i * 1000) for i, c in enumerate(codes)]

    old = ladder("bronze", "silver", "gold", "diamond")
    assert removed_tier_moves(old, ladder("bronze", "silver", "gold", "diamond")) == {}
    assert removed_tier_moves(old, ladder("bronze", "silver", "diamond")) == {"gold": "silver"}
    assert removed_tier_moves(old, ladder("bronze", "diamond")) == {
        "silver": "bronze",
        "gold": "bronze",
    }
    # The entry tier removed: its members start on the new ladder's first rung.
    assert removed_tier_moves(old, ladder("silver", "gold", "diamond")) == {"bronze": "silver"}


# ------------------------------------------------------------------ the programme


async def test_program_validation_names_the_field(client, make_tenant, till):
    t = await make_tenant()
    r = await client.get("/api/v1/loyalty/program", headers=t.hq())
    program = r.json()
    program.pop("version")

    def tiers_with(**changes: Any) -> list[dict[str, Any]]:
        tiers = [dict(tier) for tier in program["tiers"]]
        for index_field, value in changes.items():
            index, field = index_field.split("_", 1)
            tiers[int(index[1:])][field] = value
        return tiers

    cases = [
        ({"tiers": tiers_with(t1_threshold=20_000)}, "tiers"),  # thresholds not increasing
        ({"tiers": tiers_with(t2_threshold=1000)}, "tiers"),  # equal thresholds
        ({"tiers": tiers_with(t0_threshold=10)}, "tiers"),  # the entry tier must start at 0
        ({"tiers": tiers_with(t1_code="bronze")}, "tiers"),  # duplicate codes
        ({"tiers": []}, "tiers"),
        ({"tiers": tiers_with(t1_redeem_cap_percent=101)}, "redeem_cap_percent"),
        ({"points": program["points"] | {"pending_days": -1}}, "pending_days"),
        ({"points": program["points"] | {"expiry": "sometimes"}}, "expiry"),
        ({"earn_rules": program["earn_rules"] | {"cap_per_day": -5}}, "cap_per_day"),
        ({"surprise": True}, "surprise"),
    ]
    for change, field in cases:
        r = await client.put("/api/v1/loyalty/program", json=program | change, headers=t.hq())
        assert r.status_code in (400, 422), (change, r.text)
        fields = [e["field"] for e in r.json()["errors"]]
        assert any(field in f.split(".") for f in fields), (change, fields)
    r = await client.get("/api/v1/loyalty/program", headers=t.hq())
    assert r.json()["version"] == 0  # nothing was stored
    r = await client.put("/api/v1/loyalty/program", json=program, headers=await till(t))
    assert r.status_code == 403


async def test_same_program_twice_keeps_the_version(client, make_tenant):
    t = await make_tenant()
    program = (await client.get("/api/v1/loyalty/program", headers=t.hq())).json()
    program.pop("version")
    program["points"]["pending_days"] = 3
    r = await client.put("/api/v1/loyalty/program", json=program, headers=t.hq())
    assert r.status_code == 200, r.text
    first = r.json()
    r = await client.put("/api/v1/loyalty/program", json=program, headers=t.hq())
    assert r.status_code == 200
    assert r.json() == first
    updates = await events(client, t.hq(), "loyalty.updated")
    assert len(updates) == 1
    program["points"]["pending_days"] = 4
    r = await client.put("/api/v1/loyalty/program", json=program, headers=t.hq())
    assert r.json()["version"] == first["version"] + 1
    assert r.json()["points"]["pending_days"] == 4


async def test_bonus_growth_upgrades_at_once_and_is_idempotent(client, make_tenant, enrol, till):
    t = await make_tenant()
    member = await enrol(t.hq())
    url = f"/api/v1/members/{member['id']}/growth"
    body = {"amount": 1000, "reason": "parent-child class", "idempotency_key": "class-2026-11-01"}
    r = await client.post(url, json=body, headers=t.hq())
    assert r.status_code == 201, r.text
    assert r.json()["tier_code"] == "silver"  # the default ladder's silver threshold is 1000
    assert r.json()["upgraded_from"] == "bronze"
    again = await client.post(url, json=body, headers=t.hq())
    assert again.status_code == 201
    assert again.json() == r.json()  # applied once; the first answer again
    r = await client.post(url, json=body | {"amount": 5}, headers=t.hq())
    assert r.status_code == 409
    assert r.json()["errors"][0]["field"] == "idempotency_key"
    r = await client.post(url, json=body | {"idempotency_key": "class-2"}, headers=await till(t))
    assert r.status_code == 403
    history = await client.get(f"/api/v1/members/{member['id']}/tier-history", headers=t.hq())
    assert [c["reason"] for c in history.json()["items"]] == ["join", "upgrade"]
