"""The benefit types the core offers itself (``core.<key>``); plugins add theirs.

Each type is a ``BenefitType`` (the same shape a plugin registers) whose ``options`` model
validates a benefit's ``options`` when HQ defines it. Using a benefit of any type records
a use against the member's quota; what the till then does (hand over the gift, waive the
shipping fee) is the till's. The pricing types (``member_price``, ``member_day`` and
``points_multiplier``) also change an order's prices and points: ``benefits.pricing``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from nestpoint.plugins.types import BenefitType
from nestpoint.schemas import Strict
from nestpoint.text import optional, required

CORE_PREFIX = "core."
Category = Annotated[str, required(64)]


class GiftOptions(Strict):
    sku: Annotated[str, optional(64)] = Field("", description="The gift's SKU at the till.")
    value_fen: int = Field(0, ge=0, le=100_000_000, description="What the gift is worth.")


class MemberPriceOptions(Strict):
    discount_percent: int = Field(ge=1, le=99, description="95 = 5% off (会员价).")
    categories: list[Category] = Field(
        default_factory=list, max_length=200, description="Empty: every category."
    )


class MemberDayOptions(Strict):
    day_of_month: int | None = Field(
        None, ge=1, le=31, description="e.g. 18 (每月18日); past a month's end: its last day."
    )
    weekday: int | None = Field(None, ge=1, le=7, description="ISO weekday, 1 = Monday.")
    discount_percent: int | None = Field(None, ge=1, le=99, description="会员日全场8折: 80.")
    points_multiplier_percent: int | None = Field(
        None, ge=101, le=1000, description="150 = one and a half times the points."
    )

    @model_validator(mode="after")
    def _a_day_and_a_gift(self) -> MemberDayOptions:
        if (self.day_of_month is None) == (self.weekday is None):
            raise ValueError("give exactly one of day_of_month or weekday")
        if self.discount_percent is None and self.points_multiplier_percent is None:
            raise ValueError("give discount_percent, points_multiplier_percent or both")
        return self


class FreeShippingOptions(Strict):
    max_fee_fen: int = Field(0, ge=0, le=1_000_000, description="0: any fee is waived.")


class PointsMultiplierOptions(Strict):
    multiplier_percent: int = Field(200, ge=101, le=1000, description="200 = double points.")
    # ``while_held``: on every order while the member holds it (a campaign grants it for its
    # window: 618 double points); the birthday occasions: in that month only.
    occasion: Literal["member_birthday_month", "child_birthday_month", "while_held"] = (
        "member_birthday_month"
    )


class ServiceOptions(Strict):
    minutes: int = Field(30, ge=5, le=480, description="How long the service lasts.")
    description: Annotated[str, optional(500)] = ""


class VoucherOptions(Strict):
    amount_fen: int = Field(ge=1, le=100_000_000, description="Value off an order.")
    threshold_fen: int = Field(0, ge=0, le=100_000_000, description="满减: spend at least.")


CORE_TYPES: dict[str, BenefitType] = {
    CORE_PREFIX + t.key: t
    for t in (
        BenefitType("gift", "Gift 赠品", options=GiftOptions, description="A gift (积分兑换)."),
        BenefitType("birthday_gift", "Birthday gift 生日礼", options=GiftOptions),
        BenefitType("member_price", "Member price 会员价", options=MemberPriceOptions),
        BenefitType("member_day", "Member day 会员日", options=MemberDayOptions),
        BenefitType("free_shipping", "Free shipping 包邮", options=FreeShippingOptions),
        BenefitType("points_multiplier", "Points multiplier 多倍积分", PointsMultiplierOptions),
        BenefitType("service", "In-store service 到店服务", options=ServiceOptions),
        BenefitType("voucher", "Voucher 代金券", options=VoucherOptions),
    )
}
