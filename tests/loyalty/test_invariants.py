"""Property-based tests: random sequences of ledger operations keep every invariant.

Each example enrols fresh members in one tenant and applies a random sequence of earn,
hold, capture, release, redeem, refund, expire, adjust and merge, each in its own
transaction as a request would; after every step the invariants in ``invariants.py`` hold.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from loyalty.helpers import new_phone
from loyalty.invariants import check_ledger
from nestpoint.context import Actor, acting_as, tenant_context
from nestpoint.db import scoped_session
from nestpoint.errors import NestpointError
from nestpoint.loyalty.schemas import PointsPolicy, ProgramSpec, TierSpec
from nestpoint.loyalty.service import get_program, invalidate, put_program
from nestpoint.members.schemas import MemberCreate
from nestpoint.members.service import create_member, merge_members
from nestpoint.orders.schemas import OrderIn, RefundIn, RefundLineIn
from nestpoint.orders.service import create_order, create_refund
from nestpoint.points import service as points
from nestpoint.points.jobs import expire_points
from nestpoint.tenancy.schemas import StoreCreate, TenantCreate
from nestpoint.tenancy.service import create_store, create_tenant

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
    # Refund one line partly (quantity), or everything left of the order (quantity 0).
    st.tuples(st.just("refund"), st.integers(0, 5), st.integers(0, 4)),
    st.tuples(st.just("expire"), st.integers(0, 90)),
    st.tuples(st.just("adjust"), st.integers(-2000, 2000)),
    st.tuples(st.just("merge"), st.integers(0, 3000)),
)


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
                        points=PointsPolicy(pending_days=0, expiry="rolling", expiry_months=1),
                        tiers=[
                            TierSpec(
                                code="bronze", name="Bronze", threshold=0, redeem_cap_percent=100
                            ),
                            TierSpec(
                                code="gold",
                                name="Gold",
                                threshold=500,
                                earn_rate_percent=150,
                                redeem_cap_percent=100,
                            ),
                        ],
                    ),
                )
            invalidate(tenant.id)
    return tenant.id


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
                {"sku": f"SKU-{i}", "unit_price_fen": li["paid_fen"], **li}
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


@settings(
    max_examples=100,
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
        ("merge", 10),
    ]
)
async def test_random_operations_keep_the_ledger_consistent(ledger_tenant, ops):
    tenant_id = ledger_tenant
    member_id = await _enrol(tenant_id)
    members = [member_id]
    orders: list[tuple[str, int]] = []  # (external id, number of lines)
    holds: list[uuid.UUID] = []
    for op in ops:
        with acting_as(Actor("system", name="tests")), tenant_context(tenant_id):
            try:
                async with scoped_session() as session:
                    await _apply(session, op, member_id, members, orders, holds)
            except NestpointError:
                pass  # a refused operation (not enough points, already resolved...) is fine
            async with scoped_session() as session:
                await check_ledger(session, members)


async def _share_of_available(session, program, member_id, percent) -> int:  # type: ignore[no-untyped-def]
    """``percent`` of the member's available points (over 100 asks for more than there is)."""
    available = (await points.balances(session, program, member_id)).available
    return max(1, available * percent // 100)


async def _apply(session, op, member_id, members, orders, holds) -> None:  # type: ignore[no-untyped-def]
    kind = op[0]
    program = await get_program(session)
    if kind == "earn":
        _, response = await create_order(session, _order(member_id, op[1]))
        orders.append((response["external_id"], len(op[1])))
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
        holds.append(held.id)
    elif kind in ("capture", "release") and holds:
        hold_id = holds[op[1] % len(holds)]
        if kind == "capture" and op[1] % 2 == 0:
            held = await points.get_hold(session, hold_id)
            await create_order(
                session,
                _order(
                    member_id,
                    [{"category": "toys", "quantity": 1, "paid_fen": held.amount}],
                    points_used=held.amount,
                    hold_id=hold_id,
                ),
            )
        else:
            await points.resolve_hold(session, hold_id, kind)
    elif kind == "refund" and orders:
        external_id, n_lines = orders[op[1] % len(orders)]
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
    elif kind == "merge":
        other = await create_member(session, MemberCreate(phone=new_phone()))
        await session.flush()
        if op[1]:
            await points.adjust(
                session,
                program,
                other.id,
                op[1],
                reason="seed",
                actor="tests",
                idempotency_key=uuid.uuid4().hex,
            )
        await merge_members(session, member_id, other.id)
        members.append(other.id)
