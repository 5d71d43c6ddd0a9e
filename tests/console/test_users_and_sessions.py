"""Console users through the HQ API, and the console's sessions, CSRF and sign-in throttle
(in process; the browser tests in test_browser.py drive a real server)."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select, update

from commands import nestpoint
from nestpoint.audit.models import AuditEntry
from nestpoint.console.models import ConsoleSession
from nestpoint.console.service import ROLE_SCOPES, purge_sessions
from nestpoint.context import tenant_context
from nestpoint.db import scoped_session, utcnow
from nestpoint.jobs.tenants import run_for_tenant

PASSWORD = "correct horse battery"


async def add_user(client, t, login: str, role: str, store: str | None = None, **extra) -> dict:  # type: ignore[no-untyped-def]
    body = {"login": login, "role": role, "password": PASSWORD, **extra}
    if store:
        body["store_code"] = store
    r = await client.post("/api/v1/console-users", json=body, headers=t.hq())
    assert r.status_code == 201, r.text
    return dict(r.json())


def login_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def sign_in(client, slug: str, login: str, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    page = await client.get("/console/login")
    assert page.status_code == 200
    token = login_token(page.text)
    return await client.post(
        "/console/login",
        data={"csrf_token": token, "chain": slug, "login": login, "password": password},
        follow_redirects=False,
    )


@pytest.fixture
async def fresh_client(app: Litestar):  # type: ignore[no-untyped-def]
    async with AsyncTestClient(app=app) as c:
        yield c


async def test_users_are_managed_through_the_api_and_audited(client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    made = await client.post(
        "/api/v1/console-users", json={"login": "li.na", "role": "hq_analyst"}, headers=t.hq()
    )
    assert made.status_code == 201, made.text
    assert len(made.json()["password"]) >= 10
    assert made.json()["store_code"] is None
    clerk = await add_user(client, t, "clerk1", "store_clerk", "S1")
    assert clerk["password"] is None
    assert clerk["store_code"] == "S1"

    r = await client.post(
        "/api/v1/console-users", json={"login": "li.na", "role": "hq_admin"}, headers=t.hq()
    )
    assert r.status_code == 409
    r = await client.post(
        "/api/v1/console-users", json={"login": "m1", "role": "store_manager"}, headers=t.hq()
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "store_code"
    r = await client.post(
        "/api/v1/console-users",
        json={"login": "m1", "role": "hq_admin", "store_code": "S1"},
        headers=t.hq(),
    )
    assert r.status_code == 422
    r = await client.post(
        "/api/v1/console-users", json={"login": "m1", "role": "store_clerk"}, headers=t.store("S1")
    )
    assert r.status_code == 403

    listed = await client.get("/api/v1/console-users", headers=t.hq())
    assert listed.status_code == 200
    assert [u["login"] for u in listed.json()["items"]] == ["clerk1", "li.na"]
    assert all("password" not in u for u in listed.json()["items"])

    r = await client.patch(
        f"/api/v1/console-users/{clerk['id']}",
        json={"role": "store_manager", "disabled": True, "reset_password": True},
        headers=t.hq(),
    )
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "store_manager"
    assert r.json()["disabled_at"] is not None
    assert len(r.json()["password"]) >= 10
    r = await client.patch(f"/api/v1/console-users/{uuid.uuid4()}", json={}, headers=t.hq())
    assert r.status_code == 404

    with tenant_context(t.id):
        async with scoped_session() as session:
            entries = list(
                await session.scalars(
                    select(AuditEntry)
                    .where(AuditEntry.action == "console_user.updated")
                    .order_by(AuditEntry.occurred_at)
                )
            )
    [entry] = entries
    assert entry.subject_id == clerk["id"]
    assert entry.changes["before"]["role"] == "store_clerk"
    assert entry.changes["after"]["role"] == "store_manager"
    assert entry.changes["changed"]["disabled"] == [False, True]
    assert entry.changes["changed"]["password"] == "reset"
    assert "password_hash" not in str(entry.changes)


def test_role_scopes() -> None:
    assert "members:pii" not in ROLE_SCOPES["hq_analyst"]
    assert "members:read" in ROLE_SCOPES["hq_analyst"]
    assert not any(s.endswith(":write") for s in ROLE_SCOPES["hq_analyst"])
    assert "members:pii" in ROLE_SCOPES["hq_admin"]
    assert "orders:write" in ROLE_SCOPES["store_clerk"]
    assert "stores:write" not in ROLE_SCOPES["store_clerk"]
    assert "members:pii" not in ROLE_SCOPES["store_clerk"]


async def test_sign_in_session_cookie_logout(client, fresh_client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    await add_user(client, t, "boss", "hq_admin")
    r = await sign_in(fresh_client, t.slug, "boss")
    assert r.status_code == 303
    assert r.headers["location"] == "/console/dashboard"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("np_console="))
    assert "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower()
    assert "Path=/console" in cookie
    raw = cookie.split(";")[0].split("=", 1)[1]
    assert raw.startswith(t.id.hex + ".")
    with tenant_context(t.id):
        async with scoped_session() as session:
            row = await session.scalar(select(ConsoleSession))
    assert row is not None
    assert raw.split(".", 1)[1] not in row.token_hash

    page = await fresh_client.get("/console/dashboard")
    assert page.status_code == 200
    assert "boss" in page.text
    token = login_token(page.text)
    # No CSRF token: refused before anything happens; with it, signed out.
    r = await fresh_client.post("/console/logout", follow_redirects=False)
    assert r.status_code == 403
    r = await fresh_client.post(
        "/console/logout", data={"csrf_token": "x" * 43}, follow_redirects=False
    )
    assert r.status_code == 403
    r = await fresh_client.post(
        "/console/logout", headers={"X-CSRF-Token": token}, follow_redirects=False
    )
    assert r.status_code == 303
    fresh_client.cookies.set("np_console", raw, path="/console")  # the old cookie again
    r = await fresh_client.get("/console/dashboard", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/console/login?next=%2Fconsole%2Fdashboard"


async def test_sign_in_form_needs_its_csrf_cookie(app, client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    await add_user(client, t, "boss", "hq_admin")
    async with AsyncTestClient(app=app) as other:
        r = await other.post(
            "/console/login",
            data={"csrf_token": "forged", "chain": t.slug, "login": "boss", "password": PASSWORD},
            follow_redirects=False,
        )
    assert r.status_code == 403


async def test_idle_and_expired_sessions_end(client, fresh_client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    await add_user(client, t, "clerk", "store_clerk", "S1")
    assert (await sign_in(fresh_client, t.slug, "clerk")).status_code == 303
    assert (await fresh_client.get("/console/till")).status_code == 200
    with tenant_context(t.id):
        async with scoped_session() as session:
            await session.execute(
                update(ConsoleSession).values(last_seen_at=utcnow() - timedelta(hours=1))
            )
    r = await fresh_client.get("/console/till", follow_redirects=False)
    assert r.status_code == 303
    r = await fresh_client.get("/console/till", headers={"HX-Request": "true"})
    assert r.status_code == 200
    assert r.headers["hx-redirect"].startswith("/console/login")


async def test_wrong_password_is_refused_audited_and_throttled(
    client, fresh_client, make_tenant
) -> None:
    t = await make_tenant(("S1",))
    await add_user(client, t, "boss", "hq_admin")
    for _ in range(5):  # NESTPOINT_CONSOLE_LOGIN_LIMIT: 5 failures a minute
        r = await sign_in(fresh_client, t.slug, "boss", "wrong password!")
        assert r.status_code == 401
        assert "Wrong chain, login or password" in r.text or "密码错误" in r.text
    r = await sign_in(fresh_client, t.slug, "boss")  # the right password, but throttled
    assert r.status_code == 429
    r = await sign_in(fresh_client, t.slug, "nobody", "whatever")  # another login still tries
    assert r.status_code == 401
    with tenant_context(t.id):
        async with scoped_session() as session:
            reasons = [
                e.changes["reason"]
                for e in await session.scalars(
                    select(AuditEntry).where(AuditEntry.action == "console.sign_in_refused")
                )
            ]
    assert sorted(reasons) == ["throttled"] + ["wrong credentials"] * 6


async def test_a_disabled_user_cannot_sign_in(client, fresh_client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    user = await add_user(client, t, "gone", "hq_analyst")
    r = await client.patch(
        f"/api/v1/console-users/{user['id']}", json={"disabled": True}, headers=t.hq()
    )
    assert r.status_code == 200
    assert (await sign_in(fresh_client, t.slug, "gone")).status_code == 401


async def test_pages_by_role(client, app, make_tenant) -> None:
    t = await make_tenant(("S1",))
    roles = {
        "admin": ("hq_admin", None),
        "analyst": ("hq_analyst", None),
        "manager": ("store_manager", "S1"),
        "clerk": ("store_clerk", "S1"),
    }
    for login, (role, store) in roles.items():
        await add_user(client, t, login, role, store)
    expected = {
        "admin": {"dashboard": 200, "members": 200, "till": 403},
        "analyst": {"dashboard": 200, "members": 200, "till": 403},
        "manager": {"dashboard": 200, "members": 200, "till": 200},
        "clerk": {"dashboard": 403, "members": 403, "till": 200},
    }
    for login, pages in expected.items():
        async with AsyncTestClient(app=app) as c:
            assert (await sign_in(c, t.slug, login)).status_code == 303
            seen = {page: (await c.get(f"/console/{page}")).status_code for page in pages}
            assert seen == pages, login


async def test_the_operator_adds_and_lists_users(client, fresh_client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    done = await nestpoint(
        "console", "add-user", "clerk9", "--tenant", t.slug, "--role", "store_clerk", "--store",
        "S1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    password = done.stdout.strip().rsplit("password: ", 1)[1]
    assert len(password) >= 10
    listed = await nestpoint("console", "list-users", "--tenant", t.slug)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split("\t")[:5] == ["clerk9", "store_clerk", "S1", "-", "active"]
    refused = await nestpoint(
        "console", "add-user", "m2", "--tenant", t.slug, "--role", "store_manager"
    )
    assert refused.returncode == 2
    assert "store_code" in refused.stderr
    r = await sign_in(fresh_client, t.slug, "clerk9", password)
    assert r.status_code == 303
    assert r.headers["location"] == "/console/till"


async def test_the_demo_makes_a_user_per_role_with_fresh_passwords(
    client, fresh_client, make_tenant
) -> None:
    from nestpoint.demo import _seed_console_users

    t = await make_tenant(("S1",))
    first = await _seed_console_users(t.id, "S1")
    assert [(login, role) for login, role, _ in first] == [
        ("hq-admin", "hq_admin"),
        ("hq-analyst", "hq_analyst"),
        ("manager-s1", "store_manager"),
        ("clerk-s1", "store_clerk"),
    ]
    again = await _seed_console_users(t.id, "S1")  # a later run: the same users, new passwords
    assert [p for *_, p in again] != [p for *_, p in first]
    assert (await sign_in(fresh_client, t.slug, "clerk-s1", first[3][2])).status_code == 401
    assert (await sign_in(fresh_client, t.slug, "clerk-s1", again[3][2])).status_code == 303


async def test_hq_admin_manages_users_in_the_console(app, client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    admin = await add_user(client, t, "admin", "hq_admin")
    await add_user(client, t, "analyst", "hq_analyst")
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "admin")).status_code == 303
        page = await c.get("/console/users")
        assert page.status_code == 200
        csrf = login_token(page.text)
        made = await c.post(
            "/console/users",
            data={"csrf_token": csrf, "login": "clerk7", "role": "store_clerk", "store_code": "S1"},
        )
        assert made.status_code == 200
        password = re.search(r"<code>([^<]+)</code>", made.text)
        assert password
        listed = await client.get("/api/v1/console-users", headers=t.hq())
        clerk = next(u for u in listed.json()["items"] if u["login"] == "clerk7")
        assert clerk["store_code"] == "S1"
        r = await c.post(
            f"/console/users/{clerk['id']}", data={"csrf_token": csrf, "action": "disable"}
        )
        assert r.status_code == 200
        r = await c.post(
            f"/console/users/{admin['id']}", data={"csrf_token": csrf, "action": "disable"}
        )
        assert r.status_code == 409  # not oneself: the chain's last active hq_admin
        assert 'data-testid="error-disabled"' in r.text
        bad = await c.post(
            "/console/users",
            data={"csrf_token": csrf, "login": "m9", "role": "store_manager"},
        )
        assert bad.status_code == 422
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "clerk7", password.group(1))).status_code == 401
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "analyst")).status_code == 303
        page = await c.get("/console/users")
        assert page.status_code == 200
        assert "clerk7" in page.text
        assert 'name="action"' not in page.text  # read only
        r = await c.post(
            "/console/users",
            data={"csrf_token": login_token(page.text), "login": "x9", "role": "hq_admin"},
        )
        assert r.status_code == 403
    with tenant_context(t.id):
        async with scoped_session() as session:
            actors = {
                (e.action, e.actor_id)
                for e in await session.scalars(
                    select(AuditEntry).where(AuditEntry.subject_type == "console_user")
                )
            }
    assert ("console_user.created", admin["id"]) in actors
    assert ("console_user.updated", admin["id"]) in actors


async def test_sessions_long_expired_are_purged_per_chain(client, app, make_tenant) -> None:
    """The periodic job's per-chain step deletes the chain's sessions expired over a week
    ago, keeps the others, and never reaches another chain's (run as the workers run it,
    as the application role on PostgreSQL)."""
    t, other = await make_tenant(("S1",)), await make_tenant(("S1",))
    for chain in (t, t, other):
        await add_user(client, chain, login := f"u{uuid.uuid4().hex[:8]}", "hq_admin")
        async with AsyncTestClient(app=app) as c:
            assert (await sign_in(c, chain.slug, login)).status_code == 303

    async def sessions(tenant_id: uuid.UUID) -> list[uuid.UUID]:
        with tenant_context(tenant_id):
            async with scoped_session() as session:
                return list((await session.scalars(select(ConsoleSession.id))).all())

    old, fresh = await sessions(t.id)
    [elsewhere] = await sessions(other.id)
    for tenant_id, session_id in ((t.id, old), (other.id, elsewhere)):
        with tenant_context(tenant_id):
            async with scoped_session() as session:
                await session.execute(
                    update(ConsoleSession)
                    .where(ConsoleSession.id == session_id)
                    .values(expires_at=utcnow() - timedelta(days=8))
                )
    purged = await run_for_tenant(t.id, purge_sessions, name="test")
    assert purged == 1
    assert await sessions(t.id) == [fresh]
    assert await sessions(other.id) == [elsewhere]


async def _audit_of(tenant_id: uuid.UUID, user_id: str) -> list[AuditEntry]:
    with tenant_context(tenant_id):
        async with scoped_session() as session:
            return list(
                await session.scalars(
                    select(AuditEntry)
                    .where(AuditEntry.action == "console_user.updated")
                    .where(AuditEntry.subject_id == user_id)
                    .order_by(AuditEntry.occurred_at)
                )
            )


async def _user(client, t, login: str) -> dict:  # type: ignore[no-untyped-def]
    listed = await client.get("/api/v1/console-users", headers=t.hq())
    return dict(next(u for u in listed.json()["items"] if u["login"] == login))


async def test_hq_admin_changes_a_users_role_and_store(app, client, make_tenant) -> None:
    t = await make_tenant(("S1", "S2"))
    admin = await add_user(client, t, "admin", "hq_admin")
    clerk = await add_user(client, t, "clerk", "store_clerk", "S1")
    analyst = await add_user(client, t, "analyst", "hq_analyst")
    async with AsyncTestClient(app=app) as clerks:
        assert (await sign_in(clerks, t.slug, "clerk")).status_code == 303
        assert (await clerks.get("/console/till")).status_code == 200
        async with AsyncTestClient(app=app) as c:
            assert (await sign_in(c, t.slug, "admin")).status_code == 303
            page = await c.get("/console/users")
            assert page.text.count('data-testid="role-form"') == 3
            csrf = login_token(page.text)
            move = {"csrf_token": csrf, "action": "role", "role": "store_manager"}
            r = await c.post(f"/console/users/{clerk['id']}", data={**move, "store_code": "S2"})
            assert r.status_code == 200, r.text
            # The clerk's session ended at once: the next request asks them to sign in.
            ended = await clerks.get("/console/till", follow_redirects=False)
            assert ended.status_code == 303
            # A store role needs a store; an HQ role has none; an unknown role is refused.
            for body, field in (
                ({**move, "store_code": ""}, "store_code"),
                ({**move, "store_code": "S9"}, "store_code"),
                ({**move, "role": "hq_admin", "store_code": "S1"}, "store_code"),
                ({**move, "role": "owner"}, "role"),
            ):
                bad = await c.post(f"/console/users/{analyst['id']}", data=body)
                assert bad.status_code == 422, body
                assert f'data-testid="error-{field}"' in bad.text, body
            promote = {**move, "role": "hq_analyst", "store_code": ""}
            r = await c.post(f"/console/users/{clerk['id']}", data=promote)
            assert r.status_code == 200
            no_csrf = {k: v for k, v in move.items() if k != "csrf_token"}
            assert (
                await c.post(f"/console/users/{analyst['id']}", data=no_csrf)
            ).status_code == 403
    moved = await _user(client, t, "clerk")
    assert (moved["role"], moved["store_code"]) == ("hq_analyst", None)
    unchanged = await _user(client, t, "analyst")
    assert (unchanged["role"], unchanged["store_code"]) == ("hq_analyst", None)
    entries = await _audit_of(t.id, clerk["id"])
    assert [e.actor_id for e in entries] == [admin["id"], admin["id"]]
    assert entries[0].changes["before"]["role"] == "store_clerk"
    assert entries[0].changes["after"]["role"] == "store_manager"
    assert entries[0].changes["changed"]["store_id"] == [str(t.stores["S1"]), str(t.stores["S2"])]
    assert await _audit_of(t.id, analyst["id"]) == []

    async with AsyncTestClient(app=app) as c:  # the analyst reads only
        assert (await sign_in(c, t.slug, "analyst")).status_code == 303
        page = await c.get("/console/users")
        assert 'data-testid="role-form"' not in page.text
        body = {"csrf_token": login_token(page.text), "action": "role", "role": "hq_admin"}
        assert (await c.post(f"/console/users/{analyst['id']}", data=body)).status_code == 403
    assert (await _user(client, t, "analyst"))["role"] == "hq_analyst"


async def test_the_last_active_admin_cannot_demote_or_disable_themselves(
    app, client, make_tenant
) -> None:
    t = await make_tenant(("S1",))
    admin = await add_user(client, t, "admin", "hq_admin")
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "admin")).status_code == 303
        csrf = login_token((await c.get("/console/users")).text)
        demote = {"csrf_token": csrf, "action": "role", "role": "hq_analyst"}
        r = await c.post(f"/console/users/{admin['id']}", data=demote)
        assert r.status_code == 409
        assert 'data-testid="error-role"' in r.text
        r = await c.post(
            f"/console/users/{admin['id']}", data={"csrf_token": csrf, "action": "disable"}
        )
        assert r.status_code == 409
        assert 'data-testid="error-disabled"' in r.text
        # A disabled admin does not count: still the last active one.
        other = await add_user(client, t, "admin2", "hq_admin")
        off = await client.patch(
            f"/api/v1/console-users/{other['id']}", json={"disabled": True}, headers=t.hq()
        )
        assert off.status_code == 200
        assert (await c.post(f"/console/users/{admin['id']}", data=demote)).status_code == 409
        assert await _audit_of(t.id, admin["id"]) == []
        on = await client.patch(
            f"/api/v1/console-users/{other['id']}", json={"disabled": False}, headers=t.hq()
        )
        assert on.status_code == 200
        # With another active admin, they may step down; their own session ends at once.
        assert (await c.post(f"/console/users/{admin['id']}", data=demote)).status_code == 200
        ended = await c.get("/console/users", follow_redirects=False)
        assert ended.status_code == 303
    assert (await _user(client, t, "admin"))["role"] == "hq_analyst"


async def test_two_last_admins_stepping_down_at_once_leave_one(app, client, make_tenant) -> None:
    """Each admin demotes themselves at the same moment: one goes, the other is refused."""
    t = await make_tenant(("S1",))
    admins = [await add_user(client, t, login, "hq_admin") for login in ("adm-a", "adm-b")]
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as a,
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as b,
    ):
        forms = []
        for c, login in ((a, "adm-a"), (b, "adm-b")):
            assert (await sign_in(c, t.slug, login)).status_code == 303
            csrf = login_token((await c.get("/console/users")).text)
            forms.append({"csrf_token": csrf, "action": "role", "role": "hq_analyst"})
        answers = await asyncio.gather(
            a.post(f"/console/users/{admins[0]['id']}", data=forms[0]),
            b.post(f"/console/users/{admins[1]['id']}", data=forms[1]),
        )
    assert sorted(r.status_code for r in answers) == [200, 409]
    roles = sorted([(await _user(client, t, u["login"]))["role"] for u in admins])
    assert roles == ["hq_admin", "hq_analyst"]
