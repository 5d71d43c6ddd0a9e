"""Growth ledger and tier history (both append-only for the application role)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKeyConstraint, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.db.base import Base, TenantOwned, utcnow


class GrowthEntry(TenantOwned, Base):
    """Growth value earned (spend, in yuan) or given (activities); refunds subtract."""

    __tablename__ = "growth_entries"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        Index("ix_growth_entries_member", "tenant_id", "member_id", "occurred_at"),
    )

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    amount: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(16))  # order | refund | activity | merge
    cause_id: Mapped[str] = mapped_column(String(100))
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)


class TierChange(TenantOwned, Base):
    """One tier change with its reason; ``run_id`` groups an evaluation's changes."""

    __tablename__ = "tier_changes"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        Index("ix_tier_changes_member", "tenant_id", "member_id", "changed_at"),
        Index("ix_tier_changes_run", "tenant_id", "run_id"),
        # The benefits' 5-minute sync reads the changes since its last run.
        Index("ix_tier_changes_time", "tenant_id", "changed_at"),
    )

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    from_tier: Mapped[str | None] = mapped_column(String(32), default=None)
    to_tier: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(
        String(32)
    )  # join | upgrade | evaluation | merge | tier_removed
    growth_value: Mapped[int] = mapped_column(BigInteger)
    run_id: Mapped[str] = mapped_column(String(64), default="")
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
