"""Configuration: validated against the plugin's schema, errors name the field, the store's
configuration overrides the chain's."""

from __future__ import annotations

from nestpoint.testing import enable_plugin

from .conftest import Recorder

PLUGIN = "/api/v1/tenant/plugins/example"


async def test_errors_name_the_field(client, make_tenant):
    t = await make_tenant()
    r = await client.put(
        PLUGIN,
        json={"config": {"birthday_multiplier": 0, "greeting": "x" * 101, "colour": "red"}},
        headers=t.hq(),
    )
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["config.colour"]
    r = await client.put(
        PLUGIN, json={"config": {"birthday_multiplier": 0, "greeting": "x" * 101}}, headers=t.hq()
    )
    assert r.status_code == 422
    fields = sorted(e["field"] for e in r.json()["errors"])
    assert fields == ["config.birthday_multiplier", "config.greeting"]
    r = await client.put(
        f"{PLUGIN}/stores/S1", json={"config": {"celebrate_tiers": "gold"}}, headers=t.hq()
    )
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["config.celebrate_tiers"]
    # Nothing was stored.
    r = await client.get(PLUGIN, headers=t.hq())
    assert r.json()["config"] == {}
    assert r.json()["stores"] == []


async def test_store_configuration_overrides_the_chain(client, make_tenant, host):
    t = await make_tenant()
    await enable_plugin(client, t, "example", config={"birthday_multiplier": 3, "greeting": "hi"})
    body = await enable_plugin(client, t, "example", store="S2", config={"greeting": "你好"})
    assert body["config"] == {"birthday_multiplier": 3, "greeting": "hi"}
    assert body["effective_config"] == {
        "birthday_multiplier": 3,
        "celebrate_tiers": [],
        "greeting": "hi",
    }
    (s2,) = body["stores"]
    assert s2["store_code"] == "S2"
    assert s2["config"] == {"greeting": "你好"}
    assert s2["effective_config"]["birthday_multiplier"] == 3
    assert s2["effective_config"]["greeting"] == "你好"
    assert body["config_schema"]["properties"]["birthday_multiplier"]["maximum"] == 5

    on_s1 = await host.enabled_plugins(t.id, t.stores["S1"])
    on_s2 = await host.enabled_plugins(t.id, t.stores["S2"])
    assert on_s1["example"]["greeting"] == "hi"
    assert on_s2["example"]["greeting"] == "你好"
    r = await client.get("/api/v1/plugins/example/hello", headers=t.store("S2"))
    assert r.json()["greeting"] == "你好"

    # Removing the store's own setting: it follows the chain again.
    r = await client.delete(f"{PLUGIN}/stores/S2", headers=t.hq())
    assert r.status_code == 200
    assert r.json()["stores"] == []
    r = await client.get("/api/v1/plugins/example/hello", headers=t.store("S2"))
    assert r.json()["greeting"] == "hi"


async def test_a_plugin_without_schema_takes_no_configuration(client, make_tenant, register_plugin):
    register_plugin(Recorder(), "recorder")
    t = await make_tenant()
    r = await client.put(
        "/api/v1/tenant/plugins/recorder", json={"config": {"x": 1}}, headers=t.hq()
    )
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["config"]


async def test_unknown_plugins_are_not_found(client, make_tenant):
    t = await make_tenant()
    r = await client.put("/api/v1/tenant/plugins/nope", json={"enabled": True}, headers=t.hq())
    assert r.status_code == 404
    r = await client.get("/api/v1/tenant/plugins", headers=t.hq())
    assert "example" in [p["id"] for p in r.json()["items"]]
