"""API shapes of the orders context."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from nestpoint.benefits.schemas import Code as BenefitCode
from nestpoint.errors import Invalid
from nestpoint.limits import MAX_LINES, MAX_ORDER_FEN, MAX_POINTS, Fen, LineNo, Quantity
from nestpoint.loyalty.schemas import Code as TierCode
from nestpoint.members.schemas import IdentityIn, Phone
from nestpoint.orders.models import OrderStatus
from nestpoint.schemas import Strict
from nestpoint.tenancy.schemas import StoreCode
from nestpoint.text import literal_pattern, optional, required

OrderChannel = Literal["pos", "mall", "mini_program", "app"]
ORDER_CHANNEL = literal_pattern(OrderChannel)
# One definition for the body and the path (orders/routes.py), so an order recorded can be
# fetched and refunded: no "/" (it would split the path), and not only dots (a client
# resolves "." and ".." in a URL before sending it).
EXTERNAL_ID = r"^[A-Za-z0-9._:-]*[A-Za-z0-9_:-][A-Za-z0-9._:-]*$"
ExternalId = Annotated[str, StringConstraints(pattern=EXTERNAL_ID, max_length=100)]
Sku = Annotated[str, required(64)]


# A till's clock may run a little ahead of the server's; beyond this, paid_at is wrong.
PAID_AT_MAX_AHEAD = timedelta(minutes=5)


def check_paid_at(paid_at: datetime, now: datetime) -> None:
    """An order is paid now or in the past (give or take clock skew): 422 naming paid_at."""
    if paid_at > now + PAID_AT_MAX_AHEAD:
        raise Invalid.field(
            "paid_at",
            f"paid_at is in the future (more than {PAID_AT_MAX_AHEAD.seconds // 60} minutes"
            " ahead of the server's clock)",
        )


class MemberRef(Strict):
    """Exactly one way to name the member: id, phone, or a channel identity."""

    id: uuid.UUID | None = None
    phone: Phone | None = None
    identity: IdentityIn | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> MemberRef:
        given = [v for v in (self.id, self.phone, self.identity) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of id, phone or identity")
        return self


def _bounded_total(lines: list[LineIn]) -> list[LineIn]:
    if sum(line.paid_fen for line in lines) > MAX_ORDER_FEN:
        raise ValueError(f"the lines pay more than {MAX_ORDER_FEN} fen together")
    return lines


class LineIn(Strict):
    sku: Sku
    name: Annotated[str, optional(200)] = ""
    category: Annotated[str, optional(64)] = ""
    quantity: Quantity
    unit_price_fen: Fen
    paid_fen: Fen = Field(description="What was paid for the line after discounts, in fen.")
    benefit_code: BenefitCode | None = Field(
        None,
        description="The member's pricing benefit (会员价, 会员日) the till applied to this line,"
        " as the preview offered it; checked against what the member holds here now.",
    )
    discount_fen: Fen = Field(
        0,
        validate_default=True,  # a benefit_code alone is refused, naming this field
        description="What that benefit took off the line (paid_fen is after it), in fen.",
    )

    @field_validator("discount_fen")
    @classmethod
    def _with_its_benefit(cls, discount: int, info: ValidationInfo) -> int:
        if (info.data.get("benefit_code") is None) != (discount == 0):
            raise ValueError("give benefit_code and a discount_fen above 0 together, or neither")
        return discount


class CouponIn(Strict):
    """A member's coupon (``POST /coupons/check`` tells the till what it pays)."""

    code: Annotated[str, Field(pattern=r"^[0-9A-Za-z-]{1,32}$", max_length=32)]
    amount_fen: Fen = Field(gt=0, description="What the coupon pays on these lines, exactly.")


class PaymentIn(Strict):
    cash_fen: Fen = Field(description="Cash, card and e-wallet payments together, in fen.")
    points_used: int = Field(0, ge=0, le=MAX_POINTS, description="积分抵现: points paid with.")
    hold_id: uuid.UUID | None = Field(None, description="Capture this hold for points_used.")
    coupons: list[CouponIn] = Field(default_factory=list, max_length=20)
    stored_value_fen: Fen = Field(
        0, description="储值: paid from the member's stored value (principal first, bonus last)."
    )

    @model_serializer(mode="wrap")
    def _without_unused_stored_value(self, dump: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """An order without stored value dumps (and so fingerprints) as before stored value
        existed: a till retrying an order recorded before it came gets the first answer."""
        data: dict[str, Any] = dump(self)
        if not self.stored_value_fen:
            data.pop("stored_value_fen", None)
        return data


class OrderIn(Strict):
    channel: OrderChannel
    external_id: ExternalId
    store_code: StoreCode | None = Field(
        None, description="Required with an HQ key; a store key's own store otherwise."
    )
    member: MemberRef | None = Field(None, description="Omit for an anonymous order.")
    lines: list[LineIn] = Field(
        min_length=1, max_length=MAX_LINES, description="At most 1 亿 yuan paid in all."
    )
    paid_at: AwareDatetime
    payment: PaymentIn

    @field_validator("lines")
    @classmethod
    def _total(cls, lines: list[LineIn]) -> list[LineIn]:
        return _bounded_total(lines)


class LineResult(BaseModel):
    line_no: int
    sku: str
    paid_fen: int = Field(description="In a preview: what the line costs after its benefit.")
    points_earned: int
    benefit_code: str | None = Field(None, description="The pricing benefit on this line.")
    discount_fen: int = Field(0, description="What that benefit takes off the line.")


class OrderCoupon(BaseModel):
    """A coupon an order redeemed, and what it paid."""

    code: str
    template_code: str
    amount_fen: int


class AppliedBenefit(BaseModel):
    """A pricing benefit an order applied (one use of its quota), or a preview offers."""

    code: str
    type: str
    discount_fen: int = Field(description="Taken off the order's lines by this benefit.")
    points_multiplier_percent: int | None = Field(
        None, description="The points multiplier it gave (200: double), if it is the one."
    )
    use_id: uuid.UUID | None = Field(None, description="The use recorded (an order only).")


class MemberOutcome(BaseModel):
    id: uuid.UUID
    tier_code: str | None
    upgraded_from: str | None
    growth_value: int
    points_balance: int


class OrderResult(BaseModel):
    id: uuid.UUID
    channel: str
    external_id: str
    store_id: uuid.UUID
    member_id: uuid.UUID | None
    status: OrderStatus
    paid_at: datetime
    total_fen: int
    points_used: int
    points_earned: int
    discount_fen: int = Field(0, description="What the member's benefits took off the lines.")
    lines: list[LineResult]
    benefits: list[AppliedBenefit] = Field(default_factory=list)
    coupons: list[OrderCoupon] = Field(
        default_factory=list, description="The coupons that paid, and what each paid."
    )
    stored_value_fen: int = Field(0, description="What the member's stored value paid.")
    member: MemberOutcome | None


class RefundLineIn(Strict):
    line_no: LineNo
    quantity: Quantity


class RefundIn(Strict):
    external_id: ExternalId = Field(description="The refund's own id: unique per order.")
    lines: list[RefundLineIn] | None = Field(
        None,
        max_length=MAX_LINES,
        description="Lines and quantities; omit to refund everything left.",
    )


class RefundResult(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    external_id: str
    amount_fen: int
    points_reversed: int
    points_returned: int
    member_points_balance: int | None
    member_debt: int | None
    benefit_uses_reversed: list[uuid.UUID] = Field(
        default_factory=list,
        description="Benefit uses given back: those naming the order, once it is all refunded.",
    )
    coupons_restored: list[str] = Field(
        default_factory=list,
        description="Codes of the coupons the member has again: once the order is all refunded.",
    )
    stored_value_returned_fen: int = Field(
        0, description="Stored value the refunded share paid, back in the member's wallet."
    )


class PreviewIn(Strict):
    store_code: StoreCode | None = None
    member: MemberRef | None = None
    tier_code: TierCode | None = Field(None, description="Preview as this tier (no member given).")
    lines: list[LineIn] = Field(
        min_length=1,
        max_length=MAX_LINES,
        description="paid_fen before the member's benefits; the preview offers those.",
    )
    points_used: int = Field(0, ge=0, le=MAX_POINTS)

    @field_validator("lines")
    @classmethod
    def _total(cls, lines: list[LineIn]) -> list[LineIn]:
        return _bounded_total(lines)


class PreviewResult(BaseModel):
    tier_code: str
    points: int
    lines: list[LineResult]
    payable_fen: int = Field(description="The lines' total after the member's benefits.")
    discount_fen: int = Field(description="What the member's benefits take off.")
    benefits: list[AppliedBenefit]
    max_points_usable: int
    points_value_fen: int


class OrderSummary(BaseModel):
    """An order in a listing (``GET /orders/{channel}/{external_id}`` has its lines)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    channel: str
    external_id: str
    store_id: uuid.UUID
    member_id: uuid.UUID | None = Field(description="None for an anonymous order.")
    status: OrderStatus
    paid_at: datetime
    total_fen: int
    cash_fen: int
    points_used: int
    points_earned: int
    discount_fen: int
    stored_value_fen: int
    refunded_fen: int


class OrderList(BaseModel):
    items: list[OrderSummary]
    next_cursor: str | None


class RefundSummary(BaseModel):
    """A refund in a listing, with the order it refunds."""

    id: uuid.UUID
    external_id: str
    order_id: uuid.UUID
    order_channel: str
    order_external_id: str
    store_id: uuid.UUID = Field(description="The order's store.")
    member_id: uuid.UUID | None = Field(description="The order's member (None: anonymous).")
    amount_fen: int
    points_reversed: int
    points_returned: int
    created_at: datetime


class RefundList(BaseModel):
    items: list[RefundSummary]
    next_cursor: str | None
