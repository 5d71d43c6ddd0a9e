"""Plugins per store: HQ's admin enables, disables and configures the example plugin at one
store through a form made from its configuration schema (refused values beside their field),
audited; a store manager sees their own store's settings only, read only; a clerk gets 403."""

from __future__ import annotations

import re

from litestar.testing import AsyncTestClient
from sqlalchemy import select

from nestpoint.audit.models import AuditEntry
from nestpoint.context import tenant_context
from nestpoint.db import scoped_session

from .test_users_and_sessions import add_user, sign_in

PAGE = "/console/plugins/example/stores/S1"
FIELDS = "birthday_multiplier,celebrate_tiers,greeting"


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def _state(html: str) -> str:
    found = re.search(r'data-testid="state-example-S1">([^<]+)<', html)
    assert found, html
    return found.group(1)


async def test_plugins_per_store(app, client, make_tenant) -> None:
    t = await make_tenant(("S1", "S2"))
    admin = await add_user(client, t, "adm", "hq_admin")
    await add_user(client, t, "ana", "hq_analyst")
    await add_user(client, t, "mgr", "store_manager", "S1")
    await add_user(client, t, "clk", "store_clerk", "S1")

    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "adm")).status_code == 303
        listing = await c.get("/console/plugins")
        assert listing.status_code == 200
        assert 'data-plugin="example"' in listing.text
        off_text = _state(listing.text)
        csrf = _csrf(listing.text)
        on = await c.post(PAGE, data={"csrf_token": csrf, "action": "enable"})
        assert on.status_code == 200
        assert 'data-testid="saved"' in on.text
        # The form is made from the schema: a number, a comma list, a text.
        assert 'name="config.birthday_multiplier" value="2"' in on.text
        assert 'name="config.celebrate_tiers"' in on.text
        assert 'name="config.greeting"' in on.text
        base = {"csrf_token": csrf, "action": "configure", "config_fields": FIELDS}
        for bad, field in (
            ({"config.birthday_multiplier": "9"}, "birthday_multiplier"),
            ({"config.birthday_multiplier": "two"}, "birthday_multiplier"),
            ({"config.greeting": "x" * 101}, "greeting"),
        ):
            form = {"config.birthday_multiplier": "2", "config.greeting": "hi"} | bad
            refused = await c.post(PAGE, data=base | form)
            assert refused.status_code == 422, bad
            assert f'data-testid="error-{field}"' in refused.text
        good = base | {
            "config.birthday_multiplier": "3",
            "config.celebrate_tiers": "gold, diamond",
            "config.greeting": "Happy birthday",
        }
        saved = await c.post(PAGE, data=good)
        assert saved.status_code == 200
        assert 'data-testid="saved"' in saved.text
        r = await client.get("/api/v1/tenant/plugins/example", headers=t.hq())
        assert r.status_code == 200, r.text
        s1 = next(s for s in r.json()["stores"] if s["store_code"] == "S1")
        assert s1["enabled"] is True
        assert s1["config"] == {
            "birthday_multiplier": 3,
            "celebrate_tiers": ["gold", "diamond"],
            "greeting": "Happy birthday",
        }
        assert all(s["store_code"] != "S2" for s in r.json()["stores"])
        assert _state((await c.get("/console/plugins")).text) != off_text
        off = await c.post(PAGE, data={"csrf_token": csrf, "action": "disable"})
        assert off.status_code == 200
        r = await client.get("/api/v1/tenant/plugins/example", headers=t.hq())
        assert next(s for s in r.json()["stores"] if s["store_code"] == "S1")["enabled"] is False
        assert (await c.get("/console/plugins/nope/stores/S1")).status_code == 404
        assert (await c.get("/console/plugins/example/stores/S9")).status_code == 404

    with tenant_context(t.id):
        async with scoped_session() as session:
            rows = (
                await session.scalars(
                    select(AuditEntry).where(AuditEntry.action == "plugin.store_set")
                )
            ).all()
    assert [e.actor_id for e in rows].count(admin["id"]) == 3  # on, configured, off

    async with AsyncTestClient(app=app) as c:  # the manager: own store, read only
        assert (await sign_in(c, t.slug, "mgr")).status_code == 303
        listing = await c.get("/console/plugins")
        assert listing.status_code == 200
        assert 'data-store="S1"' in listing.text
        assert 'data-store="S2"' not in listing.text
        page = await c.get(PAGE)
        assert page.status_code == 200
        assert 'value="Happy birthday"' in page.text
        assert "save-config" not in page.text
        assert (await c.get("/console/plugins/example/stores/S2")).status_code == 404
        r = await c.post(PAGE, data={"csrf_token": _csrf(page.text), "action": "enable"})
        assert r.status_code == 403
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "ana")).status_code == 303
        page = await c.get(PAGE)
        assert page.status_code == 200
        r = await c.post(PAGE, data={"csrf_token": _csrf(page.text), "action": "enable"})
        assert r.status_code == 403
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "clk")).status_code == 303
        assert (await c.get("/console/plugins")).status_code == 403
        assert (await c.get(PAGE)).status_code == 403
