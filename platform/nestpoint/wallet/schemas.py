"""API shapes of stored value (储值)."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nestpoint.limits import MAX_FEN
from nestpoint.payments.schemas import PaymentMethodId
from nestpoint.points.schemas import Key
from nestpoint.schemas import Strict
from nestpoint.tenancy.schemas import StoreCode
from nestpoint.text import required
from nestpoint.wallet.models import Tender, TopupStatus, WalletCause, WalletEntryKind

MAX_BONUS_TIERS = 20
PositiveFen = Annotated[int, Field(gt=0, le=MAX_FEN)]
SignedFen = Annotated[int, Field(ge=-MAX_FEN, le=MAX_FEN)]


class BonusTier(Strict):
    """Top up at least ``threshold_fen`` at once and get ``bonus_fen`` (充1000送100)."""

    threshold_fen: PositiveFen
    bonus_fen: PositiveFen


class WalletRules(Strict):
    """A chain's stored-value rules. The highest tier a top-up reaches gives its bonus
    (one tier, not one per multiple); no tiers: no bonus."""

    bonus_tiers: list[BonusTier] = Field(default_factory=list, max_length=MAX_BONUS_TIERS)
    bonus_valid_days: int | None = Field(
        None,
        ge=1,
        le=3660,
        description="Days a top-up's bonus can be spent, from the top-up (an hourly job takes "
        "back what is left, with an `expire` entry). None: bonus never expires. Principal "
        "never expires.",
    )

    @field_validator("bonus_tiers")
    @classmethod
    def _rising(cls, tiers: list[BonusTier]) -> list[BonusTier]:
        for before, after in itertools.pairwise(tiers):
            if after.threshold_fen <= before.threshold_fen:
                raise ValueError("thresholds must rise strictly")
        return tiers


class TopupIn(Strict):
    amount_fen: PositiveFen = Field(description="What the member paid in, in fen.")
    store_code: StoreCode | None = Field(
        None, description="Required with an HQ key; a store key's own store otherwise."
    )
    tender: Tender = Field(
        "cash",
        description="How it was paid: `cash` at the till (credited at once), or `stripe` "
        "with `payment_method` (credited when the payment succeeds).",
    )
    payment_method: PaymentMethodId | None = Field(
        None, description="With `stripe`: the Stripe payment method the member's device made."
    )
    idempotency_key: Key


class TopupResult(BaseModel):
    entry_id: uuid.UUID = Field(description="The top-up's id (its `topup` entry's, once credited).")
    member_id: uuid.UUID
    store_id: uuid.UUID
    tender: Tender
    status: TopupStatus = Field(
        "credited",
        description="`credited`: in the balance now (cash); `pending`: credited when the "
        "Stripe payment succeeds (`GET .../wallet/topups/{id}`), or `failed`.",
    )
    payment_id: uuid.UUID | None = Field(None, description="The Stripe payment, if any.")
    amount_fen: int = Field(description="Principal paid in.")
    bonus_fen: int = Field(description="Bonus the chain's rules gave for it.")
    principal_fen: int = Field(description="The member's principal balance after.")
    bonus_balance_fen: int = Field(description="The member's bonus balance after.")
    created_at: datetime


class TopupRead(BaseModel):
    """A top-up paid through Stripe and its state."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    member_id: uuid.UUID
    store_id: uuid.UUID
    amount_fen: int
    bonus_fen: int = Field(description="The bonus promised when it was asked for.")
    status: TopupStatus
    payment_id: uuid.UUID | None
    created_at: datetime
    settled_at: datetime | None


class WalletAdjustmentIn(Strict):
    principal_fen: SignedFen = Field(0, description="Positive credits, negative debits.")
    bonus_fen: SignedFen = Field(0, description="Positive credits, negative debits.")
    reason: Annotated[str, required(200)]
    store_code: StoreCode | None = Field(None, description="The store a credit is booked at.")
    idempotency_key: Key


class WalletRead(BaseModel):
    member_id: uuid.UUID
    principal_fen: int = Field(description="Money the member paid in and has not spent.")
    bonus_fen: int = Field(description="Bonus left: spent after the principal, never refunded.")
    balance_fen: int = Field(description="Both together: what the member can pay with.")


class WalletEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    member_id: uuid.UUID
    kind: WalletEntryKind
    principal_fen: int
    bonus_fen: int
    principal_after: int
    bonus_after: int
    cause_type: WalletCause
    cause_id: str
    store_id: uuid.UUID | None
    tender: Tender | None
    reason: str
    actor: str
    created_at: datetime


class WalletEntryList(BaseModel):
    items: list[WalletEntryRead]
    next_cursor: str | None


class StoreLiability(BaseModel):
    store_id: uuid.UUID | None = Field(description="None: credited by HQ without a store.")
    store_code: str | None
    principal_fen: int
    bonus_fen: int


class Liability(BaseModel):
    """What the chain owes its members in stored value, by the store it came in at."""

    principal_fen: int = Field(description="Members' own money: a liability in the books.")
    bonus_fen: int = Field(description="Bonus the chain gave: owed only as goods, never cash.")
    members: int = Field(description="Members with a balance.")
    stores: list[StoreLiability]
