"""Table of saved segments: a chain's named rule trees (``segments.rules``).

A segment stores its rule, not its members: who is in it is computed each time it is read,
counted or exported. ``tenant_id`` leads every key; RLS on PostgreSQL.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Date, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.db.base import Base, TenantOwned, TenantScoped, utcnow


class Segment(TenantOwned, Base):
    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("tenant_id", "code"),)

    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    rule: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class MemberSegment(TenantScoped, Base):
    """A member's built-in segments as of ``computed_on`` (the chain's local date of the
    last recomputation, ``segments.builtin``): RFM values, scores and group, value circle
    and lifecycle stage. One row per active member; rewritten by each run."""

    __tablename__ = "member_segments"

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    recency_days: Mapped[int | None] = mapped_column(Integer, default=None)  # never: None
    frequency: Mapped[int] = mapped_column(Integer, default=0)
    monetary_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    r_score: Mapped[str] = mapped_column(String(4))  # "high" / "low"
    f_score: Mapped[str] = mapped_column(String(4))
    m_score: Mapped[str] = mapped_column(String(4))
    rfm_group: Mapped[str] = mapped_column(String(32))
    value_circle: Mapped[str] = mapped_column(String(32))
    lifecycle: Mapped[str] = mapped_column(String(32))
    computed_on: Mapped[date] = mapped_column(Date)


class SegmentThresholdsRow(TenantScoped, Base):
    """The chain's thresholds of the built-in segments (``builtin.Thresholds``), one row per
    tenant; none means the defaults."""

    __tablename__ = "segment_thresholds"

    thresholds: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
