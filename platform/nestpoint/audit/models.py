"""Audit entries are append-only: the application role may insert and read, never change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.db.base import Base, TenantOwned, utcnow


class AuditEntry(TenantOwned, Base):
    __tablename__ = "audit_entries"
    __table_args__ = (Index("ix_audit_entries_tenant_id_occurred_at", "tenant_id", "occurred_at"),)

    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str] = mapped_column(String(100), default="")
    action: Mapped[str] = mapped_column(String(100))
    subject_type: Mapped[str] = mapped_column(String(50))
    subject_id: Mapped[str] = mapped_column(String(100))
    changes: Mapped[dict[str, Any]]
    request_id: Mapped[str] = mapped_column(String(64), default="")
