"""Changes to how a member is found: an identity unlinked, the phone changed with a code."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from loyalty.helpers import new_phone
from loyalty.support import all_pages, audit, events, member, without_ids
from messaging.conftest import FakeChannel
from nestpoint.context import tenant_context
from nestpoint.db import scoped_session
from nestpoint.members.models import MemberPhoneChange
from nestpoint.messaging import pipeline
from nestpoint.messaging.models import Message
from nestpoint.plugins.manager import get_plugin_host
from nestpoint.testing import next_local_time

CARD = {"kind": "pos_card", "value": "6222000011112222"}
OPENID = {"kind": "mp_openid", "value": "oAbC-openid-1"}


async def _lookup_card(client: Any, headers: dict[str, str], value: str) -> Any:
    return await client.get(
        "/api/v1/members/lookup",
        params={"identity_kind": "pos_card", "identity_value": value},
        headers=headers,
    )


async def test_an_identity_is_unlinked_audited_and_announced(client, make_tenant, enrol) -> None:
    t = await make_tenant()
    hq = t.hq()
    m = await enrol(hq, identities=[CARD, OPENID])
    shown = await member(client, hq, m["id"])
    assert without_ids(shown["identities"]) == [OPENID, CARD]
    card_id = next(i["id"] for i in shown["identities"] if i["kind"] == "pos_card")
    assert (await _lookup_card(client, hq, CARD["value"])).status_code == 200

    r = await client.delete(f"/api/v1/members/{m['id']}/identities/{card_id}", headers=hq)
    assert r.status_code == 204, r.text
    assert without_ids((await member(client, hq, m["id"]))["identities"]) == [OPENID]
    assert (await _lookup_card(client, hq, CARD["value"])).status_code == 404
    # Again: it is gone.
    r = await client.delete(f"/api/v1/members/{m['id']}/identities/{card_id}", headers=hq)
    assert r.status_code == 404, r.text
    (entry,) = await audit(client, hq, "identity.removed")
    assert entry["subject_id"] == m["id"]
    assert entry["changes"] == {"kind": "pos_card", "identity_id": card_id}
    assert CARD["value"] not in str(entry)
    updated = [e for e in await events(client, hq, "member.updated") if e["subject_id"] == m["id"]]
    assert [e["payload"]["fields"] for e in updated] == [["identities"]]
    assert CARD["value"] not in str(updated)
    # The card may be linked again, to another member.
    other = await enrol(hq)
    r = await client.post(f"/api/v1/members/{other['id']}/identities", json=CARD, headers=hq)
    assert r.status_code == 204, r.text
    found = await _lookup_card(client, hq, CARD["value"])
    assert found.json()["id"] == other["id"]
    # The last identity may go too: the phone still finds the member.
    last = (await member(client, hq, m["id"]))["identities"][0]["id"]
    r = await client.delete(f"/api/v1/members/{m['id']}/identities/{last}", headers=hq)
    assert r.status_code == 204, r.text
    assert (await member(client, hq, m["id"]))["identities"] == []


async def test_unlinking_needs_the_member_in_reach_and_its_own_identity(
    client, make_tenant, enrol, till
) -> None:
    t = await make_tenant()
    hq = t.hq()
    r = await client.post(
        "/api/v1/stores", json={"code": "F1", "name": "加盟店", "kind": "franchise"}, headers=hq
    )
    assert r.status_code == 201, r.text
    franchise = await till(t, "F1")
    direct_member = await enrol(await till(t, "S1"), identities=[CARD])
    own = await enrol(franchise, identities=[OPENID])
    card_id = (await member(client, hq, direct_member["id"]))["identities"][0]["id"]
    openid_id = (await member(client, hq, own["id"]))["identities"][0]["id"]
    # Outside the franchise store's reach: 404, as for no member.
    path = f"/api/v1/members/{direct_member['id']}/identities/{card_id}"
    assert (await client.delete(path, headers=franchise)).status_code == 404
    # Another member's identity through this member: 404.
    path = f"/api/v1/members/{own['id']}/identities/{card_id}"
    assert (await client.delete(path, headers=franchise)).status_code == 404
    assert (await client.delete(path, headers=hq)).status_code == 404
    # Another tenant: 404.
    b = await make_tenant()
    path = f"/api/v1/members/{own['id']}/identities/{openid_id}"
    assert (await client.delete(path, headers=b.hq())).status_code == 404
    # Without members:write: 403.
    r = await client.post(
        "/api/v1/api-keys",
        json={"name": "reader", "kind": "store", "store_code": "F1", "scopes": ["members:read"]},
        headers=hq,
    )
    reader = {"Authorization": f"Bearer {r.json()['key']}"}
    assert (await client.delete(path, headers=reader)).status_code == 403
    # Nothing went.
    assert len((await member(client, hq, direct_member["id"]))["identities"]) == 1
    assert len((await member(client, hq, own["id"]))["identities"]) == 1
    # The franchise store unlinks its own member's identity.
    assert (await client.delete(path, headers=franchise)).status_code == 204
    assert (await member(client, hq, own["id"]))["identities"] == []
    assert uuid.UUID(openid_id)
    assert await all_pages(client, "/api/v1/events", hq, type="member.updated")


# ------------------------------------------------------------------ the phone, with a code

# 23:00 in Shanghai: inside the default quiet hours, which a code does not wait for.
NIGHT = next_local_time(23)  # in the future


@pytest.fixture
def sms(app):  # type: ignore[no-untyped-def]
    """A fake SMS connector, registered for the test (enabled per chain by ``chain``)."""
    host = get_plugin_host()
    channel = FakeChannel("tsms", "sms")
    info = host.register_plugin(channel, "fake_tsms")
    assert info.loaded, info.reason
    yield channel
    host.unregister("fake_tsms")


@pytest.fixture
def chain(client, make_tenant, sms):  # type: ignore[no-untyped-def]
    async def make() -> Any:
        t = await make_tenant()
        r = await client.put(
            "/api/v1/tenant/plugins/fake_tsms", json={"enabled": True}, headers=t.hq()
        )
        assert r.status_code == 200, r.text
        return t

    return make


async def _start(client: Any, headers: dict[str, str], member_id: str, **body: Any) -> Any:
    return await client.post(
        f"/api/v1/members/{member_id}/phone-change", json=body, headers=headers
    )


async def _confirm(client: Any, headers: dict[str, str], member_id: str, code: str) -> Any:
    return await client.post(
        f"/api/v1/members/{member_id}/phone-change/confirm", json={"code": code}, headers=headers
    )


async def _deliver(tenant: Any, sms: FakeChannel, message_id: str) -> str:
    """Run the code's message through the pipeline at night; the code the SMS carried."""
    before = len(sms.sent)
    assert await pipeline.step(tenant.id, uuid.UUID(message_id), NIGHT) is None
    assert len(sms.sent) == before + 1
    return sms.sent[-1].params["code"]


async def _message_row(tenant: Any, message_id: str) -> Message:
    with tenant_context(tenant.id):
        async with scoped_session() as session:
            row = await session.get(Message, (tenant.id, uuid.UUID(message_id)))
            assert row is not None
            return row


async def _changes(tenant: Any, member_id: str) -> list[MemberPhoneChange]:
    with tenant_context(tenant.id):
        async with scoped_session() as session:
            rows = await session.scalars(
                select(MemberPhoneChange)
                .where(MemberPhoneChange.member_id == uuid.UUID(member_id))
                .order_by(MemberPhoneChange.created_at)
            )
            return list(rows.all())


def _masked(phone: str) -> str:
    return f"+86 {phone[:3]}****{phone[-4:]}"


async def test_the_phone_changes_with_the_code_sent_to_the_new_phone(
    client, chain, enrol, sms
) -> None:
    t = await chain()
    hq = t.hq()
    old, new = new_phone(), new_phone()
    m = await enrol(hq, phone=old)  # no SMS consent: the code is asked for, not marketing
    r = await _start(client, hq, m["id"], phone=new)
    assert r.status_code == 202, r.text
    started = r.json()
    assert (started["status"], started["phone"], started["attempts_left"]) == (
        "pending",
        _masked(new),
        5,
    )
    # Kept: the new phone sealed, a keyed hash of the code; no code in the message's params.
    (change,) = await _changes(t, m["id"])
    assert new not in change.new_phone_enc
    record = await _message_row(t, started["message_id"])
    assert (record.purpose, record.params, record.status) == ("phone_verification", {}, "queued")
    assert record.sealed is not None
    assert new not in record.sealed
    code = await _deliver(t, sms, started["message_id"])
    assert sms.sent[-1].to == f"+86{new}"
    assert code in sms.sent[-1].body
    assert len(code) == 6
    assert change.code_hash != code
    assert code not in change.code_hash
    sent = await _message_row(t, started["message_id"])
    assert (sent.status, sent.sealed) == ("sent", None)  # the code is wiped once sent

    wrong = "000000" if code != "000000" else "111111"
    r = await _confirm(client, hq, m["id"], wrong)
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == [{"field": "code", "message": "wrong code (4 attempts left)"}]
    assert (await member(client, hq, m["id"]))["phone"] == f"+86{old}"
    r = await _confirm(client, hq, m["id"], code)
    assert r.status_code == 200, r.text
    assert r.json()["phone"] == f"+86{new}"
    # Found by the new phone only.
    r = await client.get("/api/v1/members/lookup", params={"phone": new}, headers=hq)
    assert (r.status_code, r.json()["id"]) == (200, m["id"])
    r = await client.get("/api/v1/members/lookup", params={"phone": old}, headers=hq)
    assert r.status_code == 404
    # Idempotent: the same code again answers the member again, changes nothing more.
    r = await _confirm(client, hq, m["id"], code)
    assert r.status_code == 200, r.text
    assert r.json()["phone"] == f"+86{new}"
    (entry,) = await audit(client, hq, "member.phone_changed")
    assert entry["changes"]["phone"] == [_masked(old), _masked(new)]
    assert old not in str(entry)
    assert new not in str(entry)
    updated = [e for e in await events(client, hq, "member.updated") if e["subject_id"] == m["id"]]
    assert [e["payload"]["fields"] for e in updated] == [["phone"]]
    assert new not in str(updated)
    (change,) = await _changes(t, m["id"])
    assert (change.status, change.attempts) == ("confirmed", 1)
    # The old phone is free for someone else now.
    await enrol(hq, phone=old)


async def test_wrong_codes_are_counted_and_the_fifth_cancels_the_change(
    client, chain, enrol, sms
) -> None:
    t = await chain()
    hq = t.hq()
    m = await enrol(hq)
    r = await _start(client, hq, m["id"], phone=new_phone())
    code = await _deliver(t, sms, r.json()["message_id"])
    wrong = "000000" if code != "000000" else "111111"
    for left in (4, 3, 2, 1):
        r = await _confirm(client, hq, m["id"], wrong)
        assert r.status_code == 422, r.text
        assert f"({left} attempts left)" in r.json()["errors"][0]["message"]
    r = await _confirm(client, hq, m["id"], wrong)
    assert r.status_code == 422, r.text
    assert "cancelled" in r.json()["errors"][0]["message"]
    # The right code comes too late: nothing is pending.
    r = await _confirm(client, hq, m["id"], code)
    assert r.status_code == 409, r.text
    assert r.json()["errors"][0]["field"] == "code"
    (change,) = await _changes(t, m["id"])
    assert (change.status, change.reason, change.attempts) == ("cancelled", "wrong_codes", 5)
    assert (await member(client, hq, m["id"]))["phone"] == m["phone"]
    (entry,) = await audit(client, hq, "member.phone_change_cancelled")
    assert entry["changes"]["reason"] == "wrong_codes"


async def test_what_a_phone_change_refuses(client, chain, enrol, sms) -> None:
    t = await chain()
    hq = t.hq()
    m, other = await enrol(hq), await enrol(hq)
    own_phone = (await member(client, hq, m["id"]))["phone"]
    other_phone = (await member(client, hq, other["id"]))["phone"]
    cases = [
        ({"phone": other_phone}, 409, "phone"),
        ({"phone": own_phone}, 422, "phone"),
        ({"phone": "12345"}, 422, "phone"),
        ({"phone": ""}, 400, "phone"),
        ({}, 400, "phone"),
        ({"phone": new_phone(), "idempotency_key": "short"}, 400, "idempotency_key"),
    ]
    for body, status, field in cases:
        r = await _start(client, hq, m["id"], **body)
        assert r.status_code == status, (body, r.text)
        assert field in [e["field"] for e in r.json()["errors"]], (body, r.text)
    r = await _confirm(client, hq, m["id"], "123456")  # nothing started
    assert r.status_code == 409, r.text
    for code in ("12345", "abcdef", "1234567"):
        r = await _confirm(client, hq, m["id"], code)
        assert r.status_code == 400, r.text
    assert await _changes(t, m["id"]) == []
    # The new phone taken by another member between the start and the confirmation.
    wanted = new_phone()
    r = await _start(client, hq, m["id"], phone=wanted)
    assert r.status_code == 202, r.text
    code = await _deliver(t, sms, r.json()["message_id"])
    await enrol(hq, phone=wanted)
    r = await _confirm(client, hq, m["id"], code)
    assert r.status_code == 409, r.text
    assert r.json()["errors"][0]["field"] == "phone"
    assert (await member(client, hq, m["id"]))["phone"] == own_phone
    # An expired code: nothing pending.
    r = await _start(client, hq, m["id"], phone=new_phone())
    code = await _deliver(t, sms, r.json()["message_id"])
    with tenant_context(t.id):
        async with scoped_session() as session:
            await session.execute(
                update(MemberPhoneChange)
                .where(MemberPhoneChange.id == uuid.UUID(r.json()["id"]))
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
            await session.commit()
    r = await _confirm(client, hq, m["id"], code)
    assert r.status_code == 409, r.text
    assert "expired" in r.json()["detail"]


async def test_a_start_is_idempotent_by_key_a_newer_one_supersedes_and_starts_are_capped(
    client, chain, enrol, sms
) -> None:
    t = await chain()
    hq = t.hq()
    m = await enrol(hq)
    body = {"phone": new_phone(), "idempotency_key": "change-0001"}
    first = await _start(client, hq, m["id"], **body)
    again = await _start(client, hq, m["id"], **body)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    r = await _start(client, hq, m["id"], phone=new_phone(), idempotency_key="change-0001")
    assert r.status_code == 409, r.text
    assert len(await _changes(t, m["id"])) == 1
    old_code = await _deliver(t, sms, first.json()["message_id"])
    newer = await _start(client, hq, m["id"], phone=new_phone())
    assert newer.status_code == 202, newer.text
    new_code = await _deliver(t, sms, newer.json()["message_id"])
    statuses = [(c.status, c.reason) for c in await _changes(t, m["id"])]
    assert statuses == [("cancelled", "superseded"), ("pending", None)]
    if old_code != new_code:  # the superseded code is a wrong one for the newer change
        r = await _confirm(client, hq, m["id"], old_code)
        assert r.status_code == 422, r.text
    r = await _confirm(client, hq, m["id"], new_code)
    assert r.status_code == 200, r.text
    # At most five codes a member an hour.
    for _ in range(3):
        assert (await _start(client, hq, m["id"], phone=new_phone())).status_code == 202
    r = await _start(client, hq, m["id"], phone=new_phone())
    assert r.status_code == 429, r.text
    assert r.headers["Retry-After"] == "3600"
    assert len(await _changes(t, m["id"])) == 5


async def test_a_phone_change_needs_the_member_in_reach(
    client, chain, make_tenant, enrol, till
) -> None:
    t = await chain()
    hq = t.hq()
    r = await client.post(
        "/api/v1/stores", json={"code": "F1", "name": "加盟店", "kind": "franchise"}, headers=hq
    )
    assert r.status_code == 201, r.text
    franchise = await till(t, "F1")
    outsider = await enrol(await till(t, "S1"))
    own = await enrol(franchise)
    for path_end in ("phone-change", "phone-change/confirm"):
        body = {"phone": new_phone()} if path_end == "phone-change" else {"code": "123456"}
        path = f"/api/v1/members/{outsider['id']}/{path_end}"
        assert (await client.post(path, json=body, headers=franchise)).status_code == 404
        b = await make_tenant()
        path = f"/api/v1/members/{own['id']}/{path_end}"
        assert (await client.post(path, json=body, headers=b.hq())).status_code == 404
        path = f"/api/v1/members/{uuid.uuid4()}/{path_end}"
        assert (await client.post(path, json=body, headers=hq)).status_code == 404
    assert await _changes(t, outsider["id"]) == []
    r = await _start(client, franchise, own["id"], phone=new_phone())
    assert r.status_code == 202, r.text
    assert r.json()["phone"].startswith("+86 ")


async def test_guesses_at_once_are_counted_one_by_one_and_retries_start_once(
    client, concurrent_client, chain, enrol, sms
) -> None:
    t = await chain()
    hq = t.hq()
    m = await enrol(hq)
    body = {"phone": new_phone(), "idempotency_key": "change-at-once"}
    url = f"/api/v1/members/{m['id']}/phone-change"
    starts = await asyncio.gather(
        *(concurrent_client.post(url, json=body, headers=hq) for _ in range(6))
    )
    assert {r.status_code for r in starts} == {202}
    assert len({r.json()["id"] for r in starts}) == 1
    assert len(await _changes(t, m["id"])) == 1
    code = await _deliver(t, sms, starts[0].json()["message_id"])
    wrong = "000000" if code != "000000" else "111111"
    url = f"/api/v1/members/{m['id']}/phone-change/confirm"
    guesses = await asyncio.gather(
        *(concurrent_client.post(url, json={"code": wrong}, headers=hq) for _ in range(8))
    )
    assert sorted(r.status_code for r in guesses) == [409] * 3 + [422] * 5
    (change,) = await _changes(t, m["id"])
    assert (change.status, change.attempts) == ("cancelled", 5)


async def test_without_an_sms_channel_the_code_is_suppressed_and_wiped(
    client, make_tenant, enrol, sms
) -> None:
    t = await make_tenant()  # the fake SMS connector is not enabled for this chain
    m = await enrol(t.hq())
    r = await _start(client, t.hq(), m["id"], phone=new_phone())
    assert r.status_code == 202, r.text
    message_id = r.json()["message_id"]
    assert await pipeline.step(t.id, uuid.UUID(message_id), NIGHT) is None
    assert sms.sent == []
    row = await _message_row(t, message_id)
    assert (row.status, row.reason, row.sealed) == ("suppressed", "no_channel", None)
    r = await client.get(f"/api/v1/messages/{message_id}", headers=t.hq())
    assert (r.status_code, r.json()["status"]) == (200, "suppressed")
