"""Test plugins registered for one test at a time into the process-wide plugin host."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from nestpoint.plugins.api import EarnAdjustment, EarnContext, Event, PluginContext, hookimpl
from nestpoint.plugins.manager import PluginHost, get_plugin_host


class Recorder:
    """Records every event it is given, per hook."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, str | None, dict[str, Any]]] = []

    def events(self, hook: str = "nestpoint_on_event") -> list[tuple[str, str, str | None]]:
        """(event type, tenant id, store id) for each call of ``hook``."""
        return [(t, tenant, store) for h, t, tenant, store, _ in self.calls if h == hook]

    @hookimpl
    def nestpoint_on_event(self, event: Event, plugin: PluginContext) -> None:
        self.calls.append(
            ("nestpoint_on_event", event.type, event.tenant_id, event.store_id, dict(plugin.config))
        )

    @hookimpl
    async def nestpoint_on_tier_changed(self, event: Event) -> None:
        await asyncio.sleep(0)
        self.calls.append(
            ("nestpoint_on_tier_changed", event.type, event.tenant_id, event.store_id, {})
        )

    @hookimpl
    def nestpoint_adjust_earned_points(self, context: EarnContext) -> EarnAdjustment | None:
        return EarnAdjustment(1, "recorder")


class Broken:
    """Raises in every hook it implements (registration hooks excepted)."""

    def __init__(self) -> None:
        self.calls = 0

    def _fail(self) -> None:
        self.calls += 1
        raise RuntimeError("broken plugin")

    @hookimpl
    def nestpoint_on_event(self, event: Event) -> None:
        self._fail()

    @hookimpl
    async def nestpoint_on_tier_changed(self, event: Event) -> None:
        self._fail()

    @hookimpl
    def nestpoint_on_store_updated(self, event: Event) -> None:
        self._fail()

    @hookimpl
    def nestpoint_adjust_earned_points(self, context: EarnContext) -> EarnAdjustment | None:
        self._fail()
        return None

    @hookimpl
    async def nestpoint_choose_channel(self, choice: Any) -> str | None:
        self._fail()
        return None


async def settle(*tenants: Any) -> None:
    """Relay what tenant set-up wrote to the outbox (no worker runs in tests)."""
    from nestpoint.plugins.relay import relay_pending

    for tenant in tenants:
        while await relay_pending(tenant.id):
            pass


@pytest.fixture
def host(app: Any) -> PluginHost:
    """The process-wide host the app and relay use (after the database is ready)."""
    return get_plugin_host()


@pytest.fixture
def register_plugin(host: PluginHost) -> Iterator[Callable[[object, str], object]]:
    """Register a plugin object for one test; unregistered afterwards."""
    added: list[str] = []

    def register(plugin: object, plugin_id: str) -> object:
        info = host.register_plugin(plugin, plugin_id)
        assert info.loaded, info.reason
        added.append(plugin_id)
        return plugin

    yield register
    for plugin_id in added:
        host.unregister(plugin_id)
