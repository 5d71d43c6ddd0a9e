"""The plugin's tables, tenant-owned with row-level security (see the migration).

* ``delivery_requests``: one delivery of an order or a gift to a member's address (sealed
  with the core's keys), in a slot of a day, from a store; its current status.
* ``delivery_slots``: one row per store, day and slot, written when the first request for
  it is made: the lock a request takes before it counts the slot's requests, so two tills
  never overfill it. The count itself is derived (the active requests), never stored.
* ``delivery_status_changes``: the append-only history of every request's status.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import Boolean, Date, Index, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.plugins.api import Base, TenantOwned, utcnow


class DeliveryRequest(TenantOwned, Base):
    __tablename__ = "delivery_requests"
    __table_args__ = (
        UniqueConstraint("tenant_id", "request_key"),
        Index("ix_delivery_requests_queue", "tenant_id", "store_id", "slot_date", "status"),
    )

    request_key: Mapped[str] = mapped_column(String(100))  # the client's idempotency key
    store_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    member_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    order_ref: Mapped[str] = mapped_column(String(150), default="")
    address_enc: Mapped[str] = mapped_column(Text)
    slot_date: Mapped[date] = mapped_column(Date)
    slot: Mapped[str] = mapped_column(String(32))
    install_guidance: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), default="requested")
    fee_fen: Mapped[int] = mapped_column(Integer, default=0)
    benefit_use_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeliverySlot(TenantOwned, Base):
    __tablename__ = "delivery_slots"
    __table_args__ = (UniqueConstraint("tenant_id", "store_id", "slot_date", "slot"),)

    store_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    slot_date: Mapped[date] = mapped_column(Date)
    slot: Mapped[str] = mapped_column(String(32))


class DeliveryStatusChange(TenantOwned, Base):
    __tablename__ = "delivery_status_changes"
    __table_args__ = (Index("ix_delivery_status_changes_request", "tenant_id", "request_id"),)

    request_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    from_status: Mapped[str | None] = mapped_column(String(20), default=None)
    to_status: Mapped[str] = mapped_column(String(20))
    note: Mapped[str] = mapped_column(String(200), default="")
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
