"""Per-tenant programme configuration: one programme row and the tier ladder."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.db.base import Base, TenantOwned, utcnow


class LoyaltyProgram(TenantOwned, Base):
    """The tenant's points policy and earn rules (validated by ``loyalty.schemas``)."""

    __tablename__ = "loyalty_programs"
    __table_args__ = (UniqueConstraint("tenant_id"),)

    points_policy: Mapped[dict[str, Any]]
    earn_rules: Mapped[dict[str, Any]]
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TierDefinition(TenantOwned, Base):
    """One rung of the ladder. ``rank`` orders the ladder (0 = entry tier)."""

    __tablename__ = "tier_definitions"
    __table_args__ = (UniqueConstraint("tenant_id", "code"), UniqueConstraint("tenant_id", "rank"))

    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    rank: Mapped[int] = mapped_column(Integer)
    threshold: Mapped[int] = mapped_column(Integer)  # growth value (yuan over 12 months)
    earn_rate_percent: Mapped[int] = mapped_column(Integer)  # 100 = 1 point per yuan
    redeem_cap_percent: Mapped[int] = mapped_column(Integer)  # share of an order payable in points
    protection_days: Mapped[int] = mapped_column(Integer, default=90)
    benefits: Mapped[list[str]] = mapped_column(default=list)
