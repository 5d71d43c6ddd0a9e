"""Stage 1: a campaign's grants are exactly once per member and trigger (a run again, two
runs at once), budgets hold under concurrent runs, per-member caps hold, the holdout is
reproducible and receives nothing, and each action goes through its own service (points
ledger, coupons, benefits, messages)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from campaigns.helpers import (
    NOW,
    balances,
    body,
    campaign,
    coupon_template,
    coupons_of,
    entitlements_of,
    grants,
    ledger,
    make,
    message_template,
    messages_of,
    run,
)
from nestpoint.campaigns.service import in_holdout
from segments.helpers import enrol


async def _members(client: Any, tenant: Any, n: int) -> list[str]:
    return [await enrol(client, tenant) for _ in range(n)]


async def test_a_run_grants_each_member_once_also_when_run_again(
    client: Any, make_tenant: Any
) -> None:
    tenant = await make_tenant()
    members = await _members(client, tenant, 5)
    await message_template(client, tenant, "campaign_hello")
    actions = [
        {"type": "grant_points", "points": 100},
        {"type": "send_message", "template": "campaign_hello"},
    ]
    cid = await make(tenant.id, body("once", actions=actions))

    first = await run(tenant.id, cid)
    again = await run(tenant.id, cid)

    assert (first.granted, first.holdout, first.refused) == (5, 0, 0)
    assert (again.granted, again.holdout, again.refused) == (0, 0, 0)
    rows = await grants(tenant.id, cid)
    assert sorted(str(g.member_id) for g in rows) == sorted(members)
    assert {(g.status, g.points, g.trigger_key) for g in rows} == {("granted", 100, "once")}
    assert await ledger(tenant.id, cid) == dict.fromkeys(members, 100)
    mine = {m: b for m, b in (await balances(tenant.id)).items() if m in members}
    assert mine == dict.fromkeys(members, 100)
    sent = await messages_of(tenant.id, cid)
    assert sorted(str(m.member_id) for m in sent) == sorted(members)
    assert {(m.purpose, m.template) for m in sent} == {("campaign", "campaign_hello")}
    assert (await campaign(tenant.id, cid)).spent_points == 500


async def test_two_runs_at_once_grant_exactly_once(client: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    members = await _members(client, tenant, 6)
    cid = await make(tenant.id, body("twice"))

    results = await asyncio.gather(run(tenant.id, cid), run(tenant.id, cid))

    assert sum(r.granted for r in results) == 6
    assert len(await grants(tenant.id, cid)) == 6
    assert await ledger(tenant.id, cid) == dict.fromkeys(members, 100)
    assert (await campaign(tenant.id, cid)).spent_points == 600


async def test_the_budget_holds_under_concurrent_runs(client: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    await _members(client, tenant, 5)
    cid = await make(tenant.id, body("budget", budget={"points": 350}))

    # Two runs of different triggers at once: ten candidate grants, room for three.
    results = await asyncio.gather(
        run(tenant.id, cid, "run:a"), run(tenant.id, cid, "run:b"), run(tenant.id, cid, "run:c")
    )

    assert sum(r.granted for r in results) == 3
    assert sum(r.refused for r in results) == 12
    rows = await grants(tenant.id, cid)
    assert sorted(g.status for g in rows) == ["granted"] * 3 + ["over_budget"] * 12
    assert sum((await ledger(tenant.id, cid)).values()) == 300
    assert (await campaign(tenant.id, cid)).spent_points == 300


async def test_per_member_caps_hold_across_triggers(client: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    [member] = await _members(client, tenant, 1)
    cid = await make(tenant.id, body("capped", caps={"points_per_member": 250}))

    counts = [await run(tenant.id, cid, f"run:{day}") for day in range(4)]

    assert [(c.granted, c.refused) for c in counts] == [(1, 0), (1, 0), (0, 1), (0, 1)]
    assert await ledger(tenant.id, cid) == {member: 200}
    statuses = sorted((g.trigger_key, g.status) for g in await grants(tenant.id, cid))
    assert statuses == [
        ("run:0", "granted"),
        ("run:1", "granted"),
        ("run:2", "capped"),
        ("run:3", "capped"),
    ]


async def test_the_holdout_is_reproducible_and_receives_nothing(
    client: Any, make_tenant: Any
) -> None:
    tenant = await make_tenant()
    members = await _members(client, tenant, 24)
    await message_template(client, tenant, "campaign_hello")
    actions = [
        {"type": "grant_points", "points": 50},
        {"type": "send_message", "template": "campaign_hello"},
    ]
    cid = await make(tenant.id, body("holdout", actions=actions, holdout_percent=40))
    seed = (await campaign(tenant.id, cid)).holdout_seed
    control = {m for m in members if in_holdout(seed, uuid.UUID(m), 40)}
    assert 0 < len(control) < len(members)  # 24 members: some in each arm (fixed seed odds)

    counts = await run(tenant.id, cid)

    assert (counts.granted, counts.holdout) == (len(members) - len(control), len(control))
    rows = await grants(tenant.id, cid)
    assert {str(g.member_id) for g in rows if g.status == "holdout"} == control
    assert {(g.points, g.coupons) for g in rows if g.status == "holdout"} == {(0, 0)}
    assert set(await ledger(tenant.id, cid)) == set(members) - control
    assert {str(m.member_id) for m in await messages_of(tenant.id, cid)} == set(members) - control
    # The same seed and member always land in the same arm; another seed splits otherwise.
    assert all(in_holdout(seed, uuid.UUID(m), 40) == (m in control) for m in members)
    assert {m for m in members if in_holdout("another", uuid.UUID(m), 40)} != control


async def test_coupons_out_of_stock_are_refused_and_return_the_budget(
    client: Any, make_tenant: Any
) -> None:
    tenant = await make_tenant()
    members = await _members(client, tenant, 3)
    await coupon_template(tenant.id, "gift20", stock=2)
    actions = [
        {"type": "issue_coupon", "template_code": "gift20"},
        {"type": "grant_points", "points": 10},
    ]
    cid = await make(tenant.id, body("coupons", actions=actions, budget={"coupons": 10}))

    counts = await run(tenant.id, cid)
    await run(tenant.id, cid)

    assert counts.granted == 3
    issued = await coupons_of(tenant.id, cid)
    assert len(issued) == 2
    assert {c.cause_id for c in issued} == {f"{cid}:once"}
    rows = await grants(tenant.id, cid)
    assert sorted(g.coupons for g in rows) == [0, 1, 1]
    refused = [g for g in rows if g.coupons == 0]
    assert [o["outcome"] for o in refused[0].outcomes] == ["refused", "done"]
    assert await ledger(tenant.id, cid) == dict.fromkeys(members, 10)
    after = await campaign(tenant.id, cid)
    assert (after.spent_coupons, after.spent_points) == (2, 30)


async def test_the_coupon_budget_holds(client: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    await _members(client, tenant, 4)
    await coupon_template(tenant.id, "c5")
    actions = [{"type": "issue_coupon", "template_code": "c5"}]
    cid = await make(tenant.id, body("cb", actions=actions, budget={"coupons": 3}))

    results = await asyncio.gather(run(tenant.id, cid, "a"), run(tenant.id, cid, "b"))

    assert sum(r.granted for r in results) == 3
    assert len(await coupons_of(tenant.id, cid)) == 3
    assert (await campaign(tenant.id, cid)).spent_coupons == 3


async def test_a_benefit_is_granted_until_the_campaign_ends(client: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    [member] = await _members(client, tenant, 1)
    r = await client.put(
        "/api/v1/benefits/festival-double",
        json={
            "name": "618 双倍积分",
            "type": "core.points_multiplier",
            "options": {"multiplier_percent": 200},
            "quota": 100,
            "period": "month",
        },
        headers=tenant.hq(),
    )
    assert r.status_code == 200, r.text
    ends = NOW.replace(microsecond=0) + timedelta(days=3)
    actions = [{"type": "grant_benefit", "benefit_code": "festival-double"}]
    cid = await make(tenant.id, body("benefit", actions=actions, ends_at=ends.isoformat()))

    await run(tenant.id, cid)
    await run(tenant.id, cid)

    [entitlement] = await entitlements_of(tenant.id, cid)
    assert str(entitlement.member_id) == member
    assert (entitlement.status, entitlement.expires_at) == ("active", ends)


async def test_a_draft_or_cancelled_campaign_grants_nothing(client: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    await _members(client, tenant, 2)
    draft = await make(tenant.id, body("draft"), activate=False)

    assert (await run(tenant.id, draft)).granted == 0
    assert await grants(tenant.id, draft) == []


async def test_a_campaign_grants_only_its_own_chain(client: Any, make_tenant: Any) -> None:
    ours, theirs = await make_tenant(), await make_tenant()
    mine = await _members(client, ours, 2)
    await _members(client, theirs, 3)
    cid = await make(ours.id, body("mine"))

    counts = await run(ours.id, cid)

    assert counts.granted == 2
    assert sorted(str(g.member_id) for g in await grants(ours.id, cid)) == sorted(mine)
    assert await grants(theirs.id, cid) == []
    assert await ledger(theirs.id, cid) == {}
    assert set(await ledger(ours.id, cid)) == set(mine)
