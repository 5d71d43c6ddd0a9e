"""The points-expiring reminder, end to end over the real protocols: the daily event, the
notifications plugin, the pipeline, and the e-mail (SMTP), SMS (signed HTTP gateway) and
WeCom (token + send) connectors against local fakes of their providers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from nestpoint_email.fake import FakeSmtp
from nestpoint_sms.fake import FakeSmsGateway
from nestpoint_wecom.fake import FakeWeCom

from loyalty.helpers import new_phone
from nestpoint.messaging import pipeline
from nestpoint.testing import emit_event, next_local_time

DAY = next_local_time(10)  # 10:00 in Shanghai, in the future
NIGHT = DAY + timedelta(hours=13)  # 23:00 in Shanghai


@pytest.fixture
def providers() -> Iterator[tuple[FakeSmtp, FakeSmsGateway, FakeWeCom]]:
    smtp = FakeSmtp(username="mailer", password="smtp-secret").start()
    with FakeSmsGateway() as sms, FakeWeCom(users={"wx-anna", "wx-gone-later"}) as wecom:
        try:
            yield smtp, sms, wecom
        finally:
            smtp.stop()


async def _enable(
    client: Any, tenant: Any, plugin: str, config: dict[str, Any], secrets: dict[str, str]
) -> None:
    path = f"/api/v1/tenant/plugins/{plugin}"
    r = await client.put(path, json={"enabled": True, "config": config}, headers=tenant.hq())
    assert r.status_code == 200, r.text
    for name, value in secrets.items():
        r = await client.put(f"{path}/secrets/{name}", json={"value": value}, headers=tenant.hq())
        assert r.status_code == 200, r.text


async def _member(client: Any, tenant: Any, consents: tuple[str, ...], **identities: str) -> str:
    body = {
        "phone": new_phone(),
        "name": "王芳",
        "consents": [{"channel": c, "granted": True, "source": "mini-program"} for c in consents],
        "identities": [{"kind": k, "value": v} for k, v in identities.items()],
    }
    r = await client.post("/api/v1/members", json=body, headers=tenant.hq())
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _remind(tenant: Any, member_id: str) -> None:
    """The daily announcement's event for the member (relayed to the plugins at once)."""
    payload = {"member_id": member_id, "points": 300, "expires_by": "2026-12-31T16:00:00+00:00"}
    await emit_event(
        tenant, "points.expiring", payload, subject_type="member", subject_id=member_id
    )


async def _drain(client: Any, tenant: Any, now: datetime) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/messages", params={"limit": 200}, headers=tenant.hq())
    messages = r.json()["items"]
    for message in messages:
        for _ in range(2):  # the second time is a retried job: it must change nothing
            while await pipeline.step(tenant.id, uuid.UUID(message["id"]), now) == 0:
                pass
    r = await client.get("/api/v1/messages", params={"limit": 200}, headers=tenant.hq())
    return list(r.json()["items"])


async def test_a_points_expiring_reminder_reaches_members_by_wecom_sms_and_email(
    client, make_tenant, providers
) -> None:  # type: ignore[no-untyped-def]
    smtp, sms, wecom = providers
    tenant = await make_tenant()
    await _enable(client, tenant, "notifications", {}, {})
    await _enable(client, tenant, "wecom", wecom.plugin_config(), wecom.plugin_secrets())
    await _enable(client, tenant, "sms", sms.plugin_config(), sms.plugin_secrets())
    smtp_config = {"host": "127.0.0.1", "port": smtp.port, "security": "none",
                   "username": "mailer", "from_address": "care@beibei.example"}  # fmt: skip
    await _enable(client, tenant, "email", smtp_config, {"password": "smtp-secret"})
    r = await client.put(
        "/api/v1/messaging/settings",
        json={"channel_order": ["wecom", "sms", "email"]},
        headers=tenant.hq(),
    )
    assert r.status_code == 200, r.text

    members = {
        "wecom": await _member(client, tenant, ("wecom", "sms"), wecom_userid="wx-anna"),
        "sms": await _member(client, tenant, ("sms",)),
        "email": await _member(client, tenant, ("email",), email="mum@example.com"),
        "none": await _member(client, tenant, ()),
        # WeCom answers 81013 (no such user): the SMS gateway takes it instead.
        "fallback": await _member(client, tenant, ("wecom", "sms"), wecom_userid="wx-unknown"),
    }
    for member_id in members.values():
        await _remind(tenant, member_id)
    listed = await _drain(client, tenant, DAY)
    settled = {m["member_id"]: m for m in listed}
    assert len(listed) == len(settled) == 5

    def outcome(who: str) -> tuple[str, str | None, str | None]:
        m = settled[members[who]]
        return m["status"], m["channel"], m["reason"]

    assert outcome("wecom") == ("sent", "wecom", None)
    assert outcome("sms") == ("sent", "sms", None)
    assert outcome("email") == ("sent", "email", None)
    assert outcome("none") == ("suppressed", None, "no_consent")
    assert outcome("fallback") == ("sent", "sms", None)
    assert settled[members["fallback"]]["tried"] == ["wecom"]

    # What the providers received, once each.
    assert [m["touser"] for m in wecom.sent] == ["wx-anna"]
    assert "300" in wecom.sent[0]["text"]["content"]
    assert wecom.token_fetches == 1
    assert len(sms.sent) == 2
    assert {s.params["points_expiring"] for s in sms.sent} == {"300"}
    assert all(s.out_id.endswith(":sms") for s in sms.sent)
    assert len(smtp.messages) == 1
    mail = smtp.messages[0]
    assert mail.rcpt_tos == ["mum@example.com"]
    assert mail.login == "mailer"
    parts = {p.get_content_type() for p in mail.message.walk()}
    assert {"text/plain", "text/html"} <= parts

    # The gateway's receipts come back signed: the SMS messages become delivered.
    for sent in sms.sent:
        headers, body = sms.signed_receipts([sms.receipt(sent.biz_id)])
        r = await client.post(
            f"/public/{tenant.slug}/channels/sms/receipts", content=body, headers=headers
        )
        assert r.status_code == 200, r.text
        assert r.json() == {"applied": 1}
    forged, body = sms.signed_receipts([sms.receipt(sms.sent[0].biz_id)], secret="guess")
    r = await client.post(
        f"/public/{tenant.slug}/channels/sms/receipts", content=body, headers=forged
    )
    assert r.status_code == 401, r.text
    r = await client.get("/api/v1/messaging/reach", headers=tenant.hq())
    reach = r.json()
    assert (reach["total"], reach["reached"], reach["reach_rate"]) == (5, 4, 0.8)
    delivered = {(row["channel"], row["status"]): row["count"] for row in reach["rows"]}
    assert delivered[("sms", "delivered")] == 2


async def test_in_quiet_hours_the_reminder_waits_for_the_morning_or_is_suppressed(
    client, make_tenant, providers
) -> None:  # type: ignore[no-untyped-def]
    _, sms, _ = providers
    tenant = await make_tenant()
    await _enable(client, tenant, "notifications", {}, {})
    await _enable(client, tenant, "sms", sms.plugin_config(), sms.plugin_secrets())
    waits = await _member(client, tenant, ("sms",))
    await _remind(tenant, waits)
    [held] = await _drain(client, tenant, NIGHT)
    assert held["status"] == "queued"
    morning = NIGHT + timedelta(hours=9)  # 08:00 in Shanghai
    assert held["not_before"].startswith(f"{morning:%Y-%m-%dT%H:%M}")
    assert sms.sent == []

    r = await client.put(
        "/api/v1/messaging/settings",
        json={"quiet_hours": {"start": "21:00", "end": "08:00", "action": "suppress"}},
        headers=tenant.hq(),
    )
    assert r.status_code == 200, r.text
    dropped = await _member(client, tenant, ("sms",))
    await _remind(tenant, dropped)
    settled = {m["member_id"]: m for m in await _drain(client, tenant, NIGHT)}
    assert (settled[dropped]["status"], settled[dropped]["reason"]) == ("suppressed", "quiet_hours")
    # The held one goes out in the morning (it was queued before the chain chose suppress).
    settled = {
        m["member_id"]: m
        for m in await _drain(client, tenant, NIGHT + timedelta(hours=9, minutes=1))
    }
    assert settled[waits]["status"] == "sent"
    assert len(sms.sent) == 1
