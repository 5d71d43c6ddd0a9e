"""Paid membership (付费会员): plans, buying a card, the payment handlers that activate it,
renewals with reminders and a grace period, upgrades, cancellation with the chain's refund,
savings so far, and sales per store. No HTTP; never commits.

Money: integer fen in the tenant's currency. Every amount this module works out is rounded
in the chain's favour: what the member pays (an upgrade's difference) is rounded up, what
the chain gives back (a refund) is rounded down, and a part of a day counts as a used day.

Payments go through ``nestpoint.payments`` (the chain's own Stripe account): this module
only asks for a payment (:func:`request_payment`) or a refund (:func:`request_refund`) in
the caller's transaction, and the payments worker talks to Stripe after the commit. What a
payment means is decided here, in the handlers registered for the purposes
``paid_membership`` (a purchase or an upgrade) and ``paid_membership_renewal``: each runs
once per payment transition, and each applies its charge once more by a conditional update
of the charge's status under the card's row lock, so a handler called twice (or twice at
once) changes nothing the second time.

Locks, in order: the member's points account (the member lock of every ledger: a purchase,
an upgrade, a cancellation), then the card's row, then the benefits' entitlements. A
payment handler comes in holding the payment's row (nestpoint.payments) and takes the
card's row next; a cancellation refunds only payments that have succeeded already, whose
handlers have run, so the two never wait on each other.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dateutil.relativedelta import relativedelta
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.audit.service import record as audit
from nestpoint.benefits import service as benefits
from nestpoint.benefits.models import BenefitUse, Entitlement
from nestpoint.context import require_tenant
from nestpoint.db import utcnow
from nestpoint.db.sql import lock_job
from nestpoint.errors import Conflict, Invalid, NotFound
from nestpoint.events.service import emit
from nestpoint.idempotency import service as idempotency
from nestpoint.idempotency.service import Answer, fingerprint
from nestpoint.loyalty.service import get_program
from nestpoint.members.models import Member
from nestpoint.members.service import get_member_in_reach
from nestpoint.membership.models import (
    HELD_STATUSES,
    LIVE_STATUSES,
    PaidMembership,
    PaidMembershipCharge,
    PaidMembershipSettingsRow,
    PaidPlan,
)
from nestpoint.membership.schemas import (
    AutoRenewIn,
    CancelIn,
    CancelResult,
    ChargeRead,
    PaidMembershipRead,
    PaidMembershipSettings,
    PaidPlanRead,
    PaidPlanSpec,
    PurchaseIn,
    SalesReport,
    Savings,
    StoreSales,
    UpgradeIn,
)
from nestpoint.messaging.service import queue_message
from nestpoint.orders.models import Order, OrderLine
from nestpoint.payments import service as payments
from nestpoint.payments.models import Payment, PaymentRefund
from nestpoint.payments.registry import PaymentHandlers, register_purpose
from nestpoint.points import service as points
from nestpoint.tenancy.models import Store, Tenant
from nestpoint.tenancy.service import selling_store, store_codes

log = logging.getLogger("nestpoint.membership")

PURCHASE = "paid_membership"  # a purchase or an upgrade's difference
RENEWAL = "paid_membership_renewal"
SOURCE = "paid"  # the entitlements' source (benefits.models.Source)
REMINDER_PURPOSE = "paid_membership_renewal"  # the message's purpose and template
DAY = timedelta(days=1)
JOB = "membership.renew_due"


class MembershipExists(Conflict):
    title = "The member already holds a paid card"
    slug = "paid-membership-exists"


class MembershipNotActive(Conflict):
    title = "The card is not active"
    slug = "paid-membership-not-active"


# ------------------------------------------------------------------ payments (the one place)


async def request_payment(
    session: AsyncSession,
    *,
    purpose: str,
    charge: PaidMembershipCharge,
    member_id: uuid.UUID,
    payment_method: str | None,
    description: str,
) -> uuid.UUID:
    """Ask ``nestpoint.payments`` for the charge's payment (a pending row in this
    transaction, subject: the charge; its worker calls Stripe after the commit)."""
    tenant = await session.get(Tenant, require_tenant().tenant_id)
    payment = await payments.request_payment(
        session,
        purpose=purpose,
        subject_id=charge.id,
        amount_fen=charge.amount_fen,
        currency=(tenant.currency if tenant else "CNY").lower(),
        member_id=member_id,
        payment_method=payment_method,
        store_id=charge.store_id,
        description=description,
    )
    return payment.id


async def request_refund(
    session: AsyncSession, *, charge: PaidMembershipCharge, amount_fen: int, reason: str
) -> None:
    """Ask ``nestpoint.payments`` to refund ``amount_fen`` of the charge's payment (once per
    charge: the cause names it)."""
    assert charge.payment_id is not None
    await payments.request_refund(
        session,
        payment_id=charge.payment_id,
        amount_fen=amount_fen,
        cause=f"paid_membership_cancel:{charge.id}",
        reason=reason,
    )


# ------------------------------------------------------------------ plans


async def _benefit_multiplier(session: AsyncSession, codes: list[str]) -> int:
    """The largest while-held points multiplier among the catalog benefits ``codes``."""
    catalog = await benefits.get_catalog(session)
    best = 100
    for code in codes:
        item = catalog.items.get(code)
        if item is None or item.spec.type != "core.points_multiplier":
            continue
        if item.spec.options.get("occasion") == "while_held":
            best = max(best, int(item.spec.options["multiplier_percent"]))
    return best


async def _plan_read(session: AsyncSession, row: PaidPlan) -> PaidPlanRead:
    return PaidPlanRead(
        id=row.id,
        code=row.code,
        name=row.name,
        period=row.period,
        trial_days=row.trial_days,
        price_fen=row.price_fen,
        benefits=list(row.benefits),
        stacks_with_tier=row.stacks_with_tier,
        retain_tier=row.retain_tier,
        active=row.active,
        earn_multiplier_percent=await _benefit_multiplier(session, list(row.benefits)),
        updated_at=row.updated_at,
    )


async def check_plan(session: AsyncSession, spec: PaidPlanSpec, prefix: str = "") -> None:
    """Every benefit code names a catalog benefit (422 naming ``benefits.<i>``)."""
    catalog = await benefits.get_catalog(session)
    for i, code in enumerate(spec.benefits):
        if code not in catalog.items:
            raise Invalid.field(f"{prefix}benefits.{i}", f"no benefit {code!r} in the catalog")


async def put_plan(
    session: AsyncSession, code: str, spec: PaidPlanSpec, prefix: str = ""
) -> PaidPlanRead:
    """Create or replace the plan ``code``; audited when it changes (the same body again
    changes nothing). Cards already bought keep their period; a new benefit list applies
    from the next period (a renewal) on."""
    await check_plan(session, spec, prefix)
    row = await session.scalar(select(PaidPlan).where(PaidPlan.code == code).with_for_update())
    values = spec.model_dump()
    if row is None:
        row = PaidPlan(code=code, **values)
        session.add(row)
        audit(session, "membership.plan_created", "paid_plan", code, values)
    else:
        before = {k: getattr(row, k) for k in values}
        changed = {k: [before[k], v] for k, v in values.items() if before[k] != v}
        if changed:
            for k, v in values.items():
                setattr(row, k, v)
            row.updated_at = utcnow()
            audit(session, "membership.plan_updated", "paid_plan", code, changed)
    await session.flush()
    return await _plan_read(session, row)


async def _plan(session: AsyncSession, code: str) -> PaidPlan:
    row = await session.scalar(select(PaidPlan).where(PaidPlan.code == code))
    if row is None:
        raise NotFound(f"no paid plan {code!r}")
    return row


async def get_plan(session: AsyncSession, code: str) -> PaidPlanRead:
    return await _plan_read(session, await _plan(session, code))


async def list_plans(session: AsyncSession) -> list[PaidPlanRead]:
    rows = (await session.scalars(select(PaidPlan).order_by(PaidPlan.code))).all()
    return [await _plan_read(session, row) for row in rows]


def period_after(plan: PaidPlan, start: datetime) -> datetime:
    """The end of one period of ``plan`` begun at ``start``."""
    if plan.period == "year":
        return start + relativedelta(years=1)
    if plan.period == "month":
        return start + relativedelta(months=1)
    return start + timedelta(days=plan.trial_days or 1)


# ------------------------------------------------------------------ settings


async def get_settings(session: AsyncSession) -> PaidMembershipSettings:
    row = await session.get(PaidMembershipSettingsRow, require_tenant().tenant_id)
    if row is None:
        return PaidMembershipSettings()
    return PaidMembershipSettings(
        grace_days=row.grace_days,
        reminder_days=row.reminder_days,
        retry_days=row.retry_days,
        refund_rule=row.refund_rule,
        full_refund_days=row.full_refund_days,
    )


async def put_settings(
    session: AsyncSession, data: PaidMembershipSettings
) -> PaidMembershipSettings:
    tenant_id = require_tenant().tenant_id
    row = await session.get(PaidMembershipSettingsRow, tenant_id, with_for_update=True)
    before = (await get_settings(session)).model_dump()
    after = data.model_dump()
    if row is None:
        session.add(PaidMembershipSettingsRow(tenant_id=tenant_id, **after))
    else:
        for k, v in after.items():
            setattr(row, k, v)
    if before != after:
        changed = {k: [before[k], v] for k, v in after.items() if before[k] != v}
        audit(session, "membership.settings_put", "paid_membership_settings", tenant_id, changed)
    await session.flush()
    return data


# ------------------------------------------------------------------ buying a card


async def _sale_store(session: AsyncSession, code: str | None) -> uuid.UUID | None:
    """The store credited with a sale (none: the mini-program)."""
    return await selling_store(session, code, required=False, doing="sells")


async def _live_card(
    session: AsyncSession, member_id: uuid.UUID, *, lock: bool = False
) -> PaidMembership | None:
    stmt = (
        select(PaidMembership)
        .where(PaidMembership.member_id == member_id, PaidMembership.status.in_(LIVE_STATUSES))
        .order_by(PaidMembership.created_at.desc())
        .limit(1)
        .execution_options(populate_existing=True)
    )
    return await session.scalar(stmt.with_for_update() if lock else stmt)


async def purchase(
    session: AsyncSession, member_id: uuid.UUID, data: PurchaseIn
) -> Answer[PaidMembershipRead]:
    """A member buys a card: the card (``pending``) and its purchase charge are recorded and
    the payment asked for; the card becomes active when the payment succeeds (a free trial:
    at once). Idempotent by ``idempotency_key``; audited; emits ``paid_membership.purchased``.
    """
    member = await get_member_in_reach(session, member_id, active=True)
    store_id = await _sale_store(session, data.store_code)
    holder = (await points.lock_account(session, member.id)).member_id  # the member lock
    request = fingerprint({"kind": "membership.purchase", "member": member_id} | data.model_dump())
    key = data.idempotency_key
    earlier = await idempotency.replay(
        session, idempotency.REQUEST, key, request, field="idempotency_key"
    )
    if earlier is not None:
        return earlier
    plan = await session.scalar(select(PaidPlan).where(PaidPlan.code == data.plan))
    if plan is None or not plan.active:
        raise Invalid.field("plan", f"no active paid plan {data.plan!r}")
    if await _live_card(session, holder) is not None:
        raise MembershipExists("the member already holds (or is buying) a paid card")
    now = utcnow()
    card = PaidMembership(
        id=uuid.uuid4(),
        member_id=holder,
        plan_id=plan.id,
        status="pending",
        auto_renew=data.auto_renew,
        payment_method=data.payment_method,
        store_id=store_id,
        created_at=now,
        updated_at=now,
    )
    session.add(card)
    charge = _new_charge(card, "purchase", plan, plan.price_fen, now)
    session.add(charge)
    await session.flush()
    payload = {
        "member_id": str(holder),
        "membership_id": str(card.id),
        "plan": plan.code,
        "amount_fen": plan.price_fen,
        "store_id": str(store_id) if store_id else None,
    }
    audit(session, "membership.purchase", "member", holder, payload)
    emit(session, "paid_membership.purchased", "member", holder, payload, store_id=store_id)
    # A free trial has nothing to pay.
    await _pay_or_apply(
        session, card, charge, holder, data.payment_method, f"paid membership {plan.code}", now
    )
    return await _record_answer(session, card, key, request)


async def _pay_or_apply(
    session: AsyncSession,
    card: PaidMembership,
    charge: PaidMembershipCharge,
    member_id: uuid.UUID,
    payment_method: str | None,
    description: str,
    now: datetime,
) -> None:
    """A charge of nothing applies at once; any other asks payments for the money, and
    applies when the payment succeeds."""
    if charge.amount_fen == 0:
        charge.status, charge.settled_at = "succeeded", now
        await _apply(session, card, charge, now)
    else:
        charge.payment_id = await request_payment(
            session,
            purpose=PURCHASE,
            charge=charge,
            member_id=member_id,
            payment_method=payment_method,
            description=description,
        )
    await session.flush()


async def _record_answer(
    session: AsyncSession, card: PaidMembership, key: str, request: str
) -> Answer[PaidMembershipRead]:
    """The card as answered now, kept as the answer to ``key`` (a retry gets it again)."""
    answer = idempotency.created(await membership_read(session, card))
    return await idempotency.record(
        session, idempotency.REQUEST, key, request, answer, field="idempotency_key"
    )


def _new_charge(
    card: PaidMembership, kind: str, plan: PaidPlan, amount: int, now: datetime
) -> PaidMembershipCharge:
    return PaidMembershipCharge(
        id=uuid.uuid4(),
        membership_id=card.id,
        kind=kind,
        plan_id=plan.id,
        amount_fen=amount,
        status="pending",
        store_id=card.store_id,
        refunded_fen=0,
        failure="",
        created_at=now,
    )


# ------------------------------------------------------------------ the payment handlers


async def _settle(
    session: AsyncSession, payment: Payment, status: str, failure: str = ""
) -> tuple[PaidMembership, PaidMembershipCharge] | None:
    """Lock the card the payment's charge belongs to, then move the charge to ``status`` (a
    conditional update: from ``pending``, or from ``failed`` to ``succeeded``, since Stripe
    may report money taken after a failure): the card and charge when this call did it,
    None when it was settled so before (a second delivery) or is not ours."""
    charge = await session.get(
        PaidMembershipCharge, (require_tenant().tenant_id, payment.subject_id)
    )
    if charge is None:
        log.warning("payment for an unknown charge", extra={"payment": str(payment.id)})
        return None
    card = await session.scalar(
        select(PaidMembership)
        .where(PaidMembership.id == charge.membership_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    now = utcnow()
    done = await session.scalar(
        update(PaidMembershipCharge)
        .where(
            PaidMembershipCharge.id == charge.id,
            PaidMembershipCharge.status.in_(
                ("pending", "failed") if status == "succeeded" else ("pending",)
            ),
        )
        .values(status=status, settled_at=now, failure=failure[:200])
        .returning(PaidMembershipCharge.id)
    )
    if done is None or card is None:
        return None
    await session.refresh(charge)
    return card, charge


async def payment_succeeded(session: AsyncSession, payment: Payment) -> None:
    """A card's payment went through: apply its charge (once)."""
    settled = await _settle(session, payment, "succeeded")
    if settled is not None:
        await _apply(session, *settled, utcnow())


async def payment_failed(session: AsyncSession, payment: Payment) -> None:
    """A card's payment failed (final): a purchase fails, a renewal starts or continues the
    grace period, an upgrade leaves the card as it was. Once."""
    failure = payment.failure
    settled = await _settle(session, payment, "failed", failure)
    if settled is None:
        return
    card, charge = settled
    now = utcnow()
    payload: dict[str, Any] = {
        "member_id": str(card.member_id),
        "membership_id": str(card.id),
        "charge_id": str(charge.id),
        "kind": charge.kind,
        "failure": failure,
    }
    if charge.kind == "purchase" and card.status == "pending":
        card.status = "failed"
        card.ended_at = now
    elif charge.kind == "renewal" and card.status in HELD_STATUSES:
        settings = await get_settings(session)
        if card.status == "active":
            assert card.period_end is not None
            card.status = "grace"
            card.grace_until = card.period_end + timedelta(days=settings.grace_days)
            await _keep_until(session, card, card.grace_until)
        card.next_attempt_at = now + timedelta(days=settings.retry_days)
        payload["grace_until"] = _iso(card.grace_until)
    card.updated_at = now
    audit(session, "membership.payment_failed", "member", card.member_id, payload)
    emit(session, "paid_membership.payment_failed", "member", card.member_id, payload)


async def payment_refunded(session: AsyncSession, payment: Payment, refund: PaymentRefund) -> None:
    """Stripe made a refund this module asked for (the amount was booked when it asked)."""
    audit(
        session,
        "membership.refunded",
        "payment",
        payment.id,
        {"amount_fen": refund.amount_fen, "refund_id": str(refund.id)},
    )


async def _apply(
    session: AsyncSession, card: PaidMembership, charge: PaidMembershipCharge, now: datetime
) -> None:
    """A succeeded (or free) charge: the period, the benefits and the retention it buys."""
    plan = await session.get(PaidPlan, (require_tenant().tenant_id, charge.plan_id))
    assert plan is not None
    previous = card.current_charge_id
    if charge.kind == "upgrade":
        if card.status not in HELD_STATUSES or card.period_end is None:
            log.warning("an upgrade paid for a card no longer held", extra={"card": str(card.id)})
            return
        start, end = now, card.period_end
        card.plan_id = plan.id
    elif charge.kind == "renewal" and card.status in HELD_STATUSES and card.period_end:
        start = card.period_end  # the next period follows the last one, whatever the delay
        end = period_after(plan, start)
        if end <= now:  # paid long after: a period from now
            start, end = now, period_after(plan, now)
    else:  # a purchase, or a renewal paid after the card lapsed: a period from now
        start, end = now, period_after(plan, now)
    charge.period_start, charge.period_end = start, end
    if charge.kind != "upgrade":
        card.period_start, card.period_end = start, end
    card.status = "active"
    card.grace_until = None
    card.next_attempt_at = None
    card.ended_at = None
    card.activated_at = card.activated_at or now
    card.current_charge_id = charge.id
    card.updated_at = now
    if previous is not None and previous != charge.id:
        await benefits.end_grants(
            session, card.member_id, source=SOURCE, source_ref=str(previous), now=now
        )
    granted = await _grant(session, card, plan, charge, end, now)
    await _retain(session, card, plan, end)
    payload = {
        "member_id": str(card.member_id),
        "membership_id": str(card.id),
        "plan": plan.code,
        "kind": charge.kind,
        "charge_id": str(charge.id),
        "amount_fen": charge.amount_fen,
        "period_start": _iso(start),
        "period_end": _iso(end),
        "benefits": granted,
    }
    audit(session, f"membership.{_ACTIVATION[charge.kind]}", "member", card.member_id, payload)
    emit(
        session,
        f"paid_membership.{_ACTIVATION[charge.kind]}",
        "member",
        card.member_id,
        payload,
        store_id=charge.store_id,
    )


_ACTIVATION = {"purchase": "activated", "renewal": "renewed", "upgrade": "upgraded"}


async def _grant(
    session: AsyncSession,
    card: PaidMembership,
    plan: PaidPlan,
    charge: PaidMembershipCharge,
    until: datetime,
    now: datetime,
) -> list[str]:
    """Grant the plan's benefits for the charge's period, through the benefits engine
    (source ``paid``, the charge's id): effective on the member's next order. A plan that
    does not stack skips what the member's tier gives already. An unknown or inactive code
    is skipped (the plan was checked when it was put; the catalog may have changed)."""
    catalog = await benefits.get_catalog(session)
    skip: set[str] = set()
    if not plan.stacks_with_tier:
        member = await session.get(Member, (require_tenant().tenant_id, card.member_id))
        program = await get_program(session)
        if member is not None and member.tier_code:
            skip = set(program.tier(member.tier_code).benefits)
    granted = []
    for code in plan.benefits:
        item = catalog.items.get(code)
        if item is None or not item.spec.active or code in skip:
            continue
        await benefits.grant_once(
            session,
            card.member_id,
            code,
            source=SOURCE,
            source_ref=str(charge.id),
            now=now,
            expires_at=until,
        )
        granted.append(code)
    return granted


async def _keep_until(session: AsyncSession, card: PaidMembership, until: datetime) -> None:
    """The card's benefits (and its tier retention) last until ``until`` (grace)."""
    if card.current_charge_id is not None:
        await benefits.set_grant_expiry(
            session,
            card.member_id,
            source=SOURCE,
            source_ref=str(card.current_charge_id),
            expires_at=until,
        )
    plan = await session.get(PaidPlan, (require_tenant().tenant_id, card.plan_id))
    if plan is not None:
        await _retain(session, card, plan, until)


async def _retain(
    session: AsyncSession, card: PaidMembership, plan: PaidPlan, until: datetime
) -> None:
    """保级: the member's tier protection runs at least to ``until`` (the tier evaluation
    downgrades no one before their ``tier_protected_until``). What it was before is kept, to
    be restored if the card ends early."""
    if not plan.retain_tier:
        return
    member = await session.get(
        Member, (require_tenant().tenant_id, card.member_id), with_for_update=True
    )
    if member is None:
        return
    if card.protected_until is None:
        card.protected_before = member.tier_protected_until
    current = member.tier_protected_until
    if current is None or current < until:
        member.tier_protected_until = until
    card.protected_until = until


async def _unretain(session: AsyncSession, card: PaidMembership) -> None:
    """The card ended early: give the member back the protection they had before it, unless
    something else (a tier change) has set it since."""
    if card.protected_until is None:
        return
    await session.execute(
        update(Member)
        .where(Member.id == card.member_id, Member.tier_protected_until == card.protected_until)
        .values(tier_protected_until=card.protected_before)
    )
    card.protected_until = None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# ------------------------------------------------------------------ reading a card


async def _card_in_reach(
    session: AsyncSession, member_id: uuid.UUID, card_id: uuid.UUID, *, lock: bool = False
) -> PaidMembership:
    member = await get_member_in_reach(session, member_id, active=True)
    stmt = select(PaidMembership).where(
        PaidMembership.id == card_id, PaidMembership.member_id == member.id
    )
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    card = await session.scalar(stmt)
    if card is None:
        raise NotFound("no such paid membership for this member")
    return card


async def membership_read(session: AsyncSession, card: PaidMembership) -> PaidMembershipRead:
    tenant_id = require_tenant().tenant_id
    plans = {p.id: p for p in (await session.scalars(select(PaidPlan))).all()}
    charges = (
        await session.scalars(
            select(PaidMembershipCharge)
            .where(PaidMembershipCharge.membership_id == card.id)
            .order_by(PaidMembershipCharge.created_at, PaidMembershipCharge.id)
            .execution_options(populate_existing=True)
        )
    ).all()
    store_code = None
    if card.store_id is not None:
        store = await session.get(Store, (tenant_id, card.store_id))
        store_code = store.code if store else None
    plan = plans[card.plan_id]
    return PaidMembershipRead(
        id=card.id,
        member_id=card.member_id,
        plan_code=plan.code,
        plan_name=plan.name,
        status=card.status,
        auto_renew=card.auto_renew,
        store_id=card.store_id,
        store_code=store_code,
        period_start=card.period_start,
        period_end=card.period_end,
        grace_until=card.grace_until,
        created_at=card.created_at,
        activated_at=card.activated_at,
        ended_at=card.ended_at,
        charges=[
            ChargeRead(
                id=c.id,
                kind=c.kind,
                plan_code=plans[c.plan_id].code,
                amount_fen=c.amount_fen,
                status=c.status,
                payment_id=c.payment_id,
                refunded_fen=c.refunded_fen,
                period_start=c.period_start,
                period_end=c.period_end,
                created_at=c.created_at,
            )
            for c in charges
        ],
        savings=await savings(session, card.member_id, [c.id for c in charges]),
    )


async def list_member_cards(
    session: AsyncSession, member_id: uuid.UUID
) -> list[PaidMembershipRead]:
    member = await get_member_in_reach(session, member_id, active=True)
    cards = (
        await session.scalars(
            select(PaidMembership)
            .where(PaidMembership.member_id == member.id)
            .order_by(PaidMembership.created_at.desc(), PaidMembership.id)
        )
    ).all()
    return [await membership_read(session, card) for card in cards]


async def get_card(
    session: AsyncSession, member_id: uuid.UUID, card_id: uuid.UUID
) -> PaidMembershipRead:
    return await membership_read(session, await _card_in_reach(session, member_id, card_id))


# ------------------------------------------------------------------ savings


@dataclass(frozen=True, slots=True)
class _Use:
    id: uuid.UUID
    benefit_id: uuid.UUID
    amount: int
    reference: str


async def savings(
    session: AsyncSession, member_id: uuid.UUID, charge_ids: list[uuid.UUID]
) -> Savings:
    """What the card's entitlements (of every period it was paid for) gave, read from the
    uses ledger: each use not reversed, valued exactly as recorded (docs/paid-membership.md,
    "Savings"). An order's discount and multiplier are read from the order's own record; a
    till use at the benefit's stated value; extra points at the chain's cash value of points
    (rounded down)."""
    if not charge_ids:
        return Savings(
            total_fen=0, discounts_fen=0, benefits_fen=0, extra_points=0, extra_points_fen=0
        )
    held = select(Entitlement.id).where(
        Entitlement.member_id == member_id,
        Entitlement.source == SOURCE,
        Entitlement.source_ref.in_([str(c) for c in charge_ids]),
    )
    rows = (
        await session.execute(
            select(
                BenefitUse.id,
                BenefitUse.benefit_id,
                BenefitUse.kind,
                BenefitUse.amount,
                BenefitUse.reference,
                BenefitUse.reverses_id,
            ).where(BenefitUse.entitlement_id.in_(held))
        )
    ).all()
    reversed_ids = {r.reverses_id for r in rows if r.kind == "reverse"}
    live = [
        _Use(r.id, r.benefit_id, r.amount, r.reference)
        for r in rows
        if r.kind == "use" and r.id not in reversed_ids
    ]
    catalog = await benefits.get_catalog(session)
    discounts = benefit_value = extra_points = 0
    orders = await _orders_named(session, {u.reference for u in live})
    for use in live:
        item = catalog.by_id.get(use.benefit_id)
        if item is None:
            continue
        order = orders.get(use.reference)
        if order is not None:
            applied = next(
                (b for b in order.response.get("benefits", []) if b.get("use_id") == str(use.id)),
                None,
            )
            if applied is None:
                continue
            discounts += int(applied.get("discount_fen") or 0)
            pct = int(applied.get("points_multiplier_percent") or 100)
            if pct > 100:
                earned = order.points_earned - await _points_reversed(session, order.id)
                extra_points += max(0, earned) * (pct - 100) // pct
            continue
        options = item.spec.options
        per_use = (
            options.get("value_fen") or options.get("amount_fen") or options.get("max_fee_fen") or 0
        )
        benefit_value += int(per_use) * use.amount
    program = await get_program(session)
    extra_fen = extra_points * 100 // program.points.cash_points_per_yuan
    return Savings(
        total_fen=discounts + benefit_value + extra_fen,
        discounts_fen=discounts,
        benefits_fen=benefit_value,
        extra_points=extra_points,
        extra_points_fen=extra_fen,
    )


async def _orders_named(session: AsyncSession, references: set[str]) -> dict[str, Order]:
    """The orders the uses name (``order:<channel>/<external_id>``), by reference."""
    wanted = {}
    for ref in references:
        if ref.startswith("order:") and "/" in ref:
            channel, external_id = ref.removeprefix("order:").split("/", 1)
            wanted[(channel, external_id)] = ref
    if not wanted:
        return {}
    found = (
        await session.scalars(select(Order).where(Order.external_id.in_([e for _, e in wanted])))
    ).all()
    return {
        wanted[(o.channel, o.external_id)]: o for o in found if (o.channel, o.external_id) in wanted
    }


async def _points_reversed(session: AsyncSession, order_id: uuid.UUID) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(OrderLine.points_reversed), 0)).where(
            OrderLine.order_id == order_id
        )
    )
    return int(total or 0)


# ------------------------------------------------------------------ auto-renewal


async def set_auto_renew(
    session: AsyncSession, member_id: uuid.UUID, card_id: uuid.UUID, data: AutoRenewIn
) -> PaidMembershipRead:
    """Turn auto-renewal on or off (and save a new payment method). Idempotent by nature."""
    holder = (await points.lock_account(session, member_id)).member_id
    card = await _card_in_reach(session, holder, card_id, lock=True)
    if card.status not in LIVE_STATUSES:
        raise MembershipNotActive(f"the card is {card.status}")
    changes: dict[str, Any] = {}
    if card.auto_renew != data.auto_renew:
        changes["auto_renew"] = [card.auto_renew, data.auto_renew]
        card.auto_renew = data.auto_renew
    if data.payment_method is not None and data.payment_method != card.payment_method:
        changes["payment_method"] = "replaced"
        card.payment_method = data.payment_method
    if changes:
        card.updated_at = utcnow()
        audit(
            session,
            "membership.auto_renew",
            "member",
            card.member_id,
            changes | {"membership_id": str(card.id)},
        )
    await session.flush()
    return await membership_read(session, card)


# ------------------------------------------------------------------ upgrade


def upgrade_amount(
    old_price: int, new_price: int, start: datetime, end: datetime, now: datetime
) -> int:
    """The difference for the rest of the period, in the chain's favour: the days left are
    counted up (a begun day is a whole day), the amount rounded up (pure)."""
    total_days = max(1, _days_up(end - start))
    left_days = min(total_days, max(0, _days_up(end - now)))
    diff = new_price - old_price
    return -(-diff * left_days // total_days)


def _days_up(span: timedelta) -> int:
    return -(-span // DAY) if span > timedelta(0) else 0


def _days_down(span: timedelta) -> int:
    return span // DAY if span > timedelta(0) else 0


async def upgrade(
    session: AsyncSession, member_id: uuid.UUID, card_id: uuid.UUID, data: UpgradeIn
) -> Answer[PaidMembershipRead]:
    """Move an active card to a dearer plan of the same period now, paying the difference
    for the rest of the period (:func:`upgrade_amount`). The new plan's benefits replace the
    old one's when the payment succeeds. Idempotent by ``idempotency_key``."""
    holder = (await points.lock_account(session, member_id)).member_id
    request = fingerprint({"kind": "membership.upgrade", "card": card_id} | data.model_dump())
    key = data.idempotency_key
    earlier = await idempotency.replay(
        session, idempotency.REQUEST, key, request, field="idempotency_key"
    )
    if earlier is not None:
        return earlier
    card = await _card_in_reach(session, holder, card_id, lock=True)
    if card.status != "active" or card.period_start is None or card.period_end is None:
        raise MembershipNotActive(f"only an active card is upgraded (this one is {card.status})")
    tenant_id = require_tenant().tenant_id
    old = await session.get(PaidPlan, (tenant_id, card.plan_id))
    new = await session.scalar(select(PaidPlan).where(PaidPlan.code == data.plan))
    assert old is not None
    if new is None or not new.active:
        raise Invalid.field("plan", f"no active paid plan {data.plan!r}")
    if new.period != old.period or new.trial_days != old.trial_days:
        raise Invalid.field("plan", "an upgrade keeps the card's period")
    if new.price_fen <= old.price_fen:
        raise Invalid.field("plan", "an upgrade is to a dearer plan")
    pending = await session.scalar(
        select(PaidMembershipCharge.id).where(
            PaidMembershipCharge.membership_id == card.id,
            PaidMembershipCharge.status == "pending",
        )
    )
    if pending is not None:
        raise Conflict("a payment for this card is pending; try again when it is settled")
    now = utcnow()
    amount = upgrade_amount(old.price_fen, new.price_fen, card.period_start, card.period_end, now)
    charge = _new_charge(card, "upgrade", new, amount, now)
    session.add(charge)
    await session.flush()
    audit(
        session,
        "membership.upgrade_requested",
        "member",
        card.member_id,
        {"membership_id": str(card.id), "from": old.code, "to": new.code, "amount_fen": amount},
    )
    await _pay_or_apply(
        session,
        card,
        charge,
        card.member_id,
        card.payment_method,
        f"paid membership upgrade {old.code} -> {new.code}",
        now,
    )
    return await _record_answer(session, card, key, request)


# ------------------------------------------------------------------ cancel


def refund_amount(
    rule: PaidMembershipSettings,
    paid_fen: int,
    paid_at: datetime,
    start: datetime,
    end: datetime,
    now: datetime,
) -> int:
    """What cancelling now gives back of ``paid_fen`` paid for the period (pure), in the
    chain's favour: ``none`` 0; ``pro_rata`` the unused whole days' share (days left counted
    down, amount rounded down); ``full_within`` all of it within ``full_refund_days`` of
    the payment, else 0."""
    if rule.refund_rule == "none" or paid_fen <= 0:
        return 0
    if rule.refund_rule == "full_within":
        return paid_fen if now - paid_at <= timedelta(days=rule.full_refund_days) else 0
    total_days = max(1, _days_up(end - start))
    unused = min(total_days, _days_down(end - now))
    return paid_fen * unused // total_days


async def cancel(
    session: AsyncSession, member_id: uuid.UUID, card_id: uuid.UUID, data: CancelIn
) -> Answer[CancelResult]:
    """``period_end``: auto-renewal off, the card runs to its end. ``now``: the card ends now
    (benefits end, tier retention given back) and what the chain's rule refunds of the
    current period's payments is refunded through Stripe, newest payment first. Idempotent by
    ``idempotency_key``; audited; emits ``paid_membership.cancelled``."""
    holder = (await points.lock_account(session, member_id)).member_id
    request = fingerprint({"kind": "membership.cancel", "card": card_id} | data.model_dump())
    key = data.idempotency_key
    earlier = await idempotency.replay(
        session, idempotency.REQUEST, key, request, field="idempotency_key"
    )
    if earlier is not None:
        return earlier
    card = await _card_in_reach(session, holder, card_id, lock=True)
    now = utcnow()
    refund = 0
    if data.when == "period_end":
        if card.status not in LIVE_STATUSES:
            raise MembershipNotActive(f"the card is {card.status}")
        card.auto_renew = False
    else:
        if card.status not in HELD_STATUSES:
            raise MembershipNotActive(f"only a held card is cancelled now (it is {card.status})")
        refund = await _refund_period(session, card, data.reason, now)
        if card.current_charge_id is not None:
            await benefits.end_grants(
                session,
                card.member_id,
                source=SOURCE,
                source_ref=str(card.current_charge_id),
                now=now,
            )
        await _unretain(session, card)
        card.status = "cancelled"
        card.auto_renew = False
        card.ended_at = now
    card.updated_at = now
    payload = {
        "member_id": str(card.member_id),
        "membership_id": str(card.id),
        "when": data.when,
        "refund_fen": refund,
        "reason": data.reason,
    }
    audit(session, "membership.cancel", "member", card.member_id, payload)
    emit(session, "paid_membership.cancelled", "member", card.member_id, payload)
    await session.flush()
    result = CancelResult(membership=await membership_read(session, card), refund_fen=refund)
    return await idempotency.record(
        session,
        idempotency.REQUEST,
        key,
        request,
        idempotency.created(result),
        field="idempotency_key",
    )


async def _refund_period(
    session: AsyncSession, card: PaidMembership, reason: str, now: datetime
) -> int:
    """Refund, by the chain's rule, what was paid for the current period (its purchase or
    renewal and any upgrade in it), from the newest payment back."""
    assert card.period_start is not None
    assert card.period_end is not None
    charges = list(
        (
            await session.scalars(
                select(PaidMembershipCharge)
                .where(
                    PaidMembershipCharge.membership_id == card.id,
                    PaidMembershipCharge.status == "succeeded",
                    PaidMembershipCharge.period_end == card.period_end,
                )
                .order_by(PaidMembershipCharge.settled_at.desc(), PaidMembershipCharge.id)
                .with_for_update()
            )
        ).all()
    )
    paid = sum(c.amount_fen - c.refunded_fen for c in charges)
    if not charges:
        return 0
    first_paid = min(c.settled_at or c.created_at for c in charges)
    rule = await get_settings(session)
    amount = refund_amount(rule, paid, first_paid, card.period_start, card.period_end, now)
    left = amount
    for charge in charges:
        part = min(left, charge.amount_fen - charge.refunded_fen)
        if part <= 0:
            continue
        if charge.payment_id is not None:
            await request_refund(
                session,
                charge=charge,
                amount_fen=part,
                reason=f"paid membership cancelled: {reason}",
            )
        charge.refunded_fen += part
        left -= part
    return amount


# ------------------------------------------------------------------ the daily job


@dataclass(slots=True)
class RenewalRun:
    reminded: int = 0
    requested: int = 0
    lapsed: int = 0


async def renew_due(session: AsyncSession, now: datetime | None = None) -> RenewalRun:
    """The daily job, per chain: reminders ``reminder_days`` before a renewing card's end;
    the renewal payment asked for on the card's last day (the new period follows the old one
    whatever day it is paid, so no day is lost); another attempt every ``retry_days`` in
    grace; cards past their end (not renewing) or past their grace lapse. Idempotent: each
    step picks only what is still due and re-checks it under the card's row lock."""
    await lock_job(session, JOB, require_tenant().tenant_id)  # one run per chain at a time
    now = now or utcnow()
    settings = await get_settings(session)
    run = RenewalRun()
    for card_id in await _due(session, _reminder_due(now, settings)):
        run.reminded += await _locked(session, card_id, lambda c: _remind(session, c, now))
    for card_id in await _due(session, _renewal_due(now)):
        run.requested += await _locked(session, card_id, lambda c: _renew(session, c, now))
    for card_id in await _due(session, _lapse_due(now)):
        run.lapsed += await _locked(session, card_id, lambda c: _lapse(session, c, now))
    return run


async def _due(session: AsyncSession, where: Any) -> list[uuid.UUID]:
    return list((await session.scalars(select(PaidMembership.id).where(where))).all())


def _reminder_due(now: datetime, settings: PaidMembershipSettings) -> Any:
    return (
        (PaidMembership.status == "active")
        & PaidMembership.auto_renew
        & (PaidMembership.period_end > now)
        & (PaidMembership.period_end <= now + timedelta(days=settings.reminder_days))
        & (
            PaidMembership.reminded_for.is_(None)
            | (PaidMembership.reminded_for != PaidMembership.period_end)
        )
    )


def _renewal_due(now: datetime) -> Any:
    last_day = (PaidMembership.status == "active") & (PaidMembership.period_end <= now + DAY)
    retry = (
        (PaidMembership.status == "grace")
        & (PaidMembership.grace_until > now)
        & (PaidMembership.next_attempt_at <= now)
    )
    return PaidMembership.auto_renew & (last_day | retry)


def _lapse_due(now: datetime) -> Any:
    ended = (PaidMembership.status == "active") & (PaidMembership.period_end <= now)
    return (ended & ~PaidMembership.auto_renew) | (
        (PaidMembership.status == "grace") & (PaidMembership.grace_until <= now)
    )


async def _locked(
    session: AsyncSession,
    card_id: uuid.UUID,
    step: Callable[[PaidMembership], Awaitable[bool]],
) -> int:
    """Run ``step`` on the card under its row lock, in a savepoint: one card's failure (a
    payment refused at request) is logged and leaves the others to run."""
    try:
        async with session.begin_nested():
            card = await session.scalar(
                select(PaidMembership)
                .where(PaidMembership.id == card_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
            return int(card is not None and await step(card))
    except Conflict:
        log.exception("paid membership renewal step failed", extra={"card": str(card_id)})
        return 0


async def _remind(session: AsyncSession, card: PaidMembership, now: datetime) -> bool:
    settings = await get_settings(session)
    if not (
        card.status == "active"
        and card.auto_renew
        and card.period_end is not None
        and now < card.period_end <= now + timedelta(days=settings.reminder_days)
        and card.reminded_for != card.period_end
    ):
        return False
    plan = await session.get(PaidPlan, (require_tenant().tenant_id, card.plan_id))
    assert plan is not None
    await queue_message(
        session,
        member_id=card.member_id,
        key=f"paid-membership-renewal:{card.id}:{card.period_end.isoformat()}",
        purpose=REMINDER_PURPOSE,
        template=REMINDER_PURPOSE,
        params={
            "plan_name": plan.name,
            "renews_on": card.period_end.date().isoformat(),
            "price_yuan": f"{plan.price_fen / 100:.2f}",
        },
        store_id=card.store_id,
    )
    card.reminded_for = card.period_end
    return True


async def _renew(session: AsyncSession, card: PaidMembership, now: datetime) -> bool:
    """Ask for the renewal's payment with the saved payment method (none pending already);
    the benefits are kept past the end while it is being paid (up to the grace period)."""
    pending = await session.scalar(
        select(PaidMembershipCharge.id).where(
            PaidMembershipCharge.membership_id == card.id,
            PaidMembershipCharge.status == "pending",
        )
    )
    if pending is not None or not card.auto_renew or card.period_end is None:
        return False
    if card.status == "active" and card.period_end > now + DAY:
        return False
    if card.status == "grace" and not (
        card.grace_until
        and card.grace_until > now
        and card.next_attempt_at
        and card.next_attempt_at <= now
    ):
        return False
    if card.status not in HELD_STATUSES:
        return False
    settings = await get_settings(session)
    plan = await session.get(PaidPlan, (require_tenant().tenant_id, card.plan_id))
    assert plan is not None
    charge = _new_charge(card, "renewal", plan, plan.price_fen, now)
    session.add(charge)
    await session.flush()
    card.next_attempt_at = now + timedelta(days=settings.retry_days)
    if card.status == "active":
        await _keep_until(session, card, card.period_end + timedelta(days=settings.grace_days))
    charge.payment_id = await request_payment(
        session,
        purpose=RENEWAL,
        charge=charge,
        member_id=card.member_id,
        payment_method=card.payment_method,
        description=f"paid membership renewal {plan.code}",
    )
    audit(
        session,
        "membership.renewal_requested",
        "member",
        card.member_id,
        {
            "membership_id": str(card.id),
            "charge_id": str(charge.id),
            "amount_fen": charge.amount_fen,
        },
    )
    return True


async def _lapse(session: AsyncSession, card: PaidMembership, now: datetime) -> bool:
    ended = (
        card.status == "active"
        and not card.auto_renew
        and card.period_end is not None
        and card.period_end <= now
    )
    out_of_grace = (
        card.status == "grace" and card.grace_until is not None and card.grace_until <= now
    )
    if not (ended or out_of_grace):
        return False
    if card.current_charge_id is not None:
        await benefits.end_grants(
            session, card.member_id, source=SOURCE, source_ref=str(card.current_charge_id), now=now
        )
    card.status = "lapsed"
    card.ended_at = now
    card.next_attempt_at = None
    card.updated_at = now
    payload = {
        "member_id": str(card.member_id),
        "membership_id": str(card.id),
        "reason": "grace_over" if out_of_grace else "period_end",
    }
    audit(session, "membership.lapsed", "member", card.member_id, payload)
    emit(session, "paid_membership.lapsed", "member", card.member_id, payload)
    return True


# ------------------------------------------------------------------ sales per store


async def sales(
    session: AsyncSession, *, since: datetime | None = None, until: datetime | None = None
) -> SalesReport:
    """Cards sold per store (the store credited at purchase; none: the mini-program):
    purchases whose payment succeeded in the window, and what the cards' payments brought
    in (purchases, renewals, upgrades), less refunds."""
    charge = PaidMembershipCharge
    stmt = select(
        PaidMembership.store_id,
        func.count().filter(charge.kind == "purchase"),
        func.coalesce(func.sum(charge.amount_fen - charge.refunded_fen), 0),
    ).join(
        PaidMembership,
        (PaidMembership.id == charge.membership_id)
        & (PaidMembership.tenant_id == charge.tenant_id),
    )
    stmt = stmt.where(charge.status == "succeeded")
    if since is not None:
        stmt = stmt.where(charge.settled_at >= since)
    if until is not None:
        stmt = stmt.where(charge.settled_at < until)
    rows = (await session.execute(stmt.group_by(PaidMembership.store_id))).all()
    codes = {s.id: s.code for s in (await session.scalars(select(Store))).all()}
    stores = [
        StoreSales(
            store_id=s,
            store_code=codes.get(s) if s else None,
            cards_sold=int(n),
            revenue_fen=int(fen),
        )
        for s, n, fen in rows
    ]
    stores.sort(key=lambda x: (x.store_code is None, x.store_code or ""))
    return SalesReport(stores=stores)


async def list_cards(
    session: AsyncSession, *, store_code: str | None, status: str | None, limit: int
) -> list[PaidMembershipRead]:
    """The chain's cards, newest first, by the store that sold them and by status."""
    stmt = select(PaidMembership).order_by(PaidMembership.created_at.desc()).limit(limit)
    if store_code is not None:
        codes = await store_codes(session, refresh=True)
        if store_code not in codes:
            raise Invalid.field("store_code", f"no store with code {store_code!r}")
        stmt = stmt.where(PaidMembership.store_id == codes[store_code])
    if status is not None:
        stmt = stmt.where(PaidMembership.status == status)
    return [await membership_read(session, c) for c in (await session.scalars(stmt)).all()]


# ------------------------------------------------------------------ registration


register_purpose(
    PURCHASE,
    PaymentHandlers(succeeded=payment_succeeded, failed=payment_failed, refunded=payment_refunded),
)
register_purpose(
    RENEWAL,
    PaymentHandlers(succeeded=payment_succeeded, failed=payment_failed, refunded=payment_refunded),
)
