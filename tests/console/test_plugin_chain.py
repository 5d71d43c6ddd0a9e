"""A plugin for the whole chain (HQ): the admin enables it, lets stores set it, configures it
through the form made from its schema (refused values beside their field; settings the form
cannot show are kept), turns it off everywhere, and sets, replaces and clears its secrets,
through the plugins service and audited as the admin. A secret's value is never shown back,
on no page and in no audit row. The analyst reads; a store manager has the store's page only
(403 here); without the CSRF token 403."""

from __future__ import annotations

import json
import uuid

from litestar.testing import AsyncTestClient

from nestpoint.context import tenant_context
from nestpoint.db import scoped_session
from nestpoint.plugins import secrets

from .test_store_admin import audit_actions, csrf_of
from .test_users_and_sessions import add_user, sign_in

EXAMPLE = "/console/plugins/example"
SMS = "/console/plugins/sms"
SECRET_PATH = f"{SMS}/secrets/access_key_secret"
SMS_FIELDS = (
    "base_url,access_key_id,sign_name,templates,default_template,rate_limits,"
    "timeout_seconds,callback_max_age_seconds"
)


async def test_admin_sets_a_plugin_for_the_whole_chain(app, client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    admin = await add_user(client, t, "adm", "hq_admin")
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "adm")).status_code == 303
        listing = await c.get("/console/plugins")
        assert 'data-testid="chain-example"' in listing.text
        page = await c.get(EXAMPLE)
        assert page.status_code == 200
        assert 'data-testid="chain-enable"' in page.text
        assert 'name="config.birthday_multiplier" value="2"' in page.text
        csrf = csrf_of(page.text)
        on = await c.post(EXAMPLE, data={"csrf_token": csrf, "action": "enable"})
        assert on.status_code == 200
        assert 'data-testid="chain-disable"' in on.text
        opt_in = await c.post(EXAMPLE, data={"csrf_token": csrf, "action": "allow_stores"})
        assert opt_in.status_code == 200
        base = {
            "csrf_token": csrf,
            "action": "configure",
            "config_fields": "birthday_multiplier,celebrate_tiers,greeting",
        }
        good = base | {
            "config.birthday_multiplier": "3",
            "config.celebrate_tiers": "gold",
            "config.greeting": "Hi",
        }
        assert (await c.post(EXAMPLE, data=good)).status_code == 200
        api = (await client.get("/api/v1/tenant/plugins/example", headers=t.hq())).json()
        assert (api["enabled"], api["allow_store_opt_in"]) == (True, True)
        assert api["config"] == {
            "birthday_multiplier": 3,
            "celebrate_tiers": ["gold"],
            "greeting": "Hi",
        }
        for bad, field in (
            ({"config.birthday_multiplier": "9"}, "birthday_multiplier"),
            ({"config.birthday_multiplier": "many"}, "birthday_multiplier"),
            ({"config.greeting": "x" * 101}, "greeting"),
        ):
            refused = await c.post(EXAMPLE, data=good | bad)
            assert refused.status_code == 422, bad
            assert f'data-testid="error-{field}"' in refused.text
        api = (await client.get("/api/v1/tenant/plugins/example", headers=t.hq())).json()
        assert api["config"]["birthday_multiplier"] == 3
        wrong = await c.post(EXAMPLE, data={"csrf_token": csrf, "action": "explode"})
        assert wrong.status_code == 422
        # A store's own setting, then off everywhere: the chain and the store.
        r = await client.put(
            "/api/v1/tenant/plugins/example/stores/S1", json={"enabled": True}, headers=t.hq()
        )
        assert r.status_code == 200, r.text
        off = await c.post(EXAMPLE, data={"csrf_token": csrf, "action": "disable_everywhere"})
        assert off.status_code == 200
        api = (await client.get("/api/v1/tenant/plugins/example", headers=t.hq())).json()
        assert api["enabled"] is False
        assert [s["enabled"] for s in api["stores"]] == [False]
        assert (await c.post(EXAMPLE, data={"action": "enable"})).status_code == 403  # no token
        assert (await c.get("/console/plugins/nope")).status_code == 404
        r = await c.post("/console/plugins/nope", data={"csrf_token": csrf, "action": "enable"})
        assert r.status_code == 404

    rows = await audit_actions(t.id, "plugin.")
    mine = sorted(e.action for e in rows if e.actor_id == admin["id"])
    assert mine == ["plugin.chain_set"] * 3 + ["plugin.disabled"]


async def test_the_form_keeps_what_it_cannot_show(app, client, make_tenant) -> None:
    """The sms plugin's ``templates`` (a mapping) is set through the API; saving the form
    (which shows it, not edits it) keeps it, and a decimal field is edited as a number."""
    t = await make_tenant(("S1",))
    await add_user(client, t, "adm", "hq_admin")
    templates = {"points_expiring": "SMS_0001"}
    r = await client.put(
        "/api/v1/tenant/plugins/sms", json={"config": {"templates": templates}}, headers=t.hq()
    )
    assert r.status_code == 200, r.text
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "adm")).status_code == 303
        page = await c.get(SMS)
        assert 'name="config.timeout_seconds" value="5.0" inputmode="decimal"' in page.text
        form = {
            "csrf_token": csrf_of(page.text),
            "action": "configure",
            "config_fields": SMS_FIELDS,
            "config.base_url": "https://sms.example.com",
            "config.access_key_id": "AK1",
            "config.sign_name": "贝贝",
            "config.default_template": "",
            "config.rate_limits": "1/minute",
            "config.timeout_seconds": "7.5",
            "config.callback_max_age_seconds": "300",
        }
        saved = await c.post(SMS, data=form)
        assert saved.status_code == 200, saved.text
        config = (await client.get("/api/v1/tenant/plugins/sms", headers=t.hq())).json()["config"]
        assert config["templates"] == templates
        assert config["timeout_seconds"] == 7.5
        assert config["base_url"] == "https://sms.example.com"
        for bad, key in (
            ({"config.timeout_seconds": "nan"}, "timeout_seconds"),
            ({"config.timeout_seconds": "99"}, "timeout_seconds"),
            ({"config.base_url": "http://sms.example.com"}, "base_url"),
        ):
            refused = await c.post(SMS, data=form | bad)
            assert refused.status_code == 422, bad
            assert f'data-testid="error-{key}"' in refused.text


async def test_secrets_are_write_only(app, client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    admin = await add_user(client, t, "adm", "hq_admin")
    await add_user(client, t, "ana", "hq_analyst")
    first, second = f"first-{uuid.uuid4().hex}", f"second-{uuid.uuid4().hex}"
    pages: list[str] = []
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "adm")).status_code == 303
        page = await c.get(SMS)
        assert 'data-testid="secret-state-access_key_secret"' in page.text
        assert 'data-testid="set-access_key_secret"' in page.text
        csrf = csrf_of(page.text)
        made = await c.post(SECRET_PATH, data={"csrf_token": csrf, "action": "set", "value": first})
        assert made.status_code == 200
        assert 'data-testid="secret-saved"' in made.text
        assert 'data-testid="clear-access_key_secret"' in made.text  # set now
        replaced = await c.post(
            SECRET_PATH, data={"csrf_token": csrf, "action": "set", "value": second}
        )
        assert replaced.status_code == 200
        pages += [made.text, replaced.text]
        with tenant_context(t.id):
            async with scoped_session() as session:
                assert await secrets.reveal(session, "sms", "access_key_secret") == second
        # Refused: empty, too long (not echoed), undeclared, no token.
        empty = await c.post(SECRET_PATH, data={"csrf_token": csrf, "action": "set", "value": ""})
        assert empty.status_code == 422
        assert 'data-testid="error-secret-access_key_secret"' in empty.text
        long = "L" * 4096 + uuid.uuid4().hex
        too_long = await c.post(
            SECRET_PATH, data={"csrf_token": csrf, "action": "set", "value": long}
        )
        assert too_long.status_code == 422
        assert long not in too_long.text
        undeclared = await c.post(
            f"{SMS}/secrets/nope", data={"csrf_token": csrf, "action": "set", "value": first}
        )
        assert undeclared.status_code == 404
        no_token = await c.post(SECRET_PATH, data={"action": "set", "value": first})
        assert no_token.status_code == 403
        for path in (
            "/console/plugins",
            SMS,
            f"{SMS}?export=secrets",
            f"{SMS}/stores/S1",
            "/console/stores",
            "/console/dashboard",
        ):
            r = await c.get(path)
            assert r.status_code == 200, path
            pages.append(r.text)
        api = (await client.get("/api/v1/tenant/plugins/sms/secrets", headers=t.hq())).json()
        assert next(s for s in api["items"] if s["name"] == "access_key_secret")["set"] is True

    async with AsyncTestClient(app=app) as c:  # the analyst: sees that it is set, only
        assert (await sign_in(c, t.slug, "ana")).status_code == 303
        page = await c.get(SMS)
        assert page.status_code == 200
        assert 'name="value"' not in page.text
        assert 'data-testid="save-chain-config"' not in page.text
        pages.append(page.text)
        csrf = csrf_of(page.text)
        r = await c.post(SECRET_PATH, data={"csrf_token": csrf, "action": "clear"})
        assert r.status_code == 403
        r = await c.post(SMS, data={"csrf_token": csrf, "action": "enable"})
        assert r.status_code == 403

    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "adm")).status_code == 303
        page = await c.get(SMS)
        cleared = await c.post(
            SECRET_PATH, data={"csrf_token": csrf_of(page.text), "action": "clear"}
        )
        assert cleared.status_code == 200
        assert 'data-testid="clear-access_key_secret"' not in cleared.text
    with tenant_context(t.id):
        async with scoped_session() as session:
            assert await secrets.reveal(session, "sms", "access_key_secret") is None

    for html in pages:
        assert first not in html
        assert second not in html
    rows = await audit_actions(t.id, "plugin.secret")
    assert sorted(e.action for e in rows if e.actor_id == admin["id"]) == [
        "plugin.secret_cleared",
        "plugin.secret_set",
        "plugin.secret_set",
    ]
    trail = json.dumps([e.changes for e in rows], default=str)
    assert first not in trail
    assert second not in trail


async def test_store_roles_have_the_store_page_only(app, client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    await add_user(client, t, "mgr", "store_manager", "S1")
    await add_user(client, t, "clk", "store_clerk", "S1")
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "mgr")).status_code == 303
        listing = await c.get("/console/plugins")
        assert listing.status_code == 200
        assert 'data-testid="chain-example"' not in listing.text
        assert (await c.get(f"{EXAMPLE}/stores/S1")).status_code == 200
        assert (await c.get(EXAMPLE)).status_code == 403
        assert (await c.get(SMS)).status_code == 403
        csrf = csrf_of(listing.text)
        r = await c.post(EXAMPLE, data={"csrf_token": csrf, "action": "enable"})
        assert r.status_code == 403
        r = await c.post(SECRET_PATH, data={"csrf_token": csrf, "action": "set", "value": "x"})
        assert r.status_code == 403
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "clk")).status_code == 303
        assert (await c.get(EXAMPLE)).status_code == 403
        csrf = csrf_of((await c.get("/console/till")).text)
        r = await c.post(SECRET_PATH, data={"csrf_token": csrf, "action": "set", "value": "x"})
        assert r.status_code == 403
    api = (await client.get("/api/v1/tenant/plugins/example", headers=t.hq())).json()
    assert api["enabled"] is False
    api = (await client.get("/api/v1/tenant/plugins/sms/secrets", headers=t.hq())).json()
    assert not any(s["set"] for s in api["items"])
