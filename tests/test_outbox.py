"""The outbox: events are written in the change's own transaction, relayed to plugins after
it commits, at least once, with back-off for failures, one tenant at a time.

Plugins are registered on the process's PluginHost for one test and enabled for the test's
tenant through the API (an installed plugin receives a tenant's events only where enabled).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, update

from nestpoint.context import Actor, TenantContext, acting_as, current_tenant, tenant_context
from nestpoint.db import scoped_session
from nestpoint.events import service as events
from nestpoint.events.models import OutboxEvent
from nestpoint.jobs.broker import flush_enqueued
from nestpoint.plugins import hookimpl, relay
from nestpoint.plugins.manager import PluginInfo, get_plugin_host
from nestpoint.plugins.models import PluginEnablement
from nestpoint.settings import get_settings
from nestpoint.tenancy import service as tenancy
from nestpoint.tenancy.schemas import StoreCreate
from nestpoint.testing import emit_event, make_retries_due


class Recorder:
    """A plugin that records every event it is handed (and optionally fails on each)."""

    plugin_id: str

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.events: list[events.Event] = []
        self.contexts: list[TenantContext | None] = []

    @hookimpl
    def nestpoint_on_event(self, event: events.Event) -> None:
        self.events.append(event)
        self.contexts.append(current_tenant())
        if self.fail:
            raise RuntimeError("recorder refuses the event")

    def ids(self) -> list[str]:
        return [e.id for e in self.events]


class AsyncRecorder(Recorder):
    @hookimpl
    async def nestpoint_on_event(self, event: events.Event) -> None:  # type: ignore[override]
        self.events.append(event)
        self.contexts.append(current_tenant())


@pytest.fixture
def plugins() -> Iterator[Callable[[Recorder], Recorder]]:
    """Register plugins on the process's PluginHost for one test, and remove them after."""
    host = get_plugin_host()
    added: list[str] = []

    def add(plugin: Recorder) -> Recorder:
        plugin.plugin_id = f"test-{type(plugin).__name__.lower()}-{uuid.uuid4().hex[:8]}"
        host.register(plugin, PluginInfo(id=plugin.plugin_id, package="tests", version="0"))
        added.append(plugin.plugin_id)
        return plugin

    yield add
    for plugin_id in added:
        host.unregister(plugin_id)


async def enable(client: Any, tenant: Any, *recorders: Recorder) -> None:
    """Enable plugins for a tenant's whole chain, as its HQ does, as if they had been on
    since before the tenant's set-up: the relay hands an event only to plugins already on
    when it happened, and these tests relay the set-up's own events."""
    for recorder in recorders:
        r = await client.put(
            f"/api/v1/tenant/plugins/{recorder.plugin_id}",
            json={"enabled": True},
            headers=tenant.hq(),
        )
        assert r.status_code == 200, r.text
    with tenant_context(tenant.id):
        async with scoped_session() as session:
            await session.execute(
                update(PluginEnablement).values(enabled_at=datetime(2000, 1, 1, tzinfo=UTC))
            )


async def api_events(client: Any, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/events", params={"limit": 200, **params}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["next_cursor"] is None
    return list(r.json()["items"])


async def outbox_rows(tenant_id: uuid.UUID) -> dict[str, OutboxEvent]:
    with tenant_context(tenant_id):
        async with scoped_session() as session:
            return {str(e.id): e for e in (await session.scalars(select(OutboxEvent))).all()}


async def test_creating_a_store_writes_a_store_created_event(client, make_tenant) -> None:
    t = await make_tenant(())
    r = await client.post(
        "/api/v1/stores", json={"code": "EV-1", "name": "evented"}, headers=t.hq()
    )
    assert r.status_code == 201
    store_id = r.json()["id"]
    created = await api_events(client, t.hq(), type="store.created")
    assert len(created) == 1
    event = created[0]
    assert event["subject_type"] == "store"
    assert event["subject_id"] == store_id
    assert event["store_id"] == store_id
    assert event["payload"] == {"code": "EV-1"}
    assert event["published_at"] is None
    assert event["attempts"] == 0
    # The audit entry went with it.
    r = await client.get("/api/v1/audit", params={"limit": 200}, headers=t.hq())
    assert [e["action"] for e in r.json()["items"] if e["subject_id"] == store_id] == [
        "store.created"
    ]
    # A PATCH that changes nothing emits nothing; one that changes something emits one.
    await client.patch("/api/v1/stores/EV-1", json={"name": "evented"}, headers=t.hq())
    assert await api_events(client, t.hq(), type="store.updated") == []
    await client.patch("/api/v1/stores/EV-1", json={"name": "renamed"}, headers=t.hq())
    updated = await api_events(client, t.hq(), type="store.updated")
    assert [e["payload"]["changes"] for e in updated] == [{"name": ["evented", "renamed"]}]


async def test_a_failed_transaction_leaves_no_event(
    client, make_tenant, row_counts, monkeypatch
) -> None:
    t = await make_tenant(())
    before = await row_counts(t.id)
    assert flush_enqueued()  # the tenant's own set-up asked for relays: let them go first
    sent: list[str] = []
    monkeypatch.setattr(events.RELAY, "send", lambda tenant_id: sent.append(tenant_id))

    with (
        tenant_context(t.id),
        acting_as(Actor("system", name="tests")),
        pytest.raises(RuntimeError, match="boom"),
    ):
        await create_store_and_emit("GHOST", then_fail=True)
    assert await row_counts(t.id) == before
    assert await api_events(client, t.hq(), type="test.ghost") == []
    assert [
        e for e in await api_events(client, t.hq()) if e["payload"].get("code") == "GHOST"
    ] == []
    r = await client.get("/api/v1/stores/GHOST", headers=t.hq())
    assert r.status_code == 404
    assert sent == []  # nothing to relay after a rollback

    # The same work, committed, keeps both and asks a worker to relay this tenant.
    with tenant_context(t.id), acting_as(Actor("system", name="tests")):
        await create_store_and_emit("REAL", then_fail=False)
    assert len(await api_events(client, t.hq(), type="test.ghost")) == 1
    assert len(await api_events(client, t.hq(), type="store.created")) == 1
    # With Redis the message leaves from a sender thread that lets a burst of commits
    # collapse first (jobs/broker.py): wait for it.
    assert flush_enqueued()
    assert sent == [str(t.id)]


async def create_store_and_emit(code: str, *, then_fail: bool) -> None:
    """Create a store and emit an extra event in one transaction; optionally fail after."""
    async with scoped_session() as session:
        await tenancy.create_store(session, StoreCreate(code=code, name=code.lower()))
        events.emit(session, "test.ghost", "test", "1", {"n": 1})
        await session.flush()
        written = (await session.scalars(select(OutboxEvent))).all()
        assert {e.type for e in written} >= {"store.created", "test.ghost"}  # not yet committed
        if then_fail:
            raise RuntimeError("boom")


async def test_relay_delivers_marks_published_and_is_idempotent(
    client, make_tenant, plugins
) -> None:
    t = await make_tenant(("S1",))
    pending = await api_events(client, t.hq())
    assert pending
    assert all(e["published_at"] is None for e in pending)
    sync_plugin, async_plugin = plugins(Recorder()), plugins(AsyncRecorder())
    bystander = plugins(Recorder())  # installed, but not enabled for this tenant
    await enable(client, t, sync_plugin, async_plugin)

    delivered = await relay.relay_pending(t.id)

    assert delivered == len(pending)
    expected_ids = [e["id"] for e in pending]  # oldest first, as the API lists them
    assert sync_plugin.ids() == expected_ids
    assert async_plugin.ids() == expected_ids
    assert bystander.events == []
    for event, row in zip(sync_plugin.events, pending, strict=True):
        assert event.tenant_id == str(t.id)
        assert (event.type, event.subject_id, event.payload) == (
            row["type"],
            row["subject_id"],
            row["payload"],
        )
    # The tenant's context is set while a plugin runs.
    assert {ctx.tenant_id for ctx in sync_plugin.contexts if ctx} == {t.id}
    assert all(ctx is not None for ctx in sync_plugin.contexts)
    after = await api_events(client, t.hq())
    assert all(e["published_at"] is not None for e in after)
    assert all(e["attempts"] == 0 and e["last_error"] is None for e in after)

    # A second relay finds nothing due and delivers nothing.
    assert await relay.relay_pending(t.id) == 0
    assert len(sync_plugin.events) == len(pending)
    assert len(async_plugin.events) == len(pending)

    # A new change is relayed on its own.
    await client.patch("/api/v1/stores/S1", json={"name": "renamed"}, headers=t.hq())
    assert await relay.relay_pending(t.id) == 1
    assert [e.type for e in sync_plugin.events[len(pending) :]] == ["store.updated"]


async def test_failing_plugin_leaves_event_pending_with_backoff(
    client, make_tenant, plugins
) -> None:
    t = await make_tenant(())
    pending_ids = [e["id"] for e in await api_events(client, t.hq())]
    assert pending_ids
    good = plugins(Recorder())
    bad = plugins(Recorder(fail=True))
    await enable(client, t, good, bad)

    started = datetime.now(UTC)
    assert await relay.relay_pending(t.id) == 0
    checked = datetime.now(UTC)

    assert good.ids() == pending_ids  # the other plugin still got every event
    assert bad.ids() == pending_ids
    rows = await outbox_rows(t.id)
    for event_id in pending_ids:
        row = rows[event_id]
        assert row.published_at is None
        assert row.attempts == 1
        assert row.last_error is not None
        assert bad.plugin_id in row.last_error
        assert "recorder refuses the event" in row.last_error
        assert good.plugin_id not in row.last_error
        assert row.next_attempt_at > checked
        assert row.next_attempt_at >= started + events.backoff(1)
    listed = {e["id"]: e for e in await api_events(client, t.hq())}
    assert all(listed[i]["attempts"] == 1 and listed[i]["last_error"] for i in pending_ids)

    # When the back-off has passed the event is retried (only where it failed), and the
    # delay grows.
    await make_retries_due(t.id)
    started = datetime.now(UTC)
    assert await relay.relay_pending(t.id) == 0
    rows = await outbox_rows(t.id)
    assert all(rows[i].attempts == 2 for i in pending_ids)
    assert all(rows[i].next_attempt_at >= started + events.backoff(2) for i in pending_ids)
    assert events.backoff(2) > events.backoff(1)
    assert bad.ids() == pending_ids * 2
    assert good.ids() == pending_ids  # it took them already: not called again

    # Not due yet: a relay now delivers nothing.
    assert await relay.relay_pending(t.id) == 0
    assert bad.ids() == pending_ids * 2

    # Once the failing plugin recovers, the next due relay publishes every event.
    bad.fail = False
    await make_retries_due(t.id)
    assert await relay.relay_pending(t.id) == len(pending_ids)
    assert bad.ids() == pending_ids * 3
    assert good.ids() == pending_ids
    rows = await outbox_rows(t.id)
    for event_id in pending_ids:
        assert rows[event_id].published_at is not None
        assert rows[event_id].last_error is None
    assert await relay.relay_pending(t.id) == 0


async def test_relay_for_one_tenant_never_delivers_anothers_events(
    client, make_tenant, plugins
) -> None:
    a = await make_tenant(("S1",))
    b = await make_tenant(("S1",))
    a_ids = [e["id"] for e in await api_events(client, a.hq())]
    b_ids = [e["id"] for e in await api_events(client, b.hq())]
    recorder = plugins(Recorder())
    await enable(client, a, recorder)
    await enable(client, b, recorder)

    assert await relay.relay_pending(b.id) == len(b_ids)
    assert recorder.ids() == b_ids
    assert {e.tenant_id for e in recorder.events} == {str(b.id)}
    assert all(e["published_at"] is None for e in await api_events(client, a.hq()))

    assert await relay.relay_pending(a.id) == len(a_ids)
    assert recorder.ids() == b_ids + a_ids
    assert {e.tenant_id for e in recorder.events[len(b_ids) :]} == {str(a.id)}


async def test_event_ids_are_unique(client, make_tenant, plugins) -> None:
    tenants = [await make_tenant(("S1", "S2")) for _ in range(3)]
    ids: list[str] = []
    for t in tenants:
        await client.patch("/api/v1/stores/S1", json={"name": "x"}, headers=t.hq())
        ids += [e["id"] for e in await api_events(client, t.hq())]
    assert len(ids) >= 3 * 7
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 4 for i in ids)
    recorder = plugins(Recorder())
    for t in tenants:
        await enable(client, t, recorder)
        await relay.relay_pending(t.id)
    assert sorted(recorder.ids()) == sorted(ids)


def test_the_outbox_enqueues_the_relay_by_the_name_and_queue_of_its_actor() -> None:
    # The outbox never imports the relay (import-linter); the name is the only link left.
    from nestpoint.jobs.broker import broker
    from nestpoint.plugins import actors

    assert broker.get_actor(events.RELAY.actor_name) is actors.relay
    assert events.RELAY.queue_name == actors.relay.queue_name


async def test_a_backlog_drains_batch_after_batch_in_order(
    client, make_tenant, plugins, monkeypatch
) -> None:
    monkeypatch.setattr(get_settings(), "outbox_batch_size", 3)
    t = await make_tenant(("S1",))
    recorder = plugins(Recorder())
    await enable(client, t, recorder)
    for n in range(7):
        await emit_event(t, f"test.backlog-{n}", {}, deliver=False)
    pending = [e["id"] for e in await api_events(client, t.hq()) if e["published_at"] is None]
    assert len(pending) >= 3 * 3  # the set-up's events and these: several batches

    assert await relay.drain_pending(t.id) == len(pending)  # one call, every batch
    assert recorder.ids() == pending  # oldest first, each once
    assert all(e["published_at"] for e in await api_events(client, t.hq()))
    assert await relay.drain_pending(t.id) == 0
