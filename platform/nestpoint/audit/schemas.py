"""API shapes of the audit context."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class AuditEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    occurred_at: datetime
    actor_kind: str
    actor_id: str
    action: str
    subject_type: str
    subject_id: str
    changes: dict[str, Any]
    request_id: str


class AuditEntryList(BaseModel):
    items: list[AuditEntryRead]
    next_cursor: str | None
