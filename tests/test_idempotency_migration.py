"""Migration 0004_idempotency copies the answers of orders and refunds recorded before it
into the idempotency keys (a till retrying across the upgrade gets its first answer), and
marks the accounts of members merged before it, on a database of its own."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from nestpoint.migrate import upgrade
from test_member_privacy_migration import _as_tenant, fresh_url, insert_member, insert_tenant

pytestmark = pytest.mark.usefixtures("database_env")
__all__ = ["fresh_url"]  # the fixture, used by name

_meta = sa.MetaData()


def _table(table_name: str, /, **columns: Any) -> sa.Table:
    return sa.Table(table_name, _meta, *(sa.Column(n, t) for n, t in columns.items()))


NOW = sa.DateTime(timezone=True)
stores = _table(
    "stores",
    **dict.fromkeys(("id", "tenant_id"), sa.Uuid()),
    **dict.fromkeys(("code", "name", "kind", "format", "region", "address"), sa.String()),
    active=sa.Boolean(),
    created_at=NOW,
    updated_at=NOW,
)
orders = _table(
    "orders",
    **dict.fromkeys(("id", "tenant_id", "store_id"), sa.Uuid()),
    **dict.fromkeys(("channel", "external_id", "status", "request_hash"), sa.String()),
    **dict.fromkeys(
        ("total_fen", "cash_fen", "points_used", "points_value_fen", "points_earned"),
        sa.BigInteger(),
    ),
    refunded_fen=sa.BigInteger(),
    coupons=sa.JSON(),
    response=sa.JSON(),
    paid_at=NOW,
    created_at=NOW,
)
refunds = _table(
    "refunds",
    **dict.fromkeys(("id", "tenant_id", "order_id"), sa.Uuid()),
    **dict.fromkeys(("external_id", "request_hash"), sa.String()),
    **dict.fromkeys(("amount_fen", "points_reversed", "points_returned"), sa.BigInteger()),
    response=sa.JSON(),
    created_at=NOW,
)
accounts = _table(
    "point_accounts",
    **dict.fromkeys(("tenant_id", "member_id"), sa.Uuid()),
    **dict.fromkeys(
        ("balance", "debt", "held", "lifetime_earned", "earned_today"), sa.BigInteger()
    ),
    earned_day=sa.String(),
    updated_at=NOW,
)
keys = _table(
    "idempotency_keys",
    tenant_id=sa.Uuid(),
    **dict.fromkeys(("scope", "key", "request_hash"), sa.String()),
    status_code=sa.Integer(),
    response=sa.JSON(),
)
marks = sa.table(  # the column 0004 adds
    "point_accounts", sa.column("member_id", sa.Uuid()), sa.column("merged_into_id", sa.Uuid())
)


async def test_answers_recorded_before_are_replayable_after(fresh_url: str):
    upgrade(fresh_url, "0003_loyalty")
    tenant_id, store_id, order_id, refund_id = (uuid.uuid4() for _ in range(4))
    target_id, merged_id = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    engine = create_async_engine(fresh_url)
    async with engine.begin() as conn:
        await insert_tenant(conn, tenant_id, now)
        for member_id, status in ((target_id, "active"), (merged_id, "merged")):
            await insert_member(conn, tenant_id, member_id, now, status)
            await conn.execute(
                accounts.insert().values(
                    tenant_id=tenant_id,
                    member_id=member_id,
                    balance=0,
                    debt=0,
                    held=0,
                    lifetime_earned=0,
                    earned_today=0,
                    earned_day="",
                    updated_at=now,
                )
            )
        await conn.execute(
            sa.text("UPDATE members SET merged_into_id = :target WHERE id = :merged").bindparams(
                sa.bindparam("target", type_=sa.Uuid()), sa.bindparam("merged", type_=sa.Uuid())
            ),
            {"target": target_id, "merged": merged_id},
        )
        await conn.execute(
            stores.insert().values(
                id=store_id,
                tenant_id=tenant_id,
                code="S1",
                name="S1",
                kind="direct",
                format="standard",
                region="",
                address="",
                active=True,
                created_at=now,
                updated_at=now,
            )
        )
        await conn.execute(
            orders.insert().values(
                id=order_id,
                tenant_id=tenant_id,
                store_id=store_id,
                channel="pos",
                external_id="POS-1",
                status="paid",
                request_hash="a" * 64,
                total_fen=100,
                cash_fen=100,
                points_used=0,
                points_value_fen=0,
                points_earned=1,
                refunded_fen=0,
                coupons=[],
                response={"id": str(order_id)},
                paid_at=now,
                created_at=now,
            )
        )
        await conn.execute(
            refunds.insert().values(
                id=refund_id,
                tenant_id=tenant_id,
                order_id=order_id,
                external_id="R-1",
                request_hash="b" * 64,
                amount_fen=100,
                points_reversed=1,
                points_returned=0,
                response={"id": str(refund_id)},
                created_at=now,
            )
        )
    await engine.dispose()

    upgrade(fresh_url)

    engine = create_async_engine(fresh_url)
    async with engine.begin() as conn:
        await _as_tenant(conn, tenant_id)
        stored = {
            (row.scope, row.key): (row.request_hash, row.status_code, row.response)
            for row in await conn.execute(sa.select(keys))
        }
        merged_into = dict((await conn.execute(sa.select(marks))).all())
    await engine.dispose()
    assert stored == {
        ("order", "pos/POS-1"): ("a" * 64, 201, {"id": str(order_id)}),
        ("refund", f"{order_id}/R-1"): ("b" * 64, 201, {"id": str(refund_id)}),
    }
    assert merged_into == {target_id: None, merged_id: target_id}
