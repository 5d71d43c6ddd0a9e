"""API shapes of the events context."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class EventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    type: str
    store_id: uuid.UUID | None
    subject_type: str
    subject_id: str
    payload: dict[str, Any]
    occurred_at: datetime
    published_at: datetime | None
    attempts: int
    last_error: str | None


class EventList(BaseModel):
    items: list[EventRead]
    next_cursor: str | None
