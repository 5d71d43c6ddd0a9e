"""The plugin's configuration, and the shapes of its routes."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Status = Literal["requested", "scheduled", "out_for_delivery", "delivered", "failed", "cancelled"]
Key = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{8,100}$")]
SlotCode = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SlotConfig(Strict):
    code: SlotCode
    label: str = Field(max_length=50, description="What the member sees: 09:00-12:00.")
    capacity: int = Field(ge=0, le=10_000, description="Deliveries a store makes in it a day.")


DEFAULT_SLOTS = [
    SlotConfig(code="morning", label="09:00-12:00", capacity=20),
    SlotConfig(code="afternoon", label="14:00-18:00", capacity=20),
    SlotConfig(code="evening", label="18:00-21:00", capacity=10),
]


class DeliveryConfig(Strict):
    """Every field has a default: the plugin works as soon as it is enabled. A store's
    configuration overrides the chain's field by field (its own slots and cut-off)."""

    slots: list[SlotConfig] = Field(
        default_factory=lambda: list(DEFAULT_SLOTS), max_length=12, description="A day's slots."
    )
    cutoff: time = Field(
        time(18, 0), description="次日达: requested before this (chain's time), delivered tomorrow."
    )
    max_days_ahead: int = Field(14, ge=1, le=90, description="How far ahead a slot is booked.")
    fee_fen: int = Field(1500, ge=0, le=1_000_000, description="The fee without a free benefit.")
    free_benefits: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=lambda: ["free-delivery"],
        max_length=10,
        description="Catalog codes whose use waives the fee, tried in this order.",
    )

    @field_validator("slots")
    @classmethod
    def _unique_codes(cls, slots: list[SlotConfig]) -> list[SlotConfig]:
        codes = [s.code for s in slots]
        if len(codes) != len(set(codes)):
            raise ValueError("slot codes must be unique")
        return slots


class InstallOptions(Strict):
    """Options of the ``delivery.home_delivery`` benefit type."""

    install_guidance: bool = Field(True, description="安装指导: the courier sets it up.")


class DeliveryIn(Strict):
    idempotency_key: Key
    member_id: uuid.UUID
    order_ref: str = Field("", max_length=150, description="The order or gift delivered.")
    address: str = Field(min_length=5, max_length=300, pattern=r"^[^\x00]*$")
    slot_date: date
    slot: SlotCode
    install_guidance: bool = False


class DeliveryRead(BaseModel):
    id: uuid.UUID
    store_id: uuid.UUID
    member_id: uuid.UUID
    order_ref: str
    address: str
    slot_date: date
    slot: str
    install_guidance: bool
    status: Status
    fee_fen: int
    free_by_benefit: bool
    created_at: datetime


class StatusIn(Strict):
    status: Status
    note: str = Field("", max_length=200, pattern=r"^[^\x00]*$")


class SlotLoad(BaseModel):
    slot: str
    label: str
    capacity: int
    booked: int
    left: int


class DayLoad(BaseModel):
    slot_date: date
    bookable: bool = Field(description="Inside the window (after the cut-off, before max days).")
    slots: list[SlotLoad]
