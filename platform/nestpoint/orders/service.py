"""Orders and refunds: the till's hot path. No HTTP; never commits.

Order of work for an order (one transaction):
1. resolve the store and the member, and lock the member's points account (a member merged
   away leads to the member it was merged into);
2. compute everything in Python (payment check, redemption, earn, growth) without writing;
3. claim the order's idempotency key (``channel/external_id``) with the answer: if a
   concurrent retry got there first, nothing else is written and its answer is replayed;
4. write the order, its lines, the ledger, growth/tier, and the outbox events.
A rule that refuses a retry before step 3 (its points were already spent, its hold already
captured) is answered from the stored answer all the same.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, String, Uuid, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from nestpoint.benefits import pricing
from nestpoint.benefits import service as benefits
from nestpoint.benefits.pricing import Priced
from nestpoint.context import require_tenant
from nestpoint.coupons import service as coupons
from nestpoint.coupons.rules import BasketLine
from nestpoint.db import utcnow
from nestpoint.db.base import table_of
from nestpoint.db.batch import WriteBatch
from nestpoint.db.pagination import Page, paginate
from nestpoint.db.raw import Statement
from nestpoint.errors import (
    Conflict,
    FieldError,
    Forbidden,
    Invalid,
    NestpointError,
    NotFound,
)
from nestpoint.events.service import emit
from nestpoint.idempotency import service as idempotency
from nestpoint.idempotency.service import Answer, fingerprint
from nestpoint.loyalty import rules
from nestpoint.loyalty.rules import Line, Program
from nestpoint.loyalty.service import get_program
from nestpoint.members.models import Child, Member, MemberIdentity
from nestpoint.members.pii import identity_hash
from nestpoint.members.service import phone_lookup_hash
from nestpoint.orders.models import Order, OrderLine, OrderStatus, Refund
from nestpoint.orders.schemas import (
    AppliedBenefit,
    LineIn,
    LineResult,
    MemberOutcome,
    MemberRef,
    OrderCoupon,
    OrderIn,
    OrderResult,
    PaymentIn,
    PreviewIn,
    PreviewResult,
    RefundIn,
    RefundLineIn,
    RefundResult,
    RefundSummary,
    check_paid_at,
)
from nestpoint.plugins.manager import get_plugin_host
from nestpoint.plugins.types import EarnAdjustment, EarnContext, EarnLine
from nestpoint.points import service as points
from nestpoint.points.models import PointAccount, PointHold
from nestpoint.tenancy.service import ensure_store_trading, store_codes
from nestpoint.tiers import service as tiers
from nestpoint.wallet import service as wallet

log = logging.getLogger("nestpoint.orders")

orders = table_of(Order)
order_lines = table_of(OrderLine)
members = table_of(Member)
accounts = table_of(PointAccount)


async def resolve_store(session: AsyncSession, code: str | None) -> tuple[uuid.UUID, str]:
    """The order's store (id, code), which must be active (tenancy's rule)."""
    store_id, store_code = await _find_store(session, code)
    await ensure_store_trading(session, store_id)
    return store_id, store_code


async def _find_store(session: AsyncSession, code: str | None) -> tuple[uuid.UUID, str]:
    """The order's store (id, code): a store key's own store, or the given code (HQ keys).
    A store missing from the cache may be new: the cache is reloaded once before failing."""
    ctx = require_tenant()
    if ctx.store_id is None and code is None:
        raise Invalid.field("store_code", "required with an HQ key")
    for refresh in (False, True):
        codes = await store_codes(session, refresh=refresh)
        if ctx.store_id is not None:
            own = next((c for c, i in codes.items() if i == ctx.store_id), None)
            if own is not None:
                if code is not None and code != own:
                    raise Invalid.field(
                        "store_code", "a store key records orders for its own store"
                    )
                return ctx.store_id, own
        elif code in codes:
            return codes[code], code
    if ctx.store_id is not None:
        return ctx.store_id, ""
    raise Invalid.field("store_code", f"no store with code {code!r}")


# ------------------------------------------------------------------ members at the till


@dataclass(slots=True)
class TillMember:
    id: uuid.UUID
    tier_code: str | None
    growth_value: int
    account: points.Account


def _locked_member(*where: Any) -> Statement:
    """The member (of the bound ``tenant_id``) and their points account, the account locked."""
    return Statement(
        select(
            members.c.id,
            members.c.tier_code,
            members.c.growth_value,
            accounts.c.balance,
            accounts.c.debt,
            accounts.c.held,
            accounts.c.lifetime_earned,
            accounts.c.earned_day,
            accounts.c.earned_today,
            accounts.c.merged_into_id,
            accounts.c.closed_at,
        )
        .join(
            accounts,
            (accounts.c.tenant_id == members.c.tenant_id) & (accounts.c.member_id == members.c.id),
        )
        .where(members.c.tenant_id == bindparam("tenant_id", type_=Uuid()), *where)
        .with_for_update(of=accounts)
    )


# The till's lock of a member named by id, by phone or by an identity (``nestpoint.db.raw``).
LOCK_BY_ID = _locked_member(members.c.id == bindparam("member_id", type_=Uuid()))
LOCK_BY_PHONE = _locked_member(members.c.phone_hash == bindparam("phone_hash", type_=String()))
LOCK_BY_IDENTITY = _locked_member(
    members.c.id
    == select(MemberIdentity.member_id)
    .where(
        MemberIdentity.tenant_id == bindparam("tenant_id", type_=Uuid()),
        MemberIdentity.kind == bindparam("identity_kind", type_=String()),
        MemberIdentity.value_hash == bindparam("identity_hash", type_=String()),
    )
    .scalar_subquery()
)


async def lock_member(session: AsyncSession, ref: MemberRef, field: str = "member") -> TillMember:
    """Find the member named by ``ref`` and lock their points account, in one statement."""
    tenant_id = require_tenant().tenant_id
    if ref.id is not None:
        row = await LOCK_BY_ID.one_or_none(session, tenant_id=tenant_id, member_id=ref.id)
    elif ref.phone is not None:
        _, digest = phone_lookup_hash(ref.phone, f"{field}.phone")
        row = await LOCK_BY_PHONE.one_or_none(session, tenant_id=tenant_id, phone_hash=digest)
    else:
        assert ref.identity is not None
        row = await LOCK_BY_IDENTITY.one_or_none(
            session,
            tenant_id=tenant_id,
            identity_kind=ref.identity.kind,
            identity_hash=identity_hash(ref.identity.kind, ref.identity.value),
        )
    if row is None:
        raise Invalid.field(field, "no such member")
    # A merged-away member's account carries the mark (set by the merge, in its
    # transaction). The account row is the one locked, so the mark is current even when
    # this waited for the merge to commit (the member columns may predate it).
    if row.merged_into_id is not None:
        return await lock_member(session, MemberRef(id=row.merged_into_id), field)
    if row.closed_at is not None:  # erased (perhaps while this waited for the lock)
        raise Invalid.field(field, "no such member")
    account = points.Account(
        tenant_id,
        row.id,
        row.balance,
        row.debt,
        row.held,
        row.lifetime_earned,
        row.earned_day,
        row.earned_today,
    )
    return TillMember(row.id, row.tier_code, row.growth_value, account)


# ------------------------------------------------------------------ orders


def order_key(channel: str, external_id: str) -> str:
    """The order's idempotency key: its natural key."""
    return f"{channel}/{external_id}"


async def create_order(session: AsyncSession, data: OrderIn) -> Answer[OrderResult]:
    """Record an order; a retry gets the first answer (same status and body).

    No replay lookup up front (a new order, the common case, saves that round trip): the
    idempotency key's claim decides, and a retry that a rule refuses before it gets there
    (its points were already spent, its hold already captured) is answered from the stored
    answer all the same.
    """
    check_paid_at(data.paid_at, utcnow())
    digest = fingerprint(data)
    try:
        return await _record_order(session, data, digest)
    except NestpointError:
        earlier = await idempotency.replay(
            session, "order", order_key(data.channel, data.external_id), digest, field="external_id"
        )
        if earlier is None:
            raise
        return earlier


async def _record_order(session: AsyncSession, data: OrderIn, digest: str) -> Answer[OrderResult]:
    """The order's steps: validate payment -> redeem -> earn -> result -> claim -> write."""
    store_id, store_code = await resolve_store(session, data.store_code)
    program = await get_program(session)
    tender = validate_payment(program, data.lines, data.payment)
    member = await lock_member(session, data.member) if data.member else None
    now = utcnow()  # after the lock, so ledger times follow the lock order
    check_redemption(program, member, data.payment, tender.total_fen)
    draft = Draft(uuid.uuid4(), data, store_id, tender, member, now)
    held: PointHold | None = None
    if member is None:
        check_no_claims(data.lines, "benefits need a member")
        check_no_coupons(data.payment)
        check_no_stored_value(data.payment)
    else:
        draft.stored_value = await plan_stored_value(session, member, data.payment)
        draft.priced = await price_claims(session, program, member, store_id, store_code, data, now)
        draft.coupons = await claim_coupons(session, member, store_id, store_code, data, now)
        held = await redeem(session, draft)
        per_line = earn(
            program,
            member,
            store_code,
            data.lines,
            tender.points_value_fen + tender.coupons_fen + tender.stored_value_fen,
            now,
            draft.priced.multiplier_percent,
        )
        per_line, reasons = await _plugin_adjustments(
            session, member, store_id, data, per_line, program.zone
        )
        book_earn(program, draft, per_line, reasons)
        if held is not None:
            points.capture_into(
                member.account, held, cause_type="order", cause_id=str(draft.id), now=now
            )
    answer = idempotency.created(order_result(program, draft))
    earlier = await idempotency.claim(
        session,
        "order",
        order_key(data.channel, data.external_id),
        digest,
        answer,
        field="external_id",
    )
    if earlier is not None:  # a concurrent retry committed first: replay it, write nothing
        if held is not None:
            await session.refresh(held)
        return earlier
    await write_order(session, program, draft, answer.body)
    return answer


@dataclass(frozen=True, slots=True)
class Tender:
    """What an order pays: the lines' total, the value of the points used in it, what its
    coupons pay and what stored value pays (none of which earns points)."""

    total_fen: int
    points_value_fen: int
    coupons_fen: int = 0
    stored_value_fen: int = 0


@dataclass(slots=True)
class Draft:
    """An order worked out in Python before anything is written. The earn step fills in
    ``per_line`` (points earned by each line) and ``growth``."""

    id: uuid.UUID
    data: OrderIn
    store_id: uuid.UUID
    tender: Tender
    member: TillMember | None
    now: datetime
    per_line: list[int] = field(default_factory=list)
    growth: int = 0
    priced: Priced = field(default_factory=lambda: Priced(discounts=[]))
    # The id of the use each applied benefit records (decided before the answer is).
    use_ids: dict[str, uuid.UUID] = field(default_factory=dict)
    coupons: list[coupons.Redemption] = field(default_factory=list)
    stored_value: wallet.Spend | None = None  # planned under the wallet's lock, not written

    def __post_init__(self) -> None:
        if not self.per_line:
            self.per_line = [0] * len(self.data.lines)

    @property
    def discount_fen(self) -> int:
        """What the member's benefits took off the lines, as the till recorded them."""
        return sum(li.discount_fen for li in self.data.lines)

    @property
    def points_earned(self) -> int:
        return sum(self.per_line)


def validate_payment(program: Program, lines: Sequence[LineIn], pay: PaymentIn) -> Tender:
    """Step 1 (pure): cash, the points' value, coupons and stored value together pay
    exactly the lines."""
    total = sum(line.paid_fen for line in lines)
    points_value = rules.points_value_fen(program.points, pay.points_used)
    coupons = sum(c.amount_fen for c in pay.coupons)
    stored = pay.stored_value_fen
    if pay.cash_fen + points_value + coupons + stored != total:
        raise Invalid.field(
            "payment",
            f"cash {pay.cash_fen} + points value {points_value} + coupons {coupons} + "
            f"stored value {stored} must equal the lines' total {total}",
        )
    return Tender(total, points_value, coupons, stored)


def check_redemption(
    program: Program, member: TillMember | None, pay: PaymentIn, total_fen: int
) -> None:
    """Step 2's rule (pure): points pay only for a member, and at most their tier's share."""
    if member is None:
        if pay.points_used or pay.hold_id:
            raise Invalid.field("payment.points_used", "points need a member")
        return
    tier = program.tier(member.tier_code)
    if pay.points_used > rules.max_redeemable_points(program, tier, total_fen):
        raise Invalid.field(
            "payment.points_used",
            f"the {tier.code} tier may pay at most {tier.redeem_cap_percent}%"
            " of an order with points",
        )


def check_no_coupons(pay: PaymentIn) -> None:
    """Coupons are a member's: an anonymous order pays with none (pure)."""
    if pay.coupons:
        raise Invalid.field("payment.coupons", "coupons need a member")


def check_no_stored_value(pay: PaymentIn) -> None:
    """Stored value is a member's: an anonymous order pays with none (pure)."""
    if pay.stored_value_fen:
        raise Invalid.field("payment.stored_value_fen", "stored value needs a member")


async def plan_stored_value(
    session: AsyncSession, member: TillMember, pay: PaymentIn
) -> wallet.Spend | None:
    """Step 1a: the stored value the order pays with, its wallet locked right after the
    points account (the one lock order) and checked, principal first, bonus last; written
    by ``write_order`` after the idempotency claim. None: no query."""
    if not pay.stored_value_fen:
        return None
    return await wallet.plan_spend(
        session, member.id, pay.stored_value_fen, field_name="payment.stored_value_fen"
    )


async def claim_coupons(
    session: AsyncSession,
    member: TillMember,
    store_id: uuid.UUID,
    store_code: str,
    data: OrderIn,
    now: datetime,
) -> list[coupons.Redemption]:
    """Step 1c: the coupons the order pays with, locked (after the account) and checked
    against the lines as the member's benefits left them (``coupons.redeemable``). None:
    no query."""
    if not data.payment.coupons:
        return []
    return await coupons.redeemable(
        session,
        member.id,
        coupons.Place(store_id, store_code),
        [(c.code, c.amount_fen) for c in data.payment.coupons],
        [BasketLine(li.sku, li.category, li.quantity, li.paid_fen) for li in data.lines],
        data.paid_at,
        now,
    )


async def redeem(session: AsyncSession, draft: Draft) -> PointHold | None:
    """Step 2: spend the points the order pays with, or find the hold it captures (the
    capture is booked after the earn, so the ledger reads earn, release, redeem)."""
    assert draft.member is not None
    pay = draft.data.payment
    if pay.hold_id is not None:
        return await _capturable_hold(
            session, pay.hold_id, draft.member.id, pay.points_used, draft.store_id
        )
    if pay.points_used:
        await points.spend(
            session,
            draft.member.account,
            pay.points_used,
            kind="redeem",
            cause_type="order",
            cause_id=str(draft.id),
            now=draft.now,
            field_name="payment.points_used",
        )
    return None


def earn(
    program: Program,
    member: TillMember,
    store_code: str,
    lines: Sequence[LineIn],
    points_value_fen: int,
    now: datetime,
    multiplier_percent: int = pricing.NO_MULTIPLIER,
) -> list[int]:
    """Step 3 (pure): the points each line earns, under the member's tier, the store's and
    categories' multipliers, the member's multiplier benefit, and the per-order and per-day
    caps (``loyalty.rules``)."""
    return rules.compute_earn(
        program,
        program.tier(member.tier_code),
        store_code,
        [Line(li.sku, li.category, li.paid_fen) for li in lines],
        points_value_fen=points_value_fen,
        earned_today=points_earned_today(program, member.account, now),
        multiplier_percent=multiplier_percent,
    )


def points_earned_today(program: Program, account: points.Account, now: datetime) -> int:
    """Points the member already earned on the tenant's local day of ``now``."""
    return account.earned_today if account.earned_day == program.local_day(now) else 0


def book_earn(program: Program, draft: Draft, per_line: list[int], reasons: list[str]) -> None:
    """Step 3, booked (in memory): a pending lot per earning line (with the reason plugins
    gave for that line's points, if any), the day's and lifetime totals, and the order's
    growth value."""
    member = draft.member
    assert member is not None
    account = member.account
    for line_no, (amount, reason) in enumerate(zip(per_line, reasons, strict=True), start=1):
        if amount > 0:
            points.credit(
                account,
                program,
                points.Credit(
                    amount,
                    kind="earn",
                    cause_type="order",
                    cause_id=str(draft.id),
                    source="earn",
                    order_id=draft.id,
                    line_no=line_no,
                    pending=True,
                    reason=reason,
                ),
                draft.now,
            )
    earned = sum(per_line)
    today = program.local_day(draft.now)
    before = points_earned_today(program, account, draft.now)
    account.lifetime_earned += earned
    account.earned_day, account.earned_today = today, before + earned
    draft.per_line = per_line
    draft.growth = rules.growth_for(draft.tender.total_fen)


def order_result(program: Program, draft: Draft) -> OrderResult:
    """Step 4 (pure): the answer, including the member's tier after this order's growth."""
    data, member = draft.data, draft.member
    outcome = None
    if member is not None:
        after = tiers.growth_outcome(program, member.tier_code, member.growth_value + draft.growth)
        outcome = MemberOutcome(
            id=member.id,
            tier_code=after.tier_code,
            upgraded_from=after.upgraded_from,
            growth_value=after.growth_value,
            points_balance=member.account.balance,
        )
    draft.use_ids = {s.item.code: uuid.uuid4() for s in draft.priced.applied}
    return OrderResult(
        id=draft.id,
        channel=data.channel,
        external_id=data.external_id,
        store_id=draft.store_id,
        member_id=member.id if member else None,
        status="paid",
        paid_at=data.paid_at,
        total_fen=draft.tender.total_fen,
        points_used=data.payment.points_used,
        points_earned=draft.points_earned,
        discount_fen=draft.discount_fen,
        lines=[
            LineResult(
                line_no=i,
                sku=li.sku,
                paid_fen=li.paid_fen,
                points_earned=p,
                benefit_code=li.benefit_code,
                discount_fen=li.discount_fen,
            )
            for i, (li, p) in enumerate(zip(data.lines, draft.per_line, strict=True), start=1)
        ],
        benefits=applied_benefits(draft.priced, draft.use_ids),
        coupons=order_coupons(draft),
        stored_value_fen=draft.tender.stored_value_fen,
        member=outcome,
    )


def order_coupons(draft: Draft) -> list[OrderCoupon]:
    """Which coupons paid what (pure)."""
    return [
        OrderCoupon(code=r.coupon.code, template_code=r.template.code, amount_fen=r.amount_fen)
        for r in draft.coupons
    ]


def applied_benefits(priced: Priced, use_ids: Mapping[str, uuid.UUID]) -> list[AppliedBenefit]:
    """The pricing benefits an order applies (or a preview offers), each once (pure)."""
    multiplier = priced.multiplier
    return [
        AppliedBenefit(
            code=s.item.code,
            type=s.item.spec.type,
            discount_fen=priced.discount_of(s.item.code),
            points_multiplier_percent=multiplier[1]
            if multiplier and multiplier[0].item.code == s.item.code
            else None,
            use_id=use_ids.get(s.item.code),
        )
        for s in priced.applied
    ]


async def write_order(
    session: AsyncSession, program: Program, draft: Draft, response: dict[str, Any]
) -> None:
    """Step 5: the order, its lines, the ledger, growth and tier, and the outbox events,
    in one batch (one round trip on PostgreSQL)."""
    writes = WriteBatch(session)
    writes.insert(orders, [_order_row(draft, response)])
    writes.insert(order_lines, _line_rows(draft))
    emit(
        session,
        "order.paid",
        "order",
        draft.id,
        _paid_event(draft),
        store_id=draft.store_id,
        batch=writes,
    )
    if draft.member is not None:
        await _write_member_side(session, program, draft, writes)
    coupons.redeem(writes, draft.coupons, draft.id, draft.store_id, draft.now)
    if draft.stored_value is not None:
        wallet.book_spend(session, draft.stored_value, "spend", "order", str(draft.id),
                          draft.now, store_id=draft.store_id)  # fmt: skip
    await writes.execute()


def _order_row(draft: Draft, response: dict[str, Any]) -> dict[str, Any]:
    data, pay = draft.data, draft.data.payment
    return {
        "tenant_id": require_tenant().tenant_id,
        "id": draft.id,
        "channel": data.channel,
        "external_id": data.external_id,
        "store_id": draft.store_id,
        "member_id": draft.member.id if draft.member else None,
        "status": "paid",
        "paid_at": data.paid_at,
        "total_fen": draft.tender.total_fen,
        "cash_fen": pay.cash_fen,
        "points_used": pay.points_used,
        "points_value_fen": draft.tender.points_value_fen,
        "coupons": [c.model_dump() for c in order_coupons(draft)],
        "stored_value_fen": draft.tender.stored_value_fen,
        "stored_value_bonus_fen": draft.stored_value.bonus if draft.stored_value else 0,
        "points_earned": draft.points_earned,
        "discount_fen": draft.discount_fen,
        "refunded_fen": 0,
        "response": response,
        "created_at": draft.now,
    }


def _line_rows(draft: Draft) -> list[dict[str, Any]]:
    tenant_id = require_tenant().tenant_id
    return [
        {
            "tenant_id": tenant_id,
            "order_id": draft.id,
            "line_no": i,
            "sku": li.sku,
            "name": li.name,
            "category": li.category,
            "quantity": li.quantity,
            "unit_price_fen": li.unit_price_fen,
            "paid_fen": li.paid_fen,
            "benefit_code": li.benefit_code or "",
            "discount_fen": li.discount_fen,
            "points_earned": p,
            "refunded_quantity": 0,
            "refunded_fen": 0,
            "points_reversed": 0,
        }
        for i, (li, p) in enumerate(zip(draft.data.lines, draft.per_line, strict=True), start=1)
    ]


def _paid_event(draft: Draft) -> dict[str, Any]:
    data = draft.data
    return {
        "order_id": str(draft.id),
        "channel": data.channel,
        "external_id": data.external_id,
        "member_id": str(draft.member.id) if draft.member else None,
        "total_fen": draft.tender.total_fen,
        "points_used": data.payment.points_used,
        "points_earned": draft.points_earned,
        "stored_value_fen": draft.tender.stored_value_fen,
        "paid_at": data.paid_at.isoformat(),
    }


async def _write_member_side(
    session: AsyncSession, program: Program, draft: Draft, writes: WriteBatch
) -> None:
    """The member's ledger, growth (and an upgrade) and points events, into ``writes``."""
    member = draft.member
    assert member is not None
    now, order_id, pay = draft.now, str(draft.id), draft.data.payment
    await points.save(session, member.account, now, writes)
    pricing.record_uses(
        session,
        writes,
        draft.priced,
        member.id,
        draft.store_id,
        pricing.order_reference(draft.data.channel, draft.data.external_id),
        now,
        draft.use_ids,
    )
    await tiers.apply_growth(
        session,
        program,
        tiers.Growth(
            member.id,
            member.tier_code,
            member.growth_value,
            draft.growth,
            "order",
            order_id,
            store_id=draft.store_id,
        ),
        now,
        also_set={"last_order_at": now},
        batch=writes,
    )
    if draft.points_earned:
        emit(
            session,
            "points.earned",
            "member",
            member.id,
            {
                "member_id": str(member.id),
                "order_id": order_id,
                "points": draft.points_earned,
                "balance": member.account.balance,
            },
            store_id=draft.store_id,
            batch=writes,
        )
    if pay.points_used:
        emit(
            session,
            "points.redeemed",
            "member",
            member.id,
            {
                "member_id": str(member.id),
                "order_id": order_id,
                "points": pay.points_used,
                "value_fen": draft.tender.points_value_fen,
            },
            store_id=draft.store_id,
            batch=writes,
        )


def check_no_claims(lines: Sequence[LineIn], why: str) -> None:
    """Lines that name a benefit where none can be taken: 422 naming each (pure)."""
    errors = [
        FieldError(f"lines.{i}.benefit_code", why)
        for i, li in enumerate(lines)
        if li.benefit_code is not None
    ]
    if errors:
        raise Invalid("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)


async def price_claims(
    session: AsyncSession,
    program: Program,
    member: TillMember,
    store_id: uuid.UUID,
    store_code: str,
    data: OrderIn,
    now: datetime,
) -> Priced:
    """Step 1b: the member's pricing benefits on this order, their entitlements locked
    (after the account): each line's claimed discount checked, and the multiplier that
    applies on the chain's local day the order was paid (``benefits.pricing``)."""
    today = data.paid_at.astimezone(program.zone).date()
    standings, occasions = await pricing.holdings(
        session, member.id, member.tier_code, (store_id, store_code), now, today, lock=True
    )
    claims = [
        pricing.Claim(li.category, li.paid_fen, li.benefit_code, li.discount_fen)
        for li in data.lines
    ]
    return pricing.check_claims(standings, claims, occasions)


async def _plugin_adjustments(
    session: AsyncSession,
    member: TillMember,
    store_id: uuid.UUID,
    data: OrderIn,
    per_line: list[int],
    zone: ZoneInfo,
) -> tuple[list[int], list[str]]:
    """Earn-rule adjustments from the plugins enabled for this store (none: no query): the
    points per line and each line's reason."""
    tenant_id = require_tenant().tenant_id
    host = get_plugin_host()
    # Through this session when stale: the order holds a connection and an account lock.
    if not await host.enabled_plugins(tenant_id, store_id, session=session, fresh=False):
        return per_line, [""] * len(per_line)
    birthday = await session.scalar(select(Member.birthday).where(Member.id == member.id))
    births = tuple(
        d
        for d in (
            await session.scalars(select(Child.birth_date).where(Child.member_id == member.id))
        ).all()
        if d is not None
    )
    context = EarnContext(
        tenant_id=str(tenant_id),
        store_id=str(store_id),
        member_id=str(member.id),
        member_birthday=birthday,
        children_birth_dates=births,
        tier_code=member.tier_code,
        paid_at=data.paid_at.astimezone(zone),  # the chain's local time, for its months
        lines=tuple(
            EarnLine(
                sku=li.sku,
                category=li.category,
                quantity=li.quantity,
                paid_fen=li.paid_fen,
                base_points=p,
            )
            for li, p in zip(data.lines, per_line, strict=True)
        ),
        base_points=sum(per_line),
        time_zone=zone.key,
    )
    adjustments = await host.adjust_earned_points(tenant_id, store_id, context, session=session)
    return adjusted_lines(per_line, adjustments)


def adjusted_lines(
    per_line: list[int], adjustments: Sequence[tuple[str, EarnAdjustment]]
) -> tuple[list[int], list[str]]:
    """Each plugin's adjustment applied to the lines it names (all when it names none), and
    each line's reason: the plugins that changed that line's points, and why. An adjustment
    naming a line the order does not have is ignored (and logged)."""
    reasons: list[list[str]] = [[] for _ in per_line]
    for plugin, adjustment in adjustments:
        targets = [n - 1 for n in adjustment.lines] or None
        if targets and not all(0 <= i < len(per_line) for i in targets):
            log.warning("%s: earn adjustment for lines %s the order does not have",
                        plugin, adjustment.lines)  # fmt: skip
            continue
        before, per_line = per_line, rules.apply_adjustment(per_line, adjustment.points, targets)
        for i, (old, new) in enumerate(zip(before, per_line, strict=True)):
            if old != new:
                reasons[i].append(f"{plugin}: {adjustment.reason}")
    return per_line, ["; ".join(r)[:200] for r in reasons]


async def _capturable_hold(
    session: AsyncSession,
    hold_id: uuid.UUID,
    member_id: uuid.UUID,
    points_used: int,
    store_id: uuid.UUID,
) -> PointHold:
    """The hold an order captures: made for this member, amount and store (a store key sees
    only its own store's holds; an HQ key's order may capture a hold made without a store)."""
    try:
        held = await points.get_hold(session, hold_id, for_update=True)
    except NotFound:
        raise Invalid.field("payment.hold_id", "no such hold") from None
    if held.store_id is not None and held.store_id != store_id:
        raise Invalid.field("payment.hold_id", "the hold was made at another store")
    if held.member_id != member_id or held.amount != points_used:
        raise Invalid.field(
            "payment.hold_id", "the hold is for another member or another number of points"
        )
    if held.status != "held":
        raise Conflict(
            f"the hold is already {held.status}",
            errors=[FieldError("payment.hold_id", f"already {held.status}")],
        )
    return held


async def preview(session: AsyncSession, data: PreviewIn) -> PreviewResult:
    """What a basket would cost the member and earn, by the same rules as the order: the
    member's pricing benefits offered per line (brought up to date first, like the benefits
    look-up), then the points on what is left to pay. Records no order, points or use."""
    check_no_claims(data.lines, "a preview offers the member's benefits; it takes none")
    program = await get_program(session)
    store_id, store_code = await resolve_store(session, data.store_code)
    tier = program.tier(data.tier_code)
    earned_today = 0
    spendable: int | None = None  # without a member, only the tier's cap limits redemption
    priced = Priced(discounts=[(None, 0)] * len(data.lines))
    if data.member is not None:
        member = await lock_member(session, data.member)
        tier = program.tier(member.tier_code)
        now = utcnow()
        if member.account.earned_day == program.local_day(now):
            earned_today = member.account.earned_today
        spendable = await points.available(session, member.account, now)
        priced = await offer_benefits(session, program, member, store_id, store_code, data, now)
    elif data.tier_code is not None and tier.code != data.tier_code:
        raise Invalid.field("tier_code", f"no tier {data.tier_code!r}")
    payable = [li.paid_fen - off for li, (_, off) in zip(data.lines, priced.discounts, strict=True)]
    value = rules.points_value_fen(program.points, data.points_used)
    per_line = rules.compute_earn(
        program,
        tier,
        store_code,
        [Line(li.sku, li.category, pay) for li, pay in zip(data.lines, payable, strict=True)],
        points_value_fen=value,
        earned_today=earned_today,
        multiplier_percent=priced.multiplier_percent,
    )
    cap = rules.max_redeemable_points(program, tier, sum(payable))
    return PreviewResult(
        tier_code=tier.code,
        points=sum(per_line),
        lines=[
            LineResult(
                line_no=i,
                sku=li.sku,
                paid_fen=pay,
                points_earned=p,
                benefit_code=standing.item.code if standing else None,
                discount_fen=off,
            )
            for i, (li, pay, p, (standing, off)) in enumerate(
                zip(data.lines, payable, per_line, priced.discounts, strict=True), start=1
            )
        ],
        payable_fen=sum(payable),
        discount_fen=sum(off for _, off in priced.discounts),
        benefits=applied_benefits(priced, {}),
        max_points_usable=cap if spendable is None else min(cap, spendable),
        points_value_fen=value,
    )


async def offer_benefits(
    session: AsyncSession,
    program: Program,
    member: TillMember,
    store_id: uuid.UUID,
    store_code: str,
    data: PreviewIn,
    now: datetime,
) -> Priced:
    """The preview's offer: the member's benefits synced, then the best per line."""
    await benefits.sync_member(session, member.id, now)
    today = now.astimezone(program.zone).date()
    standings, occasions = await pricing.holdings(
        session, member.id, member.tier_code, (store_id, store_code), now, today, lock=False
    )
    return pricing.offer(standings, [(li.category, li.paid_fen) for li in data.lines], occasions)


async def get_order(session: AsyncSession, channel: str, external_id: str) -> Order:
    stmt = select(Order).where(Order.channel == channel, Order.external_id == external_id)
    ctx = require_tenant()
    if ctx.store_id is not None:
        stmt = stmt.where(Order.store_id == ctx.store_id)
    order = await session.scalar(stmt)
    if order is None:
        raise NotFound("no such order")
    return order


# ------------------------------------------------------------------ refunds


async def create_refund(
    session: AsyncSession, channel: str, external_id: str, data: RefundIn
) -> Answer[RefundResult]:
    """Refund lines (or everything left); reverse the points those lines earned, return the
    points the refunded share paid with. Idempotent per (order, refund id), checked under
    the order's lock: concurrent retries get the first answer.

    Steps: check the request -> lock (the account, then the order) -> replay -> plan the
    lines -> reverse their points -> return the points that paid -> growth -> result -> write.
    """
    order = await get_order(session, channel, external_id)
    digest = fingerprint(data)
    key = f"{order.id}/{data.external_id}"  # the order's id: no separator can be ambiguous
    check_listed_once(data.lines)
    program = await get_program(session)
    member = await lock_member(session, MemberRef(id=order.member_id)) if order.member_id else None
    # The wallet next (the one lock order), only for an order stored value paid.
    purse = (
        await wallet.open_wallet(session, member.id) if member and order.stored_value_fen else None
    )
    now = utcnow()
    order = await _lock_order(session, order)  # after the account: the one lock order
    earlier = await idempotency.replay(session, "refund", key, digest, field="external_id")
    if earlier is not None:
        return earlier
    lines = await _lock_lines(session, order.id)
    plan = plan_refund(lines, data.lines)
    refund_id = uuid.uuid4()
    refunded_before = order.refunded_fen
    reversed_total = 0
    for line_no, quantity in plan.items():
        line = lines[line_no]
        fen, pts = line_refund(line, quantity)
        line.refunded_quantity += quantity
        line.refunded_fen += fen
        line.points_reversed += pts
        order.refunded_fen += fen
        if member is not None and pts > 0:
            await points.claw_back(
                session,
                member.account,
                pts,
                cause_type="refund",
                cause_id=str(refund_id),
                now=now,
                order_id=order.id,
                line_no=line_no,
            )
            reversed_total += pts
    order.status = refund_status(order.refunded_fen, order.total_fen)
    given_back = await _give_benefits_back(session, order, member)
    restored = (
        await coupons.restore_for_order(session, order.id, order.store_id, now)
        if order.status == "refunded"
        else []
    )
    returned = 0
    if member is not None:
        returned = points_returned(
            order.points_used, refunded_before, order.refunded_fen, order.total_fen
        )
        await _book_refund(
            session, program, member, order, refund_id, returned, refunded_before, now
        )
    value_back = (0, 0)
    if purse is not None:
        value_back = stored_value_returned(
            order.stored_value_fen,
            order.stored_value_bonus_fen,
            refunded_before,
            order.refunded_fen,
            order.total_fen,
        )
        if sum(value_back):
            wallet.credit(session, purse, "refund", *value_back, "refund", str(refund_id), now,
                          store_id=order.store_id)  # fmt: skip
    result = RefundResult(
        id=refund_id,
        order_id=order.id,
        external_id=data.external_id,
        amount_fen=order.refunded_fen - refunded_before,
        points_reversed=reversed_total,
        points_returned=returned,
        member_points_balance=member.account.balance if member else None,
        member_debt=member.account.debt if member else None,
        benefit_uses_reversed=given_back,
        coupons_restored=restored,
        stored_value_returned_fen=sum(value_back),
    )
    _write_refund(session, order, result, member, now)
    await session.flush()
    answer = idempotency.created(result)
    return await idempotency.record(session, "refund", key, digest, answer, field="external_id")


async def _give_benefits_back(
    session: AsyncSession, order: Order, member: TillMember | None
) -> list[uuid.UUID]:
    """Once the whole order is refunded, the benefit uses that name it come back (those
    it applied, and those the till recorded for it); a partial refund keeps them."""
    if order.status != "refunded" or order.member_id is None:
        return []
    owners = {order.member_id} | ({member.id} if member else set())  # merged since
    return await benefits.reverse_uses_named(
        session,
        sorted(owners),
        pricing.order_reference(order.channel, order.external_id),
        "order refunded",
    )


def check_listed_once(requested: Sequence[RefundLineIn] | None) -> None:
    """A refund names each line at most once (pure)."""
    listed: set[int] = set()
    for i, ln in enumerate(requested or []):
        if ln.line_no in listed:
            raise Invalid.field(f"lines.{i}.line_no", f"line {ln.line_no} is listed twice")
        listed.add(ln.line_no)


def plan_refund(
    lines: Mapping[int, OrderLine], requested: Sequence[RefundLineIn] | None
) -> dict[int, int]:
    """The quantity to refund per line number (pure): the lines asked for, or everything
    left when none are named. Every line asked for must exist and have that much left."""
    wanted = (
        {ln.line_no: ln.quantity for ln in requested}
        if requested is not None
        else {
            no: ln.quantity - ln.refunded_quantity
            for no, ln in lines.items()
            if ln.quantity > ln.refunded_quantity
        }
    )
    errors = []
    for i, (line_no, quantity) in enumerate(wanted.items()):
        line = lines.get(line_no)
        if line is None:
            errors.append(FieldError(f"lines.{i}.line_no", f"the order has no line {line_no}"))
        elif quantity > line.quantity - line.refunded_quantity:
            errors.append(
                FieldError(
                    f"lines.{i}.quantity", f"only {line.quantity - line.refunded_quantity} left"
                )
            )
    if errors:
        raise Invalid("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)
    if not wanted:
        raise Invalid.field("lines", "nothing left to refund")
    return wanted


def _share(total: int, part: int, whole: int) -> int:
    return total * part // whole if whole else 0


def line_refund(line: OrderLine, quantity: int) -> tuple[int, int]:
    """The fen and the points a refund of ``quantity`` of ``line`` takes back (pure). The
    last refund of a line takes exactly what is left: no rounding residue."""
    if line.quantity - line.refunded_quantity - quantity == 0:
        return line.paid_fen - line.refunded_fen, line.points_earned - line.points_reversed
    return (
        _share(line.paid_fen, quantity, line.quantity),
        _share(line.points_earned, quantity, line.quantity),
    )


def refund_status(refunded_fen: int, total_fen: int) -> OrderStatus:
    """An order's status once ``refunded_fen`` of it is refunded (pure)."""
    return "refunded" if refunded_fen >= total_fen else "partially_refunded"


def points_returned(points_used: int, refunded_before: int, refunded_after: int, total: int) -> int:
    """Points that paid for the share refunded now come back (pure); all of what is left
    comes back with the last refund."""
    return _share(points_used, refunded_after, total) - _share(points_used, refunded_before, total)


def stored_value_returned(
    paid: int, bonus_paid: int, refunded_before: int, refunded_after: int, total: int
) -> tuple[int, int]:
    """Stored value that paid for the share refunded now comes back (pure), as (principal,
    bonus): the refunds so far return principal up to what principal paid, then the bonus
    share as bonus; all of it comes back with the last refund."""

    def so_far(refunded: int) -> tuple[int, int]:
        back = _share(paid, refunded, total)
        principal = min(back, paid - bonus_paid)
        return principal, back - principal

    p0, b0 = so_far(refunded_before)
    p1, b1 = so_far(refunded_after)
    return p1 - p0, b1 - b0


def refund_growth(refunded_before: int, refunded_after: int) -> int:
    """The growth value a refund takes back (pure, negative or zero)."""
    return -(rules.growth_for(refunded_after) - rules.growth_for(refunded_before))


async def _lock_order(session: AsyncSession, order: Order) -> Order:
    locked = await session.scalar(
        select(Order)
        .where(Order.id == order.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return locked or order


async def _lock_lines(session: AsyncSession, order_id: uuid.UUID) -> dict[int, OrderLine]:
    rows = await session.scalars(
        select(OrderLine)
        .where(OrderLine.order_id == order_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {ln.line_no: ln for ln in rows.all()}


async def _book_refund(
    session: AsyncSession,
    program: Program,
    member: TillMember,
    order: Order,
    refund_id: uuid.UUID,
    returned: int,
    refunded_before: int,
    now: datetime,
) -> None:
    """The member's side of a refund: returned points as a new lot, the ledger, growth."""
    if returned > 0:
        points.credit(
            member.account,
            program,
            points.Credit(
                returned,
                kind="reverse",
                cause_type="refund",
                cause_id=str(refund_id),
                source="return",
            ),
            now,
        )
    await points.save(session, member.account, now)
    await tiers.apply_growth(
        session,
        program,
        tiers.Growth(
            member.id,
            member.tier_code,
            member.growth_value,
            refund_growth(refunded_before, order.refunded_fen),
            "refund",
            str(refund_id),
            store_id=order.store_id,
        ),
        now,
    )


def _write_refund(
    session: AsyncSession,
    order: Order,
    result: RefundResult,
    member: TillMember | None,
    now: datetime,
) -> None:
    session.add(
        Refund(
            id=result.id,
            order_id=order.id,
            external_id=result.external_id,
            amount_fen=result.amount_fen,
            points_reversed=result.points_reversed,
            points_returned=result.points_returned,
            created_at=now,
        )
    )
    emit(
        session,
        "order.refunded",
        "order",
        order.id,
        {
            "order_id": str(order.id),
            "refund_id": str(result.id),
            "amount_fen": result.amount_fen,
            "member_id": str(member.id) if member else None,
            "points_reversed": result.points_reversed,
            "points_returned": result.points_returned,
            "fully_refunded": order.status == "refunded",
        },
        store_id=order.store_id,
    )


def order_summary(order: Order) -> dict[str, Any]:
    return dict(order.response) | {"status": order.status, "refunded_fen": order.refunded_fen}


# ------------------------------------------------------------------ listings
# Newest first, cursor-paginated (db/pagination.py). A store key lists its own store's
# orders and refunds only, as it reads only those (get_order); an HQ key lists the chain's.

# Dates beyond these bounds filter nothing (and stay clear of datetime's range).
_FIRST_DAY, _LAST_DAY = date(1900, 1, 1), date(9999, 12, 30)


@dataclass(frozen=True, slots=True)
class Period:
    """Instants ``start <= t < end`` (either open), from the tenant's local dates."""

    start: datetime | None = None
    end: datetime | None = None

    def limit(self, stmt: Select[Any], column: Any) -> Select[Any]:
        """``stmt`` with ``column`` inside the period."""
        if self.start is not None:
            stmt = stmt.where(column >= self.start)
        if self.end is not None:
            stmt = stmt.where(column < self.end)
        return stmt


def local_period(
    zone: ZoneInfo, day: date | None, since: date | None, until: date | None
) -> Period:
    """``day``, or ``since``..``until`` (both inclusive), as local days in ``zone``: pure.
    Refuses both kinds at once (422 naming ``query.day``) and a ``since`` after ``until``
    (422 naming ``query.from``)."""
    if day is not None:
        if since is not None or until is not None:
            raise Invalid.field("query.day", "give day, or from and to, not both")
        since = until = day
    if since is not None and until is not None and since > until:
        raise Invalid.field("query.from", "from is after to")

    def midnight(local: date) -> datetime:
        return datetime.combine(local, time(), tzinfo=zone).astimezone(UTC)

    start = midnight(since) if since is not None and since > _FIRST_DAY else None
    last = until if until is not None and until < _LAST_DAY else None
    return Period(start, midnight(last + timedelta(days=1)) if last is not None else None)


async def listed_store(session: AsyncSession, code: str | None) -> uuid.UUID | None:
    """The store a listing is confined to: a store key's own (naming another store is 403
    naming ``query.store``), else the one named by ``code`` (unknown: 422), else none."""
    own = require_tenant().store_id
    named = None
    if code is not None:
        codes = await store_codes(session)
        named = codes.get(code) or (await store_codes(session, refresh=True)).get(code)
        if named is None:
            raise Invalid.field("query.store", f"no store with code {code!r}")
    if own is not None and named not in (None, own):
        raise Forbidden(
            "a store key lists only its own store's records",
            errors=[FieldError("query.store", "another store")],
        )
    return own or named


async def list_orders(
    session: AsyncSession,
    *,
    cursor: str | None,
    limit: int,
    member_id: uuid.UUID | None = None,
    store_code: str | None = None,
    day: date | None = None,
    since: date | None = None,
    until: date | None = None,
) -> Page[Order]:
    """Orders newest paid first, by member, store and local day(s) (``local_period``)."""
    period = local_period((await get_program(session)).zone, day, since, until)
    stmt = select(Order).options(defer(Order.response))  # the lines: not in a summary
    if (store_id := await listed_store(session, store_code)) is not None:
        stmt = stmt.where(Order.store_id == store_id)
    if member_id is not None:
        stmt = stmt.where(Order.member_id == member_id)
    stmt = period.limit(stmt, Order.paid_at)
    return await paginate(
        session, stmt, (Order.paid_at, Order.id), cursor=cursor, limit=limit, descending=True
    )


async def list_refunds(
    session: AsyncSession,
    *,
    cursor: str | None,
    limit: int,
    member_id: uuid.UUID | None = None,
    store_code: str | None = None,
    day: date | None = None,
    since: date | None = None,
    until: date | None = None,
) -> Page[RefundSummary]:
    """Refunds newest first, by the order's member and store and the refund's local day(s)."""
    period = local_period((await get_program(session)).zone, day, since, until)
    stmt = select(Refund)
    store_id = await listed_store(session, store_code)
    if store_id is not None or member_id is not None:
        stmt = stmt.join(
            Order, (Order.tenant_id == Refund.tenant_id) & (Order.id == Refund.order_id)
        )
        if store_id is not None:
            stmt = stmt.where(Order.store_id == store_id)
        if member_id is not None:
            stmt = stmt.where(Order.member_id == member_id)
    stmt = period.limit(stmt, Refund.created_at)
    page: Page[Refund] = await paginate(
        session, stmt, (Refund.created_at, Refund.id), cursor=cursor, limit=limit, descending=True
    )
    order_ids = {r.order_id for r in page.items}
    by_id = (
        {
            o.id: o
            for o in await session.scalars(
                select(Order).options(defer(Order.response)).where(Order.id.in_(order_ids))
            )
        }
        if order_ids
        else {}
    )
    return Page([_refund_summary(r, by_id[r.order_id]) for r in page.items], page.next_cursor)


def _refund_summary(refund: Refund, order: Order) -> RefundSummary:
    return RefundSummary(
        id=refund.id,
        external_id=refund.external_id,
        order_id=order.id,
        order_channel=order.channel,
        order_external_id=order.external_id,
        store_id=order.store_id,
        member_id=order.member_id,
        amount_fen=refund.amount_fen,
        points_reversed=refund.points_reversed,
        points_returned=refund.points_returned,
        created_at=refund.created_at,
    )
