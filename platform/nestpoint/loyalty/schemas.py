"""Shapes of the programme configuration (API and manifests), with the seeds' defaults.

Rates and multipliers are integers in percent (100 = ×1; ``earn_rate_percent = 100`` is one
point per yuan), so every computation is integer arithmetic that rounds down.

Every collection has a limit (``MAX_*`` below, in docs/loyalty.md): the programme is read
on every order, so its size is the till's latency. The limits are far above what a chain
of a few thousand stores configures.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator

from nestpoint.limits import MAX_POINTS_CAP, MAX_THRESHOLD
from nestpoint.schemas import Strict
from nestpoint.text import required

Code = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
Category = Annotated[str, required(64)]
Percent = Annotated[int, Field(ge=0, le=10_000)]

MAX_CATEGORY_MULTIPLIERS = 200
MAX_STORE_MULTIPLIERS = 5_000
MAX_EXCLUDED_CATEGORIES = 200
MAX_EXCLUDED_SKUS = 2_000
MAX_TIERS = 20
MAX_BENEFITS = 50


class PointsPolicy(Strict):
    pending_days: int = Field(7, ge=0, le=365, description="积分冻结: days before points spend")
    expiry: Literal["rolling", "year_end", "never"] = Field(
        "year_end",
        description="rolling: N months after earning; year_end: 积分清零 at the end of the "
        "year after earning; never.",
    )
    expiry_months: int = Field(24, ge=1, le=120, description="For rolling expiry.")
    cash_points_per_yuan: int = Field(100, ge=1, le=100_000, description="积分抵现 rate")
    hold_timeout_minutes: int = Field(15, ge=1, le=7 * 24 * 60)
    expiring_soon_days: int = Field(30, ge=1, le=365)
    family_transfer: bool = Field(False, description="Allow transfers within a family.")
    growth_window_months: int = Field(12, ge=1, le=36)


class EarnRules(Strict):
    category_multipliers: dict[Category, Percent] = Field(
        default_factory=dict,
        max_length=MAX_CATEGORY_MULTIPLIERS,
        description="e.g. {'feeding': 200} doubles feeding supplies",
    )
    store_multipliers: dict[Annotated[str, required(32)], Percent] = Field(
        default_factory=dict, max_length=MAX_STORE_MULTIPLIERS, description="by store code"
    )
    excluded_categories: list[Category] = Field(
        default_factory=list, max_length=MAX_EXCLUDED_CATEGORIES
    )
    excluded_skus: list[Annotated[str, required(64)]] = Field(
        default_factory=list, max_length=MAX_EXCLUDED_SKUS
    )
    cap_per_order: int | None = Field(None, ge=0, le=MAX_POINTS_CAP)
    cap_per_day: int | None = Field(None, ge=0, le=MAX_POINTS_CAP)


class TierSpec(Strict):
    code: Code
    name: Annotated[str, required(100)]
    threshold: int = Field(
        ge=0, le=MAX_THRESHOLD, description="Growth value (成长值) needed, yuan over 12 months"
    )
    earn_rate_percent: Percent = 100
    redeem_cap_percent: Annotated[int, Field(ge=0, le=100)] = 10
    protection_days: int = Field(90, ge=0, le=3650)
    benefits: list[Annotated[str, required(64)]] = Field(
        default_factory=list, max_length=MAX_BENEFITS
    )


DEFAULT_TIERS = [
    TierSpec(
        code="bronze", name="铜卡 Bronze", threshold=0, earn_rate_percent=100, redeem_cap_percent=10
    ),
    TierSpec(
        code="silver",
        name="银卡 Silver",
        threshold=1000,
        earn_rate_percent=120,
        redeem_cap_percent=15,
    ),
    TierSpec(
        code="gold", name="金卡 Gold", threshold=5000, earn_rate_percent=150, redeem_cap_percent=20
    ),
    TierSpec(
        code="diamond",
        name="钻石卡 Diamond",
        threshold=15000,
        earn_rate_percent=200,
        redeem_cap_percent=25,
    ),
]


class ProgramSpec(Strict):
    """The whole programme: what ``PUT /api/v1/loyalty/program`` and manifests carry."""

    points: PointsPolicy = Field(default_factory=PointsPolicy)
    earn_rules: EarnRules = Field(default_factory=EarnRules)
    tiers: list[TierSpec] = Field(default_factory=lambda: list(DEFAULT_TIERS), max_length=MAX_TIERS)

    @field_validator("tiers")
    @classmethod
    def _ladder(cls, tiers: list[TierSpec]) -> list[TierSpec]:
        # A field validator, so the error names the field (``body.tiers``), not the body.
        if not tiers:
            raise ValueError("tiers: at least one tier is needed")
        codes = [t.code for t in tiers]
        if len(set(codes)) != len(codes):
            raise ValueError("tiers: codes must be unique")
        thresholds = [t.threshold for t in tiers]
        if thresholds != sorted(thresholds) or len(set(thresholds)) != len(thresholds):
            raise ValueError("tiers: thresholds must strictly increase up the ladder")
        if thresholds[0] != 0:
            raise ValueError("tiers: the first tier's threshold must be 0")
        return tiers


class ProgramRead(ProgramSpec):
    version: int
