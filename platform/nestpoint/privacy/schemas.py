"""API shapes of members' rights: an erasure, the retention policy and its runs."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nestpoint.schemas import Strict
from nestpoint.text import required

Years = Annotated[int, Field(ge=1, le=100)]


class ErasureIn(Strict):
    """Erase one member's personal data (PIPL art. 47). Idempotent: asking again answers
    with the first erasure."""

    reason: Annotated[str, required(500)] = Field(
        description="Why: the request it answers, e.g. `PIPL deletion request #123` (audited)."
    )


class ErasureRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    member_id: uuid.UUID
    source: Literal["request", "retention"]
    reason: str
    requested_by: str = Field(description="The key or process that asked.")
    erased_at: datetime
    summary: dict[str, int] = Field(
        description="What went: children, identities, consents, messages cleared, stored "
        "exports deleted, members merged into this one."
    )
    plugins: dict[str, Any] = Field(description="What each plugin erased, once it answered.")
    plugins_erased_at: datetime | None = Field(
        description="When every plugin had answered (null: still being asked)."
    )


class ErasureList(BaseModel):
    items: list[ErasureRead]
    next_cursor: str | None = None


class PolicyIn(Strict):
    """The chain's retention rules; null switches a rule off."""

    inactive_member_years: Years | None = Field(
        default=None,
        description="Erase members with no order since enrolment or their last order this "
        "many years ago.",
    )
    child_data_age_years: Years | None = Field(
        default=None, description="Erase a child's data once the child is this many years old."
    )


class PolicyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    inactive_member_years: int | None
    child_data_age_years: int | None


class RetentionPreview(BaseModel):
    """What the rules would erase if they ran today."""

    members: int
    children: int


class RetentionRunRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    run_on: date = Field(description="The chain's local date of the run.")
    trigger: Literal["daily", "api", "cli"]
    policy: dict[str, int | None]
    members_erased: int
    children_erased: int
    member_ids: list[str] = Field(description="The members erased (pseudonymous ids).")
    started_at: datetime
    finished_at: datetime | None = Field(description="Null while the run is going on.")


class RetentionRunList(BaseModel):
    items: list[RetentionRunRead]
    next_cursor: str | None = None
