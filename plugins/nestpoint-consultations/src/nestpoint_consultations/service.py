"""The consultation rules: consultants' hours, bookable slots, booking with a cut-off, the
free quota from benefits, no-shows and their policy, advisers, reminders.

A booking, a reschedule and a cancellation lock the consultant's row first, so two tills
never book one consultant's slot twice; a free consultation uses the member's benefit
through the core in the same transaction, keyed by the booking, and cancelling gives it
back. Times are the chain's (``chain_now``): a consultant's hours are local hours.

A member books and cancels their own through the member API (``*_mine`` below): the same
rules, run at the consultant's store (its configuration; the benefit used there), only
where the plugin is on at that store, with the member's key made their own.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.plugins.api import (
    Conflict,
    FieldError,
    Invalid,
    NotFound,
    PluginContext,
    acting_at_store,
    audit,
    chain_now,
    emit_event,
    member_benefits,
    member_facts,
    member_key,
    plugin_at_store,
    remember,
    replayed,
    reverse_benefit_use,
    seal,
    unseal,
    use_benefit,
    utcnow,
)
from nestpoint_consultations.models import (
    Consultant,
    ConsultantException,
    Consultation,
    MemberAdviser,
)
from nestpoint_consultations.schemas import (
    AdviserRead,
    BookingIn,
    ConsultantIn,
    ConsultantRead,
    ConsultationRead,
    ConsultationsConfig,
    Day,
    ExceptionIn,
    Hours,
    MyBookingIn,
    MyConsultation,
    Slot,
)

TABLE = Consultation.__tablename__
NO_SHOW_WINDOW = timedelta(days=90)


# ------------------------------------------------------------------ consultants and hours


async def put_consultant(
    db: AsyncSession, plugin: PluginContext, code: str, data: ConsultantIn
) -> ConsultantRead:
    """Create or change a consultant of the caller's store (a store key's)."""
    store_id = _store(plugin)
    row = await db.scalar(select(Consultant).where(Consultant.code == code))
    if row is not None and row.store_id != store_id:
        raise Conflict(
            f"code: consultant {code!r} works at another store",
            errors=[FieldError("code", "another store's")],
        )
    if row is None:
        row = Consultant(code=code, store_id=store_id)
        db.add(row)
    row.name, row.kind, row.slot_minutes, row.active = (
        data.name, data.kind, data.slot_minutes, data.active,
    )  # fmt: skip
    row.weekly = [h.model_dump(mode="json") for h in data.weekly]
    await db.flush()
    return consultant_read(row)


def consultant_read(row: Consultant) -> ConsultantRead:
    return ConsultantRead(
        code=row.code,
        store_id=row.store_id,
        name=row.name,
        kind=row.kind,
        weekly=[Hours.model_validate(h) for h in row.weekly],
        slot_minutes=row.slot_minutes,
        active=row.active,
    )


async def list_consultants(db: AsyncSession, plugin: PluginContext) -> list[ConsultantRead]:
    stmt = select(Consultant).order_by(Consultant.code)
    if plugin.store_id is not None:
        stmt = stmt.where(Consultant.store_id == plugin.store_id)
    return [consultant_read(row) for row in (await db.scalars(stmt)).all()]


async def put_exception(
    db: AsyncSession, plugin: PluginContext, code: str, day: date, data: ExceptionIn
) -> None:
    """A day a consultant is away (no hours) or works other hours."""
    consultant = await _consultant(db, plugin, code)
    row = await db.scalar(
        select(ConsultantException).where(
            ConsultantException.consultant_id == consultant.id, ConsultantException.day == day
        )
    )
    if row is None:
        row = ConsultantException(consultant_id=consultant.id, day=day)
        db.add(row)
    row.hours = [h.model_dump(mode="json") for h in data.hours]
    await db.flush()


def _store(plugin: PluginContext) -> uuid.UUID:
    if plugin.store_id is None:
        raise Invalid.field("store", "consultants are a store's: use a store's key")
    return plugin.store_id


async def _consultant(
    db: AsyncSession, plugin: PluginContext, code: str, *, lock: bool = False
) -> Consultant:
    stmt = select(Consultant).where(Consultant.code == code, Consultant.active)
    if plugin.store_id is not None:
        stmt = stmt.where(Consultant.store_id == plugin.store_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    row = await db.scalar(stmt)
    if row is None:
        raise NotFound(f"no consultant {code!r} here")
    return row


# ------------------------------------------------------------------ slots


async def _hours_of(db: AsyncSession, consultant: Consultant, day: date) -> list[Hours]:
    exception = await db.scalar(
        select(ConsultantException).where(
            ConsultantException.consultant_id == consultant.id, ConsultantException.day == day
        )
    )
    if exception is not None:
        return [Hours.model_validate(h) for h in exception.hours]
    weekly = [Hours.model_validate(h) for h in consultant.weekly]
    return [h for h in weekly if h.weekday == day.isoweekday()]


def _starts(hours: list[Hours], day: date, minutes: int, zone: tzinfo) -> list[datetime]:
    """Every slot start in the day's hours, as aware times in the chain's zone."""
    starts: list[datetime] = []
    for h in hours:
        at = datetime.combine(day, h.start, zone)
        end = datetime.combine(day, h.end, zone)
        while at + timedelta(minutes=minutes) <= end:
            starts.append(at)
            at += timedelta(minutes=minutes)
    return starts


async def _taken(db: AsyncSession, consultant_id: uuid.UUID, day_start: datetime) -> set[datetime]:
    rows = await db.scalars(
        select(Consultation.starts_at).where(
            Consultation.consultant_id == consultant_id,
            Consultation.status == "booked",
            Consultation.starts_at >= day_start,
            Consultation.starts_at < day_start + timedelta(days=1),
        )
    )
    return set(rows.all())


async def free_slots(db: AsyncSession, plugin: PluginContext, code: str, day: date) -> Day:
    """The consultant's slots on a day that can still be booked now."""
    consultant = await _consultant(db, plugin, code)
    config = ConsultationsConfig.model_validate(plugin.config)
    now = await chain_now(db)
    assert now.tzinfo is not None
    starts = _starts(await _hours_of(db, consultant, day), day, consultant.slot_minutes, now.tzinfo)
    taken = await _taken(db, consultant.id, datetime.combine(day, datetime.min.time(), now.tzinfo))
    earliest = now + timedelta(hours=config.cutoff_hours)
    latest = now + timedelta(days=config.max_days_ahead)
    return Day(
        day=day,
        slots=[
            Slot(starts_at=s, minutes=consultant.slot_minutes)
            for s in starts
            if earliest <= s <= latest and s not in taken
        ],
    )


async def _check_slot(
    db: AsyncSession, consultant: Consultant, config: ConsultationsConfig, starts_at: datetime
) -> datetime:
    """``starts_at`` as one of the consultant's free slots, or a 422/409 naming it."""
    now = await chain_now(db)
    assert now.tzinfo is not None
    local = starts_at.astimezone(now.tzinfo)
    if local < now + timedelta(hours=config.cutoff_hours):
        raise Invalid.field("starts_at", f"book at least {config.cutoff_hours} hours ahead")
    if local > now + timedelta(days=config.max_days_ahead):
        raise Invalid.field("starts_at", f"at most {config.max_days_ahead} days ahead")
    day = local.date()
    starts = _starts(await _hours_of(db, consultant, day), day, consultant.slot_minutes, now.tzinfo)
    if local not in starts:
        raise Invalid.field("starts_at", "not one of the consultant's slots")
    if local in await _taken(
        db, consultant.id, datetime.combine(day, datetime.min.time(), now.tzinfo)
    ):
        raise Conflict(
            "starts_at: the slot was just booked", errors=[FieldError("starts_at", "taken")]
        )
    return local


# ------------------------------------------------------------------ booking


async def book(
    db: AsyncSession, plugin: PluginContext, code: str, data: BookingIn
) -> tuple[int, dict[str, Any], bool]:
    """Book a consultation: (status, body, whether it replays the first answer)."""
    config = ConsultationsConfig.model_validate(plugin.config)
    facts = await member_facts(db, data.member_id)
    consultant = await _consultant(db, plugin, code, lock=True)
    request = {"consultant": code} | data.model_dump(mode="json", exclude={"idempotency_key"})
    earlier = await replayed(db, plugin, data.idempotency_key, request)
    if earlier is not None:
        return *earlier, True
    starts_at = await _check_slot(db, consultant, config, data.starts_at)
    row = Consultation(
        id=uuid.uuid4(),
        request_key=data.idempotency_key,
        consultant_id=consultant.id,
        store_id=consultant.store_id,
        member_id=facts.member_id,
        starts_at=starts_at,
        minutes=consultant.slot_minutes,
        status="booked",
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    await _pay(db, config, row)
    db.add(row)
    await db.flush()
    body = read(row, consultant, plugin)
    emit_event(db, plugin, "booked", "member", row.member_id, _payload(row, consultant))
    audit(db, plugin, "booked", "consultation", row.id, _audited(row, consultant))
    await remember(db, plugin, data.idempotency_key, request, 201, body)
    return 201, body.model_dump(mode="json"), False


async def _pay(db: AsyncSession, config: ConsultationsConfig, row: Consultation) -> None:
    """Free with the first consultation benefit the member can use here, unless the
    no-show policy holds them back; otherwise the price, or refused by the chain's rule."""
    if not await _held_back(db, config, row.member_id):
        held = await member_benefits(db, row.member_id)
        usable = {e.benefit_code for e in held.entitlements if e.usable_here}
        code = next((c for c in config.free_benefits if c in usable), None)
        if code is not None:
            used = await use_benefit(
                db,
                row.member_id,
                code,
                idempotency_key=f"consultation:{row.id}",
                reference=f"consultation:{row.id}",
            )
            row.benefit_use_id, row.fee_fen = used.id, 0
            return
    if config.without_benefit == "refuse":
        raise Invalid.field("member_id", "no free consultation left for this member")
    row.fee_fen = config.price_fen


async def _held_back(db: AsyncSession, config: ConsultationsConfig, member_id: uuid.UUID) -> bool:
    """The no-show policy: too many no-shows lately and free booking stops for a while."""
    if config.no_show_limit == 0:
        return False
    missed = await db.scalar(
        select(func.count()).where(
            Consultation.member_id == member_id,
            Consultation.status == "no_show",
            Consultation.starts_at >= utcnow() - NO_SHOW_WINDOW,
        )
    )
    return int(missed or 0) >= config.no_show_limit


async def reschedule(
    db: AsyncSession, plugin: PluginContext, consultation_id: uuid.UUID, starts_at: datetime
) -> ConsultationRead:
    """Move a booking to another free slot of the same consultant, before the cut-off."""
    config = ConsultationsConfig.model_validate(plugin.config)
    row, consultant = await _booking(db, plugin, consultation_id)
    if row.starts_at == starts_at:
        return read(row, consultant, plugin)
    await _still_changeable(db, config, row)
    before = row.starts_at
    row.starts_at = await _check_slot(db, consultant, config, starts_at)
    row.updated_at = utcnow()
    payload = _payload(row, consultant) | {"from_starts_at": before.isoformat()}
    emit_event(db, plugin, "rescheduled", "member", row.member_id, payload)
    return read(row, consultant, plugin)


async def cancel(
    db: AsyncSession, plugin: PluginContext, consultation_id: uuid.UUID
) -> ConsultationRead:
    """Cancel before the cut-off (again: a no-op); a used benefit comes back."""
    config = ConsultationsConfig.model_validate(plugin.config)
    row, consultant = await _booking(db, plugin, consultation_id)
    if row.status == "cancelled":
        return read(row, consultant, plugin)
    await _still_changeable(db, config, row)
    row.status, row.updated_at = "cancelled", utcnow()
    if row.benefit_use_id is not None:
        await reverse_benefit_use(db, row.benefit_use_id, "consultation cancelled")
    emit_event(db, plugin, "cancelled", "member", row.member_id, _payload(row, consultant))
    audit(db, plugin, "cancelled", "consultation", row.id, _audited(row, consultant))
    return read(row, consultant, plugin)


async def _still_changeable(
    db: AsyncSession, config: ConsultationsConfig, row: Consultation
) -> None:
    if row.status != "booked":
        raise Conflict(
            f"a {row.status} consultation cannot change", errors=[FieldError("status", row.status)]
        )
    if row.starts_at - utcnow() < timedelta(hours=config.cutoff_hours):
        raise Invalid.field("starts_at", f"changes close {config.cutoff_hours} hours before")


async def record_outcome(
    db: AsyncSession, plugin: PluginContext, consultation_id: uuid.UUID, status: str, notes: str
) -> ConsultationRead:
    """After it started: completed (with the consultant's notes, sealed) or no-show."""
    row, consultant = await _booking(db, plugin, consultation_id)
    if row.status == status:
        return read(row, consultant, plugin)
    if row.status != "booked" or row.starts_at > utcnow():
        raise Conflict(
            "only a booked consultation that has started has an outcome",
            errors=[FieldError("status", row.status)],
        )
    row.status, row.updated_at = status, utcnow()
    if notes:
        row.notes_enc = seal(TABLE, row.id, notes)
    emit_event(db, plugin, status, "member", row.member_id, _payload(row, consultant))
    return read(row, consultant, plugin)


async def _booking(
    db: AsyncSession, plugin: PluginContext, consultation_id: uuid.UUID
) -> tuple[Consultation, Consultant]:
    """The booking with its consultant's lock taken first (the one lock order)."""
    peek = await db.scalar(select(Consultation).where(Consultation.id == consultation_id))
    if peek is None or (plugin.store_id is not None and peek.store_id != plugin.store_id):
        raise NotFound("no such consultation")
    consultant = await db.scalar(
        select(Consultant).where(Consultant.id == peek.consultant_id).with_for_update()
    )
    row = await db.scalar(
        select(Consultation)
        .where(Consultation.id == consultation_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert row is not None
    assert consultant is not None
    return row, consultant


async def member_consultations(
    db: AsyncSession, plugin: PluginContext, member_id: uuid.UUID
) -> list[ConsultationRead]:
    rows = (
        await db.execute(
            select(Consultation, Consultant)
            .join(Consultant, Consultant.id == Consultation.consultant_id)
            .where(Consultation.member_id == member_id)
            .order_by(Consultation.starts_at)
        )
    ).all()
    return [read(row, consultant, plugin) for row, consultant in rows]


def read(row: Consultation, consultant: Consultant, plugin: PluginContext) -> ConsultationRead:
    # Notes are sensitive: HQ only (a store's key never sees them).
    notes = (
        unseal(TABLE, row.id, row.notes_enc) if row.notes_enc and plugin.store_id is None else None
    )
    return ConsultationRead(
        id=row.id,
        consultant_code=consultant.code,
        member_id=row.member_id,
        starts_at=row.starts_at,
        minutes=row.minutes,
        status=row.status,
        fee_fen=row.fee_fen,
        free_by_benefit=row.benefit_use_id is not None,
        notes=notes,
        created_at=row.created_at,
    )


def _payload(row: Consultation, consultant: Consultant) -> dict[str, Any]:
    return {
        "consultation_id": str(row.id),
        "member_id": str(row.member_id),
        "consultant_code": consultant.code,
        "starts_at": row.starts_at.isoformat(),
        "status": row.status,
    }


def _audited(row: Consultation, consultant: Consultant) -> dict[str, Any]:
    return _payload(row, consultant) | {"fee_fen": row.fee_fen, "store_id": str(row.store_id)}


# ------------------------------------------------------------------ the member's own


async def _offered(
    db: AsyncSession, plugin: PluginContext, consultant: Consultant
) -> PluginContext:
    """The plugin at the consultant's store (that store's configuration); 404 where the
    plugin is off there, as if the consultant did not exist."""
    here = await plugin_at_store(db, plugin, consultant.store_id)
    if here is None:
        raise NotFound(f"no consultant {consultant.code!r} here")
    return here


async def bookable_consultants(db: AsyncSession, plugin: PluginContext) -> list[ConsultantRead]:
    """The chain's active consultants at the stores where the plugin is on."""
    rows = (
        await db.scalars(select(Consultant).where(Consultant.active).order_by(Consultant.code))
    ).all()
    offered: dict[uuid.UUID, bool] = {}
    for row in rows:
        if row.store_id not in offered:
            offered[row.store_id] = await plugin_at_store(db, plugin, row.store_id) is not None
    return [consultant_read(row) for row in rows if offered[row.store_id]]


async def my_free_slots(db: AsyncSession, plugin: PluginContext, code: str, day: date) -> Day:
    """A consultant's free slots on a day, by the rules of the consultant's store."""
    here = await _offered(db, plugin, await _consultant(db, plugin, code))
    return await free_slots(db, here, code, day)


async def book_mine(
    db: AsyncSession, plugin: PluginContext, member_id: uuid.UUID, code: str, data: MyBookingIn
) -> tuple[int, MyConsultation, bool]:
    """The member books a slot for themselves, at the consultant's store, as :func:`book`
    (the same lock, quota and idempotency; the key made the member's own)."""
    consultant = await _consultant(db, plugin, code)
    here = await _offered(db, plugin, consultant)
    booking = BookingIn(
        idempotency_key=member_key(member_id, data.idempotency_key),
        member_id=member_id,
        starts_at=data.starts_at,
    )
    with acting_at_store(here):
        status, body, again = await book(db, here, code, booking)
    return status, my_consultation(body, consultant), again


async def cancel_mine(
    db: AsyncSession, plugin: PluginContext, member_id: uuid.UUID, consultation_id: uuid.UUID
) -> MyConsultation:
    """The member cancels one of their own consultations (another's: 404), by
    :func:`cancel`'s rules (the cut-off; again: a no-op)."""
    found = (
        await db.execute(
            select(Consultation.id, Consultant)
            .join(Consultant, Consultant.id == Consultation.consultant_id)
            .where(Consultation.id == consultation_id, Consultation.member_id == member_id)
        )
    ).one_or_none()
    if found is None:
        raise NotFound("no such consultation")
    consultant: Consultant = found[1]
    here = await _offered(db, plugin, consultant)
    with acting_at_store(here):
        cancelled = await cancel(db, here, consultation_id)
    return my_consultation(cancelled.model_dump(), consultant)


async def my_consultations(db: AsyncSession, member_id: uuid.UUID) -> list[MyConsultation]:
    """The member's consultations, oldest first, without the consultant's notes."""
    rows = (
        await db.execute(
            select(Consultation, Consultant)
            .join(Consultant, Consultant.id == Consultation.consultant_id)
            .where(Consultation.member_id == member_id)
            .order_by(Consultation.starts_at, Consultation.id)
        )
    ).all()
    return [
        my_consultation(
            {
                "id": row.id,
                "consultant_code": consultant.code,
                "starts_at": row.starts_at,
                "minutes": row.minutes,
                "status": row.status,
                "fee_fen": row.fee_fen,
                "free_by_benefit": row.benefit_use_id is not None,
                "created_at": row.created_at,
            },
            consultant,
        )
        for row, consultant in rows
    ]


def my_consultation(booked: dict[str, Any], consultant: Consultant) -> MyConsultation:
    """A booking (``ConsultationRead``'s fields; its notes are left out) as the member sees it."""
    return MyConsultation.model_validate(
        booked
        | {
            "consultant_name": consultant.name,
            "consultant_kind": consultant.kind,
            "store_id": consultant.store_id,
        }
    )


# ------------------------------------------------------------------ advisers


async def bind_adviser(
    db: AsyncSession, plugin: PluginContext, member_id: uuid.UUID, code: str
) -> AdviserRead:
    """Bind a consultant to a member as their adviser (replacing an earlier one)."""
    facts = await member_facts(db, member_id)
    consultant = await _consultant(db, plugin, code)
    row = await db.scalar(select(MemberAdviser).where(MemberAdviser.member_id == facts.member_id))
    if row is None:
        row = MemberAdviser(member_id=facts.member_id)
        db.add(row)
    if row.consultant_id != consultant.id:
        row.consultant_id, row.since = consultant.id, utcnow()
    await db.flush()
    return AdviserRead(
        member_id=row.member_id,
        consultant_code=consultant.code,
        consultant_name=consultant.name,
        since=row.since,
    )


async def get_adviser(db: AsyncSession, member_id: uuid.UUID) -> AdviserRead:
    found = (
        await db.execute(
            select(MemberAdviser, Consultant)
            .join(Consultant, Consultant.id == MemberAdviser.consultant_id)
            .where(MemberAdviser.member_id == member_id)
        )
    ).one_or_none()
    if found is None:
        raise NotFound("the member has no adviser")
    row, consultant = found
    return AdviserRead(
        member_id=row.member_id,
        consultant_code=consultant.code,
        consultant_name=consultant.name,
        since=row.since,
    )


# ------------------------------------------------------------------ periodic


async def send_reminders(db: AsyncSession, plugin: PluginContext, now: datetime) -> int:
    """Raise ``consultations.reminder`` once for each booking in the next 24 hours."""
    due = (
        await db.execute(
            select(Consultation, Consultant)
            .join(Consultant, Consultant.id == Consultation.consultant_id)
            .where(
                Consultation.status == "booked",
                Consultation.reminded_at.is_(None),
                Consultation.starts_at > now,
                Consultation.starts_at <= now + timedelta(hours=24),
            )
            .with_for_update(of=Consultation, skip_locked=True)
        )
    ).all()
    for row, consultant in due:
        row.reminded_at = now
        emit_event(db, plugin, "reminder", "member", row.member_id, _payload(row, consultant))
    return len(due)


async def mark_no_shows(db: AsyncSession, plugin: PluginContext, now: datetime) -> int:
    """A booking still open two hours after it ended was a no-show."""
    rows = (
        await db.scalars(
            select(Consultation)
            .where(
                Consultation.status == "booked", Consultation.starts_at < now - timedelta(hours=2)
            )
            .with_for_update(skip_locked=True)
        )
    ).all()
    late = [r for r in rows if r.starts_at + timedelta(minutes=r.minutes + 120) <= now]
    for row in late:
        row.status, row.updated_at = "no_show", now
        emit_event(
            db,
            plugin,
            "no_show",
            "member",
            row.member_id,
            {"consultation_id": str(row.id), "member_id": str(row.member_id)},
        )
    return len(late)
