"""The plugin's tables, tenant-owned with row-level security (see the migration).

* ``consultants``: a parenting consultant (育儿顾问), nutritionist or lactation specialist
  at a store, with weekly availability; the row is the lock every booking with them takes.
* ``consultant_exceptions``: a day a consultant is away (or works other hours).
* ``consultations``: a member's booking with a consultant: ``booked``, ``cancelled``,
  ``completed`` or ``no_show``; notes are personal data (sealed) and shown to HQ only.
* ``member_advisers``: the consultant bound to a member as their adviser.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, Index, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.plugins.api import Base, TenantOwned, utcnow


class Consultant(TenantOwned, Base):
    __tablename__ = "consultants"
    __table_args__ = (UniqueConstraint("tenant_id", "code"),)

    code: Mapped[str] = mapped_column(String(64))
    store_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(24))
    # [{"weekday": 1-7, "start": "09:00", "end": "12:00"}, ...] in the chain's time zone
    weekly: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    slot_minutes: Mapped[int] = mapped_column(Integer, default=30)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class ConsultantException(TenantOwned, Base):
    __tablename__ = "consultant_exceptions"
    __table_args__ = (UniqueConstraint("tenant_id", "consultant_id", "day"),)

    consultant_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    day: Mapped[date] = mapped_column(Date)
    # [] for away all day; otherwise the day's own hours, like ``weekly`` without weekday
    hours: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class Consultation(TenantOwned, Base):
    __tablename__ = "consultations"
    __table_args__ = (
        UniqueConstraint("tenant_id", "request_key"),
        Index("ix_consultations_consultant", "tenant_id", "consultant_id", "starts_at"),
        Index("ix_consultations_member", "tenant_id", "member_id", "starts_at"),
    )

    request_key: Mapped[str] = mapped_column(String(100))
    consultant_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    store_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    member_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    starts_at: Mapped[datetime] = mapped_column()
    minutes: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="booked")
    fee_fen: Mapped[int] = mapped_column(Integer, default=0)
    benefit_use_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    notes_enc: Mapped[str | None] = mapped_column(Text, default=None)
    reminded_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class MemberAdviser(TenantOwned, Base):
    __tablename__ = "member_advisers"
    __table_args__ = (UniqueConstraint("tenant_id", "member_id"),)

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    consultant_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    since: Mapped[datetime] = mapped_column(default=utcnow)
