"""API shapes (and the manifest's ``[settlement]``) of franchise settlement."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from nestpoint.benefits.schemas import Code
from nestpoint.limits import MAX_FEN
from nestpoint.points.schemas import Key
from nestpoint.schemas import Strict
from nestpoint.settlement.models import PeriodStatus

MAX_BENEFIT_FEES = 200
# A month of the chain's calendar: 2026-11. The path takes any text (a bad one is a 404 for
# a read, a 422 for a computation), so the pattern is the body's and the CLI's.
Month = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$")]
Fen = Annotated[int, Field(ge=0, le=MAX_FEN)]


class SettlementRules(Strict):
    """The chain's rule: what a point is worth between the stores and HQ, and what HQ pays
    a franchisee for a benefit use it fulfils."""

    point_value_fen: int = Field(
        1,
        ge=0,
        le=10_000,
        description="Fen one point is worth between a store and HQ (the issuing store funds "
        "its points at this value; the redeeming store is reimbursed at it). Default 1: "
        "the programme's default 100 points = 1 yuan.",
    )
    benefit_fee_fen: Fen = Field(
        0,
        description="Fen HQ pays a franchise store for each use of a benefit it fulfils, "
        "unless `benefit_fees` names the benefit. Default 0: benefits are not reimbursed.",
    )
    benefit_fees: dict[Code, Fen] = Field(
        default_factory=dict,
        max_length=MAX_BENEFIT_FEES,
        description="Fen per use of a given benefit (its catalog code), overriding "
        "`benefit_fee_fen`; 0 for a benefit HQ does not reimburse.",
    )


class CloseIn(Strict):
    idempotency_key: Key = Field(
        description="The client's key: a retry with it answers the first close again; the "
        "same key for another month is 409."
    )


class SettlementLineRead(BaseModel):
    """One store's (or HQ's) figures for a month. Points are signed: a refund's clawback
    makes `points_issued` smaller, a refund's returned points `points_redeemed` smaller.
    Fen: `net_fen` is what the party receives (negative: pays)."""

    model_config = ConfigDict(from_attributes=True)

    month: str
    origin_month: str = Field(
        description="The month the figures come from: the period's own, or an earlier "
        "closed month whose ledger got an entry after it closed (carried here)."
    )
    store_id: uuid.UUID | None = Field(description="None: HQ (and points without a store).")
    store_code: str
    store_kind: str
    settles: bool = Field(description="A franchise store settles with HQ; direct stores are HQ's.")
    points_issued: int
    points_redeemed: int
    points_expired: int
    benefit_uses: int
    issued_fen: int
    redeemed_fen: int
    expired_fen: int
    benefits_fen: int
    net_fen: int


class PeriodRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    month: str
    status: PeriodStatus
    starts_at: datetime
    ends_at: datetime
    point_value_fen: int
    computed_at: datetime
    closed_at: datetime | None
    closed_by: str


class PeriodList(BaseModel):
    items: list[PeriodRead]


class PeriodFigures(BaseModel):
    """A period and its lines (a store key: its own store's lines only)."""

    period: PeriodRead
    lines: list[SettlementLineRead]
