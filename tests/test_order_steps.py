"""The order's and the refund's pure steps, on their own: no database, no HTTP.

``orders/service.py`` runs an order as validate payment -> redeem -> earn -> result -> write
and a refund as plan -> reverse -> return -> growth -> result -> write; the steps that only
compute are tested here with a programme built in memory.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import pytest

from nestpoint.errors import Invalid
from nestpoint.loyalty.rules import Program
from nestpoint.loyalty.schemas import DEFAULT_TIERS, EarnRules, PointsPolicy
from nestpoint.orders import service as orders
from nestpoint.orders.models import OrderLine
from nestpoint.orders.schemas import LineIn, OrderIn, PaymentIn, RefundLineIn
from nestpoint.plugins.api import EarnAdjustment
from nestpoint.points import service as points
from nestpoint.tiers.service import GrowthResult, growth_outcome

NOW = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)  # 12:00 on 2 March in Shanghai
TENANT = uuid.uuid4()


def program(**earn: Any) -> Program:
    return Program(
        version=1,
        timezone="Asia/Shanghai",
        points=PointsPolicy(),
        earn=EarnRules(**earn),
        tiers=tuple(DEFAULT_TIERS),
    )


def member(
    tier: str = "bronze", growth: int = 0, *, debt: int = 0, day: str = "", today: int = 0
) -> orders.TillMember:
    account = points.Account(TENANT, uuid.uuid4(), -debt, debt, 0, 0, day, today)
    return orders.TillMember(account.member_id, tier, growth, account)


def line(paid_fen: int, category: str = "food", quantity: int = 1) -> LineIn:
    return LineIn(
        sku=f"sku-{paid_fen}",
        category=category,
        quantity=quantity,
        unit_price_fen=paid_fen,
        paid_fen=paid_fen,
    )


def order(*lines: LineIn, cash: int, points_used: int = 0) -> OrderIn:
    return OrderIn(
        channel="pos",
        external_id="o-1",
        store_code="S1",
        lines=list(lines),
        paid_at=NOW,
        payment=PaymentIn(cash_fen=cash, points_used=points_used),
    )


def field_of(error: pytest.ExceptionInfo[Invalid]) -> str:
    return error.value.errors[0].field


# ------------------------------------------------------------------ validate payment


def test_payment_that_adds_up_gives_the_total_and_the_points_value() -> None:
    data = order(line(3_000), line(2_000), cash=4_900, points_used=100)
    tender = orders.validate_payment(program(), data.lines, data.payment)
    assert tender == orders.Tender(total_fen=5_000, points_value_fen=100)


def test_payment_that_does_not_add_up_is_refused_naming_payment() -> None:
    data = order(line(3_000), cash=2_999)
    with pytest.raises(Invalid) as error:
        orders.validate_payment(program(), data.lines, data.payment)
    assert field_of(error) == "payment"


# ------------------------------------------------------------------ redeem (its rule)


def test_points_need_a_member() -> None:
    with pytest.raises(Invalid) as error:
        orders.check_redemption(program(), None, PaymentIn(cash_fen=0, points_used=1), 100)
    assert field_of(error) == "payment.points_used"


def test_points_are_capped_by_the_members_tier() -> None:
    # bronze may pay 10% with points: 10 yuan of 100 = 1,000 points at 100 points a yuan
    orders.check_redemption(program(), member(), PaymentIn(cash_fen=0, points_used=1_000), 10_000)
    with pytest.raises(Invalid) as error:
        orders.check_redemption(
            program(), member(), PaymentIn(cash_fen=0, points_used=1_001), 10_000
        )
    assert field_of(error) == "payment.points_used"
    # gold may pay 20%
    orders.check_redemption(
        program(), member("gold"), PaymentIn(cash_fen=0, points_used=2_000), 10_000
    )


# ------------------------------------------------------------------ earn


def test_earn_follows_the_tier_and_the_category() -> None:
    rules = program(category_multipliers={"feeding": 200})
    lines = [line(10_000, "feeding"), line(5_000)]
    assert orders.earn(rules, member(), "S1", lines, 0, NOW) == [200, 50]
    assert orders.earn(rules, member("gold"), "S1", lines, 0, NOW) == [300, 75]


def test_earn_counts_only_today_against_the_day_cap() -> None:
    rules = program(cap_per_day=100)
    lines = [line(10_000)]
    earned_today = member(day="2026-03-02", today=80)
    earned_yesterday = member(day="2026-03-01", today=80)
    assert orders.earn(rules, earned_today, "S1", lines, 0, NOW) == [20]
    assert orders.earn(rules, earned_yesterday, "S1", lines, 0, NOW) == [100]


def test_booking_the_earn_credits_pending_lots_and_the_day_total() -> None:
    rules = program()
    till = member(day="2026-03-01", today=80, debt=30)
    data = order(line(10_000), line(50), cash=10_050)
    draft = orders.Draft(uuid.uuid4(), data, uuid.uuid4(), orders.Tender(10_050, 0), till, NOW)
    orders.book_earn(rules, draft, [100, 0], ["a plugin: bonus", ""])
    account = till.account
    assert [(lot["amount"], lot["remaining"], lot["line_no"]) for lot in account.new_lots] == [
        (100, 70, 1)  # the debt is repaid first; a line that earned nothing gets no lot
    ]
    assert account.new_lots[0]["available_at"] > NOW  # pending
    assert [(e["kind"], e["amount"], e["reason"]) for e in account.new_entries] == [
        ("earn", 100, "a plugin: bonus")
    ]
    assert (account.balance, account.debt) == (70, 0)
    assert (account.earned_day, account.earned_today, account.lifetime_earned) == (
        "2026-03-02",
        100,
        100,
    )
    assert (draft.per_line, draft.points_earned, draft.growth) == ([100, 0], 100, 100)


# ------------------------------------------------------------------ result


def test_the_result_shows_an_upgrade_reached_by_this_order() -> None:
    rules = program()
    till = member("bronze", growth=950)
    data = order(line(10_000), cash=10_000)
    draft = orders.Draft(uuid.uuid4(), data, uuid.uuid4(), orders.Tender(10_000, 0), till, NOW)
    orders.book_earn(rules, draft, [100], [""])
    result = orders.order_result(rules, draft)
    assert result.status == "paid"
    assert result.points_earned == 100
    assert result.member is not None
    assert (result.member.tier_code, result.member.upgraded_from) == ("silver", "bronze")
    assert (result.member.growth_value, result.member.points_balance) == (1_050, 100)
    assert [(ln.line_no, ln.points_earned) for ln in result.lines] == [(1, 100)]


def test_an_anonymous_order_earns_nothing() -> None:
    data = order(line(10_000), cash=10_000)
    draft = orders.Draft(uuid.uuid4(), data, uuid.uuid4(), orders.Tender(10_000, 0), None, NOW)
    result = orders.order_result(program(), draft)
    assert (result.member, result.member_id, result.points_earned) == (None, None, 0)
    assert [ln.points_earned for ln in result.lines] == [0]


def test_growth_upgrades_at_once_and_never_downgrades() -> None:
    rules = program()
    assert growth_outcome(rules, "bronze", 5_000) == GrowthResult(5_000, "gold", "bronze")
    # a downgrade is the evaluation's, after the tier's protection
    assert growth_outcome(rules, "gold", 10) == GrowthResult(10, "gold", None)
    assert growth_outcome(rules, "silver", 1_200) == GrowthResult(1_200, "silver", None)


# ------------------------------------------------------------------ refunds


def order_line(line_no: int, quantity: int, paid_fen: int, points_earned: int) -> OrderLine:
    return OrderLine(
        line_no=line_no,
        sku=f"sku-{line_no}",
        quantity=quantity,
        paid_fen=paid_fen,
        points_earned=points_earned,
        refunded_quantity=0,
        refunded_fen=0,
        points_reversed=0,
    )


def test_a_refund_without_lines_takes_everything_left() -> None:
    lines = {1: order_line(1, 3, 3_000, 30), 2: order_line(2, 1, 1_000, 10)}
    lines[1].refunded_quantity = 1
    assert orders.plan_refund(lines, None) == {1: 2, 2: 1}
    lines[1].refunded_quantity, lines[2].refunded_quantity = 3, 1
    with pytest.raises(Invalid) as error:
        orders.plan_refund(lines, None)
    assert field_of(error) == "lines"


def test_a_refund_names_each_wrong_line() -> None:
    lines = {1: order_line(1, 2, 2_000, 20)}
    asked = [RefundLineIn(line_no=1, quantity=3), RefundLineIn(line_no=7, quantity=1)]
    with pytest.raises(Invalid) as error:
        orders.plan_refund(lines, asked)
    assert [e.field for e in error.value.errors] == ["lines.0.quantity", "lines.1.line_no"]
    with pytest.raises(Invalid) as twice:
        orders.check_listed_once([RefundLineIn(line_no=1, quantity=1)] * 2)
    assert field_of(twice) == "lines.1.line_no"


def test_the_last_refund_of_a_line_takes_the_rounding_residue() -> None:
    ln = order_line(1, 3, 1_000, 10)
    assert orders.line_refund(ln, 1) == (333, 3)
    ln.refunded_quantity, ln.refunded_fen, ln.points_reversed = 2, 666, 6
    assert orders.line_refund(ln, 1) == (334, 4)


def test_points_that_paid_come_back_in_full_over_the_refunds() -> None:
    used, total = 999, 10_000
    steps = [0, 3_333, 6_666, 10_000]
    back = [orders.points_returned(used, a, b, total) for a, b in pairwise(steps)]
    assert back == [332, 333, 334]
    assert sum(back) == used


def test_refund_status_and_growth() -> None:
    assert orders.refund_status(500, 1_000) == "partially_refunded"
    assert orders.refund_status(1_000, 1_000) == "refunded"
    assert orders.refund_growth(0, 1_050) == -10
    assert orders.refund_growth(1_050, 1_099) == 0


# ------------------------------------------------------------------ the typed values


def test_a_credit_repays_debt_before_it_fills_the_lot() -> None:
    account = member(debt=40).account
    entry = points.credit(
        account,
        program(),
        points.Credit(100, kind="adjust", cause_type="adjust", cause_id="c", source="adjust"),
        NOW,
    )
    assert (entry["kind"], entry["amount"], entry["balance_after"]) == ("adjust", 100, 60)
    assert account.new_lots[0]["remaining"] == 60
    assert account.new_lots[0]["available_at"] == NOW
    with pytest.raises(ValueError, match=">= 0"):
        points.credit(
            account,
            program(),
            points.Credit(-1, kind="adjust", cause_type="adjust", cause_id="c", source="adjust"),
            NOW,
        )


# ------------------------------------------------------------------ plugins' adjustments


def test_an_adjustment_goes_to_the_lines_it_names_and_only_they_carry_its_reason() -> None:
    per_line, reasons = orders.adjusted_lines(
        [100, 50, 20],
        [
            ("bonus", EarnAdjustment(30, "formula", lines=(2,))),
            ("whole", EarnAdjustment(10, "day")),  # the line that earned most
        ],
    )
    assert per_line == [110, 80, 20]
    assert reasons == ["whole: day", "bonus: formula", ""]


def test_a_deduction_takes_from_its_last_named_lines_and_never_below_zero() -> None:
    per_line, reasons = orders.adjusted_lines(
        [100, 50, 20], [("cut", EarnAdjustment(-60, "no promo", lines=(1, 2)))]
    )
    assert per_line == [90, 0, 20]
    assert reasons == ["cut: no promo", "cut: no promo", ""]
    per_line, _ = orders.adjusted_lines([100, 50], [("cut", EarnAdjustment(-500, "all"))])
    assert per_line == [0, 0]


def test_an_adjustment_naming_a_line_the_order_lacks_is_ignored() -> None:
    per_line, reasons = orders.adjusted_lines(
        [100, 50], [("odd", EarnAdjustment(30, "x", lines=(3,)))]
    )
    assert (per_line, reasons) == ([100, 50], ["", ""])
