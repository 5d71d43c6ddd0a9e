"""A plugin sees only the current tenant's data; ``nestpoint plugins list`` shows where
each plugin is enabled."""

from __future__ import annotations

import asyncio

from typer.testing import CliRunner

from nestpoint.cli import app as cli
from nestpoint.testing import emit_event, enable_plugin


async def test_a_plugins_table_is_scoped_to_the_tenant(client, make_tenant):
    a = await make_tenant()
    b = await make_tenant()
    for tenant, member in ((a, "member-of-a"), (b, "member-of-b")):
        await enable_plugin(client, tenant, "example")
        payload = {"member_id": member, "from_tier": "silver", "to_tier": "gold"}
        await emit_event(tenant, "tier.changed", payload, store=tenant.stores["S1"])
    for tenant, member in ((a, "member-of-a"), (b, "member-of-b")):
        r = await client.get("/api/v1/plugins/example/celebrations", headers=tenant.hq())
        assert r.status_code == 200, r.text
        assert [c["member_id"] for c in r.json()] == [member]


async def test_plugins_list_shows_where_enabled(client, make_tenant):
    t = await make_tenant()
    await enable_plugin(client, t, "example", store="S2")
    # The command runs its own event loop: give it a thread, as a terminal would a process.
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["plugins", "list"])
    assert result.exit_code == 0, result.output
    assert "example  nestpoint-example" in result.output
    assert "nestpoint_adjust_earned_points" in result.output
    assert f"{t.slug}: S2" in result.output
