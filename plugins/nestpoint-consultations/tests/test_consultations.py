"""The consultations plugin, tested with Nestpoint's test kit (``nestpoint.testing``)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from nestpoint_consultations import service
from nestpoint_consultations.models import Consultation
from nestpoint_consultations.plugin import PANEL_TITLE, member_bookings
from sqlalchemy import update

from nestpoint.plugins.api import ConsolePanel, ConsoleViewer, PluginContext

PLUGIN = "consultations"
BASE = "/api/v1/plugins/consultations"
FREE = {"name": "育儿咨询 Consultation", "type": "consultations.consultation", "quota": 2}
SHANGHAI = ZoneInfo("Asia/Shanghai")
EVERY_DAY = [{"weekday": d, "start": "09:00", "end": "17:00"} for d in range(1, 8)]


def _day(days: int = 2) -> str:
    return str((datetime.now(SHANGHAI) + timedelta(days=days)).date())


def _slot(days: int, hour: int, minute: int = 0) -> str:
    day = (datetime.now(SHANGHAI) + timedelta(days=days)).date()
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI).isoformat()


async def _member(client, t) -> str:  # type: ignore[no-untyped-def]
    phone = f"136{uuid.uuid4().int % 100_000_000:08d}"
    r = await client.post("/api/v1/members", json={"phone": phone}, headers=t.hq())
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _set_up(client, t, enable, **config: Any) -> None:  # type: ignore[no-untyped-def]
    """The plugin at S1, a consultant with hours every day, and the entry tier's free
    consultations (a catalog entry of the plugin's own type)."""
    await enable(t, PLUGIN, store="S1", config={"free_benefits": ["consult"], **config})
    body = {"name": "王老师", "kind": "parenting", "weekly": EVERY_DAY, "slot_minutes": 30}
    r = await client.put(f"{BASE}/consultants/wang", json=body, headers=t.store("S1"))
    assert r.status_code == 200, r.text
    r = await client.put("/api/v1/benefits/consult", json=FREE, headers=t.hq())
    assert r.status_code == 200, r.text
    r = await client.get("/api/v1/loyalty/program", headers=t.hq())
    program = r.json()
    program.pop("version")
    program["tiers"][0]["benefits"] = ["consult"]
    r = await client.put("/api/v1/loyalty/program", json=program, headers=t.hq())
    assert r.status_code == 200, r.text


async def _book(client, t, member: str, starts_at: str, key: str | None = None):  # type: ignore[no-untyped-def]
    body = {"idempotency_key": key or uuid.uuid4().hex, "member_id": member, "starts_at": starts_at}
    return await client.post(f"{BASE}/consultants/wang/bookings", json=body, headers=t.store("S1"))


async def test_free_quota_then_the_chain_rule_and_cancelling_gives_a_use_back(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin)
    member = await _member(client, t)
    r = await client.get(
        f"{BASE}/consultants/wang/slots", params={"date": _day()}, headers=t.store("S1")
    )
    assert len(r.json()["slots"]) == 16  # 09:00-17:00 by 30 minutes
    first = await _book(client, t, member, _slot(2, 9))
    assert first.status_code == 201, first.text
    assert first.json()["free_by_benefit"] is True
    assert (await _book(client, t, member, _slot(2, 10))).json()["free_by_benefit"] is True
    third = await _book(client, t, member, _slot(2, 11))
    assert third.json()["free_by_benefit"] is False
    assert third.json()["fee_fen"] == 9900
    r = await client.post(f"{BASE}/bookings/{first.json()['id']}/cancel", headers=t.store("S1"))
    assert r.json()["status"] == "cancelled"
    fourth = await _book(
        client, t, member, _slot(2, 9)
    )  # the slot is free again, and so is one use
    assert fourth.json()["free_by_benefit"] is True
    r = await client.get(
        f"{BASE}/consultants/wang/slots", params={"date": _day()}, headers=t.store("S1")
    )
    assert len(r.json()["slots"]) == 13


async def test_refused_without_a_free_consultation_when_the_chain_says_so(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin, without_benefit="refuse")
    member = await _member(client, t)
    assert (await _book(client, t, member, _slot(3, 9))).status_code == 201
    assert (await _book(client, t, member, _slot(3, 10))).status_code == 201
    r = await _book(client, t, member, _slot(3, 11))
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "member_id"


async def test_32_tills_booking_one_slot_give_it_once_and_one_member_uses_the_quota_twice(
    nestpoint_tenant, nestpoint_enable_plugin, nestpoint_concurrent_client
):
    t, client = nestpoint_tenant, nestpoint_concurrent_client
    await _set_up(client, t, nestpoint_enable_plugin)
    members = [await _member(client, t) for _ in range(32)]
    same_slot = await asyncio.gather(*[_book(client, t, m, _slot(4, 14)) for m in members])
    assert Counter(r.status_code for r in same_slot) == {201: 1, 409: 31}
    one_member = members[0]
    slots = [_slot(5, 9) if i == 0 else _slot(5 + i // 16, 9 + (i % 16) // 2, 30 * (i % 2))
             for i in range(32)]  # fmt: skip
    spread = await asyncio.gather(*[_book(client, t, one_member, s) for s in slots])
    assert Counter(r.status_code for r in spread)[201] == len(set(slots))
    free = sum(r.json()["free_by_benefit"] for r in spread + same_slot if r.status_code == 201
               and r.json()["member_id"] == one_member)  # fmt: skip
    assert free == 2  # the month's quota, used exactly once each


async def test_cut_off_reschedule_and_slots_that_are_not(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin, cutoff_hours=4)
    member = await _member(client, t)
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    cases = [(soon, "starts_at"), (_slot(2, 9, 10), "starts_at"), (_slot(2, 20), "starts_at")]
    for starts_at, field in cases:
        r = await _book(client, t, member, starts_at)
        assert r.status_code == 422, (starts_at, r.text)
        assert r.json()["errors"][0]["field"] == field
    booked = await _book(client, t, member, _slot(2, 9))
    moved = await client.post(
        f"{BASE}/bookings/{booked.json()['id']}/reschedule",
        json={"starts_at": _slot(2, 15)},
        headers=t.store("S1"),
    )
    assert moved.status_code == 200, moved.text
    assert datetime.fromisoformat(moved.json()["starts_at"]) == datetime.fromisoformat(_slot(2, 15))


async def test_no_shows_stop_free_booking_and_notes_are_for_hq_only(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin, no_show_limit=2)
    member = await _member(client, t)
    ids = [(await _book(client, t, member, _slot(2, h))).json()["id"] for h in (9, 10)]
    context = PluginContext(PLUGIN, t.id, None, {})
    async with context.session() as db:  # the job, two days on: both were missed
        marked = await service.mark_no_shows(db, context, datetime.now(UTC) + timedelta(days=3))
    assert marked == 2
    r = await _book(client, t, member, _slot(2, 11))
    assert r.json()["free_by_benefit"] is False  # held back by the policy
    async with context.session() as db:  # this one happened an hour ago
        past = datetime.now(UTC) - timedelta(hours=1)
        await db.execute(
            update(Consultation)
            .where(Consultation.id == uuid.UUID(r.json()["id"]))
            .values(starts_at=past)
        )
    note = {"status": "completed", "notes": "母乳喂养指导,建议两周后复诊"}
    r = await client.post(
        f"{BASE}/bookings/{r.json()['id']}/outcome", json=note, headers=t.store("S1")
    )
    assert r.status_code == 200, r.text
    assert r.json()["notes"] is None  # a store's key never sees the notes
    r = await client.get(f"{BASE}/members/{member}/consultations", headers=t.hq())
    # Oldest first: the completed one was an hour ago, the two missed ones after it.
    assert [c["notes"] for c in r.json()] == [note["notes"], None, None]
    assert [c["status"] for c in r.json()] == ["completed", "no_show", "no_show"]
    assert ids == [c["id"] for c in r.json()][1:]


async def test_adviser_and_not_available_where_the_plugin_is_off(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin)
    member = await _member(client, t)
    r = await client.put(
        f"{BASE}/members/{member}/adviser", json={"consultant_code": "wang"}, headers=t.store("S1")
    )
    assert r.status_code == 200, r.text
    r = await client.get(f"{BASE}/members/{member}/adviser", headers=t.store("S1"))
    assert r.json()["consultant_name"] == "王老师"
    r = await client.post(
        f"{BASE}/consultants/wang/bookings",
        json={"idempotency_key": uuid.uuid4().hex, "member_id": member, "starts_at": _slot(2, 9)},
        headers=t.store("S2"),
    )
    assert r.status_code == 404
    r = await client.get(f"/api/v1/members/{member}/benefits", headers=t.store("S2"))
    consult = next(e for e in r.json()["entitlements"] if e["benefit_code"] == "consult")
    assert consult["unusable_reason"] == "not_at_this_store"


async def test_the_members_console_panel_lists_bookings_escaped_notes_for_hq_only(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin)
    member = await _member(client, t)
    r = await _book(client, t, member, _slot(2, 9))
    assert r.status_code == 201, r.text
    hq = PluginContext(PLUGIN, t.id, None, {})
    async with hq.session() as db:  # it happened an hour ago
        past = datetime.now(UTC) - timedelta(hours=1)
        await db.execute(
            update(Consultation)
            .where(Consultation.id == uuid.UUID(r.json()["id"]))
            .values(starts_at=past)
        )
    note = {"status": "completed", "notes": "<b>复诊</b> & follow up"}
    done = await client.post(
        f"{BASE}/bookings/{r.json()['id']}/outcome", json=note, headers=t.store("S1")
    )
    assert done.status_code == 200, done.text
    shown = await member_bookings(hq, member)
    assert "<td>wang</td>" in shown
    assert "<td>completed</td>" in shown
    assert "&lt;b&gt;复诊&lt;/b&gt; &amp; follow up" in shown  # escaped, never markup
    assert "<b>" not in shown
    store = PluginContext(PLUGIN, t.id, t.stores["S1"], {})
    assert "复诊" not in await member_bookings(store, member)  # notes are HQ's
    assert await member_bookings(hq, str(uuid.uuid4())) == '<p class="muted">—</p>'
    # In the console: the user's language; no notes for a user who sees no personal data.
    analyst = ConsoleViewer("hq_analyst", "zh_CN", personal_data=False)
    seen = await member_bookings(PluginContext(PLUGIN, t.id, None, {}, analyst), member)
    assert "<th>顾问</th>" in seen
    assert "<td>wang</td>" in seen
    assert "复诊" not in seen
    admin = ConsoleViewer("hq_admin", "en", personal_data=True)
    seen = await member_bookings(PluginContext(PLUGIN, t.id, None, {}, admin), member)
    assert "<th>Consultant</th>" in seen
    assert "&lt;b&gt;复诊" in seen
    panel = ConsolePanel("bookings", PANEL_TITLE, "member", render=member_bookings)
    assert (panel.title_in("zh_CN"), panel.title_in("en")) == ("育儿咨询预约", "Consultations")
