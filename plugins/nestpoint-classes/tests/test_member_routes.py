"""The member's own class bookings through the member API (``/api/v1/me/plugins/classes/``):
upcoming sessions, booking a place for one's child, the waitlist, cancelling, by the
plugin's rules at the session's store; another member's booking is never reached."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

PLUGIN = "classes"
STAFF = "/api/v1/plugins/classes"
ME = "/api/v1/me/plugins/classes"
SEAT = {"name": "亲子课 Class place", "type": "classes.class_seat", "quota": 2}


def _at(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


async def _family(client, t, months_old: int = 24) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """A member with one child ``months_old`` months old: (member id, child id)."""
    born = date.today() - timedelta(days=months_old * 30 + 5)
    body = {
        "phone": f"134{uuid.uuid4().int % 100_000_000:08d}",
        "guardian_consent": {"granted": True, "source": "pos"},
        "children": [{"nickname": "宝宝", "birth_date": str(born)}],
    }
    r = await client.post("/api/v1/members", json=body, headers=t.hq())
    assert r.status_code == 201, r.text
    r = await client.get(f"/api/v1/members/{r.json()['id']}", headers=t.hq())
    return str(r.json()["id"]), str(r.json()["children"][0]["id"])


async def _session(client, t, code: str, store: str = "S1", **extra: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
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
    r = await client.put(f"{STAFF}/sessions/{code}", json=body, headers=t.store(store))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _book(client, me, code: str, child: str, key: str | None = None):  # type: ignore[no-untyped-def]
    body = {"idempotency_key": key or uuid.uuid4().hex, "child_id": child}
    return await client.post(f"{ME}/sessions/{code}/bookings", json=body, headers=me)


async def _seats_left(client, me) -> int:  # type: ignore[no-untyped-def]
    r = await client.get("/api/v1/me/benefits", headers=me)
    held = next(e for e in r.json()["entitlements"] if e["benefit_code"] == "class-seat")
    return int(held["remaining"])


async def _free_seats_for_everyone(client, t) -> None:  # type: ignore[no-untyped-def]
    r = await client.put("/api/v1/benefits/class-seat", json=SEAT, headers=t.hq())
    assert r.status_code == 200, r.text
    r = await client.get("/api/v1/loyalty/program", headers=t.hq())
    program = r.json()
    program.pop("version")
    program["tiers"][0]["benefits"] = ["class-seat"]
    r = await client.put("/api/v1/loyalty/program", json=program, headers=t.hq())
    assert r.status_code == 200, r.text


async def test_a_member_books_their_child_lists_and_cancels_and_the_waitlist_moves_up(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin, nestpoint_member_token
):
    t, client = nestpoint_tenant, nestpoint_client
    await nestpoint_enable_plugin(t, PLUGIN, store="S1", config={"free_benefits": ["class-seat"]})
    await _free_seats_for_everyone(client, t)
    await _session(client, t, "music-1", capacity=1)
    member, child = await _family(client, t)
    me = await nestpoint_member_token(t, member)

    r = await client.get(f"{ME}/sessions", headers=me)
    assert r.status_code == 200, r.text
    [listed] = r.json()
    assert (listed["code"], listed["booked"], listed["store_id"]) == (
        "music-1",
        0,
        str(t.stores["S1"]),
    )
    assert listed["opens_for_me_at"] == listed["opens_at"]  # the entry tier: no head start

    key = uuid.uuid4().hex
    booked = await _book(client, me, "music-1", child, key)
    assert booked.status_code == 201, booked.text
    mine = booked.json()
    assert (mine["status"], mine["free_by_benefit"], mine["title"]) == (
        "booked",
        True,
        "亲子音乐 Music together",
    )
    assert "member_id" not in mine
    replay = await _book(client, me, "music-1", child, key)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == mine
    assert await _seats_left(client, me) == 1

    waiting, waiting_child = await _family(client, t)
    me_waiting = await nestpoint_member_token(t, waiting)
    queued = await _book(client, me_waiting, "music-1", waiting_child)
    assert queued.status_code == 201, queued.text
    assert (queued.json()["status"], queued.json()["waitlist_position"]) == ("waitlisted", 1)

    r = await client.get(f"{ME}/bookings", headers=me)
    assert [b["id"] for b in r.json()] == [mine["id"]]
    r = await client.post(f"{ME}/bookings/{mine['id']}/cancel", headers=me)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert await _seats_left(client, me) == 2  # the seat came back
    r = await client.get(f"{ME}/bookings", headers=me_waiting)
    assert [(b["status"], b["waitlist_position"]) for b in r.json()] == [("booked", None)]
    r = await client.get(
        "/api/v1/events", params={"type": "classes.booking_booked"}, headers=t.hq()
    )
    assert {e["store_id"] for e in r.json()["items"]} == {str(t.stores["S1"])}
    actions = await _audit(client, t)
    assert ("classes.booked", "member", member) in actions
    assert ("classes.cancelled", "member", member) in actions


async def _audit(client, t) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    found, cursor = [], None
    while True:
        params = {"limit": 200} | ({"cursor": cursor} if cursor else {})
        r = await client.get("/api/v1/audit", params=params, headers=t.hq())
        found += [(e["action"], e["actor_kind"], e["actor_id"]) for e in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if not cursor:
            return found


async def test_another_members_booking_and_child_are_never_reached(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin, nestpoint_member_token
):
    t, client = nestpoint_tenant, nestpoint_client
    await nestpoint_enable_plugin(t, PLUGIN, store="S1")
    await _session(client, t, "art-1")
    a, a_child = await _family(client, t)
    b, b_child = await _family(client, t)
    me_a, me_b = await nestpoint_member_token(t, a), await nestpoint_member_token(t, b)
    theirs = (await _book(client, me_a, "art-1", a_child)).json()["id"]

    r = await _book(client, me_b, "art-1", a_child)  # someone else's child
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "child_id"
    assert (await client.get(f"{ME}/bookings", headers=me_b)).json() == []
    for target in (theirs, str(uuid.uuid4())):
        r = await client.post(f"{ME}/bookings/{target}/cancel", headers=me_b)
        assert r.status_code == 404, r.text
    key = uuid.uuid4().hex  # the same key, chosen by both: two bookings
    assert (await _book(client, me_b, "art-1", b_child, key)).status_code == 201
    await _session(client, t, "art-2", starts_at=_at(100))
    assert (await _book(client, me_a, "art-2", a_child, key)).status_code == 201
    r = await client.get(f"{ME}/bookings", headers=me_a)
    assert [(b["session_code"], b["status"]) for b in r.json()] == [
        ("art-1", "booked"),
        ("art-2", "booked"),
    ]


async def test_two_members_racing_for_the_last_place(
    nestpoint_tenant,
    nestpoint_client,
    nestpoint_concurrent_client,
    nestpoint_enable_plugin,
    nestpoint_member_token,
):
    """With a waitlist the one who loses waits first in line; without, a full session
    refuses (422 naming ``code``, the plugin's rule). Never two in one place."""
    t, client = nestpoint_tenant, nestpoint_client
    await nestpoint_enable_plugin(t, PLUGIN, store="S1")
    await _session(client, t, "swim-1", capacity=1)
    families = [await _family(client, t) for _ in range(2)]
    tokens = [await nestpoint_member_token(t, m) for m, _ in families]
    raced = await asyncio.gather(
        *[
            _book(nestpoint_concurrent_client, me, "swim-1", child)
            for me, (_, child) in zip(tokens, families, strict=True)
        ]
    )
    assert [r.status_code for r in raced] == [201, 201], [r.text for r in raced]
    assert Counter(r.json()["status"] for r in raced) == {"booked": 1, "waitlisted": 1}

    await nestpoint_enable_plugin(t, PLUGIN, store="S1", config={"waitlist": False})
    await _session(client, t, "swim-2", capacity=1, starts_at=_at(120))
    raced = await asyncio.gather(
        *[
            _book(nestpoint_concurrent_client, me, "swim-2", child)
            for me, (_, child) in zip(tokens, families, strict=True)
        ]
    )
    assert Counter(r.status_code for r in raced) == {201: 1, 422: 1}, [r.text for r in raced]
    lost = next(r for r in raced if r.status_code == 422)
    assert lost.json()["errors"][0]["field"] == "code"
    r = await client.get(f"{STAFF}/sessions/swim-2/bookings", headers=t.store("S1"))
    assert [b["status"] for b in r.json()] == ["booked"]


async def test_upcoming_sessions_where_the_plugin_is_on_with_my_tiers_head_start(
    nestpoint_tenant,
    nestpoint_client,
    nestpoint_enable_plugin,
    nestpoint_member_token,
):
    t, client = nestpoint_tenant, nestpoint_client
    await nestpoint_enable_plugin(t, PLUGIN, config={"tier_early_hours": {"gold": 24}})
    await _session(client, t, "yoga-s1", opens_at=_at(12))  # gold: open since 12 h ago
    await _session(client, t, "yoga-s2", store="S2", starts_at=_at(80))
    await _session(client, t, "yoga-later", starts_at=_at(24 * 40))  # past the default month
    gold, gold_child = await _family(client, t)
    r = await client.post(
        f"/api/v1/members/{gold}/growth",
        json={"amount": 5000, "reason": "test", "idempotency_key": uuid.uuid4().hex},
        headers=t.hq(),
    )
    assert r.json()["tier_code"] == "gold"
    me = await nestpoint_member_token(t, gold)

    r = await client.get(f"{ME}/sessions", headers=me)
    assert [s["code"] for s in r.json()] == ["yoga-s1", "yoga-s2"]
    s1 = r.json()[0]
    head_start = datetime.fromisoformat(s1["opens_at"]) - datetime.fromisoformat(
        s1["opens_for_me_at"]
    )
    assert head_start == timedelta(hours=24)
    assert (await _book(client, me, "yoga-s1", gold_child)).status_code == 201  # opened for gold
    r = await client.get(f"{ME}/sessions", params={"to": _at(24 * 45)}, headers=me)
    assert [s["code"] for s in r.json()] == ["yoga-s1", "yoga-s2", "yoga-later"]

    await nestpoint_enable_plugin(t, PLUGIN, store="S2", enabled=False)
    r = await client.get(f"{ME}/sessions", headers=me)
    assert [s["code"] for s in r.json()] == ["yoga-s1"]
    r = await _book(client, me, "yoga-s2", gold_child)
    assert r.status_code == 404

    for params, field in (
        ({"to": _at(24 * 100)}, "to"),
        ({"from": _at(48), "to": _at(24)}, "to"),
        ({"from": "2026-12-01T10:00:00"}, "from"),
    ):
        r = await client.get(f"{ME}/sessions", params=params, headers=me)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["errors"][0]["field"] == field
    r = await client.get(f"{ME}/sessions", params={"from": "\x00"}, headers=me)
    assert r.status_code == 400


async def test_keys_are_refused_and_bad_bodies_name_the_field(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin, nestpoint_member_token
):
    t, client = nestpoint_tenant, nestpoint_client
    me = await nestpoint_member_token(t, (await _family(client, t))[0])
    assert (await client.get(f"{ME}/bookings", headers=me)).status_code == 404  # plugin off
    await nestpoint_enable_plugin(t, PLUGIN, store="S2")
    await _session(client, t, "art-1", store="S2")
    for headers in (t.hq(), t.store("S2")):
        assert (await client.get(f"{ME}/bookings", headers=headers)).status_code == 403
    assert (await client.get(f"{ME}/sessions")).status_code == 401
    cases: list[tuple[Any, str]] = [
        ({"child_id": str(uuid.uuid4())}, "idempotency_key"),
        ({"idempotency_key": uuid.uuid4().hex}, "child_id"),
        ({"idempotency_key": uuid.uuid4().hex, "child_id": "not-a-uuid"}, "child_id"),
        ({"idempotency_key": "x" * 65, "child_id": str(uuid.uuid4())}, "idempotency_key"),
        (
            {"idempotency_key": uuid.uuid4().hex, "child_id": str(uuid.uuid4()), "member_id": "x"},
            "member_id",
        ),
    ]
    for body, field in cases:
        r = await client.post(f"{ME}/sessions/art-1/bookings", json=body, headers=me)
        assert r.status_code in (400, 422), (body, r.text)
        assert field in [e["field"] for e in r.json()["errors"]], (body, r.text)
    body = {"idempotency_key": uuid.uuid4().hex, "child_id": str(uuid.uuid4())}
    r = await client.post(f"{ME}/sessions/Bad Code/bookings", json=body, headers=me)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "code"
    r = await client.post(f"{ME}/sessions/nothing-here/bookings", json=body, headers=me)
    assert r.status_code == 404
