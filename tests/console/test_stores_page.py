"""Stores and API keys (HQ): the list never shows a secret; the admin makes a key (its
secret shown once, and it works), revokes it (it stops working), audited as the admin;
refused values beside their field; the analyst reads; store roles get 403."""

from __future__ import annotations

import re

from litestar.testing import AsyncTestClient
from sqlalchemy import select

from nestpoint.audit.models import AuditEntry
from nestpoint.context import tenant_context
from nestpoint.db import scoped_session

from .test_users_and_sessions import add_user, sign_in


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def test_stores_and_keys(app, client, make_tenant) -> None:
    t = await make_tenant(("S1", "S2"))
    admin = await add_user(client, t, "adm", "hq_admin")
    await add_user(client, t, "ana", "hq_analyst")
    await add_user(client, t, "mgr", "store_manager", "S1")

    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "adm")).status_code == 303
        page = await c.get("/console/stores")
        assert page.status_code == 200
        assert 'data-store="S1"' in page.text
        assert 'data-store="S2"' in page.text
        assert 'data-key="till S1"' in page.text
        assert t.hq_key not in page.text  # never a secret
        assert t.store_keys["S1"] not in page.text
        csrf = _csrf(page.text)
        made = await c.post(
            "/console/stores/keys",
            data={"csrf_token": csrf, "name": "pos S2", "kind": "store", "store_code": "S2"},
        )
        assert made.status_code == 200
        secret = re.search(r'data-testid="secret">([^<]+)<', made.text)
        assert secret
        key = {"Authorization": f"Bearer {secret.group(1)}"}
        assert (await client.get("/api/v1/stores", headers=key)).status_code == 200
        again = await c.get("/console/stores")
        assert secret.group(1) not in again.text  # shown once
        # Refused: a store key without a store; an empty name.
        refused = await c.post(
            "/console/stores/keys", data={"csrf_token": csrf, "name": "x", "kind": "store"}
        )
        assert refused.status_code == 422
        assert 'data-testid="error-store_code"' in refused.text
        refused = await c.post(
            "/console/stores/keys", data={"csrf_token": csrf, "name": "", "kind": "tenant"}
        )
        assert refused.status_code == 422
        assert 'data-testid="error-name"' in refused.text
        # Revoke: it stops working.
        key_id = re.search(
            r'data-key="pos S2">.*?action="/console/stores/keys/([0-9a-f-]+)/revoke"',
            again.text,
            re.S,
        )
        assert key_id
        gone = await c.post(
            f"/console/stores/keys/{key_id.group(1)}/revoke", data={"csrf_token": csrf}
        )
        assert gone.status_code == 200
        assert 'data-testid="revoked"' in gone.text
        assert (await client.get("/api/v1/stores", headers=key)).status_code == 401
        nope = await c.post("/console/stores/keys/not-a-key/revoke", data={"csrf_token": csrf})
        assert nope.status_code == 404

    with tenant_context(t.id):
        async with scoped_session() as session:
            rows = (
                await session.scalars(
                    select(AuditEntry).where(AuditEntry.action.startswith("api_key."))
                )
            ).all()
    by_admin = sorted(e.action for e in rows if e.actor_id == admin["id"])
    assert by_admin == ["api_key.created", "api_key.revoked"]

    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "ana")).status_code == 303
        page = await c.get("/console/stores")
        assert page.status_code == 200
        assert 'data-testid="key-form"' not in page.text
        r = await c.post("/console/stores/keys", data={"csrf_token": _csrf(page.text), "name": "x"})
        assert r.status_code == 403
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "mgr")).status_code == 303
        assert (await c.get("/console/stores")).status_code == 403
