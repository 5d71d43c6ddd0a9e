"""Property-based tests: random sequences of ledger operations keep every invariant.

Each example enrols fresh members in one tenant and applies a random sequence of earn,
hold, capture, release, redeem, refund, expire, adjust and merge, each in its own
transaction as a request would; after every step the invariants in ``invariants.py`` hold.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from loyalty.helpers import new_phone
from loyalty.invariants import check_benefits, check_coupons, check_ledger, check_wallet
from nestpoint.benefits.schemas import BenefitSpec, BundleSpec, ExchangeIn, UseIn
from nestpoint.benefits.service import (
    exchange,
    member_benefits,
    put_benefit,
    put_bundle,
    reverse_exchange,
    reverse_use,
    use,
)
from nestpoint.context import Actor, acting_as, tenant_context
from nestpoint.coupons import service as coupons
from nestpoint.coupons.models import Coupon
from nestpoint.coupons.schemas import CouponHoldIn, IssueIn, TemplateIn
from nestpoint.db import scoped_session
from nestpoint.errors import NestpointError
from nestpoint.loyalty.schemas import PointsPolicy, ProgramSpec, TierSpec
from nestpoint.loyalty.service import get_program, invalidate, put_program
from nestpoint.members.merge import merge_members
from nestpoint.members.schemas import ChildIn, GuardianConsentIn, MemberCreate, MemberUpdate
from nestpoint.members.service import add_child, create_member, link_family, update_member
from nestpoint.orders.schemas import CouponIn, OrderIn, RefundIn, RefundLineIn
from nestpoint.orders.service import create_order, create_refund
from nestpoint.payments import service as payments
from nestpoint.payments.schemas import StripeAccountIn
from nestpoint.points import service as points
from nestpoint.points.jobs import expire_points, release_expired_holds
from nestpoint.tenancy.schemas import StoreCreate, TenantCreate
from nestpoint.tenancy.service import create_store, create_tenant
from nestpoint.wallet import service as wallet
from nestpoint.wallet.models import WalletAccount
from nestpoint.wallet.schemas import BonusTier, TopupIn, WalletAdjustmentIn, WalletRules

CATEGORIES = ["feeding", "diapers", "toys"]

line = st.fixed_dictionaries(
    {
        "category": st.sampled_from(CATEGORIES),
        "quantity": st.integers(1, 4),
        "paid_fen": st.integers(0, 50_000),
    }
)
operation = st.one_of(
    st.tuples(st.just("earn"), st.lists(line, min_size=1, max_size=3)),
    # Redeem and hold a share (percent) of what is available, so most of them succeed.
    st.tuples(st.just("redeem"), st.integers(1, 120)),
    st.tuples(st.just("hold"), st.integers(1, 120)),
    st.tuples(st.just("capture"), st.integers(0, 5)),
    st.tuples(st.just("release"), st.integers(0, 5)),
    # The timeout job releases every open hold.
    st.tuples(st.just("release_due"), st.just(0)),
    # Refund one line partly (quantity), or everything left of the order (quantity 0).
    st.tuples(st.just("refund"), st.integers(0, 5), st.integers(0, 4)),
    st.tuples(st.just("expire"), st.integers(0, 90)),
    st.tuples(st.just("adjust"), st.integers(-2000, 2000)),
    # Within the family: to the partner (True) or back from them (False), a share.
    st.tuples(st.just("transfer"), st.booleans(), st.integers(1, 120)),
    # Merge in a new member with points, or one who owes points (debt), or both.
    st.tuples(st.just("merge"), st.integers(0, 3000), st.booleans()),
    # Benefits that touch the ledgers: exchange points for a gift (积分兑换) and undo it, use
    # a gift and give the use back, a birth recorded, and a look at the member's benefits
    # (a till's call: it gives the newborn pack and its points once a birth is recorded).
    st.tuples(st.just("exchange"), st.just(0)),
    st.tuples(st.just("unexchange"), st.integers(0, 5)),
    st.tuples(st.just("use_gift"), st.just(0)),
    st.tuples(st.just("unuse"), st.integers(0, 5)),
    st.tuples(st.just("birth"), st.just(0)),
    st.tuples(st.just("look"), st.just(0)),
    # An order whose feeding line the till priced at the member price (会员价): one use of
    # the benefit's quota, given back when the order is refunded in full.
    st.tuples(st.just("discount"), st.integers(100, 50_000)),
    # Coupons: buy one with points (积分兑券), pay part of an order with one (a refund in
    # full gives it back), hold one at the till and release it.
    st.tuples(st.just("coupon_buy"), st.just(0)),
    st.tuples(st.just("coupon_pay"), st.integers(0, 5)),
    st.tuples(st.just("coupon_hold"), st.integers(0, 5)),
    st.tuples(st.just("coupon_release"), st.integers(0, 5)),
    # Stored value (储值): a top-up at the till (a bonus from 500 yuan), an order paying a
    # share of the wallet (over 100: more than there is), HQ's adjustment of principal and
    # bonus, and a member with stored value merged in.
    st.tuples(st.just("wallet_topup"), st.integers(1, 120_000)),
    st.tuples(st.just("wallet_pay"), st.integers(1, 120), st.integers(0, 5_000)),
    st.tuples(st.just("wallet_adjust"), st.integers(-5_000, 5_000), st.integers(-2_000, 2_000)),
    st.tuples(st.just("wallet_merge"), st.integers(1, 60_000)),
    # A top-up paid through Stripe: asked for (pending), then its payment settled by the
    # worker or the webhook (succeeded or declined), news that may come twice.
    st.tuples(st.just("wallet_stripe_topup"), st.integers(1, 120_000)),
    st.tuples(st.just("wallet_stripe_settle"), st.integers(0, 5), st.booleans(), st.booleans()),
    # The hourly job taking back bonus past the chain's 30 days, run that many days ahead.
    st.tuples(st.just("wallet_expire"), st.integers(0, 40)),
)
# SQLite and PostgreSQL both: examples per run (raise it for a long run).
EXAMPLES = int(os.environ.get("NESTPOINT_LEDGER_EXAMPLES", "100"))


@pytest.fixture(scope="module")
async def ledger_tenant(database_env):  # type: ignore[no-untyped-def]
    """A tenant whose programme makes every operation reachable: no pending period, points
    may pay a whole order, lots expire a month after earning."""
    with acting_as(Actor("system", name="tests")):
        async with scoped_session() as session:
            tenant = await create_tenant(
                session, TenantCreate(slug=f"ledger-{uuid.uuid4().hex[:8]}", name="Ledger")
            )
        with tenant_context(tenant.id):
            async with scoped_session() as session:
                await create_store(session, StoreCreate(code="S1", name="Store"))
                await put_program(
                    session,
                    ProgramSpec(
                        points=PointsPolicy(
                            pending_days=0,
                            expiry="rolling",
                            expiry_months=1,
                            family_transfer=True,
                        ),
                        tiers=[
                            TierSpec(
                                code="bronze",
                                name="Bronze",
                                threshold=0,
                                redeem_cap_percent=100,
                                benefits=["member-price"],
                            ),
                            TierSpec(
                                code="gold",
                                name="Gold",
                                threshold=500,
                                earn_rate_percent=150,
                                redeem_cap_percent=100,
                                benefits=["member-price"],
                            ),
                        ],
                    ),
                )
            invalidate(tenant.id)
            async with scoped_session() as session:
                await put_benefit(session, GIFT)
                await put_benefit(session, MEMBER_PRICE)
                await put_bundle(session, PACK)
                await coupons.put_template(session, "C10", COUPON)
                await wallet.put_rules(session, WALLET_RULES)
                await payments.put_account(session, STRIPE)
    return tenant.id


GIFT = BenefitSpec(
    code="gift", name="Gift", type="core.gift", exchange_points=300, quota=1, period="grant"
)
MEMBER_PRICE = BenefitSpec(
    code="member-price",
    name="Member price",
    type="core.member_price",
    options={"discount_percent": 95, "categories": ["feeding"]},
    quota=2,
    period="grant",
)
PACK = BundleSpec(code="pack", name="Newborn pack", benefits=["gift"], points=150)
# 10 yuan off an order of 50 yuan or more, for 200 points.
COUPON = TemplateIn(
    name="满50减10", kind="amount_off", threshold_fen=5_000, amount_off_fen=1_000,
    valid_days=30, points_price=200, stackable=True,
)  # fmt: skip


STRIPE = StripeAccountIn(secret_key="sk_test_ledger", webhook_secret="whsec_ledger")
# 充500送30, 充1000送100.
WALLET_RULES = WalletRules(
    bonus_tiers=[
        BonusTier(threshold_fen=50_000, bonus_fen=3_000),
        BonusTier(threshold_fen=100_000, bonus_fen=10_000),
    ],
    bonus_valid_days=30,
)


async def _enrol(tenant_id: uuid.UUID) -> uuid.UUID:
    with tenant_context(tenant_id):
        async with scoped_session() as session:
            member = await create_member(session, MemberCreate(phone=new_phone()))
            return member.id


def _order(
    member_id: uuid.UUID, lines: list[dict], points_used: int = 0, hold_id: uuid.UUID | None = None
) -> OrderIn:
    total = sum(li["paid_fen"] for li in lines)
    return OrderIn.model_validate(
        {
            "channel": "pos",
            "external_id": uuid.uuid4().hex,
            "store_code": "S1",
            "member": {"id": str(member_id)},
            "lines": [
                {"sku": f"SKU-{i}", "unit_price_fen": li["paid_fen"] + li.get("discount_fen", 0)}
                | li
                for i, li in enumerate(lines)
            ],
            "paid_at": datetime.now(UTC).isoformat(),
            "payment": {
                "cash_fen": total - points_used,
                "points_used": points_used,
                "hold_id": str(hold_id) if hold_id else None,
            },
        }
    )


@dataclass
class World:
    """One example's members and what the operations made: the member every operation is
    about, a partner in the same family, and everyone merged into the member."""

    tenant_id: uuid.UUID
    member_id: uuid.UUID
    partner_id: uuid.UUID
    members: list[uuid.UUID] = field(default_factory=list)
    orders: list[tuple[str, int]] = field(default_factory=list)  # (external id, lines)
    holds: list[uuid.UUID] = field(default_factory=list)
    exchanges: list[uuid.UUID] = field(default_factory=list)  # exchanged entitlements
    uses: list[uuid.UUID] = field(default_factory=list)  # benefit uses
    coupon_holds: list[uuid.UUID] = field(default_factory=list)
    stripe_payments: list[uuid.UUID] = field(default_factory=list)  # top-ups' payments


async def _world(tenant_id: uuid.UUID) -> World:
    member_id, partner_id = await _enrol(tenant_id), await _enrol(tenant_id)
    with acting_as(Actor("system", name="tests")), tenant_context(tenant_id):
        async with scoped_session() as session:
            await link_family(session, member_id, partner_id)
    return World(tenant_id, member_id, partner_id, [member_id, partner_id])


async def _step(world: World, op: tuple) -> None:  # type: ignore[type-arg]
    """One operation in its own transaction, as a request would run it; a refusal (not
    enough points, already resolved...) is fine."""
    with acting_as(Actor("system", name="tests")), tenant_context(world.tenant_id):
        try:
            async with scoped_session() as session:
                await _apply(session, op, world)
        except NestpointError:
            pass


async def _check(world: World) -> None:
    with acting_as(Actor("system", name="tests")), tenant_context(world.tenant_id):
        async with scoped_session() as session:
            await check_ledger(session, world.members)
            await check_benefits(session, world.members)
            await check_coupons(session, world.members)
            await check_wallet(session, world.members)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ops=st.lists(operation, min_size=1, max_size=30))
# Always run: a full refund of a two-line order whose points were spent, where both lines'
# clawbacks fall on one later lot (two clawbacks in one transaction must not both take the
# lot's stale remainder), and a hold captured by an order.
@example(
    ops=[
        (
            "earn",
            [
                {"category": "toys", "quantity": 1, "paid_fen": 5000},
                {"category": "toys", "quantity": 1, "paid_fen": 5000},
            ],
        ),
        ("redeem", 100),
        ("earn", [{"category": "toys", "quantity": 1, "paid_fen": 6000}]),
        ("refund", 0, 0),
    ]
)
@example(
    ops=[
        ("earn", [{"category": "toys", "quantity": 1, "paid_fen": 30000}]),
        ("hold", 50),
        ("capture", 0),
        ("expire", 90),
        ("merge", 10, False),
    ]
)
# Overdraw through debt (issue 7.1): earn, hold it all, refund the order (debt), release the
# hold, then try to spend; and the same with the timeout job releasing the hold.
@example(
    ops=[
        ("earn", [{"category": "toys", "quantity": 1, "paid_fen": 100_000}]),
        ("hold", 100),
        ("refund", 0, 0),
        ("release", 0),
        ("redeem", 100),
    ]
)
@example(
    ops=[
        ("earn", [{"category": "toys", "quantity": 1, "paid_fen": 100_000}]),
        ("hold", 100),
        ("refund", 0, 0),
        ("release_due", 0),
        ("transfer", True, 100),
    ]
)
# A member with points takes in a member who owes points.
@example(ops=[("adjust", 500), ("merge", 0, True), ("redeem", 100)])
# Member price on orders: used up after two, a partial refund keeps the use, a full refund
# gives it back (and the quota lets a third order have it), a merge in between.
@example(
    ops=[
        ("look", 0),
        ("discount", 10_000),
        ("discount", 20_000),
        ("discount", 30_000),
        ("refund", 1, 0),
        ("merge", 10, False),
        ("discount", 40_000),
        ("refund", 0, 1),
    ]
)
# Coupons: bought with points, held and released, paying an order refunded in full (the
# coupon comes back) and paying again, a merge in between.
@example(
    ops=[
        ("adjust", 1000),
        ("coupon_buy", 0),
        ("coupon_hold", 0),
        ("coupon_release", 0),
        ("coupon_pay", 0),
        ("refund", 0, 0),
        ("merge", 300, False),
        ("coupon_pay", 0),
        ("coupon_buy", 0),
    ]
)
# Stored value: a top-up with its bonus, an order paying most of it (principal, then bonus),
# a partial and a whole refund, an adjustment, a member with stored value merged in, paying
# again past the balance (refused).
@example(
    ops=[
        ("wallet_topup", 100_000),
        ("wallet_pay", 95, 1_000),
        ("refund", 0, 1),
        ("refund", 0, 0),
        ("wallet_adjust", -5_000, 2_000),
        ("wallet_merge", 50_000),
        ("wallet_pay", 100, 0),
        ("wallet_pay", 120, 0),
        ("merge", 100, True),
    ]
)
# Stripe top-ups: one declined, one paid and told twice, one paid after the member spent
# and merged, one told declined after it succeeded (stale news changes nothing).
@example(
    ops=[
        ("wallet_stripe_topup", 100_000),
        ("wallet_stripe_topup", 60_000),
        ("wallet_stripe_settle", 0, False, False),
        ("wallet_stripe_settle", 1, True, True),
        ("wallet_pay", 90, 0),
        ("wallet_stripe_topup", 20_000),
        ("wallet_merge", 10_000),
        ("wallet_stripe_settle", 2, True, False),
        ("wallet_stripe_settle", 2, False, True),
        ("refund", 0, 0),
        ("wallet_expire", 31),
        ("wallet_pay", 100, 0),
        ("wallet_expire", 31),
    ]
)
async def test_random_operations_keep_the_ledger_consistent(ledger_tenant, ops):
    world = await _world(ledger_tenant)
    for op in ops:
        await _step(world, op)
        await _check(world)


@settings(
    max_examples=max(EXAMPLES // 4, 10),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(rounds=st.lists(st.lists(operation, min_size=2, max_size=6), min_size=1, max_size=5))
@example(
    rounds=[
        [("adjust", 2000), ("earn", [{"category": "toys", "quantity": 1, "paid_fen": 9000}])],
        [("hold", 100), ("redeem", 100), ("transfer", True, 100), ("merge", 100, True)],
        [("refund", 0, 0), ("release", 0), ("release_due", 0), ("redeem", 100)],
    ]
)
# Benefits beside the points: an exchange, a use and its reversal, an undone exchange, and a
# look that gives the newborn pack's points, racing orders, holds and adjustments.
@example(
    rounds=[
        [("adjust", 2000), ("birth", 0)],
        [("exchange", 0), ("look", 0), ("earn", [{"category": "toys", "quantity": 1,
          "paid_fen": 9000}]), ("use_gift", 0), ("hold", 50)],
        [("unuse", 0), ("unexchange", 0), ("exchange", 0), ("redeem", 100), ("look", 0)],
        [("discount", 10_000), ("discount", 20_000), ("discount", 30_000), ("refund", 0, 0)],
        [("refund", 1, 0), ("discount", 40_000), ("merge", 10, True), ("look", 0)],
    ]
)  # fmt: skip
# Stored value racing itself and the points: top-ups, spends, refunds and a merge at once.
@example(
    rounds=[
        [("wallet_topup", 100_000), ("wallet_topup", 20_000), ("adjust", 500)],
        [("wallet_pay", 60, 0), ("wallet_pay", 60, 100), ("wallet_pay", 60, 0), ("redeem", 50)],
        [("refund", 0, 0), ("refund", 1, 1), ("wallet_merge", 30_000), ("wallet_adjust", -1, -1)],
    ]
)
# Stripe top-ups settled (twice) while the member spends, is adjusted and merged.
@example(
    rounds=[
        [("wallet_stripe_topup", 100_000), ("wallet_stripe_topup", 30_000),
         ("wallet_topup", 5_000)],
        [("wallet_stripe_settle", 0, True, True), ("wallet_stripe_settle", 1, True, True),
         ("wallet_pay", 50, 0), ("wallet_merge", 20_000)],
        [("wallet_stripe_settle", 1, False, False), ("wallet_pay", 80, 10), ("refund", 0, 0)],
    ]
)  # fmt: skip
async def test_concurrent_operations_keep_the_ledger_consistent(ledger_tenant, rounds):
    """Rounds of operations run at once (concurrent actors, each its own transaction):
    whatever order the locks give them, every invariant holds after each round.

    The two periodic jobs here run with a clock ahead of the tills' (that is how the test
    makes points old and holds time out), so a lot or a hold a till writes concurrently
    could already be due for them, which never happens in production (a new lot or hold is
    due only later than the job's clock; a merge, which moves lots and holds, waits for the
    jobs). So they run at the end of their round, not beside the tills.
    """
    world = await _world(ledger_tenant)
    for ops in rounds:
        at_once = [op for op in ops if op[0] not in CLOCK_AHEAD]
        await asyncio.gather(*[_step(world, op) for op in at_once])
        for op in ops:
            if op[0] in CLOCK_AHEAD:
                await _step(world, op)
        await _check(world)


# The jobs this test runs with a future clock.
CLOCK_AHEAD = ("expire", "release_due", "wallet_expire")


async def _share_of_available(session, program, member_id, percent) -> int:  # type: ignore[no-untyped-def]
    """``percent`` of the member's available points (over 100 asks for more than there is)."""
    available = (await points.balances(session, program, member_id)).available
    return max(1, available * percent // 100)


async def _owing_member(session, program) -> uuid.UUID:  # type: ignore[no-untyped-def]
    """A new member who spent points an order earned, and then had the order refunded."""
    debtor = await create_member(session, MemberCreate(phone=new_phone()))
    await session.flush()
    earned = await create_order(
        session, _order(debtor.id, [{"category": "toys", "quantity": 1, "paid_fen": 80_000}])
    )
    spend = earned.body["points_earned"]
    await create_order(
        session,
        _order(
            debtor.id,
            [{"category": "toys", "quantity": 1, "paid_fen": spend}],
            points_used=spend,
        ),
    )
    await create_refund(
        session, "pos", earned.body["external_id"], RefundIn(external_id="r", lines=None)
    )
    return debtor.id


async def _apply(session, op, world: World) -> None:  # type: ignore[no-untyped-def]
    kind, member_id = op[0], world.member_id
    program = await get_program(session)
    if kind == "earn":
        answer = await create_order(session, _order(member_id, op[1]))
        world.orders.append((answer.body["external_id"], len(op[1])))
    elif kind == "redeem":
        amount = await _share_of_available(session, program, member_id, op[1])
        await create_order(
            session,
            _order(
                member_id,
                [{"category": "toys", "quantity": 1, "paid_fen": amount}],
                points_used=amount,
            ),
        )
    elif kind == "hold":
        amount = await _share_of_available(session, program, member_id, op[1])
        held = await points.hold(
            session, program, member_id, amount, idempotency_key=None, order_ref=None, store_id=None
        )
        world.holds.append(uuid.UUID(held.body["id"]))
    elif kind == "capture" and world.holds:
        held = await points.get_hold(session, world.holds[op[1] % len(world.holds)])
        await create_order(
            session,
            _order(
                member_id,
                [{"category": "toys", "quantity": 1, "paid_fen": held.amount}],
                points_used=held.amount,
                hold_id=held.id,
            ),
        )
    elif kind == "release" and world.holds:
        await points.release_hold(session, world.holds[op[1] % len(world.holds)])
    elif kind == "release_due":
        await release_expired_holds(session, datetime.now(UTC) + timedelta(days=1))
    elif kind == "refund" and world.orders:
        external_id, n_lines = world.orders[op[1] % len(world.orders)]
        lines = (
            None if op[2] == 0 else [RefundLineIn(line_no=(op[1] % n_lines) + 1, quantity=op[2])]
        )
        await create_refund(
            session, "pos", external_id, RefundIn(external_id=uuid.uuid4().hex, lines=lines)
        )
    elif kind == "expire":
        await expire_points(session, datetime.now(UTC) + timedelta(days=op[1]))
    elif kind == "adjust" and op[1] != 0:
        await points.adjust(
            session,
            program,
            member_id,
            op[1],
            reason="test",
            actor="tests",
            idempotency_key=uuid.uuid4().hex,
        )
    elif kind == "transfer":
        frm, to = (member_id, world.partner_id) if op[1] else (world.partner_id, member_id)
        await points.transfer(
            session,
            program,
            frm,
            to,
            await _share_of_available(session, program, frm, op[2]),
            actor="tests",
            idempotency_key=uuid.uuid4().hex,
        )
    elif kind == "merge":
        sources = []
        if op[1]:
            other = await create_member(session, MemberCreate(phone=new_phone()))
            await session.flush()
            await points.adjust(
                session,
                program,
                other.id,
                op[1],
                reason="seed",
                actor="tests",
                idempotency_key=uuid.uuid4().hex,
            )
            sources.append(other.id)
        if op[2]:
            sources.append(await _owing_member(session, program))
        for source in sources:
            await merge_members(session, member_id, source)
        world.members.extend(sources)
    elif kind.startswith("coupon_"):
        await _apply_coupon(session, op, world)
    elif kind.startswith("wallet_"):
        await _apply_wallet(session, op, world)
    else:
        await _apply_benefit(session, op, world)


async def _apply_benefit(session, op, world: World) -> None:  # type: ignore[no-untyped-def]
    kind, member_id = op[0], world.member_id
    if kind == "exchange":
        answer = await exchange(session, member_id, "gift", ExchangeIn(idempotency_key=_key()))
        world.exchanges.append(uuid.UUID(answer.body["entitlement"]["id"]))
    elif kind == "unexchange" and world.exchanges:
        await reverse_exchange(session, world.exchanges[op[1] % len(world.exchanges)])
    elif kind == "use_gift":
        answer = await use(session, member_id, "gift", UseIn(idempotency_key=_key()))
        world.uses.append(uuid.UUID(answer.body["id"]))
    elif kind == "unuse" and world.uses:
        await reverse_use(session, world.uses[op[1] % len(world.uses)], "test")
    elif kind == "birth":  # as the API records it: consent and child, no benefits look-up
        consent = GuardianConsentIn(granted=True, source="pos")
        await update_member(session, member_id, MemberUpdate(guardian_consent=consent))
        today = (await get_program(session)).local_day(datetime.now(UTC))
        await add_child(session, member_id, ChildIn(birth_date=date.fromisoformat(today)))
    elif kind == "look":
        await member_benefits(session, member_id, None)  # syncs: the pack and its points
    elif kind == "discount":
        off = op[1] - op[1] * 95 // 100
        claimed = {"category": "feeding", "quantity": 1, "paid_fen": op[1] - off,
                   "benefit_code": "member-price", "discount_fen": off}  # fmt: skip
        answer = await create_order(session, _order(member_id, [claimed]))
        world.orders.append((answer.body["external_id"], 1))


async def _apply_coupon(session, op, world: World) -> None:  # type: ignore[no-untyped-def]
    kind, member_id = op[0], world.member_id
    if kind == "coupon_buy":
        data = IssueIn(template_code="C10", idempotency_key=_key(), pay_with_points=True)
        await coupons.grant_or_exchange(session, member_id, data, may_grant=False)
        return
    mine = (
        await session.scalars(
            select(Coupon.code)
            .where(Coupon.member_id == member_id, Coupon.status != "redeemed")
            .order_by(Coupon.issued_at, Coupon.id)
        )
    ).all()
    if kind == "coupon_pay" and mine:
        order = _order(member_id, [{"category": "toys", "quantity": 1, "paid_fen": 6_000}])
        order.payment.cash_fen = 5_000
        order.payment.coupons = [CouponIn(code=mine[op[1] % len(mine)], amount_fen=1_000)]
        answer = await create_order(session, order)
        world.orders.append((answer.body["external_id"], 1))
    elif kind == "coupon_hold" and mine:
        hold = CouponHoldIn(member_id=member_id, codes=[mine[op[1] % len(mine)]])
        answer = await coupons.hold(session, hold)
        world.coupon_holds.append(uuid.UUID(answer.body["hold_id"]))
    elif kind == "coupon_release" and world.coupon_holds:
        await coupons.release(session, world.coupon_holds[op[1] % len(world.coupon_holds)])


async def _apply_wallet(session, op, world: World) -> None:  # type: ignore[no-untyped-def]
    kind, member_id = op[0], world.member_id
    if kind == "wallet_topup":
        data = TopupIn(amount_fen=op[1], store_code="S1", idempotency_key=_key())
        await wallet.top_up(session, member_id, data)
    elif kind == "wallet_pay":
        account = await session.get(WalletAccount, (world.tenant_id, member_id))
        balance = account.principal_fen + account.bonus_fen if account else 0
        stored = max(1, balance * op[1] // 100)
        order = _order(member_id, [{"category": "toys", "quantity": 2,
                                    "paid_fen": stored + op[2]}])  # fmt: skip
        order.payment.cash_fen, order.payment.stored_value_fen = op[2], stored
        answer = await create_order(session, order)
        world.orders.append((answer.body["external_id"], 1))
    elif kind == "wallet_adjust" and (op[1] or op[2]):
        data = WalletAdjustmentIn(principal_fen=op[1], bonus_fen=op[2], reason="test",
                                  idempotency_key=_key())  # fmt: skip
        await wallet.adjust(session, member_id, data)
    elif kind == "wallet_stripe_topup":
        data = TopupIn(amount_fen=op[1], store_code="S1", tender="stripe",
                       payment_method="pm_card_visa", idempotency_key=_key())  # fmt: skip
        answer = await wallet.top_up(session, member_id, data)
        world.stripe_payments.append(answer.body["payment_id"])
    elif kind == "wallet_stripe_settle" and world.stripe_payments:
        # What the worker's answer or Stripe's webhook does: settle under the row lock.
        payment_id = uuid.UUID(str(world.stripe_payments[op[1] % len(world.stripe_payments)]))
        outcome = "succeeded" if op[2] else "failed"
        for _ in range(2 if op[3] else 1):
            payment = await payments.lock_payment(session, payment_id)
            await payments.settle(session, payment, outcome, intent_id=f"pi_{payment_id.hex}")
    elif kind == "wallet_expire":
        await wallet.expire_bonus(session, datetime.now(UTC) + timedelta(days=op[1]))
    elif kind == "wallet_merge":
        other = await create_member(session, MemberCreate(phone=new_phone()))
        await session.flush()
        data = TopupIn(amount_fen=op[1], store_code="S1", idempotency_key=_key())
        await wallet.top_up(session, other.id, data)
        await merge_members(session, member_id, other.id)
        world.members.append(other.id)


def _key() -> str:
    return uuid.uuid4().hex
