"""Raw statements (``nestpoint.db.raw``): the till's statements skip SQLAlchemy's execution
layer, and with it the session's automatic tenant criteria. So each names its tenant
itself, and reads back exactly what ``session.execute`` would."""

from __future__ import annotations

import re
import uuid
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import UpdateBase

from conftest import BACKEND
from nestpoint.benefits import pricing
from nestpoint.context import TenantContext, tenant_context
from nestpoint.db import get_database, scoped_session
from nestpoint.db.base import tenant_owned_tables
from nestpoint.db.raw import Statement
from nestpoint.idempotency import service as idempotency
from nestpoint.members import service as members
from nestpoint.orders import service as orders
from nestpoint.points import service as points
from nestpoint.tiers import service as tiers

MODULES: list[ModuleType] = [members, orders, idempotency, points, tiers, pricing]


def raw_statements() -> dict[str, Any]:
    """Every module-level raw statement and batch part of the hot path, by name."""
    found: dict[str, Any] = {}
    for module in MODULES:
        for name, value in vars(module).items():
            if isinstance(value, Statement):
                found[f"{module.__name__}.{name}"] = value.statement
            elif isinstance(value, UpdateBase) and name.isupper():
                found[f"{module.__name__}.{name}"] = value
    found["points._lot_changes(2)"] = points._lot_changes(2)
    found["tiers._member_update(last_order_at)"] = tiers._member_update(("last_order_at",))
    return found


STATEMENTS = raw_statements()


def test_the_hot_path_has_its_raw_statements() -> None:
    names = {name.rsplit(".", 1)[-1] for name in STATEMENTS}
    expected = {"MEMBER_BY_PHONE", "MEMBER_PARTS", "LOCK_BY_ID", "CLAIM", "ACCOUNT_TOTALS",
                "LOCK_PRICING", "PRICING_USES"}  # fmt: skip
    assert expected <= names


@pytest.mark.parametrize("name", sorted(STATEMENTS))
@pytest.mark.parametrize("dialect", [postgresql.asyncpg.dialect(), sqlite.aiosqlite.dialect()])
def test_every_tenant_table_a_raw_statement_touches_is_bound_to_the_tenant(
    name: str, dialect: Any
) -> None:
    compiled = STATEMENTS[name].compile(dialect=dialect)
    sql = str(compiled)
    if "nestpoint_lookup_member(" in sql:  # a function that binds the tenant it is given
        assert compiled.positiontup[0] == "tenant_id"
        return
    owned = set(tenant_owned_tables())
    touched = {t for t in re.findall(r"(?:FROM|JOIN|UPDATE|INTO)\s+(\w+)", sql) if t in owned}
    assert touched, f"{name} touches no tenant-owned table: {sql}"
    for table in touched:
        inserted = re.search(rf"INSERT INTO {table} \(([^)]*)\)", sql)
        if inserted:
            assert "tenant_id" in inserted.group(1), f"{name} inserts {table} without tenant_id"
        else:
            assert f"{table}.tenant_id = " in sql, f"{name} reads {table} for every tenant"


async def test_a_raw_statement_reads_what_the_session_reads(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant(("S1",))
    body = {"phone": "13912345678", "name": "王芳", "tags": ["vip"], "birthday": "1990-05-01"}
    r = await client.post("/api/v1/members", json=body, headers=t.hq())
    assert r.status_code == 201, r.text
    member_id = uuid.UUID(r.json()["id"])
    with tenant_context(t.id):
        async with scoped_session() as session:
            params = {"tenant_id": t.id, "member_id": member_id}
            expected = (await session.execute(members.MEMBER_BY_ID.statement, params)).one()
            in_session = await members.MEMBER_BY_ID.one_or_none(session, **params)
        async with get_database().read_transaction(TenantContext(t.id)) as reader:
            alone = await members.MEMBER_BY_ID.one_or_none(reader, **params)
    assert tuple(in_session) == tuple(expected)
    assert tuple(alone) == tuple(expected)
    assert alone.id == member_id
    assert alone.tags == ["vip"]
    assert alone.joined_at.tzinfo is not None


@pytest.mark.skipif(BACKEND != "postgresql", reason="the lookup function is PostgreSQL's")
async def test_the_lookup_function_returns_what_the_statements_read(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant(("S1",))
    body = {
        "phone": "13912345670",
        "name": "王芳",
        "guardian_consent": {"granted": True, "source": "till"},
        "children": [{"nickname": "豆豆", "birth_date": "2025-03-01"}],
        "identities": [{"kind": "pos_card", "value": "C-1"}],
        "consents": [{"channel": "sms", "granted": True, "source": "till"}],
    }
    r = await client.post("/api/v1/members", json=body, headers=t.hq())
    assert r.status_code == 201, r.text
    member_id = uuid.UUID(r.json()["id"])
    _, digest = members.phone_lookup_hash("13912345670")
    params = {"tenant_id": t.id, "member_id": member_id}
    with tenant_context(t.id):
        async with get_database().read_transaction(TenantContext(t.id)) as reader:
            member = await members.MEMBER_BY_ID.one_or_none(reader, **params)
            parts = await members.MEMBER_PARTS.rows(reader, **params)
        async with get_database().statement_reader() as reader:
            rows = await members.MEMBER_LOOKUP.rows(
                reader, tenant_id=t.id, store_id=None, phone_hash=digest
            )
    facts = len(members.MEMBER_FACTS)
    assert [tuple(row[:facts]) for row in rows] == [tuple(member)] * len(rows)
    assert sorted(tuple(row[facts:]) for row in rows) == sorted(tuple(p) for p in parts)
    assert sorted(row.part for row in rows) == ["balance", "child", "consent", "identity"]


async def test_a_read_transaction_sees_only_its_tenant(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    a, b = await make_tenant(("S1",)), await make_tenant(("S1",))
    r = await client.post("/api/v1/members", json={"phone": "13912345679"}, headers=a.hq())
    assert r.status_code == 201, r.text
    member_id = uuid.UUID(r.json()["id"])
    with tenant_context(b.id):
        async with get_database().read_transaction(TenantContext(b.id)) as reader:
            # B's transaction asking for A's member, even naming A's tenant: row-level
            # security (PostgreSQL) binds the transaction to B; SQLite has the criterion.
            found = await members.MEMBER_BY_ID.one_or_none(
                reader, tenant_id=b.id, member_id=member_id
            )
            assert found is None
            if reader.postgres:
                leaked = await members.MEMBER_BY_ID.one_or_none(
                    reader, tenant_id=a.id, member_id=member_id
                )
                assert leaked is None
