"""The compiled SQL of a segment can never leave its tenant.

Two chains get the same population (same store codes, tags, children, orders), so any
condition that matched in one would match in the other. Random rule trees (hypothesis) are
compiled for each chain and run through a connection no tenant is bound to: on SQLite a
plain engine connection (no session, so no automatic scoping), on PostgreSQL the superuser
(which row-level security never binds, even where it is forced). What keeps the answer
inside the chain is then the statement alone; every id returned must be the chain's. The
SQL text is checked too: each table it reads is compared with a bound tenant id, and each
bound tenant id is the chain's.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from conftest import BACKEND, PG_ADMIN_URL, PG_DB
from nestpoint.db import get_database
from nestpoint.jobs.tenants import run_for_tenant
from nestpoint.members.models import Member
from nestpoint.segments import builtin, rules
from nestpoint.segments.jobs import recompute
from segments.helpers import ZONE, Population, local_today, populate

TABLES = (
    "members",
    "children",
    "orders",
    "order_lines",
    "point_accounts",
    "stores",
    "member_segments",
)


@dataclass
class Chains:
    ids: dict[uuid.UUID, set[uuid.UUID]]  # tenant -> its members' ids
    connection: AsyncConnection


@pytest.fixture
async def chains(client, make_tenant) -> AsyncIterator[Chains]:  # type: ignore[no-untyped-def]
    members: dict[uuid.UUID, set[uuid.UUID]] = {}
    for _ in range(2):
        tenant = await make_tenant()
        population: Population = await populate(client, tenant)
        members[tenant.id] = {uuid.UUID(m) for m in population.all()}
        await run_for_tenant(tenant.id, recompute, name="test")  # the built-in segments
    if BACKEND == "postgresql":
        host = PG_ADMIN_URL.split("@", 1)[1].rsplit("/", 1)[0]
        superuser = PG_ADMIN_URL.split("://", 1)[1].split("@", 1)[0]
        engine = create_async_engine(f"postgresql+asyncpg://{superuser}@{host}/{PG_DB}")
    else:
        engine = get_database().engine
    try:
        async with engine.connect() as connection:
            # Not bound to a tenant: it sees both chains' members.
            everyone = set((await connection.scalars(select(Member.id))).all())
            assert set().union(*members.values()) <= everyone
            yield Chains(members, connection)
    finally:
        if BACKEND == "postgresql":
            await engine.dispose()


def _leaf(field: str, op: Any, value: Any, **extra: Any) -> Any:
    return st.builds(
        lambda o, v, **e: {"field": field, "op": o, "value": v, **e},
        op if isinstance(op, st.SearchStrategy) else st.just(op),
        value,
        **extra,
    )


def _some(values: list[Any], most: int = 3) -> Any:
    return st.lists(st.sampled_from(values), min_size=1, max_size=most, unique=True)


_days = st.integers(0, 500)
_amount = st.sampled_from([0, 1, 8000, 20000, 60000, 500000])
_window = st.sampled_from([1, 30, 90, 365])
_category = st.sampled_from([None, "feeding", "toys", "diapers"])
_cmp = st.sampled_from(["gte", "lte"])


def _aggregate(field: str) -> Any:
    return st.builds(
        lambda op, value, days, category: {
            "field": field,
            "op": op,
            "value": value,
            "days": days,
            **({"category": category} if category else {}),
        },
        _cmp,
        st.sampled_from([0, 1, 2]) if field == "orders" else _amount,
        _window,
        _category,
    )


LEAVES = st.one_of(
    _leaf("tier", "in", _some(["bronze", "silver", "gold", "t1"])),
    _leaf("gender", "eq", st.sampled_from(["female", "male", "unknown"])),
    _leaf("gender", "in", _some(["female", "male", "unknown"])),
    _leaf("join_channel", "in", _some(["pos", "api", "mall"])),
    _leaf("home_store", "in", _some(["S1", "S2"])),
    _leaf("joined_days_ago", _cmp, _days),
    _leaf("joined_days_ago", "between", st.tuples(_days, _days).map(lambda t: sorted(t))),
    _leaf("birthday_month", "in", _some(list(range(1, 13)))),
    _leaf("tag", "has", st.sampled_from(["vip", "new", "x%_"])),
    _leaf("growth_value", _cmp, _amount),
    _leaf("points_balance", _cmp, _amount),
    _leaf("last_order_days_ago", _cmp, _days),
    _leaf(
        "child_stage",
        "in",
        _some(["pregnant", "birth_overdue", "0-6m", "6-12m", "1-3y", "3-6y", "older"]),
    ),
    _leaf("due_within_weeks", "lte", st.integers(0, 45)),
    _leaf(
        "child_turns_months",
        "within",
        st.fixed_dictionaries({"months": st.integers(0, 24), "within_days": st.integers(0, 30)}),
    ),
    _aggregate("spend_fen"),
    _aggregate("orders"),
    _leaf("rfm_group", "in", _some(list(builtin.RFM_CODES))),
    _leaf("value_circle", "in", _some(list(builtin.VALUE_CIRCLES))),
    _leaf("lifecycle", "in", _some(list(builtin.LIFECYCLES))),
)
RULES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=4).map(lambda xs: {"all": xs}),
        st.lists(inner, min_size=1, max_size=4).map(lambda xs: {"any": xs}),
        inner.map(lambda x: {"not": x}),
    ),
    max_leaves=12,
)


def _depth(rule: Any) -> int:
    if "field" in rule:
        return 1
    if "not" in rule:
        return 1 + _depth(rule["not"])
    return 1 + max(_depth(r) for r in next(iter(rule.values())))


def check_sql(stmt: Any, tenant_id: uuid.UUID) -> None:
    """Each table the statement reads is compared with a bound tenant id at least as often as
    it is named in a FROM or JOIN, and every bound tenant id is ``tenant_id``."""
    compiled = stmt.compile()
    sql = str(compiled)
    named = re.findall(r"\b(?:FROM|JOIN) (\w+)(?![.\w])", sql)  # not EXTRACT(.. FROM col)
    assert set(named) <= set(TABLES), sql
    for table in set(named):
        filtered = re.findall(rf"\b{table}\.tenant_id = :(tenant_id_\d+)\b", sql)
        assert len(filtered) >= named.count(table), (table, sql)
    bound = {k: v for k, v in compiled.params.items() if k.startswith("tenant_id")}
    assert bound
    assert set(bound.values()) == {tenant_id}, sql


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=RULES)
async def test_random_trees_never_leave_the_tenant(chains: Chains, raw: Any) -> None:
    assume(_depth(raw) <= rules.MAX_DEPTH)
    rule = rules.parse_rule(raw)
    today = local_today()
    everyone = set().union(*chains.ids.values())
    for tenant_id, own in chains.ids.items():
        stmt = rules.compile_rule(rule, rules.Facts(tenant_id, today, ZONE))
        check_sql(stmt, tenant_id)
        found = set((await chains.connection.scalars(stmt)).all())
        assert found <= own, raw
        assert not found & (everyone - own)


async def test_the_same_tree_finds_the_same_members_in_each_chain(chains: Chains) -> None:
    """The two chains' populations are alike: a tree that finds members in one finds as
    many in the other, each its own (so the trees above really do find members)."""
    today = local_today()
    tree = {
        "any": [
            {"field": "tag", "op": "has", "value": "vip"},
            {"field": "spend_fen", "op": "gte", "value": 20000, "days": 90},
            {"field": "child_stage", "op": "in", "value": ["pregnant"]},
        ]
    }
    rule = rules.parse_rule(tree)
    builtin_tree = {"field": "lifecycle", "op": "in", "value": ["silent", "welcome", "growing"]}
    counts = []
    for tenant_id, own in chains.ids.items():
        stmt = rules.compile_rule(rule, rules.Facts(tenant_id, today, ZONE))
        found = set((await chains.connection.scalars(stmt)).all())
        assert found <= own
        counts.append(len(found))
    assert counts == [4, 4]
    # The built-in segments too: every member of the population has a lifecycle stage.
    for tenant_id, own in chains.ids.items():
        stmt = rules.compile_rule(
            rules.parse_rule(builtin_tree), rules.Facts(tenant_id, today, ZONE)
        )
        check_sql(stmt, tenant_id)
        assert set((await chains.connection.scalars(stmt)).all()) == own
