"""Migration 0005_member_privacy encrypts the children's nicknames and identity values that
earlier revisions stored in clear, on a database of its own (SQLite or PostgreSQL)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from conftest import BACKEND, OWNER_ROLE, PG_ADMIN_URL, _pg_admin
from nestpoint.context import tenant_context
from nestpoint.members import pii
from nestpoint.migrate import upgrade

pytestmark = pytest.mark.usefixtures("database_env")

# The tables as revision 0003 left them (only the columns written here).
_meta = sa.MetaData()
tenants = sa.Table(
    "tenants",
    _meta,
    *(sa.Column(n, sa.Uuid()) for n in ("id",)),
    *(sa.Column(n, sa.String()) for n in ("slug", "name", "currency", "timezone", "locale")),
    sa.Column("active", sa.Boolean()),
    *(sa.Column(n, sa.DateTime(timezone=True)) for n in ("created_at", "updated_at")),
)
members = sa.Table(
    "members",
    _meta,
    *(sa.Column(n, sa.Uuid()) for n in ("id", "tenant_id")),
    *(sa.Column(n, sa.String()) for n in ("phone_hash", "phone_enc", "gender", "join_channel")),
    *(sa.Column(n, sa.String()) for n in ("status",)),
    sa.Column("tags", sa.JSON()),
    sa.Column("growth_value", sa.Integer()),
    *(sa.Column(n, sa.DateTime(timezone=True)) for n in ("joined_at", "created_at", "updated_at")),
)
children = sa.Table(
    "children",
    _meta,
    *(sa.Column(n, sa.Uuid()) for n in ("id", "tenant_id", "member_id")),
    *(sa.Column(n, sa.String()) for n in ("nickname", "gender")),
    sa.Column("birth_date", sa.Date()),
    *(sa.Column(n, sa.DateTime(timezone=True)) for n in ("created_at", "updated_at")),
)
identities = sa.Table(
    "member_identities",
    _meta,
    *(sa.Column(n, sa.Uuid()) for n in ("id", "tenant_id", "member_id")),
    *(sa.Column(n, sa.String()) for n in ("kind", "value")),
    sa.Column("created_at", sa.DateTime(timezone=True)),
)


@pytest.fixture
async def fresh_url(tmp_path: Path) -> AsyncIterator[str]:
    """A database of its own, with nothing migrated yet."""
    if BACKEND == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'migration.db'}"
        return
    name = f"nestpoint_mig_{os.getpid()}"
    await _pg_admin(
        f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name} OWNER {OWNER_ROLE}"
    )
    host = PG_ADMIN_URL.split("@", 1)[1].rsplit("/", 1)[0]
    yield f"postgresql+asyncpg://{OWNER_ROLE}@{host}/{name}"
    await _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def _as_tenant(conn: AsyncConnection, tenant_id: uuid.UUID) -> None:
    if conn.dialect.name == "postgresql":  # RLS is forced, even for the owner
        await conn.execute(
            sa.text("SELECT set_config('nestpoint.tenant_id', :t, true)"), {"t": str(tenant_id)}
        )


async def insert_tenant(conn: AsyncConnection, tenant_id: uuid.UUID, now: datetime) -> None:
    """A tenant as revision 0003 stores it; the connection then acts for it."""
    await conn.execute(
        tenants.insert().values(
            id=tenant_id,
            slug=f"m-{tenant_id.hex[:8]}",
            name="Old",
            currency="CNY",
            timezone="Asia/Shanghai",
            locale="zh-CN",
            active=True,
            created_at=now,
            updated_at=now,
        )
    )
    await _as_tenant(conn, tenant_id)


async def insert_member(
    conn: AsyncConnection,
    tenant_id: uuid.UUID,
    member_id: uuid.UUID,
    now: datetime,
    status: str = "active",
) -> None:
    """A member as revision 0003 stores it."""
    await conn.execute(
        members.insert().values(
            id=member_id,
            tenant_id=tenant_id,
            phone_hash=member_id.hex,
            phone_enc="x",
            gender="unknown",
            join_channel="api",
            joined_at=now,
            tags=[],
            status=status,
            growth_value=0,
            created_at=now,
            updated_at=now,
        )
    )


async def test_existing_plaintext_rows_are_encrypted(fresh_url: str):
    upgrade(fresh_url, "0003_loyalty")
    tenant_id, member_id, child_id, identity_id = (uuid.uuid4() for _ in range(4))
    now = datetime.now(UTC)
    engine = create_async_engine(fresh_url)
    async with engine.begin() as conn:
        await insert_tenant(conn, tenant_id, now)
        await insert_member(conn, tenant_id, member_id, now)
        await conn.execute(
            children.insert().values(
                id=child_id,
                tenant_id=tenant_id,
                member_id=member_id,
                nickname="豆豆",
                gender="female",
                birth_date=date(2025, 1, 2),
                created_at=now,
                updated_at=now,
            )
        )
        await conn.execute(
            identities.insert().values(
                id=identity_id,
                tenant_id=tenant_id,
                member_id=member_id,
                kind="pos_card",
                value="6222000011112222",
                created_at=now,
            )
        )
    upgrade(fresh_url, "heads")

    async with engine.begin() as conn:
        await _as_tenant(conn, tenant_id)
        child = (await conn.execute(sa.text("SELECT * FROM children"))).mappings().one()
        identity = (await conn.execute(sa.text("SELECT * FROM member_identities"))).mappings().one()
        shared = (await conn.execute(sa.text("SELECT members_shared_with FROM tenants"))).scalar()
    await engine.dispose()
    assert "nickname" not in child
    assert "value" not in identity
    ring = pii.keyring()
    assert (
        ring.decrypt(
            child["nickname_enc"], context=pii.row_context(tenant_id, "children", child_id)
        )
        == "豆豆"
    )
    assert child["birth_date"] in (date(2025, 1, 2), "2025-01-02")  # dates stay queryable
    context = pii.row_context(tenant_id, "member_identities", identity_id)
    assert ring.decrypt(identity["value_enc"], context=context) == "6222000011112222"
    with tenant_context(tenant_id):
        assert identity["value_hash"] == pii.identity_hash("pos_card", "6222000011112222")
    assert shared in (["direct"], '["direct"]')
