"""API shapes of campaigns: a campaign's schedule, audience, actions, budget, caps, goal and
holdout; its grants and results; the ready templates (docs/campaigns.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from nestpoint.schemas import Strict
from nestpoint.text import required

CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
Code = Annotated[str, Field(pattern=CODE_PATTERN, min_length=1, max_length=64)]
ItemCode = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", max_length=64)]
MessageKey = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", max_length=64)]
ClockTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", examples=["09:00"])]
MAX_POINTS = 1_000_000  # one grant
MAX_BUDGET = 10**12
MAX_CAMPAIGNS = 200  # in one tenant manifest

# The plays of the source documents, and ``custom``.
Kind = Literal[
    "first_purchase_gift",
    "recruitment",
    "birthday_month",
    "member_day",
    "festival",
    "reactivation",
    "milestone",
    "custom",
]
KINDS: tuple[Kind, ...] = get_args(Kind)
Status = Literal["draft", "scheduled", "running", "ended", "cancelled"]

# ---------------------------------------------------------------------------- schedule


class OneOff(Strict):
    """Once, at ``at`` (the audience as it is then)."""

    kind: Literal["one_off"]
    at: datetime


class Recurring(Strict):
    """Every day, week (``weekday``, 1 = Monday) or month (``day_of_month``; past a month's
    end: its last day) at ``at`` in the chain's time zone; a member gets each period's
    grant once."""

    kind: Literal["recurring"]
    every: Literal["daily", "weekly", "monthly"]
    at: ClockTime = "09:00"
    weekday: int | None = Field(None, ge=1, le=7)
    day_of_month: int | None = Field(None, ge=1, le=31)

    @model_validator(mode="after")
    def _day_fits_every(self) -> Recurring:
        if (self.every == "weekly") != (self.weekday is not None):
            raise ValueError("`weekday` is given for `weekly`, and only for it")
        if (self.every == "monthly") != (self.day_of_month is not None):
            raise ValueError("`day_of_month` is given for `monthly`, and only for it")
        return self


# What a triggered campaign answers: an event (read from the outbox) or a date condition
# (evaluated by the daily job).
EVENT_TRIGGERS = ("member_joined", "tier_changed", "first_purchase")
DATE_TRIGGERS = (
    "birthday",
    "birthday_month",
    "pregnancy_week",
    "child_age_days",
    "child_age_months",
)
Trigger = Literal[
    "member_joined",
    "tier_changed",
    "first_purchase",
    "birthday",
    "birthday_month",
    "pregnancy_week",
    "child_age_days",
    "child_age_months",
]


class Triggered(Strict):
    """On an event (``member_joined``, ``tier_changed`` to one of ``tiers`` or any,
    ``first_purchase``) or a date (``birthday``, ``birthday_month``, ``pregnancy_week``
    ``weeks``, ``child_age_days`` ``days``, ``child_age_months`` ``months``)."""

    kind: Literal["triggered"]
    on: Trigger
    tiers: list[ItemCode] = Field(default_factory=list, max_length=50)
    weeks: int | None = Field(None, ge=4, le=42, description="pregnancy_week: e.g. 34.")
    days: int | None = Field(None, ge=0, le=3650, description="child_age_days: 0, 100.")
    months: int | None = Field(None, ge=1, le=216, description="child_age_months: 6, 12, 36.")

    @model_validator(mode="after")
    def _parameters_fit(self) -> Triggered:
        needs = {"pregnancy_week": "weeks", "child_age_days": "days", "child_age_months": "months"}
        for name in ("weeks", "days", "months"):
            given = getattr(self, name) is not None
            if given != (needs.get(self.on) == name):
                raise ValueError(f"`{name}` is given for `{_on(name)}`, and only for it")
        if self.tiers and self.on != "tier_changed":
            raise ValueError("`tiers` is given only for `tier_changed`")
        return self


def _on(name: str) -> str:
    return {"weeks": "pregnancy_week", "days": "child_age_days", "months": "child_age_months"}[name]


Schedule = Annotated[OneOff | Recurring | Triggered, Field(discriminator="kind")]

# ---------------------------------------------------------------------------- audience


class Audience(Strict):
    """Who the campaign is for: a saved segment's code, or an inline rule tree (the
    language of docs/segments.md), or neither: every active member."""

    segment: Code | None = None
    rule: dict[str, Any] | None = Field(
        None, description="A rule tree, checked as `POST /segments/preview` does."
    )

    @model_validator(mode="after")
    def _at_most_one(self) -> Audience:
        if self.segment is not None and self.rule is not None:
            raise ValueError("give `segment` or `rule`, not both")
        return self


# ---------------------------------------------------------------------------- actions


class GrantPoints(Strict):
    """Bonus points (ledger kind ``bonus``, cause ``campaign``): never taken back by a
    refund; they expire as the programme's points do."""

    type: Literal["grant_points"]
    points: int = Field(ge=1, le=MAX_POINTS)


class IssueCoupon(Strict):
    """A coupon of the chain's template ``template_code`` (``coupons.service.issue``)."""

    type: Literal["issue_coupon"]
    template_code: ItemCode


class SendMessage(Strict):
    """A message with template ``template`` (purpose ``campaign``), through the message
    pipeline (consent, quiet hours, frequency cap)."""

    type: Literal["send_message"]
    template: MessageKey
    params: dict[str, str] = Field(default_factory=dict, max_length=20)


class GrantBenefit(Strict):
    """An entitlement to the catalog benefit ``benefit_code`` (a points multiplier, a member
    price...) until the campaign's end, or for ``valid_days``."""

    type: Literal["grant_benefit"]
    benefit_code: ItemCode
    valid_days: int | None = Field(None, ge=1, le=366)


Action = Annotated[
    GrantPoints | IssueCoupon | SendMessage | GrantBenefit, Field(discriminator="type")
]

# ---------------------------------------------------------------------------- the rest


class Budget(Strict):
    """Totals the campaign may give (null: no limit)."""

    points: int | None = Field(None, ge=0, le=MAX_BUDGET)
    coupons: int | None = Field(None, ge=0, le=10**9)


class Caps(Strict):
    """What one member may receive from the campaign in all (null: no limit)."""

    points_per_member: int | None = Field(None, ge=0, le=MAX_BUDGET)
    coupons_per_member: int | None = Field(None, ge=0, le=10_000)
    grants_per_member: int | None = Field(None, ge=1, le=10_000)


Metric = Literal["reach", "redemptions", "orders", "revenue_fen", "recruited"]


class Goal(Strict):
    """What the campaign aims at: members reached, coupons redeemed, orders or revenue of
    the treated members in the window, members recruited in the window."""

    metric: Metric
    target: int = Field(ge=1, le=10**14)


class CampaignIn(Strict):
    """A campaign to create (as a draft; activate it to run)."""

    code: Code
    name: Annotated[str, required(200)]
    kind: Kind = "custom"
    schedule: Schedule
    audience: Audience = Field(default_factory=Audience)
    actions: list[Action] = Field(min_length=1, max_length=10)
    budget: Budget = Field(default_factory=Budget)
    caps: Caps = Field(default_factory=Caps)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    goal: Goal | None = None
    holdout_percent: int = Field(0, ge=0, le=50, description="The control share, 0-50%.")

    @field_validator("ends_at")
    @classmethod
    def _after_start(cls, ends_at: datetime | None, info: ValidationInfo) -> datetime | None:
        starts_at = info.data.get("starts_at")
        if starts_at and ends_at and ends_at <= starts_at:
            raise ValueError("must be after `starts_at`")
        return ends_at


class CampaignSpec(CampaignIn):
    """A campaign in a tenant manifest (``[[campaigns]]``): created when its code is new,
    activated when ``active``; one that exists is left as it is (it may have granted)."""

    active: bool = True


class CampaignRead(BaseModel):
    id: uuid.UUID
    code: str
    name: str
    kind: str
    template: str
    status: Status
    schedule: dict[str, Any]
    audience: dict[str, Any]
    actions: list[dict[str, Any]]
    budget: Budget
    caps: Caps
    spent_points: int
    spent_coupons: int
    starts_at: datetime | None
    ends_at: datetime | None
    goal: dict[str, Any] | None
    holdout_percent: int
    created_at: datetime
    updated_at: datetime


class CampaignList(BaseModel):
    items: list[CampaignRead]
    next_cursor: str | None = None


class RunRead(BaseModel):
    """What one run did."""

    campaign_code: str
    trigger_key: str
    granted: int = Field(description="Members who received the actions now.")
    holdout: int = Field(description="Members recorded in the control share now.")
    refused: int = Field(description="Members over the budget or a per-member cap now.")


class ArmResult(BaseModel):
    """One arm (treated or holdout) of a campaign's audience over its window."""

    members: int
    buyers: int
    orders: int
    revenue_fen: int
    revenue_per_member_fen: float
    orders_per_member: float


class Uplift(BaseModel):
    """Treated minus holdout per-member mean, with its 95% confidence interval (Welch's
    normal approximation; null when an arm has fewer than two members)."""

    difference: float
    low: float | None
    high: float | None


class Attainment(BaseModel):
    metric: str
    target: int
    actual: int
    ratio: float


class CampaignResults(BaseModel):
    campaign_code: str
    window_start: datetime
    window_end: datetime
    reach: int = Field(description="Members granted (treated).")
    holdout_members: int
    refused: int = Field(description="Grants refused by the budget or a cap.")
    coupons_issued: int
    coupons_redeemed: int
    redemption_rate: float | None
    points_granted: int = Field(description="Equals the ledger's entries of the campaign.")
    coupon_value_redeemed_fen: int
    treated: ArmResult
    holdout: ArmResult
    revenue_uplift_fen: Uplift
    orders_uplift: Uplift
    recruited: int = Field(description="Members who joined in the window and were granted.")
    recruited_repurchased: int = Field(
        description="Of them, those with a second order within 30 days of their first."
    )
    attainment: Attainment | None


class TemplateRead(BaseModel):
    """A ready play: instantiate it with a code (and the values it asks for)."""

    key: str
    kind: str
    name: str
    description: str
    needs: list[str] = Field(description="Fields `POST .../instantiate` must give.")
    campaign: dict[str, Any] = Field(description="The campaign it makes (before the values).")


class TemplateList(BaseModel):
    items: list[TemplateRead]


class InstantiateIn(Strict):
    """A template made into a draft campaign."""

    code: Code
    name: Annotated[str, required(200)] | None = None
    coupon_template: ItemCode | None = Field(None, description="For plays that issue one.")
    benefit_code: ItemCode | None = Field(None, description="For plays that grant one.")
    message_template: MessageKey | None = None
    points: int | None = Field(None, ge=1, le=MAX_POINTS)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    audience: Audience | None = None
    holdout_percent: int | None = Field(None, ge=0, le=50)
