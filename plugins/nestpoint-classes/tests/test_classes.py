"""The classes plugin, tested with Nestpoint's test kit (``nestpoint.testing``)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

from nestpoint_classes.plugin import PANEL_TITLE, member_classes

from nestpoint.plugins.api import ConsolePanel, ConsoleViewer, PluginContext

PLUGIN = "classes"
BASE = "/api/v1/plugins/classes"
SEAT = {"name": "亲子课 Class place", "type": "classes.class_seat", "quota": 2}


def _at(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


async def _family(client, t, months_old: int = 24) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """A member with one child ``months_old`` months old: (member id, child id)."""
    phone = f"137{uuid.uuid4().int % 100_000_000:08d}"
    born = date.today() - timedelta(days=months_old * 30 + 5)
    body = {
        "phone": phone,
        "guardian_consent": {"granted": True, "source": "pos"},
        "children": [{"nickname": "宝宝", "birth_date": str(born)}],
    }
    r = await client.post("/api/v1/members", json=body, headers=t.hq())
    assert r.status_code == 201, r.text
    r = await client.get(f"/api/v1/members/{r.json()['id']}", headers=t.hq())
    return str(r.json()["id"]), str(r.json()["children"][0]["id"])


async def _session(client, t, code: str, **extra: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    body = {
        "title": "亲子音乐 Music together",
        "room": "A",
        "starts_at": _at(72),
        "minutes": 60,
        "capacity": 5,
        "stages": ["1-3y"],
        "price_fen": 9900,
        "opens_at": _at(-1),
    } | extra
    r = await client.put(f"{BASE}/sessions/{code}", json=body, headers=t.store("S1"))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _book(client, t, code: str, member: str, child: str, key: str | None = None):  # type: ignore[no-untyped-def]
    body = {"idempotency_key": key or uuid.uuid4().hex, "member_id": member, "child_id": child}
    return await client.post(f"{BASE}/sessions/{code}/bookings", json=body, headers=t.store("S1"))


async def test_twenty_parallel_bookings_fill_five_places_and_the_waitlist_moves_up_in_order(
    nestpoint_tenant, nestpoint_enable_plugin, nestpoint_concurrent_client
):
    t, client = nestpoint_tenant, nestpoint_concurrent_client
    await nestpoint_enable_plugin(t, PLUGIN, store="S1")
    await _session(client, t, "music-1")
    families = [await _family(client, t) for _ in range(20)]
    responses = await asyncio.gather(*[_book(client, t, "music-1", m, c) for m, c in families])
    assert {r.status_code for r in responses} == {201}
    statuses = Counter(r.json()["status"] for r in responses)
    assert statuses == {"booked": 5, "waitlisted": 15}, statuses
    positions = sorted(
        r.json()["waitlist_position"] for r in responses if r.json()["waitlist_position"]
    )
    assert positions == list(range(1, 16))

    r = await client.get(f"{BASE}/sessions/music-1/bookings", headers=t.store("S1"))
    roster = r.json()
    waiting = [b for b in roster if b["status"] == "waitlisted"]
    booked = [b for b in roster if b["status"] == "booked"]
    for booking in booked[:2]:
        r = await client.post(f"{BASE}/bookings/{booking['id']}/cancel", headers=t.store("S1"))
        assert r.status_code == 200, r.text
    r = await client.get(f"{BASE}/sessions/music-1/bookings", headers=t.store("S1"))
    after = {b["id"]: b for b in r.json()}
    assert [after[b["id"]]["status"] for b in waiting[:3]] == ["booked", "booked", "waitlisted"]
    assert after[waiting[2]["id"]]["waitlist_position"] == 1
    assert sum(b["status"] == "booked" for b in after.values()) == 5  # never more than capacity


async def test_one_child_is_never_booked_twice_even_in_parallel(
    nestpoint_tenant, nestpoint_enable_plugin, nestpoint_concurrent_client
):
    t, client = nestpoint_tenant, nestpoint_concurrent_client
    await nestpoint_enable_plugin(t, PLUGIN, store="S1")
    await _session(client, t, "art-1")
    await _session(client, t, "art-2", starts_at=_at(72.5))  # overlaps art-1
    member, child = await _family(client, t)
    responses = await asyncio.gather(
        *[_book(client, t, code, member, child) for code in ("art-1", "art-2") for _ in range(4)]
    )
    assert Counter(r.status_code for r in responses) == {201: 1, 409: 7}
    conflict = next(r for r in responses if r.status_code == 409)
    assert conflict.json()["errors"][0]["field"] == "child_id"


async def test_booking_windows_open_earlier_for_higher_tiers_and_stages_must_fit(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    await nestpoint_enable_plugin(t, PLUGIN, store="S1", config={"tier_early_hours": {"gold": 24}})
    await _session(client, t, "swim-1", opens_at=_at(12))
    bronze, bronze_child = await _family(client, t)
    gold, gold_child = await _family(client, t)
    r = await client.post(
        f"/api/v1/members/{gold}/growth",
        json={"amount": 5000, "reason": "test", "idempotency_key": uuid.uuid4().hex},
        headers=t.hq(),
    )
    assert r.json()["tier_code"] == "gold"
    early = await _book(client, t, "swim-1", bronze, bronze_child)
    assert early.status_code == 422
    assert early.json()["errors"][0]["field"] == "code"
    assert (await _book(client, t, "swim-1", gold, gold_child)).status_code == 201
    baby_member, baby = await _family(client, t, months_old=3)
    await _session(client, t, "swim-2", starts_at=_at(96))
    r = await _book(client, t, "swim-2", baby_member, baby)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "child_id"  # 0-6m in a 1-3y class
    r = await _book(client, t, "swim-2", baby_member, gold_child)
    assert r.status_code == 422  # another member's child


async def test_a_free_place_uses_the_benefit_cancel_returns_it_check_in_earns_points(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    await nestpoint_enable_plugin(
        t, PLUGIN, store="S1", config={"free_benefits": ["class-seat"], "attendance_points": 50}
    )
    r = await client.put("/api/v1/benefits/class-seat", json=SEAT, headers=t.hq())
    assert r.status_code == 200, r.text
    r = await client.get("/api/v1/loyalty/program", headers=t.hq())
    program = r.json()
    program.pop("version")
    program["tiers"][0]["benefits"] = ["class-seat"]
    assert (
        await client.put("/api/v1/loyalty/program", json=program, headers=t.hq())
    ).status_code == 200
    await _session(client, t, "story-1")
    member, child = await _family(client, t)
    key = uuid.uuid4().hex
    first = await _book(client, t, "story-1", member, child, key)
    assert first.status_code == 201, first.text
    assert first.json()["free_by_benefit"] is True
    assert first.json()["fee_fen"] == 0
    replay = await _book(client, t, "story-1", member, child, key)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()

    async def seats_left() -> int:
        r = await client.get(f"/api/v1/members/{member}/benefits", headers=t.store("S1"))
        return int(
            next(e for e in r.json()["entitlements"] if e["benefit_code"] == "class-seat")[
                "remaining"
            ]
        )

    assert await seats_left() == 1
    booking = first.json()["id"]
    r = await client.post(f"{BASE}/bookings/{booking}/cancel", headers=t.store("S1"))
    assert r.json()["status"] == "cancelled"
    assert await seats_left() == 2
    again = await _book(client, t, "story-1", member, child)
    assert again.status_code == 201
    for _ in range(2):  # checking in twice earns once
        r = await client.post(
            f"{BASE}/bookings/{again.json()['id']}/check-in", headers=t.store("S1")
        )
        assert r.status_code == 200
        assert r.json()["status"] == "attended"
    r = await client.get(f"/api/v1/members/{member}/points", headers=t.hq())
    assert r.json()["balance"] == 50
    r = await client.post(f"{BASE}/bookings/{again.json()['id']}/cancel", headers=t.store("S1"))
    assert r.status_code == 409


async def test_not_available_where_the_plugin_is_off(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    await nestpoint_enable_plugin(t, PLUGIN, store="S1")
    await _session(client, t, "yoga-1")
    member, child = await _family(client, t)
    body = {"idempotency_key": uuid.uuid4().hex, "member_id": member, "child_id": child}
    r = await client.post(f"{BASE}/sessions/yoga-1/bookings", json=body, headers=t.store("S2"))
    assert r.status_code == 404


async def test_the_members_console_panel_lists_class_bookings_escaped_in_the_users_language(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    await nestpoint_enable_plugin(t, PLUGIN, store="S1")
    await _session(client, t, "art-1", title="<i>涂鸦</i> & paint", room="B")
    member, child = await _family(client, t)
    r = await _book(client, t, "art-1", member, child)
    assert r.status_code == 201, r.text
    en = ConsoleViewer("hq_analyst", "en", personal_data=False)
    shown = await member_classes(PluginContext(PLUGIN, t.id, None, {}, en), member)
    assert "<th>Class</th>" in shown
    assert "<td>&lt;i&gt;涂鸦&lt;/i&gt; &amp; paint</td>" in shown  # escaped, never markup
    assert "<td>booked</td>" in shown
    assert "<td>¥99.00</td>" in shown
    assert "<i>" not in shown
    zh = ConsoleViewer("store_manager", "zh_CN", personal_data=True)
    shown = await member_classes(PluginContext(PLUGIN, t.id, t.stores["S1"], {}, zh), member)
    assert "<th>课程</th>" in shown
    assert "涂鸦" in shown
    other = PluginContext(PLUGIN, t.id, t.stores["S2"], {}, zh)  # S2 sees its own sessions
    assert await member_classes(other, member) == '<p class="muted">—</p>'
    assert await member_classes(PluginContext(PLUGIN, t.id, None, {}), None) == ""
    panel = ConsolePanel("classes", PANEL_TITLE, "member", render=member_classes)
    assert (panel.title_in("zh_CN"), panel.title_in("en"), panel.title_in("fr")) == (
        "亲子课预约",
        "Classes",
        "Classes",
    )
