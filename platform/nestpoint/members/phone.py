"""A member's phone changed, proven with a one-time code sent to the new phone.

Above members and messaging (messaging's service reads members; this module uses both),
like ``members.merge``. No HTTP; never commits.

1. **Start** (``start_change``): the new phone is normalised (422 naming ``phone``), must
   differ from the member's and belong to no other member of the chain (409 naming
   ``phone``); at most ``MAX_STARTS_PER_HOUR`` codes per member an hour (429). A pending
   change of the member is cancelled (``superseded``); the new one keeps the new phone
   sealed under the member's key and only a keyed hash of its six-digit code (HMAC with the
   personal-data hash key, bound to the change), and queues the code to the new phone
   (``messaging.queue_sealed``: SMS, sealed, wiped once sent). Idempotent by the optional
   ``idempotency_key``. With ``require_channel`` (the member's own start, through the member
   API) a start is refused first (409 ``phone-code-undeliverable``) when no channel can
   carry the code; a staff start keeps going, and its message is then suppressed
   (``no_channel``; docs/messaging.md).
2. **Confirm** (``confirm_change``): under the member's lock, the latest change's code is
   compared. Right: the phone changes (checked again for another member: 409), audited with
   both phones masked, ``member.updated`` emitted; confirming again with the same code
   answers the member again (idempotent). Wrong: the attempt counts (the caller commits it
   although it answers 422); the ``MAX_ATTEMPTS``-th wrong code cancels the change. No
   pending change, or an expired code: 409.

Retention (``purge_ended``, a periodic job): a change that ended (confirmed, cancelled, or
its code expired) is deleted ``NESTPOINT_PHONE_CHANGE_RETENTION_DAYS`` after it ended.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.audit.service import record
from nestpoint.context import current_actor, require_tenant
from nestpoint.db.base import new_id, utcnow
from nestpoint.errors import Conflict, FieldError, Invalid, RateLimited
from nestpoint.events.service import emit
from nestpoint.idempotency import service as idempotency
from nestpoint.idempotency.service import Answer, fingerprint
from nestpoint.members import pii
from nestpoint.members.models import Member, MemberPhoneChange
from nestpoint.members.schemas import PhoneChangeIn, PhoneChangeRead, PhoneConfirmIn
from nestpoint.members.service import (
    decrypt_phone,
    get_member,
    get_member_in_reach,
    phone_lookup_hash,
    seal,
    set_phone,
    unseal,
    writing_cipher,
)
from nestpoint.messaging import pipeline
from nestpoint.messaging import service as messaging

CODE_TTL = timedelta(minutes=10)
MAX_ATTEMPTS = 5  # wrong codes; the last one cancels the change
MAX_STARTS_PER_HOUR = 5  # codes sent to new phones per member an hour (each is an SMS)
SCOPE = "phone_change"
TABLE = "member_phone_changes"


def code_hash(change_id: uuid.UUID, code: str) -> str:
    """The keyed hash kept of a code: a dump without the hash key cannot try the 10^6."""
    return pii.keyring().lookup_hash(f"phone-change:{change_id}:{code}")


def new_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


async def _locked_member(session: AsyncSession, member_id: uuid.UUID) -> Member:
    """The member in the caller's reach (a merged one's survivor), locked: a member's
    starts and confirmations run one at a time, so attempts are counted exactly."""
    member = await get_member_in_reach(session, member_id, active=True)
    return await get_member(session, member.id, for_update=True)


async def _ensure_free(session: AsyncSession, member: Member, digest: str) -> None:
    holder = await session.scalar(
        select(Member.id).where(Member.phone_hash == digest, Member.id != member.id)
    )
    if holder is not None:
        raise Conflict(
            "another member of the chain has this phone", errors=[FieldError("phone", "taken")]
        )


class CodeUndeliverable(Conflict):
    """No channel of the chain can carry a code to a phone (no SMS connector enabled)."""

    slug = "phone-code-undeliverable"


async def _ensure_deliverable(session: AsyncSession) -> None:
    if not await pipeline.can_reach_phone(session, require_tenant().store_id):
        raise CodeUndeliverable(
            "the chain has no channel enabled that can send a code to a phone (SMS): "
            "the phone cannot be changed this way now",
            errors=[FieldError("phone", "no channel can send a code to it")],
        )


async def start_change(
    session: AsyncSession,
    member_id: uuid.UUID,
    data: PhoneChangeIn,
    *,
    require_channel: bool = False,
) -> Answer[PhoneChangeRead]:
    member = await _locked_member(session, member_id)
    e164, digest = phone_lookup_hash(data.phone)
    request = fingerprint(data)
    key = f"{member.id}/{data.idempotency_key}" if data.idempotency_key else None
    if key is not None:
        earlier = await idempotency.replay(session, SCOPE, key, request, field="idempotency_key")
        if earlier is not None:
            return earlier
    if digest == member.phone_hash:
        raise Invalid.field("phone", "this is already the member's phone")
    await _ensure_free(session, member, digest)
    if require_channel:
        await _ensure_deliverable(session)
    now = utcnow()
    sent = await session.scalar(
        select(func.count())
        .select_from(MemberPhoneChange)
        .where(
            MemberPhoneChange.member_id == member.id,
            MemberPhoneChange.created_at > now - timedelta(hours=1),
        )
    )
    if int(sent or 0) >= MAX_STARTS_PER_HOUR:
        raise RateLimited(
            f"at most {MAX_STARTS_PER_HOUR} codes an hour for one member", retry_after=3600
        )
    await session.execute(
        update(MemberPhoneChange)
        .where(MemberPhoneChange.member_id == member.id, MemberPhoneChange.status == "pending")
        .values(status="cancelled", reason="superseded", resolved_at=now)
    )
    change_id, code = new_id(), new_code()
    change = MemberPhoneChange(
        id=change_id,
        member_id=member.id,
        new_phone_hash=digest,
        new_phone_enc=seal(writing_cipher(member), TABLE, change_id, e164),
        code_hash=code_hash(change_id, code),
        attempts=0,
        status="pending",
        actor=str(current_actor().key_id or current_actor().name),
        created_at=now,
        expires_at=now + CODE_TTL,
    )
    session.add(change)
    await session.flush()  # the change before the message that names it
    message = await messaging.queue_sealed(
        session,
        member=member,
        key=f"{SCOPE}:{change_id}",
        purpose=messaging.PHONE_VERIFICATION,
        to=e164,
        secrets={"code": code, "minutes": str(int(CODE_TTL.total_seconds() // 60))},
        store_id=require_tenant().store_id,
    )
    change.message_id = message.id
    masked = pii.mask_phone(e164)
    record(
        session,
        "member.phone_change_started",
        "member",
        member.id,
        {"change_id": str(change_id), "phone": masked},
    )
    result = PhoneChangeRead(
        id=change_id,
        status="pending",
        phone=masked,
        expires_at=change.expires_at,
        attempts_left=MAX_ATTEMPTS,
        message_id=message.id,
    )
    answer = Answer(202, result.model_dump(mode="json"), result=result)
    if key is not None:
        earlier = await idempotency.claim(
            session, SCOPE, key, request, answer, field="idempotency_key"
        )
        if earlier is not None:
            return earlier
    return answer


@dataclass(frozen=True, slots=True)
class Confirmed:
    member: Member
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class WrongCode:
    """A wrong code, counted: the caller commits the count, then answers 422."""

    attempts_left: int

    @property
    def cancelled(self) -> bool:
        return self.attempts_left == 0

    def error(self) -> Invalid:
        if self.cancelled:
            message = "wrong code, and too many: the change is cancelled (start again)"
        else:
            message = f"wrong code ({self.attempts_left} attempts left)"
        return Invalid.field("code", message)


def _nothing_pending(why: str) -> Conflict:
    return Conflict(
        f"no phone change is pending for this member ({why}): start one",
        errors=[FieldError("code", why)],
    )


async def confirm_change(
    session: AsyncSession, member_id: uuid.UUID, data: PhoneConfirmIn
) -> Confirmed | WrongCode:
    member = await _locked_member(session, member_id)
    change = await session.scalar(
        select(MemberPhoneChange)
        .where(MemberPhoneChange.member_id == member.id)
        .order_by(MemberPhoneChange.created_at.desc(), MemberPhoneChange.id.desc())
        .limit(1)
        .with_for_update()
    )
    if change is None:
        raise _nothing_pending("none started")
    right = hmac.compare_digest(change.code_hash, code_hash(change.id, data.code))
    if change.status == "confirmed":
        if right:  # a retry of the confirmation that succeeded
            return Confirmed(member, replayed=True)
        raise _nothing_pending("the last one is confirmed")
    if change.status != "pending":
        raise _nothing_pending(f"the last one is {change.status}: {change.reason}")
    now = utcnow()
    if change.expires_at <= now:
        raise _nothing_pending("the code has expired")
    if not right:
        change.attempts += 1
        left = MAX_ATTEMPTS - change.attempts
        if left <= 0:
            change.status, change.reason, change.resolved_at = "cancelled", "wrong_codes", now
            record(
                session,
                "member.phone_change_cancelled",
                "member",
                member.id,
                {"change_id": str(change.id), "reason": "wrong_codes"},
            )
        return WrongCode(max(left, 0))
    await _ensure_free(session, member, change.new_phone_hash)
    new_phone = unseal(writing_cipher(member), TABLE, change.id, change.new_phone_enc)
    before = decrypt_phone(member)
    set_phone(member, new_phone, change.new_phone_hash)
    change.status, change.resolved_at = "confirmed", now
    try:
        async with session.begin_nested():  # another member took it a moment ago
            await session.flush()
    except IntegrityError as exc:
        raise Conflict(
            "another member of the chain has this phone", errors=[FieldError("phone", "taken")]
        ) from exc
    record(
        session,
        "member.phone_changed",
        "member",
        member.id,
        {
            "change_id": str(change.id),
            "phone": [pii.mask_phone(before) if before else "", pii.mask_phone(new_phone)],
        },
    )
    emit(
        session,
        "member.updated",
        "member",
        member.id,
        {"member_id": str(member.id), "fields": ["phone"]},
    )
    return Confirmed(member)


async def purge_ended(session: AsyncSession, older_than: timedelta) -> int:
    """Delete the changes that ended (confirmed or cancelled, or whose code expired) more
    than ``older_than`` ago; a pending change with a live code is never one of them."""
    cutoff = utcnow() - older_than
    result = await session.execute(
        delete(MemberPhoneChange).where(
            or_(
                MemberPhoneChange.expires_at < cutoff,
                and_(
                    MemberPhoneChange.resolved_at.is_not(None),
                    MemberPhoneChange.resolved_at < cutoff,
                ),
            )
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
