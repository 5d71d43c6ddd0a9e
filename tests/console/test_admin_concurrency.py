"""Chain administration under concurrent submits (a double click, two admins at once), on
PostgreSQL and on SQLite: the requests really run at once (``concurrent_client``), each
with its own transaction. A store is made once (the other gets 409 beside the code), a
first secret or chain setting set twice at once is stored once (both succeed), a
programme form sent twice changes the ladder once (the other gets 409)."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select

from nestpoint.context import tenant_context
from nestpoint.db import scoped_session
from nestpoint.plugins import secrets
from nestpoint.plugins.models import PluginEnablement, PluginSecret

from .test_store_admin import audit_actions, csrf_of
from .test_users_and_sessions import add_user, sign_in


async def _signed_in(concurrent_client: httpx.AsyncClient, t, login: str) -> str:  # type: ignore[no-untyped-def]
    assert (await sign_in(concurrent_client, t.slug, login)).status_code == 303
    page = await concurrent_client.get("/console/stores")
    assert page.status_code == 200
    return csrf_of(page.text)


async def test_concurrent_admin_submits(client, concurrent_client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    admin = await add_user(client, t, "adm", "hq_admin")
    csrf = await _signed_in(concurrent_client, t, "adm")
    c = concurrent_client

    store = {"csrf_token": csrf, "code": "S7", "name": "Store 7"}
    made = await asyncio.gather(*(c.post("/console/stores", data=store) for _ in range(2)))
    assert sorted(r.status_code for r in made) == [200, 409]
    created = await audit_actions(t.id, "store.created")
    assert [e.actor_id for e in created].count(admin["id"]) == 1

    path = "/console/plugins/sms/secrets/access_key_secret"
    values = ("value-one", "value-two")
    set_twice = await asyncio.gather(
        *(c.post(path, data={"csrf_token": csrf, "action": "set", "value": v}) for v in values)
    )
    assert [r.status_code for r in set_twice] == [200, 200]
    on_twice = await asyncio.gather(
        *(
            c.post("/console/plugins/example", data={"csrf_token": csrf, "action": "enable"})
            for _ in range(2)
        )
    )
    assert [r.status_code for r in on_twice] == [200, 200]
    with tenant_context(t.id):
        async with scoped_session() as session:
            assert await secrets.reveal(session, "sms", "access_key_secret") in values
            count = select(func.count()).where(
                PluginSecret.tenant_id == t.id, PluginSecret.plugin_id == "sms"
            )
            assert await session.scalar(count) == 1
            chain_rows = select(func.count()).where(
                PluginEnablement.tenant_id == t.id,
                PluginEnablement.plugin_id == "example",
                PluginEnablement.store_id.is_(None),
            )
            assert await session.scalar(chain_rows) == 1
    api = (await client.get("/api/v1/tenant/plugins/example", headers=t.hq())).json()
    assert api["enabled"] is True
    assert len(await audit_actions(t.id, "plugin.secret_set")) == 2

    page = await c.get("/console/programme")
    version = page.text.split('name="version" value="')[1].split('"')[0]
    tier = {
        "csrf_token": csrf,
        "version": version,
        "new.code": "platinum",
        "new.name": "Platinum",
        "new.threshold": "30000",
    }
    saved = await asyncio.gather(*(c.post("/console/programme", data=tier) for _ in range(2)))
    assert sorted(r.status_code for r in saved) == [200, 409]
    program = (await client.get("/api/v1/loyalty/program", headers=t.hq())).json()
    assert [x["code"] for x in program["tiers"]].count("platinum") == 1
    assert len(await audit_actions(t.id, "loyalty.updated")) == 1
