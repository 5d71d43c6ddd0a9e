"""The plugin's configuration, and the shapes of its routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

BookingStatus = Literal["booked", "waitlisted", "cancelled", "attended"]
Stage = Literal["pregnant", "birth_overdue", "0-6m", "6-12m", "1-3y", "3-6y", "older"]
Key = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{8,100}$")]
# A member's own key: ``member_key`` makes it ``me.<member id>.<key>``, 100 at most.
MemberKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{8,64}$")]
Code = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Text = Annotated[str, StringConstraints(max_length=100, pattern=r"^[^\x00]*$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClassesConfig(Strict):
    """Every field has a default: the plugin works as soon as it is enabled."""

    tier_early_hours: dict[Annotated[str, StringConstraints(max_length=32)], int] = Field(
        default_factory=dict,
        max_length=20,
        description="优先名额: hours before a session opens that a tier may book, {gold: 24}.",
    )
    free_benefits: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=lambda: ["parent-child-class"],
        max_length=10,
        description="Catalog codes whose use makes a place free, tried in this order.",
    )
    attendance_points: int = Field(0, ge=0, le=100_000, description="Points for attending.")
    waitlist: bool = Field(True, description="A full session takes a waitlist.")


class SessionIn(Strict):
    title: Text
    room: Text = ""
    starts_at: datetime
    minutes: int = Field(60, ge=10, le=480)
    capacity: int = Field(ge=1, le=500)
    stages: list[Stage] = Field(default_factory=list, max_length=7)
    price_fen: int = Field(0, ge=0, le=10_000_000)
    opens_at: datetime = Field(description="When booking opens for the entry tier.")

    @model_validator(mode="after")
    def _opens_before_it_starts(self) -> SessionIn:
        if self.starts_at.tzinfo is None or self.opens_at.tzinfo is None:
            raise ValueError("times need an offset (2026-12-01T10:00:00+08:00)")
        if self.opens_at >= self.starts_at:
            raise ValueError("opens_at must be before starts_at")
        return self


class SessionRead(BaseModel):
    code: str
    store_id: uuid.UUID
    title: str
    room: str
    starts_at: datetime
    minutes: int
    capacity: int
    stages: list[str]
    price_fen: int
    opens_at: datetime
    status: str
    booked: int
    waitlisted: int


class BookingIn(Strict):
    idempotency_key: Key
    member_id: uuid.UUID
    child_id: uuid.UUID


class BookingRead(BaseModel):
    id: uuid.UUID
    session_code: str
    member_id: uuid.UUID
    child_id: uuid.UUID
    status: BookingStatus
    waitlist_position: int | None = Field(None, description="1 = next to get a place.")
    fee_fen: int
    free_by_benefit: bool
    created_at: datetime


# ---- the member API (``/api/v1/me/plugins/classes/``): the member of the token


class MySessionRead(SessionRead):
    """A session as a member sees it: with when booking opens for them (their tier's)."""

    opens_for_me_at: datetime = Field(
        description="When booking opens for this member: `opens_at`, earlier for their tier."
    )


class MyBookingIn(Strict):
    """A member books a place for one of their children."""

    idempotency_key: MemberKey = Field(
        description="The client's key for this booking (8-64 of `A-Z a-z 0-9 . _ : -`): a "
        "retry with it answers the first booking; with another body it is a 409."
    )
    child_id: uuid.UUID = Field(description="One of the member's children (`GET /api/v1/me`).")


class MyClassBooking(BaseModel):
    """One of the member's class bookings, with its session."""

    id: uuid.UUID
    session_code: str
    title: str
    room: str
    store_id: uuid.UUID
    starts_at: datetime
    minutes: int
    child_id: uuid.UUID
    status: BookingStatus
    waitlist_position: int | None = Field(None, description="1 = next to get a place.")
    fee_fen: int = Field(description="What the member pays at the store (0: free).")
    free_by_benefit: bool
    created_at: datetime
