"""Isolation: a plugin that raises in every hook never fails the core, and its failures are
recorded per plugin and tenant, retried with back-off for that plugin alone, and visible."""

from __future__ import annotations

import asyncio

from nestpoint.plugins.api import ChannelChoice, Event, hookimpl
from nestpoint.plugins.relay import relay_pending
from nestpoint.testing import (
    adjust_points,
    emit_event,
    enable_plugin,
    make_retries_due,
    run_jobs,
)

from .conftest import Broken, Recorder, settle


async def _events(client, tenant):  # type: ignore[no-untyped-def]
    r = await client.get("/api/v1/events", params={"limit": 200}, headers=tenant.hq())
    return r.json()["items"]


async def test_a_broken_plugin_leaves_the_core_working(client, make_tenant, host, register_plugin):
    broken = register_plugin(Broken(), "broken")
    recorder = register_plugin(Recorder(), "recorder")
    t = await make_tenant()
    await settle(t)
    for plugin_id in ("broken", "recorder"):
        await enable_plugin(client, t, plugin_id)

    # Core operations that raise events succeed while the plugin raises.
    r = await client.patch("/api/v1/stores/S1", json={"name": "Renamed"}, headers=t.hq())
    assert r.status_code == 200
    r = await client.post("/api/v1/stores", json={"code": "S3", "name": "Three"}, headers=t.hq())
    assert r.status_code == 201
    await settle(t)
    assert broken.calls >= 2
    # The healthy plugin got every event once; the events wait for the broken one only.
    assert [e[0] for e in recorder.events()] == ["store.updated", "store.created"]
    pending = [e for e in await _events(client, t) if e["published_at"] is None]
    assert {e["type"] for e in pending} == {"store.updated", "store.created"}
    assert all(e["attempts"] == 1 and "broken" in e["last_error"] for e in pending)

    # A retry calls the broken plugin again, never the healthy one a second time.
    calls = broken.calls
    await make_retries_due(t.id)
    await relay_pending(t.id)
    assert broken.calls > calls
    assert len(recorder.events()) == 2
    assert {e["attempts"] for e in await _events(client, t) if e["published_at"] is None} == {2}

    # Earn-rule adjustments: the broken one is skipped, the others still count.
    adjusted = await adjust_points(host, t, "S1", base_points=10)
    assert adjusted
    assert [pid for pid, _ in adjusted] == ["recorder"]
    choice = ChannelChoice(str(t.id), None, "m", "birthday", ("sms",))
    assert await host.choose_channel(t.id, None, choice) is None
    await host.drain()  # failures outside a request are written in the background

    # Failures are visible per plugin and tenant.
    r = await client.get("/api/v1/tenant/plugins/broken/failures", headers=t.hq())
    failures = r.json()["items"]
    hooks = {f["hook"] for f in failures}
    assert {"nestpoint_on_event", "nestpoint_on_store_updated"} <= hooks
    assert {"nestpoint_adjust_earned_points", "nestpoint_choose_channel"} <= hooks
    assert all("RuntimeError: broken plugin" in f["error"] for f in failures)
    assert {f["attempt"] for f in failures if f["event_id"]} == {1, 2}
    r = await client.get("/api/v1/tenant/plugins/broken", headers=t.hq())
    assert r.json()["recent_failures"] == len(failures)
    assert r.json()["last_failure_at"]
    r = await client.get("/api/v1/tenant/plugin-failures", headers=t.hq())
    assert {f["plugin_id"] for f in r.json()["items"]} == {"broken"}

    # HQ disables the failing plugin: the waiting events are published on the next pass.
    r = await client.post("/api/v1/tenant/plugins/broken/disable", headers=t.hq())
    assert r.status_code == 200
    await make_retries_due(t.id)
    await relay_pending(t.id)
    assert all(e["published_at"] for e in await _events(client, t))
    assert len(recorder.events()) == 2


async def test_failures_are_per_tenant(client, make_tenant, register_plugin):
    register_plugin(Broken(), "broken")
    a = await make_tenant()
    b = await make_tenant()
    await settle(a, b)
    await enable_plugin(client, a, "broken")
    await emit_event(a.id, "member.joined", {})
    await emit_event(b.id, "member.joined", {})
    r = await client.get("/api/v1/tenant/plugin-failures", headers=a.hq())
    assert len(r.json()["items"]) == 1
    r = await client.get("/api/v1/tenant/plugin-failures", headers=b.hq())
    assert r.json()["items"] == []
    assert all(e["published_at"] for e in await _events(client, b))


class Slow:
    @hookimpl
    async def nestpoint_on_event(self, event: Event) -> None:
        await asyncio.sleep(5)


async def test_a_slow_plugin_times_out(client, make_tenant, host, register_plugin, monkeypatch):
    register_plugin(Slow(), "slow")
    monkeypatch.setattr(host.settings, "plugins_event_timeout_seconds", 0.05)
    t = await make_tenant()
    await settle(t)
    await enable_plugin(client, t, "slow")
    await emit_event(t.id, "member.joined", {})
    r = await client.get("/api/v1/tenant/plugins/slow/failures", headers=t.hq())
    (failure,) = r.json()["items"]
    assert failure["kind"] == "timeout"
    assert failure["event_type"] == "member.joined"


async def test_after_the_last_attempt_the_failure_is_final(
    client, make_tenant, host, register_plugin, monkeypatch
):
    register_plugin(Broken(), "broken")
    monkeypatch.setattr(host.settings, "plugins_max_delivery_attempts", 2)
    from nestpoint.settings import get_settings

    monkeypatch.setattr(get_settings(), "plugins_max_delivery_attempts", 2)
    t = await make_tenant()
    await settle(t)
    await enable_plugin(client, t, "broken")
    await emit_event(t.id, "member.joined", {})
    await run_jobs(host, t)  # the retry waits out its back-off...
    (event,) = [e for e in await _events(client, t) if e["type"] == "member.joined"]
    assert (event["attempts"], event["published_at"]) == (1, None)
    await run_jobs(host, t, skip_backoff=True)  # ...unless the test skips it
    (event,) = [e for e in await _events(client, t) if e["type"] == "member.joined"]
    assert event["published_at"]
    assert event["attempts"] == 2
    r = await client.get("/api/v1/tenant/plugins/broken/failures", headers=t.hq())
    assert [f["final"] for f in r.json()["items"]] == [False, True]
