"""Referrals (邀请有礼) and friend assists (好友助力): the rules. No HTTP; never commits.

A bind takes the chain's settings row's lock first: binds of one chain run one at a time, so
the abuse checks (a device used before, an invite farm at one store) see every earlier bind.
A reward locks its referral (or assist) row and moves its status on in the same transaction:
each side is rewarded once, also when the job runs twice at once.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.audit.service import record as audit
from nestpoint.context import require_tenant
from nestpoint.coupons import service as coupons
from nestpoint.coupons.service import CODE_ALPHABET
from nestpoint.db import utcnow
from nestpoint.errors import Conflict, FieldError, Invalid, NestpointError, NotFound
from nestpoint.idempotency import service as idempotency
from nestpoint.idempotency.service import Answer, fingerprint
from nestpoint.loyalty.service import get_program
from nestpoint.members.models import Member
from nestpoint.members.service import get_active_member
from nestpoint.orders.models import Order
from nestpoint.points import service as points
from nestpoint.referrals.models import (
    Assist,
    AssistHelper,
    Referral,
    ReferralCode,
    ReferralSettingsRow,
)
from nestpoint.referrals.schemas import (
    AssistIn,
    AssistRead,
    BindIn,
    CodeRead,
    HelpIn,
    ReferralRead,
    ReferralSettings,
    RewardRun,
)

log = logging.getLogger("nestpoint.referrals")
INVITE_CODE_LENGTH = 8  # 40 random bits: a member shares it, so it is not a secret


# ------------------------------------------------------------------ settings


async def get_settings(session: AsyncSession, *, lock: bool = False) -> ReferralSettings:
    """The chain's rules (off, with defaults, until HQ sets them)."""
    stmt = select(ReferralSettingsRow)
    if lock:
        stmt = stmt.with_for_update()
    row = await session.scalar(stmt)
    return ReferralSettings() if row is None else ReferralSettings.model_validate(row)


async def put_settings(session: AsyncSession, data: ReferralSettings) -> ReferralSettings:
    """Replace the chain's rules (coupons named must exist); audited when they change."""
    for field in ("inviter_coupon", "invitee_coupon", "assist_coupon"):
        code = getattr(data, field)
        if code is not None and await coupons.find_template(session, code) is None:
            raise Invalid.field(field, f"no coupon template {code!r}")
    row = await session.scalar(select(ReferralSettingsRow).with_for_update())
    before = ReferralSettings() if row is None else ReferralSettings.model_validate(row)
    if row is None:
        row = ReferralSettingsRow()
        session.add(row)
    for name, value in data.model_dump().items():
        setattr(row, name, value)
    changes = {k: [getattr(before, k), v] for k, v in data.model_dump().items()
               if getattr(before, k) != v}  # fmt: skip
    if changes:
        audit(session, "referrals.settings_changed", "tenant", require_tenant().tenant_id, changes)
    await session.flush()
    return data


# ------------------------------------------------------------------ codes and binds


async def code_of(session: AsyncSession, member_id: uuid.UUID) -> CodeRead:
    """The member's invitation code, made on first ask (under the member's account lock,
    so two first asks make one)."""
    member = await get_active_member(session, member_id)
    await points.lock_account(session, member.id)
    found = await session.scalar(select(ReferralCode).where(ReferralCode.member_id == member.id))
    if found is None:
        found = ReferralCode(member_id=member.id, code=await _unused_code(session))
        session.add(found)
        await session.flush()
    return CodeRead(member_id=member.id, code=found.code)


async def _unused_code(session: AsyncSession) -> str:
    while True:
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(INVITE_CODE_LENGTH))
        taken = await session.scalar(select(ReferralCode.code).where(ReferralCode.code == code))
        if taken is None:
            return code


def device_hash(device_id: str | None) -> str | None:
    """A device id as kept: hashed with the tenant (never stored in clear)."""
    if device_id is None:
        return None
    salted = f"{require_tenant().tenant_id}:{device_id}".encode()
    return hashlib.sha256(salted).hexdigest()


async def bind(session: AsyncSession, data: BindIn) -> ReferralRead:
    """Bind a new member to an inviter, after the abuse checks (docs/referrals.md): 422
    naming the field for self-invitation, one family, a member who is not new, a device
    used before; 409 when the invitee was referred already. Too many invitees of one
    inviter at one store in a day go to review instead of pending."""
    settings = await get_settings(session, lock=True)  # binds of a chain, one at a time
    if not settings.enabled:
        raise Conflict("referrals are off for this chain")
    now = utcnow()
    inviter = await _inviter(session, data.code)
    invitee = await get_active_member(session, data.invitee_id)
    _check_pair(inviter, invitee, settings, now)
    if await session.scalar(select(Referral.id).where(Referral.invitee_id == invitee.id)):
        raise Conflict(
            "the member was referred already",
            errors=[FieldError("invitee_id", "referred already")],
        )
    digest = device_hash(data.device_id)
    if digest is not None and await _device_used(session, digest):
        raise Invalid.field("device_id", "this device was used for a referral already")
    store_id = require_tenant().store_id or invitee.join_store_id
    status, reason = await _farm_check(session, inviter.id, store_id, settings, now)
    referral = Referral(
        id=uuid.uuid4(),
        inviter_id=inviter.id,
        invitee_id=invitee.id,
        device_hash=digest,
        store_id=store_id,
        status=status,
        reason=reason,
        bound_at=now,
    )
    session.add(referral)
    await session.flush()
    audit(session, "referral.bound", "referral", referral.id,
          {"inviter": str(inviter.id), "invitee": str(invitee.id), "status": status})  # fmt: skip
    return ReferralRead.model_validate(referral)


async def _inviter(session: AsyncSession, code: str) -> Member:
    owner = await session.scalar(
        select(ReferralCode.member_id).where(ReferralCode.code == code.upper())
    )
    if owner is None:
        raise Invalid.field("code", "no such invitation code")
    try:
        return await get_active_member(session, owner)
    except NotFound:
        raise Invalid.field("code", "no such invitation code") from None


def _check_pair(
    inviter: Member, invitee: Member, settings: ReferralSettings, now: datetime
) -> None:
    """Self-invitation (also through a merge), one family, and only a new member."""
    if inviter.id == invitee.id:
        raise Invalid.field("invitee_id", "a member cannot invite themselves")
    if inviter.family_id is not None and inviter.family_id == invitee.family_id:
        raise Invalid.field("invitee_id", "inviter and invitee are one family")
    if invitee.joined_at < now - timedelta(days=settings.join_window_days):
        raise Invalid.field(
            "invitee_id", f"only a member who joined in the last {settings.join_window_days} days"
        )
    if inviter.joined_at > invitee.joined_at:
        raise Invalid.field("invitee_id", "the inviter joined after the invitee")


async def _device_used(session: AsyncSession, digest: str) -> bool:
    """A device that bound a referral or helped an assist before."""
    bound = await session.scalar(select(Referral.id).where(Referral.device_hash == digest))
    if bound is not None:
        return True
    helped = await session.scalar(
        select(AssistHelper.assist_id).where(AssistHelper.device_hash == digest).limit(1)
    )
    return helped is not None


async def _farm_check(
    session: AsyncSession,
    inviter_id: uuid.UUID,
    store_id: uuid.UUID | None,
    settings: ReferralSettings,
    now: datetime,
) -> tuple[str, str]:
    """Pending, or review when the inviter already brought ``farm_limit_per_day`` invitees
    through this store in the last 24 hours (an invite farm at one till)."""
    if store_id is None:
        return "pending", ""
    recent = await session.scalar(
        select(func.count())
        .select_from(Referral)
        .where(
            Referral.inviter_id == inviter_id,
            Referral.store_id == store_id,
            Referral.bound_at > now - timedelta(days=1),
        )
    )
    if (recent or 0) >= settings.farm_limit_per_day:
        return "review", f"{recent} invitees of this inviter at one store within a day"
    return "pending", ""


async def review(
    session: AsyncSession, referral_id: uuid.UUID, approve: bool, reason: str
) -> ReferralRead:
    """HQ decides a referral held for review: pending again (rewarded as usual) or rejected."""
    referral = await _locked(session, referral_id)
    if referral.status != "review":
        raise Conflict(f"the referral is {referral.status}, not in review")
    referral.status = "pending" if approve else "rejected"
    referral.reason = reason
    audit(
        session,
        "referral.reviewed",
        "referral",
        referral.id,
        {"approve": approve, "reason": reason},
    )
    await session.flush()
    return ReferralRead.model_validate(referral)


async def _locked(session: AsyncSession, referral_id: uuid.UUID) -> Referral:
    found = await session.scalar(
        select(Referral)
        .where(Referral.id == referral_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if found is None:
        raise NotFound("no such referral")
    return found


async def list_referrals(
    session: AsyncSession, inviter_id: uuid.UUID | None, status: str | None
) -> list[ReferralRead]:
    stmt = select(Referral).order_by(Referral.bound_at.desc(), Referral.id).limit(500)
    if inviter_id is not None:
        stmt = stmt.where(Referral.inviter_id == inviter_id)
    if status is not None:
        stmt = stmt.where(Referral.status == status)
    return [ReferralRead.model_validate(r) for r in (await session.scalars(stmt)).all()]


# ------------------------------------------------------------------ rewards


@dataclass(frozen=True, slots=True)
class Side:
    """One side's reward: points, a coupon template, who, and the cause's suffix."""

    member_id: uuid.UUID
    points: int
    coupon: str | None
    label: str


async def reward_due(session: AsyncSession, now: datetime | None = None) -> RewardRun:
    """The job: pending referrals whose invitee's first purchase qualified are rewarded
    (both sides, once); those past the purchase window expire."""
    now = now or utcnow()
    settings = await get_settings(session)
    window = timedelta(days=settings.purchase_window_days)
    expired = await _expire(session, now - window)
    rewarded = 0
    for referral_id, order_id in await _qualified(session, settings, window):
        if await reward(session, referral_id, order_id, settings, now):
            rewarded += 1
    return RewardRun(rewarded=rewarded, expired=expired)


async def _expire(session: AsyncSession, bound_before: datetime) -> int:
    stale = (
        await session.scalars(
            select(Referral)
            .where(Referral.status.in_(("pending", "review")), Referral.bound_at < bound_before)
            .with_for_update()
        )
    ).all()
    for referral in stale:
        referral.status, referral.reason = "expired", "no qualifying purchase in the window"
    await session.flush()
    return len(stale)


async def _qualified(
    session: AsyncSession, settings: ReferralSettings, window: timedelta
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Pending referrals with the invitee's first qualifying order (set-based): paid since
    the invitee joined, within the window after the bind, not refunded, big enough."""
    rows = await session.execute(
        select(Referral.id, Referral.bound_at, Order.id.label("order_id"), Order.created_at)
        .join(Member, Member.id == Referral.invitee_id)
        .join(Order, Order.member_id == Referral.invitee_id)
        .where(
            Referral.status == "pending",
            Order.status != "refunded",
            Order.total_fen >= settings.min_order_fen,
            Order.created_at >= Member.joined_at,
        )
        .order_by(Referral.id, Order.created_at, Order.id)
    )
    first: dict[uuid.UUID, uuid.UUID] = {}
    for row in rows:
        if row.id not in first and row.created_at <= row.bound_at + window:
            first[row.id] = row.order_id
    return sorted(first.items())


async def reward(
    session: AsyncSession,
    referral_id: uuid.UUID,
    order_id: uuid.UUID,
    settings: ReferralSettings,
    now: datetime,
) -> bool:
    """Reward one referral, once: False when another run got there first."""
    referral = await _locked(session, referral_id)
    if referral.status != "pending":
        return False
    capped = await _inviter_capped(session, referral.inviter_id, settings, now)
    inviter = Side(referral.inviter_id, settings.inviter_points, settings.inviter_coupon,
                   f"{referral.id}:inviter")  # fmt: skip
    invitee = Side(referral.invitee_id, settings.invitee_points, settings.invitee_coupon,
                   f"{referral.id}:invitee")  # fmt: skip
    notes = []
    if capped:
        notes.append("inviter's monthly cap reached")
    else:
        referral.inviter_points, referral.inviter_coupon_id = await _give(
            session, inviter, now, notes
        )
    referral.invitee_points, referral.invitee_coupon_id = await _give(session, invitee, now, notes)
    referral.status, referral.order_id, referral.rewarded_at = "rewarded", order_id, now
    referral.reason = "; ".join(notes)[:200]
    audit(session, "referral.rewarded", "referral", referral.id,
          {"order": str(order_id), "inviter_points": referral.inviter_points,
           "invitee_points": referral.invitee_points, "notes": referral.reason})  # fmt: skip
    await session.flush()
    return True


async def _inviter_capped(
    session: AsyncSession, inviter_id: uuid.UUID, settings: ReferralSettings, now: datetime
) -> bool:
    if settings.max_rewards_per_month is None:
        return False
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    given = await session.scalar(
        select(func.count())
        .select_from(Referral)
        .where(
            Referral.inviter_id == inviter_id,
            Referral.status == "rewarded",
            Referral.rewarded_at >= month_start,
            (Referral.inviter_points > 0) | Referral.inviter_coupon_id.is_not(None),
        )
    )
    return (given or 0) >= settings.max_rewards_per_month


async def _give(
    session: AsyncSession, side: Side, now: datetime, notes: list[str]
) -> tuple[int, uuid.UUID | None]:
    """One side's points and coupon (a coupon out of stock is noted, the points still go);
    a member erased since gets nothing."""
    program = await get_program(session)
    given_points, coupon_id = 0, None
    try:
        if side.points:
            await points.grant_bonus(
                session, program, side.member_id, side.points,
                cause_type="referral", cause_id=side.label, reason="referral reward", now=now,
            )  # fmt: skip
            given_points = side.points
        if side.coupon:
            coupon = await coupons.issue(
                session, side.coupon, side.member_id,
                cause_type="referral", cause_id=side.label, now=now,
            )  # fmt: skip
            coupon_id = coupon.id
    except NestpointError as exc:
        notes.append(f"{side.label.split(':')[1]}: {exc.detail}"[:100])
    return given_points, coupon_id


# ------------------------------------------------------------------ friend assists


async def start_assist(
    session: AsyncSession, member_id: uuid.UUID, data: AssistIn
) -> Answer[AssistRead]:
    """Open an assist for a member (one open at a time); idempotent by the key."""
    settings = await get_settings(session)
    if not settings.enabled:
        raise Conflict("referrals are off for this chain")
    member = await get_active_member(session, member_id)
    await points.lock_account(session, member.id)  # one open assist per member
    request = fingerprint({"kind": "assist", "member": member.id})
    key = data.idempotency_key
    earlier = await idempotency.replay(
        session, idempotency.REQUEST, key, request, field="idempotency_key"
    )
    if earlier is not None:
        return earlier
    now = utcnow()
    open_one = await session.scalar(
        select(Assist.id).where(
            Assist.member_id == member.id, Assist.status == "open", Assist.expires_at > now
        )
    )
    if open_one is not None:
        raise Conflict(f"the member has an open assist ({open_one})")
    assist = Assist(
        id=uuid.uuid4(),
        member_id=member.id,
        goal=settings.assist_goal,
        helpers=0,
        status="open",
        idempotency_key=key,
        created_at=now,
        expires_at=now + timedelta(days=settings.assist_days),
    )
    session.add(assist)
    await session.flush()
    answer = idempotency.created(AssistRead.model_validate(assist))
    return await idempotency.record(
        session, idempotency.REQUEST, key, request, answer, field="idempotency_key"
    )


async def get_assist(session: AsyncSession, assist_id: uuid.UUID) -> AssistRead:
    found = await session.scalar(select(Assist).where(Assist.id == assist_id))
    if found is None:
        raise NotFound("no such assist")
    return AssistRead.model_validate(found)


async def help_assist(session: AsyncSession, assist_id: uuid.UUID, data: HelpIn) -> AssistRead:
    """A friend helps: once per friend and device, never the asker; the goal-th helper
    completes the assist and the asker is rewarded in this transaction."""
    assist = await session.scalar(
        select(Assist).where(Assist.id == assist_id).with_for_update()
        .execution_options(populate_existing=True)
    )  # fmt: skip
    if assist is None:
        raise NotFound("no such assist")
    now = utcnow()
    if assist.status != "open" or assist.expires_at <= now:
        raise Conflict(f"the assist is {'expired' if assist.status == 'open' else assist.status}")
    helper = await get_active_member(session, data.helper_id)
    await _check_helper(session, assist, helper.id, device_hash(data.device_id))
    session.add(AssistHelper(assist_id=assist.id, helper_id=helper.id,
                             device_hash=device_hash(data.device_id), helped_at=now))  # fmt: skip
    assist.helpers += 1
    if assist.helpers >= assist.goal:
        await _complete(session, assist, now)
    await session.flush()
    return AssistRead.model_validate(assist)


async def _check_helper(
    session: AsyncSession, assist: Assist, helper_id: uuid.UUID, digest: str | None
) -> None:
    if helper_id == assist.member_id:
        raise Invalid.field("helper_id", "a member cannot help their own assist")
    helped = await session.scalar(
        select(AssistHelper.helper_id).where(
            AssistHelper.assist_id == assist.id, AssistHelper.helper_id == helper_id
        )
    )
    if helped is not None:
        raise Conflict("this friend helped already", errors=[FieldError("helper_id", "helped")])
    if digest is not None:
        same_device = await session.scalar(
            select(AssistHelper.helper_id).where(
                AssistHelper.assist_id == assist.id, AssistHelper.device_hash == digest
            )
        )
        if same_device is not None:
            raise Invalid.field("device_id", "a friend on this device helped already")


async def _complete(session: AsyncSession, assist: Assist, now: datetime) -> None:
    settings = await get_settings(session)
    notes: list[str] = []
    side = Side(assist.member_id, settings.assist_points, settings.assist_coupon,
                f"{assist.id}:assist")  # fmt: skip
    assist.reward_points, assist.reward_coupon_id = await _give(session, side, now, notes)
    assist.status, assist.completed_at = "completed", now
    audit(session, "assist.completed", "assist", assist.id,
          {"points": assist.reward_points, "notes": "; ".join(notes)})  # fmt: skip
    if notes:
        log.warning("assist %s rewarded in part: %s", assist.id, "; ".join(notes))
