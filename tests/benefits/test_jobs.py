"""The benefits' periodic jobs: expiry of what has run out, and the recent-member sync."""

from __future__ import annotations

from datetime import timedelta

from benefits.support import benefits, held, make_gold, newborn, set_up_catalog
from nestpoint.benefits.jobs import expire_entitlements, sync_recent_members
from nestpoint.db import utcnow
from nestpoint.jobs.tenants import run_for_tenant


async def _events(client, hq, type_: str) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    r = await client.get("/api/v1/events", headers=hq, params={"type": type_, "limit": 200})
    return list(r.json()["items"])


async def test_the_sync_grants_an_upgraded_member_benefits_without_a_look_up(
    client, make_tenant, enrol, set_program
):
    t = await make_tenant()
    await set_up_catalog(client, t.hq(), set_program)
    member = await enrol(t.hq(), **newborn())
    await make_gold(client, t.hq(), member["id"])
    assert await _events(client, t.hq(), "benefit.granted") == []
    result = await run_for_tenant(t.id, sync_recent_members, name="test")
    assert result.rows == 1
    granted = await _events(client, t.hq(), "benefit.granted")
    assert len(granted) == 5  # consult and delivery (gold), massage (stage), the pack's two
    again = await run_for_tenant(t.id, sync_recent_members, name="test")
    assert again.rows == 1
    assert len(await _events(client, t.hq(), "benefit.granted")) == 5
    later = await run_for_tenant(
        t.id, lambda s: sync_recent_members(s, utcnow() + timedelta(hours=1)), name="test"
    )
    assert later.rows == 0  # no longer recent


async def test_expiry_ends_the_pack_after_its_days_once(client, make_tenant, enrol, set_program):
    t = await make_tenant()
    await set_up_catalog(client, t.hq(), set_program)
    member = await enrol(t.hq(), **newborn())
    await benefits(client, t.hq(), member["id"])
    in_91_days = utcnow() + timedelta(days=91)
    ended = await run_for_tenant(t.id, lambda s: expire_entitlements(s, in_91_days), name="t")
    assert ended.rows == 2  # the pack's delivery and consultation (90 days)
    twice = await run_for_tenant(t.id, lambda s: expire_entitlements(s, in_91_days), name="t")
    assert twice.rows == 0
    expired = await _events(client, t.hq(), "benefit.expired")
    assert sorted(e["payload"]["benefit_code"] for e in expired) == ["consult", "newborn-delivery"]
    assert {e["payload"]["reason"] for e in expired} == {"expired"}
    view = held(await benefits(client, t.hq(), member["id"]))
    assert set(view) == {("massage", "stage")}  # the pack is over, the stage benefit stays
