"""API shapes of paid membership (付费会员)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, model_validator

from nestpoint.benefits.schemas import Code
from nestpoint.limits import MAX_FEN
from nestpoint.membership.models import (
    ChargeKind,
    ChargeStatus,
    MembershipStatus,
    PlanPeriod,
    RefundRule,
)
from nestpoint.points.schemas import Key
from nestpoint.schemas import Strict
from nestpoint.tenancy.schemas import StoreCode
from nestpoint.text import required

MAX_PLAN_BENEFITS = 50
MAX_TRIAL_DAYS = 366
MAX_PAID_PLANS = 50
PriceFen = Annotated[int, Field(ge=0, le=MAX_FEN)]
# A Stripe payment method id (pm_...), as the mini-program or the till's terminal made it.
PaymentMethod = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{3,255}$")]


class PaidPlanSpec(Strict):
    """A paid card HQ sells (the code is in the path)."""

    name: Annotated[str, required(100)]
    period: PlanPeriod = Field(description="`year`, `month`, or `trial` (of `trial_days`).")
    trial_days: int | None = Field(
        None, ge=1, le=MAX_TRIAL_DAYS, description="Required with period `trial`, else absent."
    )
    price_fen: PriceFen = Field(description="What one period costs, in fen (0: a free trial).")
    benefits: list[Code] = Field(
        default_factory=list,
        max_length=MAX_PLAN_BENEFITS,
        description=(
            "Catalog benefit codes the card grants for its period (docs/benefits.md). Its earn "
            'multiplier is a `core.points_multiplier` benefit with `occasion = "while_held"` '
            "among them."
        ),
    )
    stacks_with_tier: bool = Field(
        True,
        description=(
            "true: the card's benefits are added to the growth tier's (both apply); false: a "
            "benefit the member's tier already gives is not given again by the card (the "
            "better of the two: docs/paid-membership.md)."
        ),
    )
    retain_tier: bool = Field(
        True, description="保级: while the card is held the tier evaluation never downgrades."
    )
    active: bool = Field(True, description="An inactive plan is no longer sold or upgraded to.")

    @model_validator(mode="after")
    def _trial(self) -> PaidPlanSpec:
        if self.period == "trial" and self.trial_days is None:
            raise ValueError("trial_days is required with period 'trial'")
        if self.period != "trial" and self.trial_days is not None:
            raise ValueError("trial_days is only for period 'trial'")
        if len(set(self.benefits)) != len(self.benefits):
            raise ValueError("benefits must not repeat a code")
        return self


class PaidPlanManifest(PaidPlanSpec):
    """A paid plan in a tenant manifest (``[[paid_plans]]``)."""

    code: Code


class PaidPlanRead(PaidPlanSpec):
    id: uuid.UUID
    code: str
    earn_multiplier_percent: int = Field(
        description="The while-held points multiplier the card's benefits carry (100: none)."
    )
    updated_at: datetime


class PaidMembershipSettings(Strict):
    """A chain's paid-membership rules."""

    grace_days: int = Field(7, ge=0, le=90, description="Benefits kept after a failed renewal.")
    reminder_days: int = Field(7, ge=0, le=60, description="Renewal reminder, days before the end.")
    retry_days: int = Field(1, ge=1, le=30, description="Days between renewal attempts in grace.")
    refund_rule: RefundRule = Field(
        "pro_rata",
        description=(
            "Cancelling now refunds: `none`; `pro_rata` (the unused whole days' share, rounded "
            "down); `full_within` (everything within `full_refund_days` of payment, else none)."
        ),
    )
    full_refund_days: int = Field(7, ge=0, le=366)


class PurchaseIn(Strict):
    plan: Code = Field(description="The plan's code.")
    payment_method: PaymentMethod = Field(
        description="The Stripe payment method (pm_...) charged now and saved for renewals."
    )
    store_code: StoreCode | None = Field(
        None,
        description=(
            "The store credited with the sale: a store key's own (it may only name it); an HQ "
            "key names one, or none for a sale in the mini-program."
        ),
    )
    auto_renew: bool = Field(True, description="Renew with the saved payment method at the end.")
    idempotency_key: Key


class UpgradeIn(Strict):
    plan: Code = Field(description="The dearer plan (same period) to move to now.")
    idempotency_key: Key


class CancelIn(Strict):
    when: Literal["period_end", "now"] = Field(
        description=(
            "`period_end`: turn auto-renewal off, the card runs to its end; `now`: end it now, "
            "refunded by the chain's rule."
        )
    )
    reason: Annotated[str, required(200)] = "member request"
    idempotency_key: Key


class AutoRenewIn(Strict):
    auto_renew: bool
    payment_method: PaymentMethod | None = Field(None, description="A new saved payment method.")


class ChargeRead(BaseModel):
    id: uuid.UUID
    kind: ChargeKind
    plan_code: str
    amount_fen: int
    status: ChargeStatus
    payment_id: uuid.UUID | None
    refunded_fen: int
    period_start: datetime | None
    period_end: datetime | None
    created_at: datetime


class Savings(BaseModel):
    """What the card gave the member so far (docs/paid-membership.md#savings)."""

    total_fen: int = Field(description="The sum of the three parts below.")
    discounts_fen: int = Field(description="Order discounts the card's benefits took off.")
    benefits_fen: int = Field(description="Gifts, vouchers and deliveries used, at their value.")
    extra_points: int = Field(description="Points the card's multiplier added to orders.")
    extra_points_fen: int = Field(description="Those points at the chain's cash value.")


class PaidMembershipRead(BaseModel):
    id: uuid.UUID
    member_id: uuid.UUID
    plan_code: str
    plan_name: str
    status: MembershipStatus
    auto_renew: bool
    store_id: uuid.UUID | None
    store_code: str | None
    period_start: datetime | None
    period_end: datetime | None
    grace_until: datetime | None
    created_at: datetime
    activated_at: datetime | None
    ended_at: datetime | None
    charges: list[ChargeRead]
    savings: Savings


class PaidMembershipList(BaseModel):
    items: list[PaidMembershipRead]


class CancelResult(BaseModel):
    membership: PaidMembershipRead
    refund_fen: int = Field(description="What the chain's rule refunds (0: nothing).")


class StoreSales(BaseModel):
    store_id: uuid.UUID | None = Field(description="None: sold in the mini-program.")
    store_code: str | None
    cards_sold: int = Field(description="Purchases whose payment succeeded.")
    revenue_fen: int = Field(description="Their purchases' and upgrades' payments, less refunds.")


class SalesReport(BaseModel):
    stores: list[StoreSales]


class PaidPlanList(BaseModel):
    items: list[PaidPlanRead]
