"""The member's own consultations through the member API (``/api/v1/me/plugins/...``):
listing, slots, booking and cancelling with a member token, by the plugin's rules at the
consultant's store; another member's booking is never reached."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from nestpoint_consultations.models import Consultation
from sqlalchemy import update

from nestpoint.plugins.api import PluginContext

PLUGIN = "consultations"
STAFF = "/api/v1/plugins/consultations"
ME = "/api/v1/me/plugins/consultations"
FREE = {"name": "育儿咨询 Consultation", "type": "consultations.consultation", "quota": 2}
SHANGHAI = ZoneInfo("Asia/Shanghai")
EVERY_DAY = [{"weekday": d, "start": "09:00", "end": "17:00"} for d in range(1, 8)]


def _day(days: int) -> str:
    return str((datetime.now(SHANGHAI) + timedelta(days=days)).date())


def _slot(days: int, hour: int, minute: int = 0) -> str:
    day = (datetime.now(SHANGHAI) + timedelta(days=days)).date()
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI).isoformat()


async def _member(client, t) -> str:  # type: ignore[no-untyped-def]
    phone = f"135{uuid.uuid4().int % 100_000_000:08d}"
    r = await client.post("/api/v1/members", json={"phone": phone}, headers=t.hq())
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _consultant(client, t, store: str, code: str = "wang") -> None:  # type: ignore[no-untyped-def]
    body = {"name": "王老师", "kind": "parenting", "weekly": EVERY_DAY, "slot_minutes": 30}
    r = await client.put(f"{STAFF}/consultants/{code}", json=body, headers=t.store(store))
    assert r.status_code == 200, r.text


async def _set_up(client, t, enable, **config: Any) -> None:  # type: ignore[no-untyped-def]
    """The plugin at S1 with a consultant, and two free consultations a month for all."""
    await enable(t, PLUGIN, store="S1", config={"free_benefits": ["consult"], **config})
    await _consultant(client, t, "S1")
    r = await client.put("/api/v1/benefits/consult", json=FREE, headers=t.hq())
    assert r.status_code == 200, r.text
    r = await client.get("/api/v1/loyalty/program", headers=t.hq())
    program = r.json()
    program.pop("version")
    program["tiers"][0]["benefits"] = ["consult"]
    r = await client.put("/api/v1/loyalty/program", json=program, headers=t.hq())
    assert r.status_code == 200, r.text


async def _book(client, me, starts_at: str, key: str | None = None, code: str = "wang"):  # type: ignore[no-untyped-def]
    body = {"idempotency_key": key or uuid.uuid4().hex, "starts_at": starts_at}
    return await client.post(f"{ME}/consultants/{code}/bookings", json=body, headers=me)


async def _consults_left(client, me) -> int:  # type: ignore[no-untyped-def]
    r = await client.get("/api/v1/me/benefits", headers=me)
    assert r.status_code == 200, r.text
    held = next(e for e in r.json()["entitlements"] if e["benefit_code"] == "consult")
    return int(held["remaining"])


async def _audited(client, t, action: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    found, cursor = [], None
    while True:
        params = {"limit": 200} | ({"cursor": cursor} if cursor else {})
        r = await client.get("/api/v1/audit", params=params, headers=t.hq())
        assert r.status_code == 200, r.text
        found += [e for e in r.json()["items"] if e["action"] == action]
        cursor = r.json()["next_cursor"]
        if not cursor:
            return found


async def test_a_member_books_lists_and_cancels_their_own_consultation(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin, nestpoint_member_token
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin)
    member = await _member(client, t)
    me = await nestpoint_member_token(t, member)

    r = await client.get(f"{ME}/consultants", headers=me)
    assert r.status_code == 200, r.text
    assert [(c["code"], c["store_id"]) for c in r.json()] == [("wang", str(t.stores["S1"]))]
    r = await client.get(f"{ME}/consultants/wang/slots", params={"date": _day(2)}, headers=me)
    assert r.status_code == 200, r.text
    assert len(r.json()["slots"]) == 16

    key = uuid.uuid4().hex
    booked = await _book(client, me, _slot(2, 9), key)
    assert booked.status_code == 201, booked.text
    mine = booked.json()
    assert (mine["status"], mine["free_by_benefit"], mine["fee_fen"]) == ("booked", True, 0)
    assert (mine["consultant_name"], mine["store_id"]) == ("王老师", str(t.stores["S1"]))
    assert not {"notes", "member_id"} & mine.keys()  # the consultant's notes are HQ's
    again = await _book(client, me, _slot(2, 9), key)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == mine
    other_body = await _book(client, me, _slot(2, 10), key)
    assert other_body.status_code == 409
    assert other_body.json()["errors"][0]["field"] == "idempotency_key"
    assert await _consults_left(client, me) == 1  # used once, whatever the retries

    r = await client.get(f"{ME}/bookings", headers=me)
    assert [b["id"] for b in r.json()] == [mine["id"]]
    r = await client.get(f"{STAFF}/members/{member}/consultations", headers=t.store("S1"))
    assert [b["id"] for b in r.json()] == [mine["id"]]  # the store sees it at its till
    r = await client.get("/api/v1/events", params={"type": "benefit.used"}, headers=t.hq())
    assert [e["store_id"] for e in r.json()["items"]] == [str(t.stores["S1"])]  # used there
    [entry] = await _audited(client, t, "consultations.booked")
    assert (entry["actor_kind"], entry["actor_id"], entry["subject_id"]) == (
        "member",
        member,
        mine["id"],
    )

    for _ in range(2):  # cancelling again is a no-op
        r = await client.post(f"{ME}/bookings/{mine['id']}/cancel", headers=me)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled"
    assert await _consults_left(client, me) == 2  # the use came back
    [entry] = await _audited(client, t, "consultations.cancelled")
    assert (entry["actor_kind"], entry["actor_id"]) == ("member", member)
    r = await client.get(f"{ME}/consultants/wang/slots", params={"date": _day(2)}, headers=me)
    assert len(r.json()["slots"]) == 16  # the slot is free again


async def test_another_members_booking_is_never_reached(
    nestpoint_tenant,
    nestpoint_make_tenant,
    nestpoint_client,
    nestpoint_enable_plugin,
    nestpoint_member_token,
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin)
    a, b = await _member(client, t), await _member(client, t)
    me_a, me_b = await nestpoint_member_token(t, a), await nestpoint_member_token(t, b)
    booked = await _book(client, me_a, _slot(3, 9))
    assert booked.status_code == 201, booked.text
    theirs = booked.json()["id"]

    assert (await client.get(f"{ME}/bookings", headers=me_b)).json() == []
    for target in (theirs, str(uuid.uuid4())):
        r = await client.post(f"{ME}/bookings/{target}/cancel", headers=me_b)
        assert r.status_code == 404, r.text
    # The same key chosen by two members: each their own booking, no 409 between them.
    key = uuid.uuid4().hex
    first = await _book(client, me_a, _slot(3, 10), key)
    second = await _book(client, me_b, _slot(3, 11), key)
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]

    other = await nestpoint_make_tenant()  # another chain, with the plugin on
    await _set_up(client, other, nestpoint_enable_plugin)
    stranger = await nestpoint_member_token(other, await _member(client, other))
    r = await client.post(f"{ME}/bookings/{theirs}/cancel", headers=stranger)
    assert r.status_code == 404
    assert (await client.get(f"{ME}/bookings", headers=stranger)).json() == []
    r = await client.get(f"{ME}/bookings", headers=me_a)
    assert {b["status"] for b in r.json()} == {"booked"}  # nothing of A's was touched


async def test_two_members_racing_for_the_last_slot_get_one_201_and_one_409(
    nestpoint_tenant,
    nestpoint_client,
    nestpoint_concurrent_client,
    nestpoint_enable_plugin,
    nestpoint_member_token,
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin)
    tokens = [await nestpoint_member_token(t, await _member(client, t)) for _ in range(2)]
    raced = await asyncio.gather(
        *[_book(nestpoint_concurrent_client, me, _slot(4, 14)) for me in tokens]
    )
    assert Counter(r.status_code for r in raced) == {201: 1, 409: 1}, [r.text for r in raced]
    lost = next(r for r in raced if r.status_code == 409)
    assert lost.json()["errors"][0]["field"] == "starts_at"
    # The same booking retried at once by one member: one booking, answered twice.
    key = uuid.uuid4().hex
    twins = await asyncio.gather(
        *[_book(nestpoint_concurrent_client, tokens[0], _slot(4, 15), key) for _ in range(2)]
    )
    assert [r.status_code for r in twins] == [201, 201], [r.text for r in twins]
    assert twins[0].json()["id"] == twins[1].json()["id"]
    r = await client.get(f"{ME}/bookings", headers=tokens[0])
    assert len(r.json()) + len((await client.get(f"{ME}/bookings", headers=tokens[1])).json()) == 2


async def test_the_plugins_cut_off_and_refusal_rules_hold_for_members(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin, nestpoint_member_token
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin, without_benefit="refuse", cutoff_hours=4)
    member = await _member(client, t)
    me = await nestpoint_member_token(t, member)
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    for starts_at in (soon, _slot(2, 9, 10), _slot(2, 20)):
        r = await _book(client, me, starts_at)
        assert r.status_code == 422, (starts_at, r.text)
        assert r.json()["errors"][0]["field"] == "starts_at"
    ids = [(await _book(client, me, _slot(2, h))).json()["id"] for h in (9, 10)]
    r = await _book(client, me, _slot(2, 11))  # no free one left, and the chain refuses
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "member_id"
    hq = PluginContext(PLUGIN, t.id, None, {})
    async with hq.session() as db:  # the first is now an hour away: inside the cut-off
        soon_at = datetime.now(UTC) + timedelta(hours=1)
        await db.execute(
            update(Consultation)
            .where(Consultation.id == uuid.UUID(ids[0]))
            .values(starts_at=soon_at)
        )
    r = await client.post(f"{ME}/bookings/{ids[0]}/cancel", headers=me)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "starts_at"
    async with hq.session() as db:  # the second happened
        await db.execute(
            update(Consultation)
            .where(Consultation.id == uuid.UUID(ids[1]))
            .values(status="completed")
        )
    r = await client.post(f"{ME}/bookings/{ids[1]}/cancel", headers=me)
    assert r.status_code == 409


async def test_only_where_the_plugin_is_on_and_by_that_stores_configuration(
    nestpoint_tenant,
    nestpoint_client,
    nestpoint_enable_plugin,
    nestpoint_disable_plugin,
    nestpoint_member_token,
):
    t, client = nestpoint_tenant, nestpoint_client
    member = await _member(client, t)
    me = await nestpoint_member_token(t, member)
    r = await client.get(f"{ME}/bookings", headers=me)
    assert r.status_code == 404  # not enabled anywhere in the chain
    await nestpoint_enable_plugin(t, PLUGIN, config={"free_benefits": [], "price_fen": 9900})
    await nestpoint_enable_plugin(t, PLUGIN, store="S2", config={"price_fen": 5000})
    await _consultant(client, t, "S1", "li")
    await _consultant(client, t, "S2", "zhou")
    booked = await _book(client, me, _slot(2, 9), code="zhou")
    assert booked.status_code == 201, booked.text
    assert booked.json()["fee_fen"] == 5000  # S2's own price
    assert (await _book(client, me, _slot(2, 9), code="li")).json()["fee_fen"] == 9900

    await nestpoint_enable_plugin(t, PLUGIN, store="S2", enabled=False)
    r = await client.get(f"{ME}/consultants", headers=me)
    assert [c["code"] for c in r.json()] == ["li"]
    r = await client.get(f"{ME}/consultants/zhou/slots", params={"date": _day(2)}, headers=me)
    assert r.status_code == 404
    assert (await _book(client, me, _slot(2, 10), code="zhou")).status_code == 404
    r = await client.post(f"{ME}/bookings/{booked.json()['id']}/cancel", headers=me)
    assert r.status_code == 404
    await nestpoint_disable_plugin(t, PLUGIN)
    for path in ("/consultants", "/bookings"):
        assert (await client.get(f"{ME}{path}", headers=me)).status_code == 404


async def test_keys_are_refused_and_bad_input_is_a_problem_naming_the_field(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin, nestpoint_member_token
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin)
    me = await nestpoint_member_token(t, await _member(client, t))
    for headers in (t.hq(), t.store("S1")):
        r = await client.get(f"{ME}/bookings", headers=headers)
        assert r.status_code == 403, r.text
    assert (await client.get(f"{ME}/bookings")).status_code == 401
    bad = {"Authorization": f"Bearer npm_{t.id.hex}_{'x' * 43}"}
    assert (await client.get(f"{ME}/bookings", headers=bad)).status_code == 401
    # A member token opens nothing of the staff routes.
    assert (await client.get(f"{STAFF}/consultants", headers=me)).status_code == 403

    cases: list[tuple[str, Any, str]] = [
        ("wang", {"starts_at": _slot(2, 9)}, "idempotency_key"),
        ("wang", {"idempotency_key": "x" * 65, "starts_at": _slot(2, 9)}, "idempotency_key"),
        ("wang", {"idempotency_key": "short", "starts_at": _slot(2, 9)}, "idempotency_key"),
        (
            "wang",
            {"idempotency_key": uuid.uuid4().hex, "starts_at": "2026-12-01T10:00"},
            "starts_at",
        ),
        ("wang", {"idempotency_key": uuid.uuid4().hex, "starts_at": "\x00"}, "starts_at"),
        (
            "wang",
            {"idempotency_key": uuid.uuid4().hex, "member_id": str(uuid.uuid4())},
            "member_id",
        ),
        ("Not A Code", {"idempotency_key": uuid.uuid4().hex, "starts_at": _slot(2, 9)}, "code"),
    ]
    for code, body, field in cases:
        r = await client.post(f"{ME}/consultants/{code}/bookings", json=body, headers=me)
        assert r.status_code in (400, 422), (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert field in [e["field"] for e in r.json()["errors"]], (body, r.text)
    for path in ("/consultants/wang/slots?date=2026-02-30", "/consultants/wang/slots"):
        r = await client.get(f"{ME}{path}", headers=me)
        assert r.status_code == 400, r.text
        assert "date" in r.json()["detail"], r.text
    r = await client.post(f"{ME}/bookings/not-a-uuid/cancel", headers=me)
    assert r.status_code in (400, 404)
    body = {"idempotency_key": uuid.uuid4().hex, "starts_at": _slot(2, 9)}
    r = await client.post(f"{ME}/consultants/nobody/bookings", json=body, headers=me)
    assert r.status_code == 404


async def test_every_request_counts_against_the_members_limit(
    nestpoint_tenant,
    nestpoint_client,
    nestpoint_enable_plugin,
    nestpoint_member_token,
    nestpoint_member_rate_limit,
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin)
    me = await nestpoint_member_token(t, await _member(client, t))
    nestpoint_member_rate_limit("2/minute")
    assert [(await client.get(f"{ME}/bookings", headers=me)).status_code for _ in range(2)] == [
        200,
        200,
    ]
    r = await client.get(f"{ME}/consultants", headers=me)
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) > 0
