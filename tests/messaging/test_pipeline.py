"""The send pipeline, step by step: channels, consent, quiet hours, cap, retries, fallback,
receipts, and never twice (a retried step, a worker lost mid-send)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from loyalty.helpers import new_phone
from messaging.conftest import FakeChannel, WorkerLost
from nestpoint.messaging import pipeline
from nestpoint.plugins.api import DeliveryReceipt
from nestpoint.testing import next_local_time

# 10:00 in Shanghai: outside the default quiet hours (21:00-08:00 there).
DAY = next_local_time(10)  # 10:00 in Shanghai, in the future
NIGHT = DAY + timedelta(hours=13)  # 23:00 in Shanghai


async def _chain(
    client: Any, make_tenant: Any, channels: Any, **settings: Any
) -> tuple[Any, FakeChannel, FakeChannel]:
    tenant = await make_tenant()
    sms = channels("fsms", "sms")
    mail = channels("fmail", "email", "email")
    for plugin_id in ("fake_fsms", "fake_fmail"):
        r = await client.put(
            f"/api/v1/tenant/plugins/{plugin_id}", json={"enabled": True}, headers=tenant.hq()
        )
        assert r.status_code == 200, r.text
    body = {
        "channel_order": ["fsms", "fmail"],
        "quiet_hours": None,
        "frequency_cap": None,
    } | settings
    r = await client.put("/api/v1/messaging/settings", json=body, headers=tenant.hq())
    assert r.status_code == 200, r.text
    return tenant, sms, mail


async def _member(client: Any, tenant: Any, *, consents: tuple[str, ...] = ("sms", "email")) -> str:
    body = {
        "phone": new_phone(),
        "name": "王芳",
        "consents": [{"channel": c, "granted": True, "source": "till"} for c in consents],
        "identities": [{"kind": "email", "value": f"{uuid.uuid4().hex[:8]}@example.com"}],
    }
    r = await client.post("/api/v1/members", json=body, headers=tenant.hq())
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _send(
    client: Any, tenant: Any, member_id: str, key: str = "k1", template: str = "points_expiring"
) -> dict[str, Any]:
    body = {
        "message_key": key,
        "purpose": template,
        "template": template,
        "member_ids": [member_id],
    }
    r = await client.post("/api/v1/messages", json=body, headers=tenant.hq())
    assert r.status_code == 202, r.text
    return dict(r.json()["items"][0])


async def _run(tenant: Any, message: dict[str, Any], now: datetime = DAY) -> float | None:
    """Steps until the message waits or is done; returns the last answer."""
    for _ in range(10):
        wait = await pipeline.step(tenant.id, uuid.UUID(message["id"]), now)
        if wait != 0:
            return wait
    raise AssertionError("the pipeline did not settle")


async def _record(client: Any, tenant: Any, message: dict[str, Any]) -> dict[str, Any]:
    r = await client.get(f"/api/v1/messages/{message['id']}", headers=tenant.hq())
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_a_message_goes_once_by_the_first_channel_that_may_reach_the_member(
    client, make_tenant, channels
) -> None:  # type: ignore[no-untyped-def]
    tenant, sms, mail = await _chain(client, make_tenant, channels)
    member = await _member(client, tenant)
    message = await _send(client, tenant, member)
    assert message["status"] == "queued"

    assert await _run(tenant, message) is None
    assert await _run(tenant, message) is None  # a retried job: nothing more
    again = await _send(client, tenant, member)  # the same key: the same message
    assert again["id"] == message["id"]
    assert await _run(tenant, again) is None

    assert len(sms.sent) == 1
    assert mail.sent == []
    sent = sms.sent[0]
    assert sent.to.startswith("+86")
    assert sent.purpose == "points_expiring"
    assert "王芳" in sent.body
    assert sent.params["member_name"] == "王芳"
    assert sent.message_id == f"{message['id']}:fsms"
    record = await _record(client, tenant, message)
    assert record["status"] == "sent"
    assert record["channel"] == "fsms"
    assert record["provider_message_id"] == "fsms-1"
    assert [(a["channel"], a["outcome"]) for a in record["attempt_log"]] == [("fsms", "accepted")]


async def test_a_refused_channel_falls_back_to_the_next(client, make_tenant, channels) -> None:  # type: ignore[no-untyped-def]
    tenant, sms, mail = await _chain(client, make_tenant, channels)
    sms.script = [DeliveryReceipt(False, detail="invalid_number")]
    message = await _send(client, tenant, await _member(client, tenant))
    assert await _run(tenant, message) is None
    record = await _record(client, tenant, message)
    assert record["status"] == "sent"
    assert record["channel"] == "fmail"
    assert record["tried"] == ["fsms"]
    assert len(sms.sent) == 1
    assert len(mail.sent) == 1
    assert mail.sent[0].to.endswith("@example.com")
    assert [(a["channel"], a["outcome"], a["detail"]) for a in record["attempt_log"]] == [
        ("fsms", "refused", "invalid_number"),
        ("fmail", "accepted", ""),
    ]


async def test_a_transient_failure_is_retried_after_its_back_off_then_falls_back(
    client, make_tenant, channels
) -> None:  # type: ignore[no-untyped-def]
    tenant, sms, _mail = await _chain(client, make_tenant, channels)
    sms.script = [DeliveryReceipt(False, retry=True, detail="busy"), RuntimeError]
    message = await _send(client, tenant, await _member(client, tenant))
    assert await _run(tenant, message) == 60.0  # the connector's back-off
    assert await _run(tenant, message, DAY + timedelta(seconds=30)) == pytest.approx(30.0)
    assert len(sms.sent) == 1
    # Second attempt raises (counted as a retry): out of attempts, so e-mail takes it.
    assert await _run(tenant, message, DAY + timedelta(seconds=61)) is None
    record = await _record(client, tenant, message)
    assert record["status"] == "sent"
    assert record["channel"] == "fmail"
    assert [a["outcome"] for a in record["attempt_log"]] == ["retry", "retry", "accepted"]
    assert record["attempt_log"][1]["detail"] == "RuntimeError"


async def test_every_channel_failing_fails_the_message(client, make_tenant, channels) -> None:  # type: ignore[no-untyped-def]
    tenant, sms, mail = await _chain(client, make_tenant, channels)
    sms.script = [DeliveryReceipt(False, detail="x")]
    mail.script = [DeliveryReceipt(False, detail="y")]
    message = await _send(client, tenant, await _member(client, tenant))
    assert await _run(tenant, message) is None
    record = await _record(client, tenant, message)
    assert (record["status"], record["reason"]) == ("failed", "all_channels_failed")


async def test_consent_decides_the_channel_and_none_suppresses(
    client, make_tenant, channels
) -> None:  # type: ignore[no-untyped-def]
    tenant, sms, mail = await _chain(client, make_tenant, channels)
    only_mail = await _send(client, tenant, await _member(client, tenant, consents=("email",)), "a")
    none = await _send(client, tenant, await _member(client, tenant, consents=()), "b")
    assert await _run(tenant, only_mail) is None
    assert await _run(tenant, none) is None
    assert (await _record(client, tenant, only_mail))["channel"] == "fmail"
    record = await _record(client, tenant, none)
    assert (record["status"], record["reason"], record["attempt_log"]) == (
        "suppressed",
        "no_consent",
        [],
    )
    assert sms.sent == []
    assert len(mail.sent) == 1


async def test_quiet_hours_defer_to_the_chains_morning_or_suppress(
    client, make_tenant, channels
) -> None:  # type: ignore[no-untyped-def]
    quiet = {"start": "21:00", "end": "08:00", "action": "defer"}
    tenant, sms, _ = await _chain(client, make_tenant, channels, quiet_hours=quiet)
    member = await _member(client, tenant)
    message = await _send(client, tenant, member)
    # 23:00 in Shanghai: held until 08:00 there (00:00 UTC), nine hours later.
    assert await _run(tenant, message, NIGHT) == 9 * 3600
    assert sms.sent == []
    assert await _run(tenant, message, NIGHT + timedelta(hours=9)) is None
    assert len(sms.sent) == 1

    r = await client.put(
        "/api/v1/messaging/settings",
        json={
            "channel_order": ["fsms"],
            "quiet_hours": quiet | {"action": "suppress"},
            "frequency_cap": None,
        },
        headers=tenant.hq(),
    )
    assert r.status_code == 200, r.text
    dropped = await _send(client, tenant, member, "k2")
    assert await _run(tenant, dropped, NIGHT) is None
    record = await _record(client, tenant, dropped)
    assert (record["status"], record["reason"]) == ("suppressed", "quiet_hours")
    assert len(sms.sent) == 1


async def test_the_frequency_cap_suppresses_past_the_limit_but_not_exempt_purposes(
    client, make_tenant, channels
) -> None:  # type: ignore[no-untyped-def]
    cap = {"count": 1, "days": 7, "exempt": ["booking_confirmed"]}
    tenant, sms, _ = await _chain(client, make_tenant, channels, frequency_cap=cap)
    member = await _member(client, tenant)
    first = await _send(client, tenant, member, "a")
    second = await _send(client, tenant, member, "b")
    booking = await _send(client, tenant, member, "c", template="booking_confirmed")
    for message in (first, second, booking):
        assert await _run(tenant, message) is None
    statuses = [(await _record(client, tenant, m))["status"] for m in (first, second, booking)]
    assert statuses == ["sent", "suppressed", "sent"]
    assert (await _record(client, tenant, second))["reason"] == "frequency_cap"
    assert len(sms.sent) == 2


async def test_a_switched_off_transactional_message_is_suppressed(
    client, make_tenant, channels
) -> None:  # type: ignore[no-untyped-def]
    tenant, sms, _ = await _chain(
        client, make_tenant, channels, transactional={"points_expiring": False}
    )
    message = await _send(client, tenant, await _member(client, tenant))
    assert await _run(tenant, message) is None
    record = await _record(client, tenant, message)
    assert (record["status"], record["reason"]) == ("suppressed", "disabled")
    assert sms.sent == []


async def test_a_worker_lost_mid_send_is_never_followed_by_a_second_send(
    client, make_tenant, channels
) -> None:  # type: ignore[no-untyped-def]
    tenant, sms, mail = await _chain(client, make_tenant, channels)
    sms.script = [WorkerLost]  # the process dies inside the connector call
    message = await _send(client, tenant, await _member(client, tenant))
    with pytest.raises(WorkerLost):
        await pipeline.step(tenant.id, uuid.UUID(message["id"]), DAY)
    # While the lease runs, another job leaves it alone; after it, the outcome is unknown.
    assert await _run(tenant, message, DAY + timedelta(seconds=10)) is None
    assert (await _record(client, tenant, message))["status"] == "sending"
    assert await _run(tenant, message, DAY + timedelta(minutes=5)) is None
    record = await _record(client, tenant, message)
    assert (record["status"], record["reason"]) == ("failed", "interrupted")
    assert [a["outcome"] for a in record["attempt_log"]] == ["interrupted"]
    assert len(sms.sent) == 1
    assert mail.sent == []


async def test_an_idempotent_connector_is_called_again_with_the_same_id(
    client, make_tenant, channels
) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    hook = channels("fhook", "sms", idempotent=True)
    r = await client.put(
        "/api/v1/tenant/plugins/fake_fhook", json={"enabled": True}, headers=tenant.hq()
    )
    assert r.status_code == 200, r.text
    r = await client.put(
        "/api/v1/messaging/settings", json={"quiet_hours": None}, headers=tenant.hq()
    )
    assert r.status_code == 200, r.text
    hook.script = [WorkerLost]
    message = await _send(client, tenant, await _member(client, tenant))
    with pytest.raises(WorkerLost):
        await pipeline.step(tenant.id, uuid.UUID(message["id"]), DAY)
    assert await _run(tenant, message, DAY + timedelta(minutes=5)) is None
    assert [m.message_id for m in hook.sent] == [f"{message['id']}:fhook"] * 2
    assert (await _record(client, tenant, message))["status"] == "sent"


async def test_receipts_mark_messages_delivered_or_failed_and_bad_signatures_are_refused(
    client, make_tenant, channels
) -> None:  # type: ignore[no-untyped-def]
    tenant, _sms, _ = await _chain(client, make_tenant, channels)
    member = await _member(client, tenant)
    ok, lost = await _send(client, tenant, member, "a"), await _send(client, tenant, member, "b")
    for message in (ok, lost):
        assert await _run(tenant, message) is None
    path = f"/public/{tenant.slug}/channels/fsms/receipts"
    body = (
        b'[{"id": "fsms-1", "delivered": true},'
        b' {"id": "fsms-2", "delivered": false, "code": "UNDELIV"}]'
    )
    r = await client.post(path, content=body, headers={"x-fake-signature": "forged"})
    assert r.status_code == 401, r.text
    r = await client.post(path, content=body, headers={"x-fake-signature": "good"})
    assert r.status_code == 200, r.text
    assert r.json() == {"applied": 2}
    assert (await _record(client, tenant, ok))["status"] == "delivered"
    assert (
        (await _record(client, tenant, lost))["status"],
        (await _record(client, tenant, lost))["reason"],
    ) == ("failed", "undelivered")
    r = await client.post(path, content=body, headers={"x-fake-signature": "good"})
    assert r.json() == {"applied": 0}  # settled already
    r = await client.post(f"/public/{tenant.slug}/channels/nope/receipts", content=body)
    assert r.status_code == 404, r.text

    r = await client.get("/api/v1/messaging/reach", headers=tenant.hq())
    assert r.status_code == 200, r.text
    reach = r.json()
    assert (reach["total"], reach["reached"], reach["reach_rate"]) == (2, 1, 0.5)
    assert {(row["channel"], row["status"], row["count"]) for row in reach["rows"]} == {
        ("fsms", "delivered", 1),
        ("fsms", "failed", 1),
    }


async def test_another_chain_cannot_see_or_settle_the_messages(
    client, make_tenant, channels
) -> None:  # type: ignore[no-untyped-def]
    tenant, _sms, _ = await _chain(client, make_tenant, channels)
    message = await _send(client, tenant, await _member(client, tenant))
    assert await _run(tenant, message) is None
    other = await make_tenant()
    r = await client.get(f"/api/v1/messages/{message['id']}", headers=other.hq())
    assert r.status_code == 404, r.text
    r = await client.get("/api/v1/messages", headers=other.hq())
    assert r.json()["items"] == []
    r = await client.put(
        "/api/v1/tenant/plugins/fake_fsms", json={"enabled": True}, headers=other.hq()
    )
    r = await client.post(
        f"/public/{other.slug}/channels/fsms/receipts",
        content=b'[{"id": "fsms-1", "delivered": true}]',
        headers={"x-fake-signature": "good"},
    )
    assert r.json() == {"applied": 0}
    assert (await _record(client, tenant, message))["status"] == "sent"


async def test_birthday_greetings_are_queued_once_a_year_for_the_members_born_that_day(
    client, make_tenant, channels
) -> None:  # type: ignore[no-untyped-def]
    from datetime import date

    from nestpoint.jobs.tenants import run_for_tenant
    from nestpoint.messaging.service import queue_birthdays

    tenant, sms, _ = await _chain(client, make_tenant, channels)
    born = {}
    for name, birthday in (
        ("today", "1990-03-14"),
        ("other", "1990-03-15"),
        ("leap", "1992-02-29"),
    ):
        r = await client.post(
            "/api/v1/members",
            json={"phone": new_phone(), "name": name, "birthday": birthday,
                  "consents": [{"channel": "sms", "granted": True, "source": "till"}]},
            headers=tenant.hq(),
        )  # fmt: skip
        assert r.status_code == 201, r.text
        born[name] = r.json()["id"]

    async def queue(day: date) -> int:
        return await run_for_tenant(tenant.id, lambda s: queue_birthdays(s, day), name="test")

    assert await queue(date(2027, 3, 14)) == 1
    assert await queue(date(2027, 3, 14)) == 0  # the job again: nothing new
    assert await queue(date(2027, 2, 28)) == 1  # 29 February, in a common year
    assert await queue(date(2028, 2, 28)) == 0  # a leap year has its own day
    r = await client.get("/api/v1/messages", params={"purpose": "birthday"}, headers=tenant.hq())
    messages = r.json()["items"]
    assert sorted(m["member_id"] for m in messages) == sorted([born["today"], born["leap"]])
    assert await _run(tenant, messages[0]) is None
    assert "生日快乐" in sms.sent[0].subject

    r = await client.put(
        "/api/v1/messaging/settings",
        json={"transactional": {"birthday": False}},
        headers=tenant.hq(),
    )
    assert r.status_code == 200, r.text
    assert await queue(date(2028, 3, 14)) == 0


async def test_an_operator_requeues_what_failed_before_any_provider_took_it(
    client, make_tenant, channels
) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from typer.testing import CliRunner

    from nestpoint.cli import app as cli_app

    def cli(*args: str) -> Any:  # its own event loop: a thread without one
        return CliRunner().invoke(cli_app, list(args), catch_exceptions=False)

    tenant, sms, mail = await _chain(client, make_tenant, channels)
    sms.script = [DeliveryReceipt(False, detail="outage")] * 2
    mail.script = [DeliveryReceipt(False, detail="outage")] * 2
    outage = await _send(client, tenant, await _member(client, tenant), "a")
    lost = await _send(client, tenant, await _member(client, tenant), "b")
    assert await _run(tenant, outage) is None
    sms.script, mail.script = [WorkerLost], []
    with pytest.raises(WorkerLost):
        await pipeline.step(tenant.id, uuid.UUID(lost["id"]), DAY)
    assert await _run(tenant, lost, DAY + timedelta(minutes=5)) is None  # interrupted

    result = await asyncio.to_thread(
        cli, "messages", "requeue", "--tenant", tenant.slug, "--since", "2020-01-01T00:00:00"
    )
    assert result.exit_code == 0, result.output
    assert "1 messages queued again" in result.stdout
    assert await _run(tenant, outage) is None
    assert (await _record(client, tenant, outage))["status"] == "sent"
    assert (await _record(client, tenant, lost))["reason"] == "interrupted"  # left alone

    result = await asyncio.to_thread(cli, "messages", "reach", "--tenant", tenant.slug)
    assert result.exit_code == 0, result.output
    assert "fsms\tsent\t-\t1" in result.stdout
    assert "reached 1 of 2 settled: 50.0%" in result.stdout
    result = await asyncio.to_thread(cli, "messages", "reach", "--tenant", "no-such-chain")
    assert result.exit_code == 2


async def test_sending_is_idempotent_by_message_key_even_for_concurrent_retries(
    client, concurrent_client, make_tenant, channels
) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    tenant, _, _ = await _chain(client, make_tenant, channels)
    members = [await _member(client, tenant) for _ in range(3)]
    body = {"message_key": "week-48", "template": "points_expiring", "member_ids": members}
    answers = await asyncio.gather(
        *(
            concurrent_client.post("/api/v1/messages", json=body, headers=tenant.hq())
            for _ in range(8)
        )
    )
    assert [r.status_code for r in answers] == [202] * 8
    assert len({r.text for r in answers}) == 1  # the same answer, first or replayed
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in answers) == 7
    r = await client.get("/api/v1/messages", params={"limit": 200}, headers=tenant.hq())
    assert len(r.json()["items"]) == 3

    other = body | {"template": "birthday"}
    r = await client.post("/api/v1/messages", json=other, headers=tenant.hq())
    assert r.status_code == 409, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["message_key"]
    twice = body | {"message_key": "dup", "member_ids": [members[0], members[0]]}
    r = await client.post("/api/v1/messages", json=twice, headers=tenant.hq())
    assert r.status_code == 202, r.text
    assert len(r.json()["items"]) == 1
    r = await client.post(
        "/api/v1/messages",
        json=body | {"message_key": "gone", "member_ids": [members[0], str(uuid.uuid4())]},
        headers=tenant.hq(),
    )
    assert r.status_code == 404, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["member_ids.1"]
    r = await client.get("/api/v1/messages", params={"limit": 200}, headers=tenant.hq())
    assert len(r.json()["items"]) == 4  # nothing of the refused request
