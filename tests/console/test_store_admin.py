"""Stores and keys, HQ's administration: the admin makes a store (refused values beside their
field, a taken code 409), edits it, closes and reopens it, all through the tenancy service
and audited as the admin; a new key gets the ticked scopes (the kind's rules refused beside
the field) and the list shows each key's scopes; the analyst reads; store roles get 403;
without the CSRF token 403."""

from __future__ import annotations

import re

from litestar.testing import AsyncTestClient
from sqlalchemy import select

from nestpoint.audit.models import AuditEntry
from nestpoint.context import tenant_context
from nestpoint.db import scoped_session
from nestpoint.tenancy import keys

from .test_users_and_sessions import add_user, sign_in


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def audit_actions(tenant_id, prefix: str) -> list[AuditEntry]:  # type: ignore[no-untyped-def]
    with tenant_context(tenant_id):
        async with scoped_session() as session:
            rows = await session.scalars(
                select(AuditEntry).where(AuditEntry.action.startswith(prefix))
            )
            return list(rows.all())


async def test_admin_makes_edits_closes_and_reopens_a_store(app, client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    admin = await add_user(client, t, "adm", "hq_admin")

    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "adm")).status_code == 303
        page = await c.get("/console/stores")
        assert page.status_code == 200
        assert 'data-testid="store-form"' in page.text
        csrf = csrf_of(page.text)
        new = {"csrf_token": csrf, "code": "S3", "name": "Store 3", "kind": "franchise"}
        made = await c.post("/console/stores", data=new | {"region": "Hangzhou"})
        assert made.status_code == 200
        assert 'data-testid="store-created"' in made.text
        assert 'data-store="S3"' in made.text
        r = await client.get("/api/v1/stores/S3", headers=t.hq())
        assert r.status_code == 200
        assert (r.json()["kind"], r.json()["region"], r.json()["active"]) == (
            "franchise",
            "Hangzhou",
            True,
        )
        # The same code again (a double submit, too): 409 beside the code, one store.
        again = await c.post("/console/stores", data=new)
        assert again.status_code == 409
        assert 'data-testid="store-error-code"' in again.text
        for bad, field in (
            ({"code": "bad code!"}, "code"),
            ({"name": "  "}, "name"),
            ({"kind": "chain"}, "kind"),
            ({"format": "Big Box"}, "format"),
        ):
            refused = await c.post("/console/stores", data=new | {"code": "S4"} | bad)
            assert refused.status_code == 422, bad
            assert f'data-testid="store-error-{field}"' in refused.text
            assert 'value="S4"' in refused.text or field == "code"  # typed values kept
        assert (await client.get("/api/v1/stores/S4", headers=t.hq())).status_code == 404
        assert (await c.post("/console/stores", data=new | {"csrf_token": ""})).status_code == 403

        # Edit: name, kind, region; then close and reopen.
        edit = await c.get("/console/store/S3")
        assert edit.status_code == 200
        assert 'value="Store 3"' in edit.text
        form = {
            "csrf_token": csrf,
            "action": "save",
            "name": "Store Three",
            "kind": "direct",
            "format": "flagship",
            "region": "",
            "address": "1 West Lake Road",
        }
        saved = await c.post("/console/store/S3", data=form)
        assert saved.status_code == 200
        assert 'data-testid="saved"' in saved.text
        store = (await client.get("/api/v1/stores/S3", headers=t.hq())).json()
        assert (store["name"], store["kind"], store["format"], store["region"]) == (
            "Store Three",
            "direct",
            "flagship",
            "",
        )
        same = await c.post("/console/store/S3", data=form)
        assert same.status_code == 200
        assert 'data-testid="unchanged"' in same.text
        refused = await c.post("/console/store/S3", data=form | {"name": ""})
        assert refused.status_code == 422
        assert 'data-testid="error-name"' in refused.text
        store = (await client.get("/api/v1/stores/S3", headers=t.hq())).json()
        assert store["name"] == "Store Three"
        closed = await c.post("/console/store/S3", data={"csrf_token": csrf, "action": "close"})
        assert closed.status_code == 200
        assert 'data-testid="reopen-store"' in closed.text
        assert (await client.get("/api/v1/stores/S3", headers=t.hq())).json()["active"] is False
        reopened = await c.post("/console/store/S3", data={"csrf_token": csrf, "action": "reopen"})
        assert reopened.status_code == 200
        assert (await client.get("/api/v1/stores/S3", headers=t.hq())).json()["active"] is True
        wrong = await c.post("/console/store/S3", data={"csrf_token": csrf, "action": "x"})
        assert wrong.status_code == 422
        assert (await c.get("/console/store/S9")).status_code == 404
        gone = await c.post("/console/store/S9", data={"csrf_token": csrf, "action": "close"})
        assert gone.status_code == 404
        no_token = await c.post("/console/store/S3", data={"action": "close"})
        assert no_token.status_code == 403
        assert (await client.get("/api/v1/stores/S3", headers=t.hq())).json()["active"] is True

    rows = await audit_actions(t.id, "store.")
    mine = sorted(e.action for e in rows if e.actor_id == admin["id"])
    assert mine == ["store.created", "store.updated", "store.updated", "store.updated"]


async def test_store_code_keys_is_reachable(app, client, make_tenant) -> None:
    """A store may be called ``keys``: its page is not the API keys' routes."""
    t = await make_tenant(("keys",))
    await add_user(client, t, "adm", "hq_admin")
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "adm")).status_code == 303
        page = await c.get("/console/store/keys")
        assert page.status_code == 200
        form = {"csrf_token": csrf_of(page.text), "action": "close"}
        assert (await c.post("/console/store/keys", data=form)).status_code == 200
        assert (await client.get("/api/v1/stores/keys", headers=t.hq())).json()["active"] is False


async def test_key_scopes_are_chosen_and_shown(app, client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    await add_user(client, t, "adm", "hq_admin")
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "adm")).status_code == 303
        page = await c.get("/console/stores")
        assert page.text.count('name="scopes"') == len(keys.TENANT_SCOPES)
        csrf = csrf_of(page.text)
        chosen = ["members:read", "orders:write"]
        base = {"csrf_token": csrf, "kind": "store", "store_code": "S1"}
        made = await c.post("/console/stores/keys", data=base | {"name": "pos", "scopes": chosen})
        assert made.status_code == 200
        assert 'data-testid="secret"' in made.text
        listed = (await client.get("/api/v1/api-keys", headers=t.hq())).json()["items"]
        pos = next(k for k in listed if k["name"] == "pos")
        assert sorted(pos["scopes"]) == chosen
        shown = re.search(r'data-testid="scopes-pos">(.*?)</td>', made.text, re.S)
        assert shown
        assert '<code class="tag">members:read</code>' in shown.group(1)
        assert "orders:write" in shown.group(1)
        assert "members:write" not in shown.group(1)
        # The kind's rules, from the tenancy service, beside the field (the ticks kept).
        refused = await c.post(
            "/console/stores/keys", data=base | {"name": "bad", "scopes": ["keys:write"]}
        )
        assert refused.status_code == 422
        assert 'data-testid="error-scopes"' in refused.text
        assert re.search(r'value="keys:write" checked', refused.text)
        unknown = await c.post(
            "/console/stores/keys", data=base | {"name": "bad", "scopes": ["nope:nope"]}
        )
        assert unknown.status_code == 422
        assert 'data-testid="error-scopes"' in unknown.text
        # None ticked: the kind's default scopes.
        hq = await c.post(
            "/console/stores/keys", data={"csrf_token": csrf, "name": "hq2", "kind": "tenant"}
        )
        assert hq.status_code == 200
        listed = (await client.get("/api/v1/api-keys", headers=t.hq())).json()["items"]
        assert set(next(k for k in listed if k["name"] == "hq2")["scopes"]) == keys.TENANT_SCOPES
        assert not any(k["name"] == "bad" for k in listed)


async def test_roles_other_than_the_admin_cannot_change_stores(app, client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    await add_user(client, t, "ana", "hq_analyst")
    await add_user(client, t, "mgr", "store_manager", "S1")
    await add_user(client, t, "clk", "store_clerk", "S1")
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "ana")).status_code == 303
        page = await c.get("/console/stores")
        assert page.status_code == 200
        assert 'data-testid="store-form"' not in page.text
        edit = await c.get("/console/store/S1")
        assert edit.status_code == 200
        assert 'data-testid="save-store"' not in edit.text
        csrf = csrf_of(page.text)
        r = await c.post("/console/stores", data={"csrf_token": csrf, "code": "S5", "name": "x"})
        assert r.status_code == 403
        r = await c.post("/console/store/S1", data={"csrf_token": csrf, "action": "close"})
        assert r.status_code == 403
    for login in ("mgr", "clk"):
        async with AsyncTestClient(app=app) as c:
            assert (await sign_in(c, t.slug, login)).status_code == 303
            assert (await c.get("/console/store/S1")).status_code == 403
            home = await c.get("/console/till")
            csrf = csrf_of(home.text)
            r = await c.post("/console/store/S1", data={"csrf_token": csrf, "action": "close"})
            assert r.status_code == 403
            r = await c.post(
                "/console/stores", data={"csrf_token": csrf, "code": "S5", "name": "x"}
            )
            assert r.status_code == 403
    assert (await client.get("/api/v1/stores/S1", headers=t.hq())).json()["active"] is True
    assert (await client.get("/api/v1/stores/S5", headers=t.hq())).status_code == 404
