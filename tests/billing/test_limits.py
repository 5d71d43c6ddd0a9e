"""Plans and limits: a limit reached refuses only new growth (enrolments, stores, another
plugin, marketing messages) and never the till for existing members; warnings at 80% and
100% once per period; two enrolments at once at the limit; the operator's and HQ's views."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from billing.conftest import limits, refused
from loyalty.helpers import new_phone, order_body
from loyalty.support import all_pages, audit, refund


async def test_without_a_plan_a_chain_has_no_limits(client, make_tenant, billing) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant(("S1",))
    for _ in range(3):
        assert (await billing.enrol(t.hq())).status_code == 201
    view = await billing.view(t.id)
    assert view["plan"] is None
    assert view["subscription"] is None
    assert {n: lim for n, (_, lim, _) in limits(view).items()} == dict.fromkeys(
        ("members", "stores", "plugins", "messages")
    )


async def test_limits_block_growth_but_never_the_till(client, make_tenant, billing) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant(("S1",))
    code = await billing.plan(max_members=2, max_stores=1, max_plugins=0, max_messages=1)
    await billing.subscribe(t.id, code)
    till = await billing.till(t)
    phones = [new_phone(), new_phone()]
    members = []
    for phone in phones:
        r = await client.post(
            "/api/v1/members", json={"phone": phone, "name": "李娜"}, headers=till
        )
        assert r.status_code == 201, r.text
        members.append(r.json())

    # New growth: refused, naming the limit, and nothing written.
    refused(await billing.enrol(t.hq()), "members", "phone")
    refused(await billing.enrol(till), "members", "phone")
    r = await client.post("/api/v1/stores", json={"code": "S9", "name": "Nine"}, headers=t.hq())
    refused(r, "stores", "code")
    r = await client.put("/api/v1/tenant/plugins/example", json={"enabled": True}, headers=t.hq())
    refused(r, "plugins", "enabled")
    body = {
        "message_key": uuid.uuid4().hex,
        "purpose": "campaign",
        "template": "points_expiring",
        "member_ids": [m["id"] for m in members],
    }
    r = await client.post("/api/v1/messages", json=body, headers=t.hq())
    refused(r, "messages", "member_ids")
    r = await client.get("/api/v1/stores/S9", headers=t.hq())
    assert r.status_code == 404

    # The till for existing members: orders, lookups, refunds, points all keep working.
    order = order_body(member={"id": members[0]["id"]})
    r = await client.post("/api/v1/orders", json=order, headers=till)
    assert r.status_code == 201, r.text
    r = await client.get("/api/v1/members/lookup", params={"phone": phones[1]}, headers=till)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == members[1]["id"]
    r = await refund(client, till, order, {"external_id": "r1"})
    assert r.status_code == 201, r.text
    r = await client.patch("/api/v1/stores/S1", json={"name": "Renamed"}, headers=t.hq())
    assert r.status_code == 200, r.text
    # Transactional messages are never held back by the quota.
    body |= {"message_key": uuid.uuid4().hex, "purpose": "points_expiring"}
    r = await client.post("/api/v1/messages", json=body, headers=t.hq())
    assert r.status_code == 202, r.text

    # The plan changes: growth is allowed again at once.
    await billing.subscribe(t.id, await billing.plan(max_members=3))
    assert (await billing.enrol(t.hq())).status_code == 201
    refused(await billing.enrol(t.hq()), "members", "phone")


async def test_a_reactivated_store_counts_and_a_plugin_on_already_is_free(
    client, make_tenant, billing
) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant(("S1", "S2"))
    r = await client.patch("/api/v1/stores/S2", json={"active": False}, headers=t.hq())
    assert r.status_code == 200
    r = await client.put(
        "/api/v1/tenant/plugins/example/stores/S1", json={"enabled": True}, headers=t.hq()
    )
    assert r.status_code == 200, r.text
    await billing.subscribe(t.id, await billing.plan(max_stores=1, max_plugins=1))
    r = await client.patch("/api/v1/stores/S2", json={"active": True}, headers=t.hq())
    refused(r, "stores", "active")
    # The plugin is on at S1 already: turning it on for the chain is no plugin more.
    r = await client.put("/api/v1/tenant/plugins/example", json={"enabled": True}, headers=t.hq())
    assert r.status_code == 200, r.text


async def test_warnings_at_80_and_100_percent_once_per_period(client, make_tenant, billing) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant(("S1",))
    await billing.subscribe(t.id, await billing.plan(max_members=5))
    for _ in range(3):
        assert (await billing.enrol(t.hq())).status_code == 201
    view = await billing.refresh(t.id)
    assert limits(view)["members"] == (3, 5, "ok")
    assert view["warnings"] == []

    assert (await billing.enrol(t.hq())).status_code == 201
    view = await billing.refresh(t.id)
    assert limits(view)["members"] == (4, 5, "warning")
    assert [(w["limit_name"], w["threshold"], w["used"]) for w in view["warnings"]] == [
        ("members", 80, 4)
    ]
    await billing.refresh(t.id)  # again: no second warning this period
    assert (await billing.enrol(t.hq())).status_code == 201
    await billing.refresh(t.id)
    view = await billing.refresh(t.id)
    assert limits(view)["members"] == (5, 5, "reached")
    assert [(w["limit_name"], w["threshold"]) for w in view["warnings"]] == [
        ("members", 80),
        ("members", 100),
    ]

    # HQ sees it: its own view, one audit entry and one outbox event per warning.
    r = await client.get("/api/v1/billing", headers=t.hq())
    assert r.status_code == 200, r.text
    assert r.json()["warnings"] == view["warnings"]
    assert r.json()["plan"]["max_members"] == 5
    entries = await audit(client, t.hq(), "billing.limit_warning")
    assert sorted(e["changes"]["threshold"] for e in entries) == [80, 100]
    events = [
        e
        for e in await all_pages(client, "/api/v1/events", t.hq())
        if e["type"] == "billing.limit_warning"
    ]
    assert sorted((e["payload"]["limit"], e["payload"]["threshold"]) for e in events) == [
        ("members", 80),
        ("members", 100),
    ]


async def test_two_enrolments_at_once_at_the_limit_make_one(
    concurrent_client, make_tenant, billing
) -> None:  # type: ignore[no-untyped-def]
    """One place left, two enrolments at once: exactly one is enrolled (the check and the
    reservation are one step in the process); the other is refused, nothing written."""
    t = await make_tenant(("S1",))
    await billing.subscribe(t.id, await billing.plan(max_members=3))
    till = await billing.till(t)
    for _ in range(2):
        assert (await billing.enrol(t.hq())).status_code == 201
    await billing.refresh(t.id)
    results = await asyncio.gather(*[billing.enrol(till, concurrent_client) for _ in range(2)])
    assert sorted(r.status_code for r in results) == [201, 409]
    view = await billing.refresh(t.id)
    assert limits(view)["members"] == (3, 3, "reached")
    refused(await billing.enrol(t.hq()), "members", "phone")


async def test_two_stores_at_once_at_the_limit_make_one(
    concurrent_client, make_tenant, billing
) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant(("S1",))
    await billing.subscribe(t.id, await billing.plan(max_stores=2))
    results = await asyncio.gather(
        *[
            concurrent_client.post(
                "/api/v1/stores", json={"code": code, "name": code}, headers=t.hq()
            )
            for code in ("N1", "N2")
        ]
    )
    assert sorted(r.status_code for r in results) == [201, 409]
    view = await billing.refresh(t.id)
    assert limits(view)["stores"] == (2, 2, "reached")


async def test_the_operator_sees_every_chain_and_hq_only_its_own(
    client, make_tenant, billing, platform_headers
) -> None:  # type: ignore[no-untyped-def]
    a, b = await make_tenant(("S1",)), await make_tenant(("S1",))
    code = await billing.plan(max_members=10)
    await billing.subscribe(a.id, code)
    await billing.refresh(a.id)
    items: list[dict[str, Any]] = await all_pages(
        client, "/api/v1/billing/tenants", platform_headers
    )
    mine = {i["tenant_id"]: i for i in items}
    assert mine[str(a.id)]["plan"]["code"] == code
    assert mine[str(a.id)]["subscription"]["status"] == "trialing"
    assert mine[str(a.id)]["subscription"]["sync_state"] == "pending"
    assert mine[str(b.id)]["plan"] is None
    r = await client.get("/api/v1/billing", headers=b.hq())
    assert r.status_code == 200
    assert r.json()["tenant_id"] == str(b.id)
    assert r.json()["plan"] is None
    # HQ keys do not reach the operator's routes, nor a store key HQ's, nor the platform HQ's.
    assert (await client.get("/api/v1/billing/tenants", headers=a.hq())).status_code == 403
    assert (await client.get("/api/v1/billing/plans", headers=a.hq())).status_code == 403
    assert (await client.get("/api/v1/billing", headers=await billing.till(a))).status_code == 403
    assert (await client.get("/api/v1/billing", headers=platform_headers)).status_code == 403
    r = await client.put(
        f"/api/v1/tenants/{a.id}/billing/subscription", json={"plan_code": code}, headers=a.hq()
    )
    assert r.status_code == 403


async def test_plans_and_choices_are_checked(
    client, make_tenant, billing, platform_headers
) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant(("S1",))
    r = await client.put(
        "/api/v1/billing/plans/x1", json={"name": "X", "price_fen": -1}, headers=platform_headers
    )
    assert r.status_code == 400
    assert [e["field"] for e in r.json()["errors"]] == ["price_fen"]
    r = await client.put(
        "/api/v1/billing/plans/Bad Code",
        json={"name": "X", "price_fen": 1},
        headers=platform_headers,
    )
    assert r.status_code == 400
    r = await client.put(
        f"/api/v1/tenants/{t.id}/billing/subscription",
        json={"plan_code": "no-such-plan"},
        headers=platform_headers,
    )
    assert r.status_code == 404
    assert [e["field"] for e in r.json()["errors"]] == ["plan_code"]
    r = await client.put(
        f"/api/v1/tenants/{uuid.uuid4()}/billing/subscription",
        json={"plan_code": "starter"},
        headers=platform_headers,
    )
    assert r.status_code == 404
    # A plan no longer offered keeps its chains but takes no new one.
    code = await billing.plan()
    body = {"name": "Old", "price_fen": 100, "active": False}
    r = await client.put(f"/api/v1/billing/plans/{code}", json=body, headers=platform_headers)
    assert r.status_code == 200
    assert r.json()["active"] is False
    r = await client.put(
        f"/api/v1/tenants/{t.id}/billing/subscription",
        json={"plan_code": code},
        headers=platform_headers,
    )
    assert r.status_code == 409
    # The default plans are there (migration 0029).
    r = await client.get("/api/v1/billing/plans", headers=platform_headers)
    plans = {p["code"]: p for p in r.json()}
    assert plans["starter"]["max_stores"] == 5
    assert plans["enterprise"]["max_members"] is None
