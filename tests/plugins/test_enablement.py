"""Per-tenant and per-store enablement: a hook call reaches only the plugins enabled there."""

from __future__ import annotations

from nestpoint.plugins import enablement
from nestpoint.testing import emit_event, enable_plugin, make_tenant

from .conftest import Recorder, settle


async def test_installed_plugins_are_inert_until_enabled(client, make_tenant, register_plugin):
    recorder = register_plugin(Recorder(), "recorder")
    t = await make_tenant()
    await emit_event(t.id, "tier.changed", {"to_tier": "gold"}, store=t.stores["S1"])
    assert recorder.calls == []
    r = await client.get("/api/v1/plugins/example/hello", headers=t.hq())
    assert r.status_code == 404


async def test_store_enablement_reaches_that_store_only(
    client, make_tenant, platform_key, register_plugin
):
    recorder = register_plugin(Recorder(), "recorder")
    a = await make_tenant()
    b = await make_tenant()
    await settle(a, b)
    await enable_plugin(client, a, "recorder", store="S1")

    await emit_event(a.id, "tier.changed", {"to_tier": "gold"}, store=a.stores["S1"])
    await emit_event(a.id, "tier.changed", {"to_tier": "gold"}, store=a.stores["S2"])
    await emit_event(a.id, "member.joined", {})  # chain-level: not for a store-only plugin
    await emit_event(b.id, "tier.changed", {"to_tier": "gold"}, store=b.stores["S1"])

    s1 = str(a.stores["S1"])
    assert recorder.events("nestpoint_on_tier_changed") == [("tier.changed", str(a.id), s1)]
    assert recorder.events() == [("tier.changed", str(a.id), s1)]


async def test_chain_enablement_with_a_store_opting_out(client, make_tenant, register_plugin):
    recorder = register_plugin(Recorder(), "recorder")
    t = await make_tenant(("S1", "S2", "S3"))
    await settle(t)
    await enable_plugin(client, t, "recorder")
    await enable_plugin(client, t, "recorder", store="S3", enabled=False)
    for code in ("S1", "S2", "S3"):
        await emit_event(t.id, "points.earned", {"points": 1}, store=t.stores[code])
    await emit_event(t.id, "member.joined", {})
    assert recorder.events() == [
        ("points.earned", str(t.id), str(t.stores["S1"])),
        ("points.earned", str(t.id), str(t.stores["S2"])),
        ("member.joined", str(t.id), None),
    ]


async def test_subset_callers_are_cached_per_enabled_set_and_rebuilt_on_change(
    client, make_tenant, host, register_plugin
):
    register_plugin(Recorder(), "recorder")
    t = await make_tenant()
    await enable_plugin(client, t, "recorder", store="S1")
    s1, s2 = t.stores["S1"], t.stores["S2"]

    on_s1 = await host.enabled_plugins(t.id, s1)
    on_s2 = await host.enabled_plugins(t.id, s2)
    assert set(on_s1) == {"recorder"}
    assert on_s2 == {}
    hook = "nestpoint_on_tier_changed"
    caller = host._caller(hook, on_s1)
    assert host._caller(hook, on_s1) is caller  # cached
    assert [i.plugin_name for i in caller.get_hookimpls()] == ["recorder"]
    assert host._caller(hook, on_s2).get_hookimpls() == []

    # The snapshot is cached (no query) until a change commits, then reloaded at once.
    snapshot = host.enablement.cached(t.id)
    assert snapshot is not None
    assert await host.enabled_plugins(t.id, s1) is on_s1
    generation = enablement.generation(t.id)
    await enable_plugin(client, t, "recorder", store="S2")
    assert enablement.generation(t.id) == generation + 1
    assert host.enablement.cached(t.id) is None
    assert set(await host.enabled_plugins(t.id, s2)) == {"recorder"}


async def test_disabling_stops_events_and_routes_at_once(client, make_tenant, register_plugin):
    recorder = register_plugin(Recorder(), "recorder")
    t = await make_tenant()
    await settle(t)
    for plugin_id in ("recorder", "example"):
        await enable_plugin(client, t, plugin_id, store="S1")
    r = await client.get("/api/v1/plugins/example/hello", headers=t.store("S1"))
    assert r.status_code == 200
    assert r.json()["store_id"] == str(t.stores["S1"])
    await emit_event(t.id, "order.paid", {}, store=t.stores["S1"])
    assert len(recorder.events()) == 1

    # HQ disables both everywhere: the next request and the next event see it.
    for plugin_id in ("recorder", "example"):
        r = await client.post(f"/api/v1/tenant/plugins/{plugin_id}/disable", headers=t.hq())
        assert r.status_code == 200
        assert r.json()["enabled_here"] is False
    r = await client.get("/api/v1/plugins/example/hello", headers=t.store("S1"))
    assert r.status_code == 404
    await emit_event(t.id, "order.paid", {}, store=t.stores["S1"])
    assert len(recorder.events()) == 1


async def test_plugin_routes_are_invisible_to_other_stores_and_tenants(client, make_tenant):
    a = await make_tenant()
    b = await make_tenant()
    await enable_plugin(client, a, "example", store="S1")
    assert (await client.get("/api/v1/plugins/example/hello", headers=a.store("S1"))).is_success
    # HQ sees it (enabled somewhere in its chain); the other store and tenant do not.
    assert (await client.get("/api/v1/plugins/example/hello", headers=a.hq())).is_success
    for headers in (a.store("S2"), b.hq(), b.store("S1")):
        r = await client.get("/api/v1/plugins/example/hello", headers=headers)
        assert r.status_code == 404, r.text


async def test_store_keys_opt_in_only_when_the_chain_allows(client, make_tenant, platform_key):
    t = await make_tenant_with_plugin_scopes(client, platform_key)
    path = "/api/v1/tenant/plugins/example/stores/S1"
    r = await client.put(path, json={"enabled": True}, headers=t.store("S1"))
    assert r.status_code == 403
    await enable_plugin(client, t, "example", enabled=False, allow_store_opt_in=True)
    r = await client.put(path, json={"enabled": True}, headers=t.store("S1"))
    assert r.status_code == 200, r.text
    assert r.json()["enabled_here"] is True
    # Its own store only: another store's code is unknown to it.
    r = await client.put(
        "/api/v1/tenant/plugins/example/stores/S2", json={"enabled": True}, headers=t.store("S1")
    )
    assert r.status_code == 404
    # Chain-wide settings are HQ's.
    r = await client.put(
        "/api/v1/tenant/plugins/example", json={"enabled": True}, headers=t.store("S1")
    )
    assert r.status_code == 403
    r = await client.get("/api/v1/tenant/plugins/example", headers=t.store("S2"))
    assert r.json()["enabled_here"] is False
    assert r.json()["stores"] == []


async def make_tenant_with_plugin_scopes(client, platform_key):  # type: ignore[no-untyped-def]
    return await make_tenant(client, platform_key, ("S1", "S2"))


# ------------------------------------------------------------------ when an event happened


async def test_an_event_goes_only_to_plugins_already_on_when_it_happened(
    client, make_tenant, register_plugin
):
    recorder = register_plugin(Recorder(), "recorder")
    t = await make_tenant()
    await settle(t)
    await emit_event(t.id, "test.before", {}, deliver=False)  # still in the outbox...
    await enable_plugin(client, t, "recorder")  # ...when the plugin is enabled
    await emit_event(t.id, "test.after", {})
    assert [e[0] for e in recorder.events()] == ["test.after"]
    r = await client.get("/api/v1/events", params={"limit": 200}, headers=t.hq())
    assert all(e["published_at"] for e in r.json()["items"])  # neither waits for anyone


async def test_a_store_setting_made_while_the_chain_is_on_keeps_the_chains_moment(
    client, make_tenant, register_plugin
):
    recorder = register_plugin(Recorder(), "recorder")
    t = await make_tenant()
    await settle(t)
    await enable_plugin(client, t, "recorder")  # chain-wide
    await emit_event(t, "test.at-s1", {}, store="S1", deliver=False)
    await enable_plugin(client, t, "recorder", store="S1")  # a store row, on as it was
    await settle(t)
    assert [e[0] for e in recorder.events()] == ["test.at-s1"]


async def test_a_plugin_switched_back_on_gets_nothing_of_its_time_off(
    client, make_tenant, register_plugin
):
    recorder = register_plugin(Recorder(), "recorder")
    t = await make_tenant()
    await settle(t)
    await enable_plugin(client, t, "recorder")
    await enable_plugin(client, t, "recorder", store="S1", enabled=False)
    await emit_event(t, "test.while-off", {}, store="S1", deliver=False)
    await enable_plugin(client, t, "recorder", store="S1")
    await emit_event(t, "test.back-on", {}, store="S1")
    assert [e[0] for e in recorder.events()] == ["test.back-on"]


async def test_first_saves_at_once_of_a_setting_and_a_secret_both_succeed(
    concurrent_client, make_tenant
):
    """Found through the console: two first saves at once both inserted the row, and on
    PostgreSQL the second one's unique key refused it (a 500). They are serialised now."""
    import asyncio

    t = await make_tenant()
    c = concurrent_client
    settings = await asyncio.gather(
        *(
            c.put(
                "/api/v1/tenant/plugins/example",
                json={"enabled": True, "config": {"greeting": f"hi {n}"}},
                headers=t.hq(),
            )
            for n in range(4)
        )
    )
    assert [r.status_code for r in settings] == [200] * 4, [r.text for r in settings]
    url = "/api/v1/tenant/plugins/email/secrets/password"
    saved = await asyncio.gather(
        *(c.put(url, json={"value": f"s3cret-{n}"}, headers=t.hq()) for n in range(4))
    )
    assert [r.status_code for r in saved] == [200] * 4, [r.text for r in saved]
    r = await c.get("/api/v1/tenant/plugins/email/secrets", headers=t.hq())
    assert [s["set"] for s in r.json()["items"] if s["name"] == "password"] == [True]
