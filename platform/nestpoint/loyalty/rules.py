"""The programme's arithmetic: pure functions, integers only, always rounding down.

Nothing here touches the database, so the preview endpoint, the order path and the property
tests all use the very same rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from nestpoint.loyalty.schemas import EarnRules, PointsPolicy, TierSpec

FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Program:
    """A tenant's programme as the rules use it (built from the database, cached)."""

    version: int
    timezone: str
    points: PointsPolicy
    earn: EarnRules
    tiers: tuple[TierSpec, ...]  # ascending thresholds

    @property
    def entry_tier(self) -> TierSpec:
        return self.tiers[0]

    def tier(self, code: str | None) -> TierSpec:
        for tier in self.tiers:
            if tier.code == code:
                return tier
        return self.entry_tier

    def rank(self, code: str | None) -> int:
        return self.tiers.index(self.tier(code))

    def tier_for_growth(self, growth: int) -> TierSpec:
        qualifying = [t for t in self.tiers if t.threshold <= growth]
        return qualifying[-1] if qualifying else self.entry_tier

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local_day(self, moment: datetime) -> str:
        return moment.astimezone(self.zone).date().isoformat()


@dataclass(frozen=True, slots=True)
class Line:
    sku: str
    category: str
    paid_fen: int


def line_points(
    program: Program,
    tier: TierSpec,
    store_code: str,
    line: Line,
    earnable_fen: int,
    multiplier_percent: int = 100,
) -> int:
    """Points one line earns before caps: paid yuan x tier rate x category x store x the
    member's multiplier benefit (生日月双倍积分: 200), rounded down once."""
    rules = program.earn
    if line.category in rules.excluded_categories or line.sku in rules.excluded_skus:
        return 0
    category = rules.category_multipliers.get(line.category, 100)
    store = rules.store_multipliers.get(store_code, 100)
    rates = tier.earn_rate_percent * category * store * multiplier_percent
    return max(0, earnable_fen) * rates // 10_000_000_000


def earnable_amounts(lines: list[Line], points_value_fen: int) -> list[int]:
    """Each line's paid amount less its share of what points paid (no points on points)."""
    total = sum(line.paid_fen for line in lines)
    if total <= 0 or points_value_fen <= 0:
        return [line.paid_fen for line in lines]
    shares = [points_value_fen * line.paid_fen // total for line in lines]
    shares[-1] += points_value_fen - sum(shares)  # the remainder goes to the last line
    return [line.paid_fen - share for line, share in zip(lines, shares, strict=True)]


def apply_cap(points: list[int], cap: int | None) -> list[int]:
    """Trim per-line points to a total cap, taking from the last lines first."""
    if cap is None or sum(points) <= cap:
        return points
    capped = list(points)
    excess = sum(points) - cap
    for i in range(len(capped) - 1, -1, -1):
        take = min(capped[i], excess)
        capped[i] -= take
        excess -= take
        if excess == 0:
            break
    return capped


def compute_earn(
    program: Program,
    tier: TierSpec,
    store_code: str,
    lines: list[Line],
    *,
    points_value_fen: int = 0,
    earned_today: int = 0,
    multiplier_percent: int = 100,
) -> list[int]:
    """Points per line after the per-order and per-day caps (which the multiplier does not
    lift)."""
    amounts = earnable_amounts(lines, points_value_fen)
    points = [
        line_points(program, tier, store_code, line, amount, multiplier_percent)
        for line, amount in zip(lines, amounts, strict=True)
    ]
    points = apply_cap(points, program.earn.cap_per_order)
    if program.earn.cap_per_day is not None:
        points = apply_cap(points, max(0, program.earn.cap_per_day - earned_today))
    return points


def available_at(policy: PointsPolicy, earned_at: datetime) -> datetime:
    return earned_at + timedelta(days=policy.pending_days)


def expires_at(program: Program, earned_at: datetime) -> datetime:
    """When points earned at ``earned_at`` expire under the tenant's policy."""
    policy = program.points
    if policy.expiry == "never":
        return FAR_FUTURE
    if policy.expiry == "rolling":
        local = earned_at.astimezone(program.zone)
        month_index = local.month - 1 + policy.expiry_months
        year, month = local.year + month_index // 12, month_index % 12 + 1
        day = min(local.day, _days_in_month(year, month))
        return local.replace(year=year, month=month, day=day).astimezone(UTC)
    # 积分清零: cleared at the end of the year after the one they were earned in.
    local_year = earned_at.astimezone(program.zone).year
    end = datetime.combine(date(local_year + 2, 1, 1), time(0), tzinfo=program.zone)
    return end.astimezone(UTC)


def _days_in_month(year: int, month: int) -> int:
    following = date(year + (month == 12), month % 12 + 1, 1)
    return (following - timedelta(days=1)).day


def points_value_fen(policy: PointsPolicy, points: int) -> int:
    """What ``points`` are worth at checkout (e.g. 100 points = 1 yuan = 100 fen)."""
    return points * 100 // policy.cash_points_per_yuan


def max_redeemable_points(program: Program, tier: TierSpec, order_total_fen: int) -> int:
    """The most points an order may use: the tier's cap as a share of the order."""
    cap_fen = order_total_fen * tier.redeem_cap_percent // 100
    return cap_fen * program.points.cash_points_per_yuan // 100


def growth_for(paid_fen: int) -> int:
    """Growth value (成长值) from spend: one per whole yuan."""
    return max(0, paid_fen) // 100


def apply_adjustment(
    points: list[int], delta: int, lines: Sequence[int] | None = None
) -> list[int]:
    """Spread a plugin's extra points over the lines it names (indexes into ``points``; all
    when ``None``): a bonus goes to the named line that earned most (so every point still
    traces to one order line); a reduction is taken from the last named lines first. No
    line drops below zero."""
    adjusted = list(points)
    targets = list(range(len(adjusted))) if lines is None else sorted(set(lines))
    if not targets or delta == 0:
        return adjusted
    if delta > 0:
        best = max(targets, key=lambda i: (adjusted[i], -i))
        adjusted[best] += delta
        return adjusted
    capped = apply_cap(
        [adjusted[i] for i in targets], max(0, sum(adjusted[i] for i in targets) + delta)
    )
    for i, value in zip(targets, capped, strict=True):
        adjusted[i] = value
    return adjusted
