"""API shapes of the points context (and tier history, read with a member)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from nestpoint.limits import MAX_GROWTH_BONUS, MAX_POINTS, Points
from nestpoint.points.models import CauseType, EntryKind, HoldStatus
from nestpoint.schemas import Strict
from nestpoint.text import optional, required

Key = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{8,100}$")]


class BalancesRead(BaseModel):
    member_id: uuid.UUID
    balance: int = Field(description="Ledger balance: available + pending - debt.")
    available: int = Field(description="Spendable now.")
    pending: int = Field(description="积分冻结: earned, spendable after the pending period.")
    held: int = Field(description="Set aside by open holds at a till.")
    debt: int = Field(description="Owed after a refund reversed points already spent.")
    expiring_soon: int
    expiring_before: datetime
    lifetime_earned: int


class EntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    member_id: uuid.UUID
    kind: EntryKind
    amount: int
    balance_after: int
    cause_type: CauseType
    cause_id: str
    line_no: int | None
    reason: str
    actor: str
    created_at: datetime


class EntryList(BaseModel):
    items: list[EntryRead]
    next_cursor: str | None


class AdjustmentIn(Strict):
    amount: int = Field(
        ge=-MAX_POINTS, le=MAX_POINTS, description="Positive credits, negative debits."
    )
    reason: Annotated[str, required(200)]
    idempotency_key: Key


class TransferIn(Strict):
    to_member_id: uuid.UUID
    amount: Points
    idempotency_key: Key


class GrowthIn(Strict):
    amount: int = Field(ge=1, le=MAX_GROWTH_BONUS, description="Bonus growth value (成长值).")
    reason: Annotated[str, required(200)]
    idempotency_key: Key


class GrowthRead(BaseModel):
    member_id: uuid.UUID
    growth_value: int
    tier_code: str | None
    upgraded_from: str | None


class HoldIn(Strict):
    member_id: uuid.UUID
    points: Points
    idempotency_key: Key | None = None
    order_ref: Annotated[str, optional(150)] | None = None


class HoldRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    member_id: uuid.UUID
    amount: int
    status: HoldStatus
    order_ref: str | None
    created_at: datetime
    expires_at: datetime
    resolved_at: datetime | None


class HoldSummary(HoldRead):
    """A hold in a listing: with the store it belongs to (None: made by HQ)."""

    store_id: uuid.UUID | None


class HoldList(BaseModel):
    items: list[HoldSummary]
    next_cursor: str | None


class TierChangeRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    from_tier: str | None
    to_tier: str
    reason: str
    growth_value: int
    changed_at: datetime


class TierChangeList(BaseModel):
    items: list[TierChangeRead]
    next_cursor: str | None
