"""Plugins' panels on the member's console page (``nestpoint_register_console_panels``):
shown where the plugin is enabled for the user's place, in their order; a panel that fails
is left out, recorded as the plugin's failure, and the page still opens."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from nestpoint.context import tenant_context
from nestpoint.db import scoped_session
from nestpoint.plugins import manager
from nestpoint.plugins.manager import get_plugin_host
from nestpoint.plugins.models import PluginFailure
from nestpoint.plugins.types import ConsolePanel, PluginContext

from .test_users_and_sessions import add_user, sign_in

BOOKINGS = 'data-testid="panel-consultations.bookings"'


async def _member(client: Any, t: Any) -> str:
    phone = f"136{uuid.uuid4().int % 100_000_000:08d}"
    r = await client.post("/api/v1/members", json={"phone": phone}, headers=t.hq())
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _set_store(client: Any, t: Any, plugin: str, enabled: bool) -> None:
    r = await client.put(
        f"/api/v1/tenant/plugins/{plugin}/stores/S1", json={"enabled": enabled}, headers=t.hq()
    )
    assert r.status_code == 200, r.text


async def test_a_plugins_panel_shows_where_it_is_enabled(app, client, make_tenant) -> None:
    t = await make_tenant(("S1", "S2"))
    await add_user(client, t, "mgr1", "store_manager", "S1")
    await add_user(client, t, "mgr2", "store_manager", "S2")
    member = await _member(client, t)
    await _set_store(client, t, "consultations", True)
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "mgr1")).status_code == 303
        page = await c.get(f"/console/members/{member}")
        assert page.status_code == 200
        assert BOOKINGS in page.text
    async with AsyncTestClient(app=app) as c:  # not enabled at S2
        assert (await sign_in(c, t.slug, "mgr2")).status_code == 303
        page = await c.get(f"/console/members/{member}")
        assert page.status_code == 200
        assert BOOKINGS not in page.text


async def test_a_failing_or_slow_panel_is_left_out_and_recorded(
    app, client, make_tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = await make_tenant(("S1",))
    await add_user(client, t, "adm", "hq_admin")
    member = await _member(client, t)
    r = await client.put(
        "/api/v1/tenant/plugins/example", json={"enabled": True, "config": {}}, headers=t.hq()
    )
    assert r.status_code == 200, r.text

    async def broken(plugin: PluginContext, subject_id: str | None) -> str:
        raise RuntimeError("boom")

    async def slow(plugin: PluginContext, subject_id: str | None) -> str:
        await asyncio.sleep(5)
        return "<p>late</p>"

    async def fine(plugin: PluginContext, subject_id: str | None) -> str:
        return f'<p data-testid="fine">{subject_id}</p>'

    panels = get_plugin_host().contributions["example"].console_panels
    monkeypatch.setitem(panels, "broken", ConsolePanel("broken", "Broken", "member", broken))
    monkeypatch.setitem(panels, "slow", ConsolePanel("slow", "Slow", "member", slow))
    monkeypatch.setitem(panels, "fine", ConsolePanel("fine", "Fine", "member", fine, order=1))
    monkeypatch.setattr(manager, "CONSOLE_PANEL_SECONDS", 0.2)
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "adm")).status_code == 303
        page = await c.get(f"/console/members/{member}")
    assert page.status_code == 200
    assert f'<p data-testid="fine">{member}</p>' in page.text
    assert 'data-testid="panel-example.broken"' not in page.text
    assert 'data-testid="panel-example.slow"' not in page.text
    for _ in range(50):  # the failures are written in the background
        with tenant_context(t.id):
            async with scoped_session() as session:
                hooks = set(
                    (
                        await session.scalars(
                            select(PluginFailure.hook).where(PluginFailure.plugin_id == "example")
                        )
                    ).all()
                )
        if len(hooks) == 2:
            break
        await asyncio.sleep(0.1)
    assert hooks == {"console_panel:broken", "console_panel:slow"}
