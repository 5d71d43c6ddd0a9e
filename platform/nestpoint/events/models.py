"""The outbox: one row per domain event, written in the same transaction as the change."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.db.base import Base, TenantOwned, utcnow


class OutboxEvent(TenantOwned, Base):
    """A domain event awaiting (or past) delivery.

    ``id`` is the event's unique id: consumers deduplicate on it, because delivery is at
    least once. ``published_at`` is set once every consumer has taken the event; until then
    the relay retries with exponential back-off (``attempts``, ``next_attempt_at``).
    """

    __tablename__ = "outbox_events"
    __table_args__ = (
        Index("ix_outbox_events_pending", "tenant_id", "published_at", "next_attempt_at"),
        # The relay claims and the listing pages in this order (migration 0009).
        Index("ix_outbox_events_tenant_id_occurred_at_id", "tenant_id", "occurred_at", "id"),
    )

    type: Mapped[str] = mapped_column(String(100))
    store_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    subject_type: Mapped[str] = mapped_column(String(50))
    subject_id: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]]
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
