"""What a coupon pays on a basket (pure: no database, no clock).

A coupon counts the lines its template covers (its categories or SKUs; every line when it
names none) at what they cost after the member's benefits:
- ``amount_off`` (满减): ``amount_off_fen`` once those lines reach ``threshold_fen``, never
  more than they cost;
- ``percent_off``: that share of them (rounded down), at most ``max_off_fen``;
- ``gift``: one unit of ``gift_sku`` (the basket must have it), once the other covered lines
  reach the threshold;
- ``shipping``: the lines of category ``shipping``, at most ``max_off_fen``, once the other
  covered lines reach the threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from nestpoint.coupons.models import CouponTemplate
from nestpoint.coupons.schemas import SHIPPING_CATEGORY


@dataclass(frozen=True, slots=True)
class BasketLine:
    sku: str
    category: str
    quantity: int
    paid_fen: int


@dataclass(frozen=True, slots=True)
class Value:
    """What a coupon pays on a basket, or why it pays nothing."""

    amount_fen: int
    reason: str = ""

    @property
    def usable(self) -> bool:
        return self.amount_fen > 0 and not self.reason


def covers(template: CouponTemplate, line: BasketLine) -> bool:
    if template.categories and line.category not in template.categories:
        return False
    return not template.skus or line.sku in template.skus


def value_on(template: CouponTemplate, lines: Sequence[BasketLine]) -> Value:
    """What a coupon of ``template`` pays on ``lines``."""
    kind = template.kind
    paying = _paying_lines(template, lines)
    base = sum(li.paid_fen for li in lines if covers(template, li) and li not in paying)
    if base < template.threshold_fen:
        return Value(0, f"needs {template.threshold_fen} fen of eligible lines; has {base}")
    if kind == "amount_off":
        return _positive(min(template.amount_off_fen or 0, base), "no eligible line")
    if kind == "percent_off":
        off = base * (template.percent_off or 0) // 100
        return _positive(_capped(off, template.max_off_fen), "no eligible line")
    if kind == "gift":
        if not paying:
            return Value(0, f"the basket has no {template.gift_sku} to give")
        gift = paying[0]
        return _positive(gift.paid_fen // gift.quantity, "the gift line costs nothing")
    shipping = sum(li.paid_fen for li in paying)
    return _positive(_capped(shipping, template.max_off_fen), "the basket has no shipping line")


def _paying_lines(template: CouponTemplate, lines: Sequence[BasketLine]) -> list[BasketLine]:
    """The lines a gift or shipping coupon pays for (they do not count toward its threshold)."""
    if template.kind == "gift":
        return [li for li in lines if li.sku == template.gift_sku]
    if template.kind == "shipping":
        return [li for li in lines if li.category == SHIPPING_CATEGORY]
    return []


def _capped(amount: int, ceiling: int | None) -> int:
    return amount if ceiling is None else min(amount, ceiling)


def _positive(amount: int, reason: str) -> Value:
    return Value(amount) if amount > 0 else Value(0, reason)


def validity(template: CouponTemplate, issued_at: datetime) -> tuple[datetime, datetime] | None:
    """When a coupon issued at ``issued_at`` is valid: the template's dates, or
    ``valid_days`` from issue within them; None when that window is already over."""
    start = max(issued_at, template.valid_from) if template.valid_from else issued_at
    end = template.valid_until
    if template.valid_days is not None:
        by_days = issued_at + timedelta(days=template.valid_days)
        end = by_days if end is None else min(end, by_days)
    assert end is not None  # the schema requires valid_until or valid_days
    return (start, end) if start < end else None
