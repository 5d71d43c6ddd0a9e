"""The plugin's tables, tenant-owned with row-level security (see the migration).

* ``class_sessions``: one session of a course at a store (room, time, capacity, the
  children's stages it is for, price or free by benefit, when booking opens). Its row is
  the lock every booking and cancellation of the session takes.
* ``class_bookings``: a member's booking for one child: ``booked``, ``waitlisted`` (in
  order of booking), ``cancelled`` or ``attended``.
* ``class_child_locks``: one row per child, made on first booking: the lock a booking
  takes first, so the same child is never booked into two overlapping sessions at once.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.plugins.api import Base, TenantOwned, utcnow


class ClassSession(TenantOwned, Base):
    __tablename__ = "class_sessions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "code"),
        Index("ix_class_sessions_store_time", "tenant_id", "store_id", "starts_at"),
    )

    code: Mapped[str] = mapped_column(String(64))
    store_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    title: Mapped[str] = mapped_column(String(100))
    room: Mapped[str] = mapped_column(String(50), default="")
    starts_at: Mapped[datetime] = mapped_column()
    minutes: Mapped[int] = mapped_column(Integer, default=60)
    capacity: Mapped[int] = mapped_column(Integer)
    stages: Mapped[list[str]] = mapped_column(default=list)  # empty: every stage
    price_fen: Mapped[int] = mapped_column(Integer, default=0)
    opens_at: Mapped[datetime] = mapped_column()  # for the entry tier; higher tiers earlier
    status: Mapped[str] = mapped_column(String(16), default="scheduled")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ClassBooking(TenantOwned, Base):
    __tablename__ = "class_bookings"
    __table_args__ = (
        UniqueConstraint("tenant_id", "request_key"),
        Index("ix_class_bookings_session", "tenant_id", "session_id", "status", "created_at"),
        Index("ix_class_bookings_child", "tenant_id", "child_id", "status"),
    )

    request_key: Mapped[str] = mapped_column(String(100))  # the client's idempotency key
    session_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    member_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    child_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    status: Mapped[str] = mapped_column(String(16))
    fee_fen: Mapped[int] = mapped_column(Integer, default=0)
    benefit_use_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ClassChildLock(TenantOwned, Base):
    __tablename__ = "class_child_locks"
    __table_args__ = (UniqueConstraint("tenant_id", "child_id"),)

    child_id: Mapped[uuid.UUID] = mapped_column(Uuid())
