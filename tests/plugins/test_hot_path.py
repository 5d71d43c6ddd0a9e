"""The earn-rule hook sits on the order's hot path: no query while the enablement is cached,
and contributions (benefit types...) are offered only where their plugin is enabled."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from nestpoint.db import get_database
from nestpoint.plugins.api import BenefitType, BenefitTypeRegistry, hookimpl
from nestpoint.testing import adjust_points, enable_plugin


@contextmanager
def count_queries() -> Iterator[list[str]]:
    statements: list[str] = []
    engine = get_database().engine.sync_engine

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def test_no_query_while_the_enablement_is_cached(client, make_tenant, host):
    t = await make_tenant()
    await adjust_points(host, t, "S1")  # loads the tenant's snapshot once
    with count_queries() as statements:
        for _ in range(20):
            assert await adjust_points(host, t, "S1") == []
    assert statements == []
    await enable_plugin(client, t, "example", store="S1")
    await adjust_points(host, t, "S1")  # the change invalidated the snapshot: one load
    with count_queries() as statements:
        for _ in range(20):
            await adjust_points(host, t, "S1")
    assert statements == []


class Gifts:
    @hookimpl
    def nestpoint_register_benefit_types(self, registry: BenefitTypeRegistry) -> None:
        registry.add(BenefitType("gift_wrap", "礼品包装"))


async def test_contributions_only_where_enabled(client, make_tenant, host, register_plugin):
    register_plugin(Gifts(), "gifts")
    t = await make_tenant()
    await enable_plugin(client, t, "gifts", store="S2")
    assert await host.contributed("benefit_types", t.id, t.stores["S1"]) == {}
    offered = await host.contributed("benefit_types", t.id, t.stores["S2"])
    assert list(offered) == ["gifts.gift_wrap"]
    assert offered["gifts.gift_wrap"].title == "礼品包装"
