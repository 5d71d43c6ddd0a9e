"""The PostgreSQL catalog backs the isolation promises (PostgreSQL only).

Read through the application's own connection (role ``settings.app_role``): every table with
a ``tenant_id`` has row-level security enabled and forced with a tenant policy; the role owns
nothing, bypasses nothing, and cannot rewrite the audit trail; every key includes
``tenant_id`` so the schema can be distributed by tenant.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from nestpoint.context import tenant_context
from nestpoint.db import get_database, scoped_session
from nestpoint.db.base import tenant_owned_tables
from nestpoint.db.models import AuditEntry
from nestpoint.settings import get_settings

FOUNDATION_TABLES = {"stores", "api_keys", "outbox_events", "audit_entries"}


@pytest.fixture
async def conn(is_postgres: bool) -> AsyncIterator[AsyncConnection]:
    if not is_postgres:
        pytest.skip("catalog checks are about PostgreSQL; this run uses SQLite")
    async with get_database().engine.connect() as connection:
        yield connection


async def _rows(conn: AsyncConnection, sql: str, **params: Any) -> list[Any]:
    return list((await conn.execute(text(sql), params)).all())


async def _catalog_tenant_tables(conn: AsyncConnection) -> set[str]:
    rows = await _rows(
        conn,
        """
        SELECT c.relname
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
          AND a.attname = 'tenant_id' AND a.attnum > 0 AND NOT a.attisdropped
        """,
    )
    return {r.relname for r in rows}


async def test_connection_runs_as_the_app_role(conn: AsyncConnection) -> None:
    role = get_settings().app_role
    assert await conn.scalar(text("SELECT current_user")) == role
    assert await conn.scalar(text("SELECT session_user")) == role


async def test_model_and_catalog_agree_on_tenant_tables(conn: AsyncConnection) -> None:
    from_models = set(tenant_owned_tables())
    from_catalog = await _catalog_tenant_tables(conn)
    assert from_models >= FOUNDATION_TABLES
    assert from_catalog == from_models


async def test_every_tenant_table_has_forced_rls_and_a_tenant_policy(
    conn: AsyncConnection,
) -> None:
    tables = await _catalog_tenant_tables(conn)
    assert tables >= FOUNDATION_TABLES
    for table in sorted(tables):
        flags = (
            await _rows(
                conn,
                "SELECT relrowsecurity, relforcerowsecurity FROM pg_class"
                " WHERE oid = CAST(:t AS regclass)",
                t=f"public.{table}",
            )
        )[0]
        assert flags.relrowsecurity, f"{table}: RLS not enabled"
        assert flags.relforcerowsecurity, f"{table}: RLS not forced"
        policies = await _rows(
            conn,
            "SELECT policyname, permissive, cmd, qual, with_check FROM pg_policies"
            " WHERE schemaname = 'public' AND tablename = :t",
            t=table,
        )
        assert policies, f"{table}: no policy"
        for policy in policies:
            # A permissive policy that does not compare tenant_id would open the table.
            assert "tenant_id" in (policy.qual or ""), (table, policy)
            if policy.cmd in ("ALL", "INSERT", "UPDATE"):
                assert "tenant_id" in (policy.with_check or policy.qual or ""), (table, policy)
        assert any(
            p.cmd == "ALL" and "nestpoint_current_tenant()" in (p.qual or "") for p in policies
        ), f"{table}: no policy binds every command to the current tenant"


async def test_app_role_owns_nothing_and_bypasses_nothing(conn: AsyncConnection) -> None:
    role = get_settings().app_role
    attrs = (
        await _rows(
            conn,
            "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles"
            " WHERE rolname = :r",
            r=role,
        )
    )[0]
    assert not attrs.rolsuper
    assert not attrs.rolbypassrls
    assert not attrs.rolcreaterole
    owned = await _rows(
        conn,
        """
        SELECT c.relname, c.relkind FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND pg_get_userbyid(c.relowner) = :r
        """,
        r=role,
    )
    assert owned == []
    # Nor can it act as a role that does own them (which could switch RLS off).
    owners = await _rows(
        conn,
        """
        SELECT DISTINCT pg_get_userbyid(c.relowner) AS owner FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
        """,
    )
    assert owners
    for row in owners:
        assert row.owner != role
        assert not await conn.scalar(
            text("SELECT pg_has_role(:r, :o, 'MEMBER')"), {"r": role, "o": row.owner}
        ), row.owner


async def test_app_role_cannot_switch_rls_off(conn: AsyncConnection) -> None:
    for table in sorted(FOUNDATION_TABLES):
        for statement in (
            f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY",
            f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY",
            f"DROP POLICY tenant_isolation ON {table}",
        ):
            async with get_database().engine.connect() as fresh:
                with pytest.raises(DBAPIError, match="must be owner"):
                    await fresh.execute(text(statement))
    # The flags are as they were.
    rows = await _rows(
        conn,
        "SELECT relname FROM pg_class WHERE relname IN ('stores', 'api_keys', 'outbox_events',"
        " 'audit_entries') AND relrowsecurity AND relforcerowsecurity",
    )
    assert {r.relname for r in rows} == FOUNDATION_TABLES


async def test_every_key_of_a_tenant_table_includes_tenant_id(conn: AsyncConnection) -> None:
    tables = sorted(await _catalog_tenant_tables(conn))
    assert set(tables) >= FOUNDATION_TABLES
    for table in tables:
        constraints = await _rows(
            conn,
            """
            SELECT con.conname, con.contype::text AS contype, con.conkey, con.confkey,
                   con.confrelid::regclass::text AS referenced,
                   (SELECT attnum FROM pg_attribute
                     WHERE attrelid = con.conrelid AND attname = 'tenant_id') AS tenant_col,
                   (SELECT attnum FROM pg_attribute
                     WHERE attrelid = con.confrelid AND attname = 'tenant_id') AS ref_tenant_col
            FROM pg_constraint con
            WHERE con.conrelid = CAST(:t AS regclass) AND con.contype IN ('p', 'u', 'f')
            """,
            t=f"public.{table}",
        )
        kinds = [c.contype for c in constraints]
        assert kinds.count("p") == 1, f"{table}: no primary key"
        assert "f" in kinds, f"{table}: no foreign key to tenants"
        for con in constraints:
            assert con.tenant_col in con.conkey, f"{table}.{con.conname} lacks tenant_id"
            if con.contype == "f" and con.ref_tenant_col is not None:
                # A reference to another tenant-owned table pairs tenant_id with tenant_id.
                pairs = dict(zip(con.conkey, con.confkey, strict=True))
                assert pairs[con.tenant_col] == con.ref_tenant_col, (table, con.conname)
        unique_indexes = await _rows(
            conn,
            """
            SELECT i.indexrelid::regclass::text AS name, i.indkey::int2[] AS cols,
                   (SELECT attnum FROM pg_attribute
                     WHERE attrelid = i.indrelid AND attname = 'tenant_id') AS tenant_col
            FROM pg_index i WHERE i.indrelid = CAST(:t AS regclass) AND i.indisunique
            """,
            t=f"public.{table}",
        )
        assert unique_indexes
        for index in unique_indexes:
            assert index.tenant_col in index.cols, f"{index.name} lacks tenant_id"


async def _tamper_through_the_orm() -> None:
    async with scoped_session() as session:
        entry = await session.scalar(select(AuditEntry).limit(1))
        assert entry is not None
        entry.action = "tampered"
        await session.flush()


async def test_audit_entries_are_append_only_for_the_app(
    conn: AsyncConnection, make_tenant
) -> None:
    tenant = await make_tenant(("S1",))
    role = get_settings().app_role
    for privilege, expected in [
        ("SELECT", True),
        ("INSERT", True),
        ("UPDATE", False),
        ("DELETE", False),
        ("TRUNCATE", False),
    ]:
        allowed = await conn.scalar(
            text("SELECT has_table_privilege(:r, 'audit_entries', :p)"),
            {"r": role, "p": privilege},
        )
        assert allowed is expected, privilege

    with tenant_context(tenant.id):
        async with scoped_session() as session:
            before = sorted(
                (e.id, e.action) for e in (await session.scalars(select(AuditEntry))).all()
            )
        assert before
        for statement in (
            "UPDATE audit_entries SET action = 'tampered'",
            "DELETE FROM audit_entries",
            "TRUNCATE audit_entries",
        ):
            with pytest.raises(DBAPIError, match="permission denied"):
                async with scoped_session() as session:
                    await session.execute(text(statement))
        # Through the ORM too: changing a loaded entry fails at flush.
        with pytest.raises(DBAPIError, match="permission denied"):
            await _tamper_through_the_orm()
        # Appending is allowed (that is how every change is recorded).
        async with scoped_session() as session:
            session.add(
                AuditEntry(
                    id=uuid.uuid4(),
                    actor_kind="system",
                    action="test.appended",
                    subject_type="test",
                    subject_id="1",
                    changes={},
                )
            )
        async with scoped_session() as session:
            after = sorted(
                (e.id, e.action) for e in (await session.scalars(select(AuditEntry))).all()
            )
    assert [row for row in after if row[1] != "test.appended"] == before
    assert [row[1] for row in after].count("test.appended") == 1
