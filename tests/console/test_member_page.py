"""The member's 360° page: messages (newest first, bounded, sealed codes never shown, HQ
only), refunds per order, the plugins' panels titled in the user's language and told who
views them, and HQ's admin ending the member's app sessions (audited, refused to others)."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select, update

from loyalty.helpers import order_body
from nestpoint.audit.models import AuditEntry
from nestpoint.context import tenant_context
from nestpoint.db import scoped_session, utcnow
from nestpoint.members.models import Member
from nestpoint.messaging import service as messaging
from nestpoint.messaging.models import Message
from nestpoint.plugins.manager import get_plugin_host
from nestpoint.plugins.types import ConsolePanel, PluginContext

from .test_users_and_sessions import PASSWORD, add_user, login_token, sign_in

SECRET_CODE = "654321"
NEW_PHONE = "+8613900001111"
MESSAGE_ROWS = re.compile(r'<table data-export="messages".*?<tbody>(.*?)</tbody>', re.S)


def _phone() -> str:
    return f"135{uuid.uuid4().int % 10**8:08d}"


async def _member(client: Any, t: Any, store: str = "S1", name: str = "李静") -> str:
    body = {"phone": _phone(), "name": name, "home_store_code": store}
    r = await client.post("/api/v1/members", json=body, headers=t.hq())
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _csv(text: str) -> list[list[str]]:
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


def _message_rows(html: str) -> list[str]:
    found = MESSAGE_ROWS.search(html)
    assert found, "no messages table"
    return re.findall(r"<tr>(.*?)</tr>", found.group(1), re.S)


async def _messages(client: Any, t: Any, member_id: str) -> None:
    """53 messages, the newest three first: a sealed code (-1 d), a code wiped (-2 d), one
    sent through the API with a parameter (-3 d), then 50 older ones."""
    body = {
        "message_key": "first",
        "purpose": "tier_up",
        "template": "tier_up",
        "member_ids": [member_id],
        "params": {"tier_name": "PARAM-金卡-秘密"},
    }
    r = await client.post("/api/v1/messages", json=body, headers=t.hq())
    assert r.status_code == 202, r.text
    now = utcnow()
    with tenant_context(t.id):
        async with scoped_session() as session:
            member = await session.get(Member, (t.id, uuid.UUID(member_id)))
            assert member is not None
            for key in ("sealed", "wiped"):
                await messaging.queue_sealed(
                    session,
                    member=member,
                    key=key,
                    purpose=messaging.PHONE_VERIFICATION,
                    to=NEW_PHONE,
                    secrets={"code": SECRET_CODE, "minutes": "10"},
                )
            for i in range(50):
                await messaging.queue_message(
                    session,
                    member_id=member.id,
                    key=f"old-{i}",
                    purpose="birthday",
                    template="birthday",
                    params={},
                )
            await session.flush()
            ages = {"sealed": 1, "wiped": 2, "api:first:" + member_id: 3}
            for key, days in ages.items():
                await session.execute(
                    update(Message)
                    .where(Message.message_key == key)
                    .values(created_at=now - timedelta(days=days))
                )
            await session.execute(
                update(Message)
                .where(Message.message_key == "wiped")
                .values(sealed=None, status="sent", channel="sms", sent_at=now)
            )
            for i in range(50):
                await session.execute(
                    update(Message)
                    .where(Message.message_key == f"old-{i}")
                    .values(created_at=now - timedelta(days=10, minutes=i))
                )


async def test_messages_newest_first_bounded_sealed_codes_never_shown(
    app, client, make_tenant
) -> None:
    t = await make_tenant(("S1", "S2"))
    await add_user(client, t, "adm", "hq_admin", locale="en")
    await add_user(client, t, "ana", "hq_analyst", locale="en")
    await add_user(client, t, "mgr", "store_manager", "S1", locale="en")
    member = await _member(client, t)
    await _messages(client, t, member)

    for login in ("adm", "ana"):  # HQ reads messages (messages:read), the analyst too
        async with AsyncTestClient(app=app) as c:
            assert (await sign_in(c, t.slug, login)).status_code == 303
            page = await c.get(f"/console/members/{member}")
            assert page.status_code == 200
            rows = _message_rows(page.text)
            assert len(rows) == 50  # the latest 50 of 53
            assert "phone_verification" in rows[0]
            assert "code sealed, not shown" in rows[0]
            assert "code wiped" in rows[1]
            assert "sent" in rows[1]
            assert "tier_up" in rows[2]
            assert "You moved up a tier" in rows[2]  # the template's subject, in English
            assert all("birthday" in row for row in rows[3:])
            for secret in (SECRET_CODE, NEW_PHONE, "PARAM-金卡-秘密"):
                assert secret not in page.text
            exported = await c.get(f"/console/members/{member}", params={"export": "messages"})
            assert exported.status_code == 200
            table = _csv(exported.text)
            assert len(table) == 1 + 50
            assert table[0][:3] == ["When", "Purpose", "Template"]
            assert table[1][1] == "phone_verification"

    async with AsyncTestClient(app=app) as c:  # a store role has no messages:read
        assert (await sign_in(c, t.slug, "mgr")).status_code == 303
        page = await c.get(f"/console/members/{member}")
        assert page.status_code == 200
        assert 'data-testid="messages"' not in page.text
        assert "phone_verification" not in page.text
        exported = await c.get(f"/console/members/{member}", params={"export": "messages"})
        assert exported.status_code == 404


async def test_refunds_are_listed_under_the_orders(app, client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    await add_user(client, t, "adm", "hq_admin", locale="en")
    member = await _member(client, t)
    order = order_body("RCPT-1", member={"id": member})
    r = await client.post("/api/v1/orders", json=order, headers=t.hq())
    assert r.status_code == 201, r.text
    r = await client.post(
        "/api/v1/orders/pos/RCPT-1/refunds", json={"external_id": "RF-9"}, headers=t.hq()
    )
    assert r.status_code == 201, r.text
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "adm")).status_code == 303
        page = await c.get(f"/console/members/{member}")
        assert page.status_code == 200
        assert 'data-testid="refunds"' in page.text
        refunds = _csv((await c.get(f"/console/members/{member}?export=refunds")).text)
    assert refunds[0] == [
        "When",
        "Receipt",
        "Refund reference",
        "Amount",
        "Points taken back",
        "Points returned",
    ]
    [(when, receipt, reference, amount, taken, returned)] = refunds[1:]
    assert (receipt, reference, amount, returned) == ("RCPT-1", "RF-9", "¥100.00", "0")
    assert int(taken) > 0  # the points the order earned
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", when)


# ------------------------------------------------------------------ plugins' panels


@pytest.fixture
def viewer_panels(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example plugin's member panels: one showing who it is rendered for (titled in
    two languages), one rendering nothing."""

    async def who(plugin: PluginContext, subject_id: str | None) -> str:
        v = plugin.viewer
        assert v is not None
        return f'<p data-testid="viewer">{v.role}|{v.locale}|{v.personal_data}</p>'

    async def nothing(plugin: PluginContext, subject_id: str | None) -> str:
        return ""

    panels = get_plugin_host().contributions["example"].console_panels
    title = {"zh_CN": "查看者", "en": "Viewer"}
    monkeypatch.setitem(panels, "who", ConsolePanel("who", title, "member", who))
    monkeypatch.setitem(panels, "nothing", ConsolePanel("nothing", "Nothing", "member", nothing))


def _viewer(html: str) -> tuple[str, str]:
    panel = html.split('data-testid="panel-example.who"', 1)[1].split("</section>", 1)[0]
    title = re.search(r"<h2>(.*?)</h2>", panel)
    shown = re.search(r'data-testid="viewer">(.*?)</p>', panel)
    assert title, panel
    assert shown, panel
    return title.group(1), shown.group(1)


async def test_panels_are_titled_in_the_users_language_and_told_who_views(
    app, client, make_tenant, viewer_panels
) -> None:
    t = await make_tenant(("S1", "S2"))
    await add_user(client, t, "adm", "hq_admin", locale="en")
    await add_user(client, t, "ana", "hq_analyst", locale="zh-CN")
    await add_user(client, t, "mgr", "store_manager", "S1", locale="zh-CN")
    own, other = await _member(client, t, "S1"), await _member(client, t, "S2")
    r = await client.put(
        "/api/v1/tenant/plugins/example", json={"enabled": True, "config": {}}, headers=t.hq()
    )
    assert r.status_code == 200, r.text
    r = await client.put(
        "/api/v1/tenant/plugins/consultations/stores/S1", json={"enabled": True}, headers=t.hq()
    )
    assert r.status_code == 200, r.text

    async def seen(login: str, member: str) -> str:
        async with AsyncTestClient(app=app) as c:
            assert (await sign_in(c, t.slug, login)).status_code == 303
            page = await c.get(f"/console/members/{member}")
        assert page.status_code == 200
        assert 'data-testid="panel-example.nothing"' not in page.text  # rendered nothing
        return page.text

    assert _viewer(await seen("adm", own)) == ("Viewer", "hq_admin|en|True")
    assert _viewer(await seen("ana", own)) == ("查看者", "hq_analyst|zh_CN|False")
    page = await seen("mgr", own)
    assert _viewer(page) == ("查看者", "store_manager|zh_CN|True")
    bookings = page.split('data-testid="panel-consultations.bookings"', 1)[1]
    assert "<h2>育儿咨询预约</h2>" in bookings.split("</section>", 1)[0]
    # S2's member, shared with direct stores: in reach, not the manager's to see whole.
    assert _viewer(await seen("mgr", other)) == ("查看者", "store_manager|zh_CN|False")


# ------------------------------------------------------------------ the member's app sessions


async def _app_token(client: Any, t: Any, member: str) -> dict[str, str]:
    r = await client.post("/api/v1/member-tokens", json={"member_id": member}, headers=t.hq())
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _revoke_path(member: str) -> str:
    return f"/console/members/{member}/app-sessions/revoke"


async def _revocations(t: Any) -> list[AuditEntry]:
    with tenant_context(t.id):
        async with scoped_session() as session:
            rows = await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "member_tokens.revoked")
            )
            return list(rows.all())


async def test_hq_admin_ends_the_members_app_sessions_others_are_refused(
    app, client, make_tenant
) -> None:
    t = await make_tenant(("S1",))
    admin = await add_user(client, t, "adm", "hq_admin", locale="en")
    for login, role, store in (
        ("ana", "hq_analyst", None),
        ("mgr", "store_manager", "S1"),
        ("clk", "store_clerk", "S1"),
    ):
        await add_user(client, t, login, role, store, locale="en")
    member = await _member(client, t)
    tokens = [await _app_token(client, t, member) for _ in range(2)]
    assert (await client.get("/api/v1/me", headers=tokens[0])).status_code == 200

    for login in ("ana", "mgr", "clk"):  # refused, with their session's CSRF token
        async with AsyncTestClient(app=app) as c:
            assert (await sign_in(c, t.slug, login)).status_code == 303
            home = await c.get("/console/", follow_redirects=True)
            assert 'data-testid="revoke-app-sessions"' not in home.text
            r = await c.post(_revoke_path(member), data={"csrf_token": login_token(home.text)})
            assert r.status_code == 403, (login, r.text)
            if login != "clk":
                page = await c.get(f"/console/members/{member}")
                assert 'data-testid="revoke-app-sessions"' not in page.text
    assert (await client.get("/api/v1/me", headers=tokens[1])).status_code == 200
    assert await _revocations(t) == []

    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "adm")).status_code == 303
        page = await c.get(f"/console/members/{member}")
        assert 'data-testid="live-app-sessions">2<' in page.text
        token = login_token(page.text)
        r = await c.post(_revoke_path(member), data={})  # no CSRF token
        assert r.status_code == 403
        r = await c.post(_revoke_path(str(uuid.uuid4())), data={"csrf_token": token})
        assert r.status_code == 404
        r = await c.post(_revoke_path("not-an-id"), data={"csrf_token": token})
        assert r.status_code == 404
        r = await c.post(_revoke_path(member), data={"csrf_token": token}, follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"] == f"/console/members/{member}?app_sessions=ended"
        page = await c.get(r.headers["location"])
        assert 'data-testid="app-sessions-ended"' in page.text
        assert 'data-testid="live-app-sessions">0<' in page.text
        # Again: harmless, nothing left to end.
        r = await c.post(_revoke_path(member), data={"csrf_token": token}, follow_redirects=False)
        assert r.status_code == 303
    for headers in tokens:
        assert (await client.get("/api/v1/me", headers=headers)).status_code == 401
    entries = await _revocations(t)
    assert sorted(e.changes["count"] for e in entries) == [0, 2]
    assert {(e.actor_id, e.subject_id, e.changes["reason"]) for e in entries} == {
        (admin["id"], member, "console")
    }


async def test_two_revocations_at_once_end_every_session_once(
    app, client, make_tenant, concurrent_client: httpx.AsyncClient
) -> None:
    t = await make_tenant(("S1",))
    await add_user(client, t, "adm", "hq_admin", locale="en")
    member = await _member(client, t)
    tokens = [await _app_token(client, t, member) for _ in range(3)]
    c = concurrent_client
    login = await c.get("/console/login")
    r = await c.post(
        "/console/login",
        data={
            "csrf_token": login_token(login.text),
            "chain": t.slug,
            "login": "adm",
            "password": PASSWORD,
        },
    )
    assert r.status_code == 303, r.text
    page = await c.get(f"/console/members/{member}")
    token = login_token(page.text)
    answers = await asyncio.gather(
        *(c.post(_revoke_path(member), data={"csrf_token": token}) for _ in range(2))
    )
    assert [a.status_code for a in answers] == [303, 303]
    for headers in tokens:
        assert (await client.get("/api/v1/me", headers=headers)).status_code == 401
    counts = [e.changes["count"] for e in await _revocations(t)]
    assert (len(counts), sum(counts)) == (2, 3)  # each token ended once, both audited
