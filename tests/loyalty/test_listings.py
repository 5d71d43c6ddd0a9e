"""Orders, refunds and holds listed: newest first, cursor-paginated, filtered by member,
store and the chain's local days; a store key lists its own store's records only."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from loyalty.helpers import order_body
from loyalty.support import adjust, all_pages, post_order, refund
from nestpoint.errors import Invalid
from nestpoint.orders.service import Period, local_period

# Asia/Shanghai (the default time zone): 23:30 and 00:30 local fall on one UTC day.
NOV_1_LATE = "2026-11-01T23:30:00+08:00"  # 15:30 UTC, 1 November
NOV_2_EARLY = "2026-11-02T00:30:00+08:00"  # 16:30 UTC, 1 November
NOV_3 = "2026-11-03T10:00:00+08:00"
NOV_5 = "2026-11-05T10:00:00+08:00"


async def _order(client: Any, headers: dict[str, str], paid_at: str, **kw: Any) -> dict[str, Any]:
    body = order_body(**kw)
    body["paid_at"] = paid_at
    return await post_order(client, headers, body)


async def _seed(client: Any, t: Any, enrol: Any) -> dict[str, Any]:
    hq = t.hq()
    a, b = await enrol(hq), await enrol(hq)
    o = {
        "a1": await _order(client, hq, NOV_1_LATE, member={"id": a["id"]}, store_code="S1"),
        "a2": await _order(client, hq, NOV_2_EARLY, member={"id": a["id"]}, store_code="S2"),
        "b1": await _order(client, hq, NOV_3, member={"id": b["id"]}, store_code="S1"),
        "anon": await _order(client, hq, NOV_5, store_code="S1"),
    }
    return {"a": a, "b": b, "orders": o}


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [i["id"] for i in items]


async def test_orders_listed_newest_paid_first_by_member_store_and_local_day(
    client, make_tenant, enrol
) -> None:
    t = await make_tenant()
    hq = t.hq()
    seeded = await _seed(client, t, enrol)
    o, a = seeded["orders"], seeded["a"]
    newest_first = [o["anon"]["id"], o["b1"]["id"], o["a2"]["id"], o["a1"]["id"]]
    assert _ids(await all_pages(client, "/api/v1/orders", hq)) == newest_first
    # Page by page: the cursor continues where the last page ended.
    r = await client.get("/api/v1/orders", params={"limit": 3}, headers=hq)
    assert r.status_code == 200, r.text
    first = r.json()
    assert _ids(first["items"]) == newest_first[:3]
    r = await client.get(
        "/api/v1/orders", params={"limit": 3, "cursor": first["next_cursor"]}, headers=hq
    )
    assert r.status_code == 200, r.text
    assert _ids(r.json()["items"]) == newest_first[3:]
    assert r.json()["next_cursor"] is None
    item = first["items"][0]
    assert item["member_id"] is None
    assert item["store_id"] == str(t.stores["S1"])
    assert (item["status"], item["total_fen"], item["refunded_fen"]) == ("paid", 10000, 0)

    member = await all_pages(client, "/api/v1/orders", hq, member=a["id"])
    assert _ids(member) == [o["a2"]["id"], o["a1"]["id"]]
    store = await all_pages(client, "/api/v1/orders", hq, store="S1")
    assert _ids(store) == [o["anon"]["id"], o["b1"]["id"], o["a1"]["id"]]
    both = await all_pages(client, "/api/v1/orders", hq, member=a["id"], store="S2")
    assert _ids(both) == [o["a2"]["id"]]
    # Local days: 23:30 and 00:30 in Shanghai are two days though one UTC day.
    assert _ids(await all_pages(client, "/api/v1/orders", hq, day="2026-11-01")) == [o["a1"]["id"]]
    assert _ids(await all_pages(client, "/api/v1/orders", hq, day="2026-11-02")) == [o["a2"]["id"]]
    assert await all_pages(client, "/api/v1/orders", hq, day="2026-11-04") == []
    span = await all_pages(
        client, "/api/v1/orders", hq, **{"from": "2026-11-02", "to": "2026-11-03"}
    )
    assert _ids(span) == [o["b1"]["id"], o["a2"]["id"]]
    since = await all_pages(client, "/api/v1/orders", hq, **{"from": "2026-11-03"})
    assert _ids(since) == [o["anon"]["id"], o["b1"]["id"]]
    until = await all_pages(client, "/api/v1/orders", hq, to="2026-11-01")
    assert _ids(until) == [o["a1"]["id"]]
    wide = {"from": "0001-01-01", "to": "9999-12-31"}
    assert _ids(await all_pages(client, "/api/v1/orders", hq, **wide)) == newest_first
    # The member's own listing says the same.
    mine = await all_pages(client, f"/api/v1/members/{a['id']}/orders", hq)
    assert _ids(mine) == [o["a2"]["id"], o["a1"]["id"]]
    mine = await all_pages(client, f"/api/v1/members/{a['id']}/orders", hq, day="2026-11-01")
    assert _ids(mine) == [o["a1"]["id"]]


async def test_order_listing_refuses_what_it_cannot_filter(client, make_tenant) -> None:
    t = await make_tenant()
    hq = t.hq()
    cases = [
        ({"day": "2026-11-01", "from": "2026-11-01"}, 422, "query.day"),
        ({"from": "2026-11-03", "to": "2026-11-02"}, 422, "query.from"),
        ({"store": "NOPE"}, 422, "query.store"),
        ({"day": "2026-02-30"}, 400, "query.day"),
        ({"member": "not-a-uuid"}, 400, "query.member"),
    ]
    for path in ("/api/v1/orders", "/api/v1/refunds"):
        for params, status, field in cases:
            r = await client.get(path, params=params, headers=hq)
            assert r.status_code == status, (path, params, r.text)
            assert field in [e["field"] for e in r.json()["errors"]], (path, params, r.text)
    # A cursor of one listing is refused by another (and by other filters).
    await post_order(client, hq, order_body())
    await post_order(client, hq, order_body())
    r = await client.get("/api/v1/orders", params={"limit": 1}, headers=hq)
    cursor = r.json()["next_cursor"]
    assert cursor
    r = await client.get("/api/v1/orders", params={"cursor": cursor, "store": "S1"}, headers=hq)
    assert r.status_code == 400, r.text
    r = await client.get("/api/v1/refunds", params={"cursor": cursor}, headers=hq)
    assert r.status_code == 400, r.text


async def test_store_keys_list_their_own_stores_orders_only(
    client, make_tenant, enrol, till
) -> None:
    t = await make_tenant()
    seeded = await _seed(client, t, enrol)
    o, a = seeded["orders"], seeded["a"]
    s1, s2 = await till(t, "S1"), await till(t, "S2")
    at_s1 = [o["anon"]["id"], o["b1"]["id"], o["a1"]["id"]]
    assert _ids(await all_pages(client, "/api/v1/orders", s1)) == at_s1
    assert _ids(await all_pages(client, "/api/v1/orders", s1, store="S1")) == at_s1
    assert _ids(await all_pages(client, "/api/v1/orders", s2)) == [o["a2"]["id"]]
    r = await client.get("/api/v1/orders", params={"store": "S2"}, headers=s1)
    assert r.status_code == 403, r.text
    assert r.json()["errors"][0]["field"] == "query.store"
    assert _ids(await all_pages(client, "/api/v1/orders", s1, member=a["id"])) == [o["a1"]["id"]]
    mine = await all_pages(client, f"/api/v1/members/{a['id']}/orders", s2)
    assert _ids(mine) == [o["a2"]["id"]]
    # Without orders:read, no listing.
    r = await client.post(
        "/api/v1/api-keys",
        json={"name": "no orders", "kind": "store", "store_code": "S1", "scopes": ["members:read"]},
        headers=t.hq(),
    )
    limited = {"Authorization": f"Bearer {r.json()['key']}"}
    for path in ("/api/v1/orders", "/api/v1/refunds", f"/api/v1/members/{a['id']}/orders"):
        r = await client.get(path, headers=limited)
        assert r.status_code == 403, (path, r.text)


async def test_franchise_store_reads_member_orders_only_within_its_reach(
    client, make_tenant, enrol, till
) -> None:
    t = await make_tenant()
    r = await client.post(
        "/api/v1/stores", json={"code": "F1", "name": "加盟店", "kind": "franchise"}, headers=t.hq()
    )
    assert r.status_code == 201, r.text
    franchise, direct = await till(t, "F1"), await till(t, "S1")
    own = await enrol(franchise)
    other = await enrol(direct)
    at_f1 = await _order(client, franchise, NOV_3, member={"id": other["id"]}, store_code=None)
    # The member list of a franchise store is its own members: another's is 404, as if none.
    r = await client.get(f"/api/v1/members/{other['id']}/orders", headers=franchise)
    assert r.status_code == 404, r.text
    assert await all_pages(client, f"/api/v1/members/{own['id']}/orders", franchise) == []
    # Its own store's orders it lists whoever the member (it served them at the till).
    listed = await all_pages(client, "/api/v1/orders", franchise, member=other["id"])
    assert _ids(listed) == [at_f1["id"]]
    assert await all_pages(client, f"/api/v1/members/{other['id']}/orders", direct) == []


async def test_another_tenants_ids_are_not_found_nor_listed(client, make_tenant, enrol) -> None:
    a, b = await make_tenant(), await make_tenant()
    seeded = await _seed(client, a, enrol)
    member_a = seeded["a"]["id"]
    r = await client.get(f"/api/v1/members/{member_a}/orders", headers=b.hq())
    assert r.status_code == 404, r.text
    for path in ("/api/v1/orders", "/api/v1/refunds", "/api/v1/points/holds"):
        assert await all_pages(client, path, b.hq(), member=member_a) == []
        assert await all_pages(client, path, b.hq()) == []


async def test_refunds_listed_newest_first_by_member_store_and_day(
    client, make_tenant, enrol, till
) -> None:
    t = await make_tenant()
    hq = t.hq()
    seeded = await _seed(client, t, enrol)
    o, a = seeded["orders"], seeded["a"]
    made = []
    for name in ("a1", "a2", "b1"):
        r = await refund(client, hq, o[name], {"external_id": f"R-{name}"})
        assert r.status_code == 201, r.text
        made.append(r.json())
    listed = await all_pages(client, "/api/v1/refunds", hq)
    assert [x["external_id"] for x in listed] == ["R-b1", "R-a2", "R-a1"]
    first = listed[0]
    assert first["order_id"] == o["b1"]["id"]
    assert (first["order_channel"], first["order_external_id"]) == ("pos", o["b1"]["external_id"])
    assert first["store_id"] == str(t.stores["S1"])
    assert first["member_id"] == seeded["b"]["id"]
    assert first["amount_fen"] == 10000
    by_member = await all_pages(client, "/api/v1/refunds", hq, member=a["id"])
    assert [x["external_id"] for x in by_member] == ["R-a2", "R-a1"]
    by_store = await all_pages(client, "/api/v1/refunds", hq, store="S2")
    assert [x["external_id"] for x in by_store] == ["R-a2"]
    r = await client.get("/api/v1/refunds", params={"limit": 2}, headers=hq)
    page = r.json()
    assert [x["external_id"] for x in page["items"]] == ["R-b1", "R-a2"]
    r = await client.get(
        "/api/v1/refunds", params={"limit": 2, "cursor": page["next_cursor"]}, headers=hq
    )
    assert [x["external_id"] for x in r.json()["items"]] == ["R-a1"]
    # The refunds were made today (local): no refund on the orders' days.
    assert await all_pages(client, "/api/v1/refunds", hq, day="2026-11-01") == []
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    assert len(await all_pages(client, "/api/v1/refunds", hq, day=today)) == 3
    s1 = await till(t, "S1")
    assert [x["external_id"] for x in await all_pages(client, "/api/v1/refunds", s1)] == [
        "R-b1",
        "R-a1",
    ]
    r = await client.get("/api/v1/refunds", params={"store": "S2"}, headers=s1)
    assert r.status_code == 403, r.text


async def test_holds_listed_by_member_status_and_store(client, make_tenant, enrol, till) -> None:
    t = await make_tenant()
    hq = t.hq()
    a, b = await enrol(hq), await enrol(hq)
    for m in (a, b):
        assert (await adjust(client, hq, m["id"], 5000)).status_code == 201
    s1, s2 = await till(t, "S1"), await till(t, "S2")

    async def hold(headers: dict[str, str], member_id: str, points: int) -> dict[str, Any]:
        r = await client.post(
            "/api/v1/points/holds", json={"member_id": member_id, "points": points}, headers=headers
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    h_hq = await hold(hq, a["id"], 100)
    h_s1 = await hold(s1, a["id"], 200)
    h_s2 = await hold(s2, b["id"], 300)
    h_s1b = await hold(s1, b["id"], 400)
    r = await client.post(f"/api/v1/points/holds/{h_s1['id']}/release", headers=s1)
    assert r.status_code == 200, r.text
    everything = await all_pages(client, "/api/v1/points/holds", hq)
    assert _ids(everything) == [h_s1b["id"], h_s2["id"], h_s1["id"], h_hq["id"]]
    assert everything[-1]["store_id"] is None
    assert everything[0]["store_id"] == str(t.stores["S1"])
    by_member = await all_pages(client, "/api/v1/points/holds", hq, member=a["id"])
    assert _ids(by_member) == [h_s1["id"], h_hq["id"]]
    held = await all_pages(client, "/api/v1/points/holds", hq, status="held")
    assert _ids(held) == [h_s1b["id"], h_s2["id"], h_hq["id"]]
    released = await all_pages(client, "/api/v1/points/holds", hq, status="released")
    assert [(h["id"], h["status"]) for h in released] == [(h_s1["id"], "released")]
    assert await all_pages(client, "/api/v1/points/holds", hq, status="captured") == []
    at_s1 = await all_pages(client, "/api/v1/points/holds", hq, store="S1")
    assert _ids(at_s1) == [h_s1b["id"], h_s1["id"]]
    # A store key: its own store's holds only.
    assert _ids(await all_pages(client, "/api/v1/points/holds", s1)) == [h_s1b["id"], h_s1["id"]]
    mine = await all_pages(client, "/api/v1/points/holds", s1, member=b["id"], status="held")
    assert _ids(mine) == [h_s1b["id"]]
    r = await client.get("/api/v1/points/holds", params={"store": "S2"}, headers=s1)
    assert r.status_code == 403, r.text
    r = await client.get("/api/v1/points/holds", params={"status": "gone"}, headers=hq)
    assert r.status_code == 400, r.text
    r = await client.get("/api/v1/points/holds", params={"store": "NOPE"}, headers=hq)
    assert r.status_code == 422, r.text
    r = await client.get("/api/v1/points/holds", params={"limit": 3}, headers=hq)
    page = r.json()
    assert _ids(page["items"]) == _ids(everything)[:3]
    r = await client.get(
        "/api/v1/points/holds", params={"limit": 3, "cursor": page["next_cursor"]}, headers=hq
    )
    assert _ids(r.json()["items"]) == [h_hq["id"]]


# ------------------------------------------------------------------ the pure rule of days


def test_local_days_are_the_chains_midnights_in_utc() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    day = local_period(shanghai, date(2026, 11, 1), None, None)
    assert day == Period(
        datetime(2026, 10, 31, 16, 0, tzinfo=UTC), datetime(2026, 11, 1, 16, 0, tzinfo=UTC)
    )
    span = local_period(shanghai, None, date(2026, 11, 1), date(2026, 11, 3))
    assert (span.start, span.end) == (day.start, datetime(2026, 11, 3, 16, 0, tzinfo=UTC))
    assert local_period(shanghai, None, None, None) == Period(None, None)
    assert local_period(shanghai, None, date(2026, 11, 1), None).end is None
    # A day of 25 hours (New York's clocks go back on 1 November 2026).
    new_york = local_period(ZoneInfo("America/New_York"), date(2026, 11, 1), None, None)
    assert new_york.start is not None
    assert new_york.end is not None
    assert new_york.end - new_york.start == timedelta(hours=25)
    # The calendar's ends filter nothing (and never overflow).
    assert local_period(shanghai, None, date.min, date.max) == Period(None, None)
    assert local_period(shanghai, date.max, None, None).end is None


def test_local_days_refuse_both_kinds_and_a_backward_span() -> None:
    zone = ZoneInfo("Asia/Shanghai")
    with pytest.raises(Invalid) as both:
        local_period(zone, date(2026, 11, 1), date(2026, 11, 1), None)
    assert both.value.errors[0].field == "query.day"
    with pytest.raises(Invalid) as backward:
        local_period(zone, None, date(2026, 11, 2), date(2026, 11, 1))
    assert backward.value.errors[0].field == "query.from"
