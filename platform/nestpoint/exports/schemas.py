"""API shapes of exports: the request, the job and its progress."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nestpoint.schemas import Strict
from nestpoint.text import required

Kind = Literal["members", "children", "points_ledger", "orders", "segment"]
Format = Literal["csv", "xlsx"]
# Every kind of job: the tables above, and one member's data (POST /members/{id}/data-exports).
JobKind = Literal["members", "children", "points_ledger", "orders", "member_data", "segment"]
JobFormat = Literal["csv", "xlsx", "json"]
Status = Literal["queued", "running", "done", "failed"]


class ExportIn(Strict):
    """Export one kind of data to a file; idempotent by ``idempotency_key`` (the same key
    answers the same job)."""

    kind: Kind
    format: Format = "csv"
    idempotency_key: Annotated[str, required(120)]
    segment_code: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")] | None = Field(
        default=None,
        description="For kind `segment` (and only then): the saved segment whose members "
        "are exported, as the segment is when the job runs.",
    )

    @model_validator(mode="after")
    def _segment_code_with_segment(self) -> ExportIn:
        if (self.kind == "segment") != (self.segment_code is not None):
            raise ValueError("segment_code is given with kind `segment`, and only then")
        return self


class ExportRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: JobKind
    format: JobFormat
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
    member_id: uuid.UUID | None = Field(
        default=None, description="Whose data a `member_data` export holds (else null)."
    )
    reason: str | None = Field(
        default=None, description="Why a `member_data` export was requested (else null)."
    )
    segment_code: str | None = Field(
        default=None, description="The segment a `segment` export holds (else null)."
    )


class MemberDataExportIn(Strict):
    """A copy of one member's data as a JSON file (right of access and copy, PIPL art. 45);
    idempotent by ``idempotency_key``."""

    reason: Annotated[str, required(500)] = Field(
        description="Why: the request it answers, e.g. `PIPL access request #123` (audited)."
    )
    idempotency_key: Annotated[str, required(120)]


class ExportList(BaseModel):
    items: list[ExportRead]
    next_cursor: str | None = None
