"""The plugin's own table: a tenant-owned row per celebrated tier upgrade."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.plugins.api import Base, TenantOwned, utcnow


class TierCelebration(TenantOwned, Base):
    """``tenant_id`` leads the key (from ``TenantOwned``); one row per event (idempotent)."""

    __tablename__ = "example_tier_celebrations"
    __table_args__ = (UniqueConstraint("tenant_id", "event_id"),)

    event_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    member_id: Mapped[str] = mapped_column(String(100))
    store_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    from_tier: Mapped[str | None] = mapped_column(String(50), default=None)
    to_tier: Mapped[str] = mapped_column(String(50))
    message: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
