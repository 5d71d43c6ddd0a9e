"""The one idempotency key table: every retried write that matters is answered from here.

A row is claimed in the same transaction as the effect it guards and under the same lock
(the member's points account, or the order row for a refund), so a concurrent retry either
waits and then replays the stored answer or, when the first attempt rolled back, runs itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.db.base import Base, TenantScoped, utcnow


class IdempotencyKey(TenantScoped, Base):
    __tablename__ = "idempotency_keys"

    # Whose keys: ``order`` and ``refund`` (natural keys: the till's receipt numbers) or
    # ``request`` (keys a client chose for holds, adjustments, transfers, bonus growth: one
    # namespace, so a key reused for another kind of request is a conflict, not a second
    # effect).
    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    # SHA-256 of the canonical request: the same key with another request is a conflict.
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
