"""The delivery plugin, tested with Nestpoint's test kit (``nestpoint.testing``)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta

from nestpoint_delivery.schemas import DeliveryConfig
from nestpoint_delivery.service import bookable_window

PLUGIN = "delivery"
BASE = "/api/v1/plugins/delivery"
FREE = {"name": "送货上门 Free delivery", "type": "delivery.home_delivery", "quota": 1}


def test_the_window_opens_tomorrow_until_the_cut_off_then_the_day_after():
    config = DeliveryConfig(cutoff=time(18, 0), max_days_ahead=7)
    before = datetime(2026, 11, 29, 17, 59)
    after = datetime(2026, 11, 29, 18, 0)
    assert bookable_window(before, config) == (date(2026, 11, 30), date(2026, 12, 6))
    assert bookable_window(after, config) == (date(2026, 12, 1), date(2026, 12, 6))


async def _member(client, t) -> str:  # type: ignore[no-untyped-def]
    phone = f"139{uuid.uuid4().int % 100_000_000:08d}"
    r = await client.post("/api/v1/members", json={"phone": phone}, headers=t.hq())
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _day_after_tomorrow() -> str:
    return str(datetime.now(UTC).date() + timedelta(days=2))  # inside any cut-off's window


def _body(member_id: str, **extra) -> dict:  # type: ignore[no-untyped-def, type-arg]
    return {
        "idempotency_key": uuid.uuid4().hex,
        "member_id": member_id,
        "order_ref": "order-1",
        "address": "上海市徐汇区衡山路 88 号 1201",
        "slot_date": _day_after_tomorrow(),
        "slot": "morning",
        "install_guidance": True,
    } | extra


async def _free_delivery_for_everyone(client, t) -> None:  # type: ignore[no-untyped-def]
    """The entry tier holds the free delivery: a catalog entry of the plugin's type."""
    r = await client.put("/api/v1/benefits/free-delivery", json=FREE, headers=t.hq())
    assert r.status_code == 200, r.text
    r = await client.get("/api/v1/loyalty/program", headers=t.hq())
    program = r.json()
    program.pop("version")
    program["tiers"][0]["benefits"] = ["free-delivery"]
    r = await client.put("/api/v1/loyalty/program", json=program, headers=t.hq())
    assert r.status_code == 200, r.text


async def test_a_delivery_uses_the_free_benefit_once_and_cancelling_gives_it_back(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    r = await client.put("/api/v1/benefits/free-delivery", json=FREE, headers=t.hq())
    assert r.status_code == 422  # the plugin's type exists only once the plugin is enabled
    assert r.json()["errors"][0]["field"] == "type"
    await nestpoint_enable_plugin(t, PLUGIN, store="S1")
    await _free_delivery_for_everyone(client, t)
    member = await _member(client, t)

    body = _body(member)
    first = await client.post(f"{BASE}/requests", json=body, headers=t.store("S1"))
    assert first.status_code == 201, first.text
    assert first.json()["free_by_benefit"] is True
    assert first.json()["fee_fen"] == 0
    assert first.json()["address"] == body["address"]
    again = await client.post(f"{BASE}/requests", json=body, headers=t.store("S1"))
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    # The quota (1) is used: a second delivery pays the fee.
    second = await client.post(f"{BASE}/requests", json=_body(member), headers=t.store("S1"))
    assert second.json()["free_by_benefit"] is False
    assert second.json()["fee_fen"] == 1500
    # Cancelling the first gives the use back.
    delivery = first.json()["id"]
    r = await client.post(
        f"{BASE}/requests/{delivery}/status", json={"status": "cancelled"}, headers=t.store("S1")
    )
    assert r.status_code == 200, r.text
    r = await client.get(f"/api/v1/members/{member}/benefits", headers=t.store("S1"))
    held = {e["benefit_code"]: e for e in r.json()["entitlements"]}
    assert held["free-delivery"]["remaining"] == 1


async def test_not_available_where_the_plugin_is_off(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    await nestpoint_enable_plugin(t, PLUGIN, store="S1")
    await _free_delivery_for_everyone(client, t)
    member = await _member(client, t)
    r = await client.post(f"{BASE}/requests", json=_body(member), headers=t.store("S2"))
    assert r.status_code == 404  # the plugin's routes answer only where it is enabled
    r = await client.get(f"/api/v1/members/{member}/benefits", headers=t.store("S2"))
    held = {e["benefit_code"]: e for e in r.json()["entitlements"]}
    assert held["free-delivery"]["usable_here"] is False
    assert held["free-delivery"]["unusable_reason"] == "not_at_this_store"


async def test_rules_refuse_bad_requests_naming_the_field(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    await nestpoint_enable_plugin(t, PLUGIN, store="S1")
    member = await _member(client, t)
    today = str(datetime.now(UTC).date())
    cases = [
        (_body(member, slot_date=today), "slot_date"),
        (_body(member, slot="midnight"), "slot"),
    ]
    for body, field in cases:
        r = await client.post(f"{BASE}/requests", json=body, headers=t.store("S1"))
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["errors"]] == [field]
    r = await client.post(f"{BASE}/requests", json=_body(member), headers=t.hq())
    assert r.status_code == 422  # HQ reaches the plugin, but a delivery leaves from a store
    assert [e["field"] for e in r.json()["errors"]] == ["store"]


async def test_statuses_follow_the_fulfilment_order(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    await nestpoint_enable_plugin(t, PLUGIN, store="S1")
    member = await _member(client, t)
    r = await client.post(f"{BASE}/requests", json=_body(member), headers=t.store("S1"))
    delivery = r.json()["id"]

    async def move(status: str) -> int:
        r = await client.post(
            f"{BASE}/requests/{delivery}/status", json={"status": status}, headers=t.store("S1")
        )
        return r.status_code

    assert await move("delivered") == 409
    assert [await move(s) for s in ("scheduled", "out_for_delivery", "delivered")] == [200] * 3
    assert await move("delivered") == 200  # a retry is a no-op
    assert await move("cancelled") == 409
    r = await client.get(
        f"{BASE}/queue", params={"date": _day_after_tomorrow()}, headers=t.store("S1")
    )
    assert [(d["id"], d["status"]) for d in r.json()] == [(delivery, "delivered")]
    r = await client.get(
        "/api/v1/events", headers=t.hq(), params={"type": "delivery.status_changed"}
    )
    assert [e["payload"]["status"] for e in r.json()["items"]] == [
        "requested", "scheduled", "out_for_delivery", "delivered"
    ]  # fmt: skip


async def test_sixteen_parallel_bookings_never_overfill_a_slot_of_three(
    nestpoint_tenant, nestpoint_enable_plugin, nestpoint_concurrent_client
):
    t, client = nestpoint_tenant, nestpoint_concurrent_client
    slots = [{"code": "morning", "label": "09-12", "capacity": 3}]
    await nestpoint_enable_plugin(t, PLUGIN, store="S1", config={"slots": slots})
    members = [await _member(client, t) for _ in range(4)]
    responses = await asyncio.gather(
        *[
            client.post(f"{BASE}/requests", json=_body(m), headers=t.store("S1"))
            for m in members
            for _ in range(4)
        ]
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 3, 422: 13}, statuses
    r = await client.get(
        f"{BASE}/slots", params={"date": _day_after_tomorrow()}, headers=t.store("S1")
    )
    assert r.json()["slots"] == [
        {"slot": "morning", "label": "09-12", "capacity": 3, "booked": 3, "left": 0}
    ]
