"""The pure rules of stored value: the bonus a top-up gets, the split a refund gives back,
the lots a spend takes (no database)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from nestpoint.orders.service import stored_value_returned
from nestpoint.wallet.models import WalletLot
from nestpoint.wallet.schemas import BonusTier, WalletRules
from nestpoint.wallet.service import bonus_for, take

RULES = WalletRules(
    bonus_tiers=[
        BonusTier(threshold_fen=50_000, bonus_fen=3_000),
        BonusTier(threshold_fen=100_000, bonus_fen=10_000),
    ]
)


def test_the_highest_tier_reached_gives_its_bonus_once() -> None:
    assert bonus_for(RULES, 49_999) == 0
    assert bonus_for(RULES, 50_000) == 3_000
    assert bonus_for(RULES, 150_000) == 10_000
    assert bonus_for(WalletRules(), 10**10) == 0


@given(
    paid=st.integers(1, 10**9),
    bonus_share=st.integers(0, 100),
    total_extra=st.integers(0, 10**9),
    cuts=st.lists(st.integers(0, 100), max_size=5),
)
def test_refunds_return_principal_first_and_all_of_it_in_the_end(
    paid: int, bonus_share: int, total_extra: int, cuts: list[int]
) -> None:
    bonus_paid = paid * bonus_share // 100
    total = paid + total_extra
    refunded, back_p, back_b = 0, 0, 0
    for cut in [*cuts, 100]:  # the last refund takes what is left
        after = max(refunded, total * cut // 100) if cut < 100 else total
        p, b = stored_value_returned(paid, bonus_paid, refunded, after, total)
        assert p >= 0
        assert b >= 0
        assert b == 0 or back_p + p == paid - bonus_paid  # no bonus before all principal
        back_p, back_b, refunded = back_p + p, back_b + b, after
    assert (back_p, back_b) == (paid - bonus_paid, bonus_paid)


def _lot(bucket: str, remaining: int, age_days: int) -> WalletLot:
    made = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=age_days)
    return WalletLot(id=uuid.uuid4(), member_id=uuid.uuid4(), bucket=bucket, store_id=None,
                     amount=remaining, remaining=remaining, created_at=made)  # fmt: skip


def test_a_spend_takes_the_oldest_lots_of_its_bucket_first() -> None:
    old, new, bonus = _lot("principal", 100, 0), _lot("principal", 100, 5), _lot("bonus", 50, 1)
    taken = take([new, bonus, old], "principal", 150)
    assert [(t.lot, t.amount) for t in taken] == [(old, 100), (new, 50)]
    assert [(t.lot, t.amount) for t in take([new, bonus, old], "bonus", 20)] == [(bonus, 20)]


def test_an_order_without_stored_value_fingerprints_as_before_it_existed() -> None:
    """A till retrying an order recorded before stored value came still gets its answer."""
    from nestpoint.orders.schemas import PaymentIn

    assert "stored_value_fen" not in PaymentIn(cash_fen=100).model_dump_json()
    assert '"stored_value_fen":5' in PaymentIn(cash_fen=95, stored_value_fen=5).model_dump_json()
