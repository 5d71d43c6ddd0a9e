"""API shapes of exports: the request, the job and its progress."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from nestpoint.schemas import Strict
from nestpoint.text import required

Kind = Literal["members", "children", "points_ledger", "orders"]
Format = Literal["csv", "xlsx"]
Status = Literal["queued", "running", "done", "failed"]


class ExportIn(Strict):
    """Export one kind of data to a file; idempotent by ``idempotency_key`` (the same key
    answers the same job)."""

    kind: Kind
    format: Format = "csv"
    idempotency_key: Annotated[str, required(120)]


class ExportRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: Kind
    format: Format
    status: Status
    masked: bool = Field(description="Personal data masked (the requester lacked members:pii).")
    requested_by: str
    rows_total: int = Field(description="Rows counted when the job started.")
    rows_done: int = Field(description="Rows written so far (progress).")
    size_bytes: int
    sha256: str | None = Field(description="SHA-256 of the file, once done.")
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ExportList(BaseModel):
    items: list[ExportRead]
    next_cursor: str | None = None
