"""Shapes of the figures HQ watches (docs/analytics.md defines each one).

Money is in fen (integers); a rate is a fraction rounded to 4 places (``0.7`` is 70%), or
``null`` when its denominator is zero. Each figure carries the target the source documents
set for it (``target``), so a reader sees how far the chain is from it.
"""

from __future__ import annotations

import uuid
from datetime import date

from pydantic import BaseModel, Field

# The source documents' numbers (docs/analytics.md, "Targets").
MEMBER_SHARE_TARGET = 0.70  # 会员消费占比 70% within three years (45% today, leaders 65%)
AOV_UPLIFT_TARGET = 0.25  # 会员客单价提升 25%
REPURCHASE_UPLIFT_TARGET = 0.40  # 复购率提升 40% (against the chain's own baseline)
REDEMPTION_BEFORE = 0.12  # 积分兑换率 12% before the programme
REDEMPTION_INDUSTRY = 0.25  # industry average 25%
CHURN_TARGET = 0.15  # 会员流失率 from 30% to 15%
REACTIVATION_UPLIFT_TARGET = 0.35  # 沉默会员召回率提升 35%
CATEGORY_BENCHMARKS = {"feeding": 0.68, "toys": 0.52}  # 嬰兒喂養用品 68%, 早教玩具 52%
DEFAULT_ACTIVE_DAYS = 90  # 3 months without a purchase: a silent member (沉默会员)


class Period(BaseModel):
    """The period asked for (dates in the tenant's time zone, both included) and the one
    just before it, of the same length (churn and reactivation compare the two)."""

    start: date
    end: date
    days: int
    previous_start: date
    previous_end: date
    timezone: str
    store_id: uuid.UUID | None = None


class Rate(BaseModel):
    """``numerator / denominator``."""

    numerator: int
    denominator: int
    rate: float | None
    target: float | None = None


class Sales(BaseModel):
    """Orders paid in the period, net of what was refunded of them (whenever)."""

    net_fen: int = Field(description="All orders' totals less their refunds")
    member_net_fen: int
    non_member_net_fen: int
    refunded_fen: int = Field(description="Refunded so far of the period's orders")
    orders: int = Field(description="Orders not wholly refunded")
    member_orders: int
    non_member_orders: int


class AverageOrder(BaseModel):
    """Net sales per counted order (rounded half up to the fen), members against the rest."""

    member_fen: int | None
    non_member_fen: int | None
    uplift: float | None = Field(description="member_fen / non_member_fen - 1")
    target_uplift: float = AOV_UPLIFT_TARGET


class PointsRedemption(BaseModel):
    """Points redeemed against points issued, from the ledger's entries of the period."""

    issued: int
    redeemed: int
    rate: float | None
    before: float = REDEMPTION_BEFORE
    industry: float = REDEMPTION_INDUSTRY


class Churn(BaseModel):
    """Members who bought in the previous period and not in this one; and members silent
    through the whole previous period (having bought before it) who came back in this one."""

    previous_active: int
    churned: int
    churn_rate: float | None
    target_churn_rate: float = CHURN_TARGET
    lapsed: int
    reactivated: int
    reactivation_rate: float | None
    target_reactivation_uplift: float = REACTIVATION_UPLIFT_TARGET


class AnalyticsSummary(BaseModel):
    """Every headline figure of one period (and store)."""

    period: Period
    sales: Sales
    member_share: Rate
    average_order: AverageOrder
    repurchase: Rate
    points_redemption: PointsRedemption
    churn: Churn
    new_members: int = Field(description="Members who joined in the period")


class HourSales(BaseModel):
    hour: int = Field(ge=0, le=23, description="Local hour of the day (0-23)")
    orders: int
    net_fen: int
    member_orders: int
    member_net_fen: int


class HourlySales(BaseModel):
    """Sales by local hour of the day, weekdays (Monday-Friday) and weekends apart; 24
    entries each, hour 0 first."""

    period: Period
    weekday: list[HourSales]
    weekend: list[HourSales]
    peak_hours: list[str] = Field(description="The source documents' weekday peaks")


class CategoryRepurchase(BaseModel):
    category: str = Field(description="The order lines' category as the till sent it ('' if none)")
    buyers: int = Field(description="Members who bought the category in the period")
    repeat_buyers: int = Field(description="...in two or more orders")
    rate: float | None
    member_net_fen: int
    net_fen: int
    benchmark: float | None = Field(description="The source documents' rate, where given")


class RepurchaseByCategory(BaseModel):
    period: Period
    categories: list[CategoryRepurchase]


class TierCount(BaseModel):
    code: str
    name: str
    members: int
    share: float | None


class TierMix(BaseModel):
    """Active members per tier now (the ladder's order); ``period`` only names the store."""

    period: Period
    members: int
    tiers: list[TierCount]


class Funnel(BaseModel):
    """Members who had joined by the period's end, and how far they went by then."""

    period: Period
    active_days: int
    enrolled: int
    purchased: int = Field(description="...with at least one order")
    repeated: int = Field(description="...with two or more orders")
    active: int = Field(description="...with an order in the last `active_days` of the period")
