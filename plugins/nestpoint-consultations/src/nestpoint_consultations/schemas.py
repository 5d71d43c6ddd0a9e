"""The plugin's configuration, and the shapes of its routes."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

Kind = Literal["parenting", "nutritionist", "lactation", "other"]
Status = Literal["booked", "cancelled", "completed", "no_show"]
Key = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{8,100}$")]
# A member's own key: ``member_key`` makes it ``me.<member id>.<key>``, 100 at most.
MemberKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{8,64}$")]
Code = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Text = Annotated[str, StringConstraints(max_length=100, pattern=r"^[^\x00]*$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConsultationsConfig(Strict):
    """Every field has a default: the plugin works as soon as it is enabled."""

    free_benefits: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=lambda: ["parenting-consultation"],
        max_length=10,
        description="Catalog codes whose use makes a consultation free, tried in this order.",
    )
    without_benefit: Literal["pay", "refuse"] = Field(
        "pay", description="A member with no free consultation left pays, or is refused."
    )
    price_fen: int = Field(9900, ge=0, le=10_000_000)
    cutoff_hours: int = Field(
        4, ge=0, le=168, description="Booking, rescheduling or cancelling closes this early."
    )
    max_days_ahead: int = Field(30, ge=1, le=180)
    no_show_limit: int = Field(
        2, ge=0, le=20, description="No-shows in 90 days after which free booking stops (0: off)."
    )


class Hours(Strict):
    weekday: int | None = Field(None, ge=1, le=7, description="ISO weekday; none in exceptions.")
    start: time
    end: time

    @model_validator(mode="after")
    def _in_order(self) -> Hours:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class ConsultantIn(Strict):
    name: Text
    kind: Kind = "parenting"
    weekly: list[Hours] = Field(default_factory=list, max_length=50)
    slot_minutes: int = Field(30, ge=10, le=240)
    active: bool = True


class ConsultantRead(ConsultantIn):
    code: str
    store_id: uuid.UUID


class ExceptionIn(Strict):
    hours: list[Hours] = Field(default_factory=list, max_length=10, description="[]: away.")


class Slot(BaseModel):
    starts_at: datetime
    minutes: int


class BookingIn(Strict):
    idempotency_key: Key
    member_id: uuid.UUID
    starts_at: datetime

    @model_validator(mode="after")
    def _aware(self) -> BookingIn:
        if self.starts_at.tzinfo is None:
            raise ValueError("starts_at needs an offset (2026-12-01T10:00:00+08:00)")
        return self


class RescheduleIn(Strict):
    starts_at: datetime


class OutcomeIn(Strict):
    status: Literal["completed", "no_show"]
    notes: str = Field("", max_length=2000, pattern=r"^[^\x00]*$")


class ConsultationRead(BaseModel):
    id: uuid.UUID
    consultant_code: str
    member_id: uuid.UUID
    starts_at: datetime
    minutes: int
    status: Status
    fee_fen: int
    free_by_benefit: bool
    notes: str | None = Field(None, description="HQ keys only (sensitive).")
    created_at: datetime


class AdviserIn(Strict):
    consultant_code: Code


class AdviserRead(BaseModel):
    member_id: uuid.UUID
    consultant_code: str
    consultant_name: str
    since: datetime


class Day(BaseModel):
    day: date
    slots: list[Slot]


# ---- the member API (``/api/v1/me/plugins/consultations/``): the member of the token


class MyBookingIn(Strict):
    """A member books a consultant's slot for themselves."""

    idempotency_key: MemberKey = Field(
        description="The client's key for this booking (8-64 of `A-Z a-z 0-9 . _ : -`): a "
        "retry with it answers the first booking; with another body it is a 409."
    )
    starts_at: AwareDatetime = Field(
        description="One of the consultant's free slots, with an offset "
        "(`2026-12-01T10:00:00+08:00`)."
    )


class MyConsultation(BaseModel):
    """One of the member's consultations, as the member sees it (no consultant's notes)."""

    id: uuid.UUID
    consultant_code: str
    consultant_name: str
    consultant_kind: Kind
    store_id: uuid.UUID
    starts_at: datetime
    minutes: int
    status: Status
    fee_fen: int = Field(description="What the member pays at the store (0: free).")
    free_by_benefit: bool
    created_at: datetime
