"""A member changes their own phone through the member API (the staff change's rules, a
code to the new phone), refused up front when no channel can carry the code; and the
retention of phone changes: those ended long ago are deleted by a periodic job."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select, update

from loyalty.helpers import new_phone
from loyalty.support import audit
from messaging.conftest import FakeChannel
from nestpoint.context import tenant_context
from nestpoint.db import scoped_session, utcnow
from nestpoint.jobs.registry import PERIODIC_JOBS
from nestpoint.jobs.tenants import run_for_tenant
from nestpoint.members import actors
from nestpoint.members.models import MemberPhoneChange
from nestpoint.messaging import pipeline
from nestpoint.plugins.manager import get_plugin_host
from nestpoint.settings import get_settings

START, CONFIRM = "/api/v1/me/phone-change", "/api/v1/me/phone-change/confirm"


def _tonight() -> datetime:
    """The next 23:00 in Shanghai: inside the default quiet hours, which a code does not
    wait for (and after the message was queued, whatever the clock says)."""
    local = datetime.now(ZoneInfo("Asia/Shanghai"))
    at = local.replace(hour=23, minute=0, second=0, microsecond=0)
    return at if at > local else at + timedelta(days=1)


@pytest.fixture
def sms(app: Any) -> Iterator[FakeChannel]:
    """A fake SMS connector, registered for the test (enabled per chain by ``chain``)."""
    host = get_plugin_host()
    channel = FakeChannel("msms", "sms")
    info = host.register_plugin(channel, "fake_msms")
    assert info.loaded, info.reason
    yield channel
    host.unregister("fake_msms")


@pytest.fixture
def chain(client: Any, make_tenant: Any, sms: FakeChannel) -> Any:
    """A chain with the fake SMS connector enabled."""

    async def make() -> Any:
        t = await make_tenant()
        r = await client.put(
            "/api/v1/tenant/plugins/fake_msms", json={"enabled": True}, headers=t.hq()
        )
        assert r.status_code == 200, r.text
        return t

    return make


async def _deliver(tenant: Any, sms: FakeChannel, message_id: str) -> str:
    """Run the code's message through the pipeline; the code the SMS carried."""
    before = len(sms.sent)
    assert await pipeline.step(tenant.id, uuid.UUID(message_id), _tonight()) is None
    assert len(sms.sent) == before + 1
    return sms.sent[-1].params["code"]


async def _changes(tenant: Any, member_id: str | None = None) -> list[MemberPhoneChange]:
    with tenant_context(tenant.id):
        async with scoped_session() as session:
            stmt = select(MemberPhoneChange).order_by(MemberPhoneChange.created_at)
            if member_id is not None:
                stmt = stmt.where(MemberPhoneChange.member_id == uuid.UUID(member_id))
            return list((await session.scalars(stmt)).all())


def _masked(phone: str) -> str:
    return f"+86 {phone[:3]}****{phone[-4:]}"


def _slug(problem: Any) -> str:
    return str(problem.json()["type"]).rsplit("/", 1)[1]


def _wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


async def test_a_member_changes_their_own_phone_with_the_code(
    client: Any, chain: Any, enrol: Any, member_token: Any, sms: FakeChannel
) -> None:
    t = await chain()
    old, new = new_phone(), new_phone()
    m = await enrol(t.hq(), phone=old)
    mine = await member_token(t, m["id"])
    r = await client.post(START, json={"phone": new}, headers=mine)
    assert r.status_code == 202, r.text
    started = r.json()
    assert (started["status"], started["phone"], started["attempts_left"]) == (
        "pending",
        _masked(new),
        5,
    )
    code = await _deliver(t, sms, started["message_id"])
    assert sms.sent[-1].to == f"+86{new}"
    r = await client.post(CONFIRM, json={"code": _wrong(code)}, headers=mine)
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == [{"field": "code", "message": "wrong code (4 attempts left)"}]
    assert (await client.get("/api/v1/me", headers=mine)).json()["phone"] == f"+86{old}"
    r = await client.post(CONFIRM, json={"code": code}, headers=mine)
    assert r.status_code == 200, r.text
    assert (r.json()["id"], r.json()["phone"]) == (m["id"], f"+86{new}")
    # Again with the same code: the same profile, nothing more changes.
    again = await client.post(CONFIRM, json={"code": code}, headers=mine)
    assert (again.status_code, again.json()["phone"]) == (200, f"+86{new}")
    r = await client.get("/api/v1/members/lookup", params={"phone": new}, headers=t.hq())
    assert (r.status_code, r.json()["id"]) == (200, m["id"])
    r = await client.get("/api/v1/members/lookup", params={"phone": old}, headers=t.hq())
    assert r.status_code == 404
    # Audited as the member, phones masked only.
    (entry,) = await audit(client, t.hq(), "member.phone_changed")
    assert (entry["actor_kind"], entry["actor_id"]) == ("member", m["id"])
    assert entry["changes"]["phone"] == [_masked(old), _masked(new)]
    (started_entry,) = await audit(client, t.hq(), "member.phone_change_started")
    assert started_entry["changes"]["phone"] == _masked(new)
    assert old not in str([entry, started_entry])
    assert new not in str([entry, started_entry])
    (change,) = await _changes(t, m["id"])
    assert (change.status, change.attempts, change.actor) == ("confirmed", 1, m["id"])
    # The code's message is not among the member's messages: its code is gone.
    r = await client.get("/api/v1/me/messages", headers=mine)
    assert r.status_code == 200, r.text
    assert r.json()["items"] == []


async def test_without_a_channel_for_the_code_nothing_is_started(
    client: Any, make_tenant: Any, enrol: Any, member_token: Any, sms: FakeChannel
) -> None:
    t = await make_tenant()  # the fake SMS connector is registered but not enabled here
    m = await enrol(t.hq())
    mine = await member_token(t, m["id"])
    body = {"phone": new_phone(), "idempotency_key": "no-channel-1"}
    r = await client.post(START, json=body, headers=mine)
    assert r.status_code == 409, r.text
    assert _slug(r) == "phone-code-undeliverable"
    assert r.json()["errors"] == [{"field": "phone", "message": "no channel can send a code to it"}]
    assert await _changes(t, m["id"]) == []
    assert await audit(client, t.hq(), "member.phone_change_started") == []
    # Once the chain enables SMS, the same request (and key) starts the change.
    r = await client.put("/api/v1/tenant/plugins/fake_msms", json={"enabled": True}, headers=t.hq())
    assert r.status_code == 200, r.text
    r = await client.post(START, json=body, headers=mine)
    assert r.status_code == 202, r.text
    # The staff route keeps its documented behaviour (docs/messaging.md): it starts, and
    # the message is suppressed (no_channel) where no channel is enabled.
    other = await make_tenant()
    theirs = await enrol(other.hq())
    r = await client.post(
        f"/api/v1/members/{theirs['id']}/phone-change",
        json={"phone": new_phone()},
        headers=other.hq(),
    )
    assert r.status_code == 202, r.text


async def test_what_the_member_s_phone_change_refuses(
    client: Any, chain: Any, make_tenant: Any, enrol: Any, member_token: Any, sms: FakeChannel
) -> None:
    t = await chain()
    m, other = await enrol(t.hq()), await enrol(t.hq())
    mine = await member_token(t, m["id"])
    own = (await client.get("/api/v1/me", headers=mine)).json()["phone"]
    theirs = (await client.get(f"/api/v1/members/{other['id']}", headers=t.hq())).json()
    cases = [
        ({"phone": theirs["phone"]}, 409, "phone"),
        ({"phone": own}, 422, "phone"),
        ({"phone": "12345"}, 422, "phone"),
        ({}, 400, "phone"),
        ({"phone": new_phone(), "member_id": other["id"]}, 400, "member_id"),
        ({"phone": new_phone(), "idempotency_key": "short"}, 400, "idempotency_key"),
    ]
    for body, status, field in cases:
        r = await client.post(START, json=body, headers=mine)
        assert r.status_code == status, (body, r.text)
        assert field in [e["field"] for e in r.json()["errors"]], (body, r.text)
    r = await client.post(CONFIRM, json={"code": "123456"}, headers=mine)
    assert r.status_code == 409, r.text  # nothing started
    assert r.json()["errors"][0]["field"] == "code"
    assert (await client.post(CONFIRM, json={"code": "12345"}, headers=mine)).status_code == 400
    assert await _changes(t) == []
    # An API key opens no member route; no token, none.
    for path, body in ((START, {"phone": new_phone()}), (CONFIRM, {"code": "123456"})):
        assert (await client.post(path, json=body, headers=t.hq())).status_code == 403
        assert (await client.post(path, json=body)).status_code == 401
    # The member's starts are idempotent by key, a newer one supersedes, 5 an hour.
    body = {"phone": new_phone(), "idempotency_key": "mine-0001"}
    first = await client.post(START, json=body, headers=mine)
    again = await client.post(START, json=body, headers=mine)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    r = await client.post(
        START, json={"phone": new_phone(), "idempotency_key": "mine-0001"}, headers=mine
    )
    assert r.status_code == 409, r.text
    for _ in range(4):
        r = await client.post(START, json={"phone": new_phone()}, headers=mine)
        assert r.status_code == 202, r.text
    r = await client.post(START, json={"phone": new_phone()}, headers=mine)
    assert r.status_code == 429, r.text
    assert r.headers["Retry-After"] == "3600"
    statuses = [c.status for c in await _changes(t, m["id"])]
    assert statuses == ["cancelled"] * 4 + ["pending"]


async def test_retries_and_guesses_at_once(
    concurrent_client: httpx.AsyncClient,
    chain: Any,
    enrol: Any,
    member_token: Any,
    sms: FakeChannel,
) -> None:
    """Starts retried at once make one change and one code; wrong guesses at once are
    counted one by one (the fifth cancels), on SQLite and PostgreSQL."""
    client = concurrent_client
    t = await chain()
    m = await enrol(t.hq())
    mine = await member_token(t, m["id"])
    body = {"phone": new_phone(), "idempotency_key": "at-once-0001"}
    starts = await asyncio.gather(*(client.post(START, json=body, headers=mine) for _ in range(6)))
    assert {r.status_code for r in starts} == {202}, [r.text for r in starts]
    assert len({r.json()["id"] for r in starts}) == 1
    assert len(await _changes(t, m["id"])) == 1
    code = await _deliver(t, sms, starts[0].json()["message_id"])
    guesses = await asyncio.gather(
        *(client.post(CONFIRM, json={"code": _wrong(code)}, headers=mine) for _ in range(8))
    )
    assert sorted(r.status_code for r in guesses) == [409] * 3 + [422] * 5
    (change,) = await _changes(t, m["id"])
    assert (change.status, change.attempts) == ("cancelled", 5)


# ------------------------------------------------------------------ retention


async def _age(tenant: Any, change_id: uuid.UUID, **values: Any) -> None:
    with tenant_context(tenant.id):
        async with scoped_session() as session:
            await session.execute(
                update(MemberPhoneChange).where(MemberPhoneChange.id == change_id).values(**values)
            )


async def test_phone_changes_that_ended_long_ago_are_deleted_per_chain(
    client: Any, chain: Any, enrol: Any, member_token: Any, sms: FakeChannel
) -> None:
    """The periodic job's per-chain step (as the workers run it: the application role on
    PostgreSQL) deletes the changes that ended more than the retention period (30 days by
    default) ago, keeps the others, and never touches another chain's."""
    assert any(job[0] is actors.purge_phone_changes_all for job in PERIODIC_JOBS)
    assert get_settings().phone_change_retention_days == 30
    t, other = await chain(), await chain()
    ids: dict[str, uuid.UUID] = {}
    for name in ("confirmed_old", "cancelled_old", "expired_old", "confirmed_recent", "live"):
        m = await enrol(t.hq())
        r = await client.post(
            START, json={"phone": new_phone()}, headers=await member_token(t, m["id"])
        )
        assert r.status_code == 202, r.text
        ids[name] = uuid.UUID(r.json()["id"])
    m = await enrol(other.hq())
    r = await client.post(
        START, json={"phone": new_phone()}, headers=await member_token(other, m["id"])
    )
    elsewhere = uuid.UUID(r.json()["id"])
    now = utcnow()
    long_ago, lately = now - timedelta(days=31), now - timedelta(days=29)
    # Ended 31 days ago (confirmed; cancelled; a code that expired unused), or lately.
    await _age(t, ids["confirmed_old"], status="confirmed", resolved_at=long_ago)
    await _age(
        t, ids["cancelled_old"], status="cancelled", reason="wrong_codes", resolved_at=long_ago
    )
    await _age(t, ids["expired_old"], created_at=long_ago, expires_at=long_ago)
    await _age(t, ids["confirmed_recent"], status="confirmed", resolved_at=lately)
    await _age(other, elsewhere, status="confirmed", resolved_at=long_ago)

    purged = await run_for_tenant(t.id, actors.purge_ended_changes, name="test")
    assert purged == 3
    left = {c.id for c in await _changes(t)}
    assert left == {ids["confirmed_recent"], ids["live"]}
    assert {c.id for c in await _changes(other)} == {elsewhere}
    # Again: nothing more to delete.
    assert await run_for_tenant(t.id, actors.purge_ended_changes, name="test") == 0


async def test_the_retention_is_a_setting(
    client: Any,
    chain: Any,
    enrol: Any,
    member_token: Any,
    sms: FakeChannel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t = await chain()
    m = await enrol(t.hq())
    r = await client.post(
        START, json={"phone": new_phone()}, headers=await member_token(t, m["id"])
    )
    change_id = uuid.UUID(r.json()["id"])
    await _age(
        t,
        change_id,
        status="cancelled",
        reason="superseded",
        resolved_at=utcnow() - timedelta(days=2),
    )
    assert await run_for_tenant(t.id, actors.purge_ended_changes, name="test") == 0
    monkeypatch.setenv("NESTPOINT_PHONE_CHANGE_RETENTION_DAYS", "1")
    get_settings.cache_clear()
    try:
        assert await run_for_tenant(t.id, actors.purge_ended_changes, name="test") == 1
    finally:
        monkeypatch.delenv("NESTPOINT_PHONE_CHANGE_RETENTION_DAYS")
        get_settings.cache_clear()
    assert await _changes(t) == []


async def test_the_periodic_job_purges_every_chain(
    client: Any, chain: Any, enrol: Any, member_token: Any, sms: FakeChannel, worker: Any
) -> None:
    t = await chain()
    m = await enrol(t.hq())
    r = await client.post(
        START, json={"phone": new_phone()}, headers=await member_token(t, m["id"])
    )
    await _age(
        t, uuid.UUID(r.json()["id"]), status="confirmed", resolved_at=utcnow() - timedelta(days=40)
    )
    actors.purge_phone_changes_all.send()
    for _ in range(200):
        await asyncio.sleep(0.05)
        if not await _changes(t):
            break
    assert await _changes(t) == []
