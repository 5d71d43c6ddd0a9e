"""API shapes of coupons: templates, grants and exchanges, holds, the till's check."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from nestpoint.coupons.models import CouponKind, CouponStatus
from nestpoint.limits import MAX_LINES, MAX_POINTS, Fen, Quantity
from nestpoint.schemas import Strict
from nestpoint.tenancy.schemas import StoreCode
from nestpoint.text import optional, required

CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
TemplateCode = Annotated[str, Field(pattern=CODE_PATTERN, min_length=1, max_length=64)]
# An issued coupon's code: 16 characters of Crockford's base 32 (80 random bits).
CouponCode = Annotated[str, Field(pattern=r"^[0-9A-Za-z-]{1,32}$", max_length=32)]
IdempotencyKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{8,100}$")]
Label = Annotated[str, required(64)]
MAX_TEMPLATES = 500  # in one tenant manifest
MAX_CODES = 20  # coupons in one check, hold or order
SHIPPING_CATEGORY = "shipping"  # the category of the lines a shipping coupon pays


class TemplateIn(Strict):
    """A coupon template (created or replaced under its code). Kinds and their fields:
    ``amount_off`` 满减 (``amount_off_fen`` above ``threshold_fen``), ``percent_off``
    (``percent_off``, at most ``max_off_fen``), ``gift`` (one unit of ``gift_sku`` free),
    ``shipping`` (the lines of category ``shipping``, at most ``max_off_fen``)."""

    name: Annotated[str, required(200)]
    kind: CouponKind
    threshold_fen: Fen = Field(0, description="满: the eligible lines must pay at least this.")
    amount_off_fen: Fen | None = Field(None, gt=0, description="减: amount_off only.")
    percent_off: int | None = Field(None, ge=1, le=99, description="percent_off only.")
    max_off_fen: Fen | None = Field(
        None, gt=0, description="The ceiling of a percent_off or shipping coupon."
    )
    categories: list[Label] = Field(
        default_factory=list, max_length=50, description="Only these lines count (empty: all)."
    )
    skus: list[Label] = Field(
        default_factory=list, max_length=200, description="Only these lines count (empty: all)."
    )
    gift_sku: Label | None = Field(None, description="gift only: the SKU given free.")
    stock: int | None = Field(None, ge=0, le=10**9, description="How many may ever be issued.")
    per_member_limit: int | None = Field(None, ge=1, le=1000)
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    valid_days: int | None = Field(None, ge=1, le=3650, description="Valid N days from issue.")
    store_codes: list[StoreCode] = Field(
        default_factory=list, max_length=1000, description="Valid only there (empty: all)."
    )
    stackable: bool = Field(False, description="May pay an order with other coupons.")
    points_price: int | None = Field(
        None, ge=1, le=MAX_POINTS, description="Members may exchange this many points for one."
    )
    active: bool = Field(True, description="An inactive template issues no more coupons.")

    @model_validator(mode="after")
    def _fields_of_kind(self) -> TemplateIn:
        needs = {
            "amount_off": ("amount_off_fen",),
            "percent_off": ("percent_off",),
            "gift": ("gift_sku",),
            "shipping": (),
        }[self.kind]
        for name in needs:
            if getattr(self, name) is None:
                raise ValueError(f"a {self.kind} coupon needs {name}")
        unused = {"amount_off_fen", "percent_off", "gift_sku"} - set(needs)
        given = sorted(name for name in unused if getattr(self, name) is not None)
        if given:
            raise ValueError(f"a {self.kind} coupon takes no {', '.join(given)}")
        if self.valid_until is None and self.valid_days is None:
            raise ValueError("give valid_until, valid_days, or both")
        if self.valid_from and self.valid_until and self.valid_from >= self.valid_until:
            raise ValueError("valid_from must be before valid_until")
        return self


class TemplateSpec(TemplateIn):
    """A coupon template in a tenant manifest (``[[coupon_templates]]``)."""

    code: TemplateCode


class TemplateRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    kind: CouponKind
    threshold_fen: int
    amount_off_fen: int | None
    percent_off: int | None
    max_off_fen: int | None
    categories: list[str]
    skus: list[str]
    gift_sku: str | None
    stock: int | None
    issued: int = Field(description="Coupons issued so far (voided ones included).")
    per_member_limit: int | None
    valid_from: datetime | None
    valid_until: datetime | None
    valid_days: int | None
    store_codes: list[str]
    stackable: bool
    points_price: int | None
    active: bool


class IssueIn(Strict):
    """Give a member a coupon: free (an HQ grant, ``coupons:write``) or for the template's
    points price (``pay_with_points``, ``coupons:use``). The key makes a retry replay."""

    template_code: TemplateCode
    idempotency_key: IdempotencyKey
    pay_with_points: bool = False


class CouponRead(BaseModel):
    id: uuid.UUID
    code: str
    template_code: str
    name: str
    kind: CouponKind
    member_id: uuid.UUID
    status: CouponStatus | None = Field(description="None once expired unused (see `expired`).")
    expired: bool = Field(description="Past valid_until without being redeemed.")
    valid_from: datetime
    valid_until: datetime
    issued_at: datetime
    cause_type: str
    held_until: datetime | None
    order_id: uuid.UUID | None = Field(description="The order that redeemed it.")
    amount_fen: int | None = Field(description="What it paid of that order.")
    points_paid: int = Field(0, description="Points the member exchanged for it (this call).")


class CouponEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: str
    order_id: uuid.UUID | None
    store_id: uuid.UUID | None
    amount_fen: int
    reason: str
    created_at: datetime


class CouponDetail(CouponRead):
    events: list[CouponEventRead]


class VoidIn(Strict):
    reason: Annotated[str, required(200)]


class BasketLineIn(Strict):
    """A line as the order will give it (``name``, ``unit_price_fen``, ``benefit_code`` and
    ``discount_fen`` are accepted, so the till sends the same lines, and not used)."""

    sku: Label
    category: Annotated[str, optional(64)] = ""
    quantity: Quantity = 1
    paid_fen: Fen = Field(description="What the line costs after the member's benefits.")
    name: Annotated[str, optional(200)] = ""
    unit_price_fen: Fen = 0
    benefit_code: Annotated[str, optional(64)] | None = None
    discount_fen: Fen = 0


class CheckIn(Strict):
    """Which of a member's coupons pay what on a basket (nothing is held or written)."""

    member_id: uuid.UUID
    store_code: StoreCode | None = Field(None, description="Required with an HQ key.")
    lines: list[BasketLineIn] = Field(min_length=1, max_length=MAX_LINES)
    codes: list[CouponCode] | None = Field(
        None, max_length=MAX_CODES, description="These coupons (default: all usable now)."
    )


class CheckResult(BaseModel):
    code: str
    template_code: str
    name: str
    usable: bool
    amount_fen: int = Field(description="What it would pay (give this as payment.coupons[].)")
    reason: str = Field(description="Why it cannot be used here, when it cannot.")
    stackable: bool


class CouponHoldIn(Strict):
    member_id: uuid.UUID
    codes: list[CouponCode] = Field(min_length=1, max_length=MAX_CODES)
    idempotency_key: IdempotencyKey | None = None


class CouponHoldRead(BaseModel):
    hold_id: uuid.UUID
    member_id: uuid.UUID
    codes: list[str]
    held_until: datetime
    status: str = Field(description="held, released, or redeemed (by an order).")
