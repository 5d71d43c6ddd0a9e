"""API and manifest shapes of the benefits context."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from nestpoint.benefits.models import (
    BundleTrigger,
    EntitlementStatus,
    OnLapse,
    Period,
    Source,
    UseKind,
)
from nestpoint.limits import MAX_POINTS
from nestpoint.members.schemas import Stage
from nestpoint.schemas import Strict
from nestpoint.text import optional, required

Code = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,63}$")]
TypeKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]*\.[a-z][a-z0-9_]*$")]
StoreCode = Annotated[str, required(32)]
Key = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{8,100}$")]

MAX_CATALOG = 500  # benefits per chain: the till reads the whole catalog
MAX_BUNDLE_ITEMS = 20
MAX_QUOTA = 10_000


class BenefitBody(Strict):
    """A benefit in HQ's catalog, as ``PUT /benefits/{code}`` takes it (the path names
    it). A tier qualifies its members by listing the code in its ``benefits``."""

    name: Annotated[str, required(100)]
    type: TypeKey = Field(description="core.<key> or <plugin-id>.<key> (GET /benefit-types).")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Validated by the type's options schema."
    )
    child_stages: list[Stage] = Field(
        default_factory=list, max_length=7, description="Held while a child is in one."
    )
    exchange_points: int | None = Field(
        None, ge=1, le=MAX_POINTS, description="积分兑换: members may buy it for this many."
    )
    stock: int | None = Field(None, ge=0, le=10_000_000, description="Exchanges ever allowed.")
    per_member_limit: int | None = Field(None, ge=1, le=1000, description="Exchanges each.")
    quota: int = Field(1, ge=1, le=MAX_QUOTA, description="Uses per period.")
    tier_quotas: dict[Annotated[str, required(32)], Annotated[int, Field(ge=1, le=MAX_QUOTA)]] = (
        Field(default_factory=dict, max_length=20, description="{tier code: uses per period}")
    )
    period: Period = Field("month", description="Quota period, in the chain's time zone.")
    valid_days: int | None = Field(
        None, ge=1, le=3660, description="Days an exchanged or bundled grant lasts."
    )
    valid_from: date | None = None
    valid_until: date | None = None
    on_lapse: OnLapse = Field(
        "run_out", description="When a member stops qualifying: revoke now or run out."
    )
    store_codes: list[StoreCode] = Field(
        default_factory=list, max_length=5000, description="Empty: every store."
    )
    active: bool = True

    @model_validator(mode="after")
    def _dates_in_order(self) -> BenefitBody:
        if self.valid_from and self.valid_until and self.valid_until < self.valid_from:
            raise ValueError("valid_until is before valid_from")
        return self


class BenefitSpec(BenefitBody):
    """A catalog entry with its code (``[[benefits]]`` in a manifest)."""

    code: Code

    @classmethod
    def of(cls, code: str, body: BenefitBody) -> BenefitSpec:
        return cls(code=code, **body.model_dump())


class BenefitRead(BenefitSpec):
    id: uuid.UUID
    updated_at: datetime


class BenefitList(BaseModel):
    items: list[BenefitRead]


class BundleBody(Strict):
    """Several benefits (and points) granted once per child, when a birth or due date is
    recorded: e.g. the newborn family pack (``PUT /benefit-bundles/{code}``)."""

    name: Annotated[str, required(100)]
    trigger: BundleTrigger = "child_born"
    within_days: int = Field(
        90, ge=1, le=3660, description="Only for a birth (or due date) this recent."
    )
    benefits: list[Code] = Field(default_factory=list, max_length=MAX_BUNDLE_ITEMS)
    points: int = Field(0, ge=0, le=MAX_POINTS, description="Points credited with the pack.")
    valid_days: int = Field(
        90, ge=1, le=3660, description="How long its benefits last (a benefit's own wins)."
    )
    active: bool = True


class BundleSpec(BundleBody):
    """A bundle with its code (``[[bundles]]`` in a manifest)."""

    code: Code

    @classmethod
    def of(cls, code: str, body: BundleBody) -> BundleSpec:
        return cls(code=code, **body.model_dump())


class BundleRead(BundleSpec):
    id: uuid.UUID


class BundleList(BaseModel):
    items: list[BundleRead]


class BenefitTypeRead(BaseModel):
    key: str
    title: str
    description: str
    options_schema: dict[str, Any]


class BenefitTypeList(BaseModel):
    items: list[BenefitTypeRead]


class EntitlementRead(BaseModel):
    """What a member holds, and whether it can be used at the asking store now."""

    id: uuid.UUID
    benefit_code: str
    benefit_name: str
    type: str
    options: dict[str, Any]
    source: Source
    status: EntitlementStatus
    quota: int
    used: int = Field(description="Uses in the current period (reversals deducted).")
    remaining: int
    period: Period
    period_key: str
    granted_at: datetime
    expires_at: datetime | None
    usable_here: bool
    unusable_reason: str | None = Field(
        None, description="Why not here and now: used_up, not_at_this_store, ..."
    )


class ExchangeOffer(BaseModel):
    benefit_code: str
    benefit_name: str
    type: str
    points: int
    stock_left: int | None
    member_limit_left: int | None


class MemberBenefits(BaseModel):
    member_id: uuid.UUID
    store_code: str | None
    entitlements: list[EntitlementRead]
    exchange: list[ExchangeOffer] = Field(description="积分兑换: what points can buy here.")


class UseIn(Strict):
    idempotency_key: Key
    quantity: int = Field(1, ge=1, le=100)
    reference: Annotated[str, optional(150)] = Field(
        "", description="What the use is for: a booking, an order, a delivery."
    )
    store_code: Annotated[str, required(32)] | None = Field(
        None, description="HQ keys name the store; a store key uses its own."
    )


class UseRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    entitlement_id: uuid.UUID
    member_id: uuid.UUID
    benefit_code: str
    kind: UseKind
    amount: int
    period_key: str
    store_id: uuid.UUID | None
    reference: str
    reverses_id: uuid.UUID | None
    remaining: int = Field(description="Left in the period after this row.")
    created_at: datetime


class ReverseIn(Strict):
    reason: Annotated[str, optional(200)] = ""


class ExchangeIn(Strict):
    idempotency_key: Key
    store_code: Annotated[str, required(32)] | None = None


class ExchangeRead(BaseModel):
    entitlement: EntitlementRead
    points_spent: int
    balance: int
