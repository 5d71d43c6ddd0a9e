"""Orders, their lines, and refunds.

``(tenant, channel, external_id)`` is unique forever: a till retrying (or syncing late) gets
the first response back; the same id with a different body is a conflict (both through the
idempotency keys, ``nestpoint.idempotency``). ``response`` is the order as first recorded.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.db.base import Base, TenantOwned, TenantScoped, utcnow

# An order is paid when recorded; refunds move it on (all of it refunded: "refunded").
OrderStatus = Literal["paid", "partially_refunded", "refunded"]


class Order(TenantOwned, Base):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("tenant_id", "channel", "external_id"),
        ForeignKeyConstraint(["tenant_id", "store_id"], ["stores.tenant_id", "stores.id"]),
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        Index("ix_orders_member", "tenant_id", "member_id", "paid_at"),
        Index("ix_orders_store", "tenant_id", "store_id", "paid_at"),
        Index("ix_orders_paid", "tenant_id", "paid_at"),  # the listing, by day
    )

    channel: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(100))
    store_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    member_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    status: Mapped[str] = mapped_column(String(24), default="paid")  # an OrderStatus
    paid_at: Mapped[datetime] = mapped_column()
    total_fen: Mapped[int] = mapped_column(BigInteger)
    cash_fen: Mapped[int] = mapped_column(BigInteger)
    points_used: Mapped[int] = mapped_column(BigInteger, default=0)
    points_value_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    coupons: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Stored value (储值, nestpoint.wallet) that paid, and how much of it was bonus.
    stored_value_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    stored_value_bonus_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    points_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    discount_fen: Mapped[int] = mapped_column(BigInteger, default=0)  # the member's benefits
    refunded_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    response: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OrderLine(TenantScoped, Base):
    __tablename__ = "order_lines"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "order_id"], ["orders.tenant_id", "orders.id"]),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_fen: Mapped[int] = mapped_column(BigInteger)
    paid_fen: Mapped[int] = mapped_column(BigInteger)
    # The pricing benefit the till applied to the line (会员价, 会员日) and what it took off.
    benefit_code: Mapped[str] = mapped_column(String(64), default="")
    discount_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    points_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_quantity: Mapped[int] = mapped_column(Integer, default=0)
    refunded_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    points_reversed: Mapped[int] = mapped_column(BigInteger, default=0)


class Refund(TenantOwned, Base):
    __tablename__ = "refunds"
    __table_args__ = (
        UniqueConstraint("tenant_id", "order_id", "external_id"),
        ForeignKeyConstraint(["tenant_id", "order_id"], ["orders.tenant_id", "orders.id"]),
        Index("ix_refunds_created", "tenant_id", "created_at"),  # the listing, by day
    )

    order_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    external_id: Mapped[str] = mapped_column(String(100))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    points_reversed: Mapped[int] = mapped_column(BigInteger)
    points_returned: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
