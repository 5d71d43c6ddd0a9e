"""The classes' rules: sessions, booking windows by tier, capacity, the waitlist, check-in.

Locks, in one order: the child's row (``class_child_locks``, made on first booking), then
the session's row. A booking holds both while it checks that the child is not already in
this or an overlapping session and counts the places, so parallel bookings never overfill
a session nor book one child twice; a cancellation holds the session's row while it frees
the place and promotes the first on the waitlist (in booking order). A free place uses the
member's class benefit through the core, keyed by the booking; cancelling gives it back.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.plugins.api import (
    Conflict,
    FieldError,
    Invalid,
    NotFound,
    PluginContext,
    award_points,
    emit_event,
    member_benefits,
    member_facts,
    remember,
    replayed,
    reverse_benefit_use,
    use_benefit,
    utcnow,
)
from nestpoint_classes.models import ClassBooking, ClassChildLock, ClassSession
from nestpoint_classes.schemas import (
    BookingIn,
    BookingRead,
    ClassesConfig,
    SessionIn,
    SessionRead,
)

HOLDING = ("booked", "waitlisted")  # a child with one of these is in the session


# ------------------------------------------------------------------ sessions


async def put_session(
    db: AsyncSession, plugin: PluginContext, code: str, data: SessionIn
) -> SessionRead:
    """Create or change a session of the caller's store (a store key's)."""
    if plugin.store_id is None:
        raise Invalid.field("store", "sessions are a store's: use a store's key")
    row = await db.scalar(select(ClassSession).where(ClassSession.code == code))
    if row is not None and row.store_id != plugin.store_id:
        raise Conflict(
            f"code: session {code!r} belongs to another store",
            errors=[FieldError("code", "another store's")],
        )
    if row is None:
        row = ClassSession(code=code, store_id=plugin.store_id, status="scheduled")
        db.add(row)
    else:
        booked = (await _counts(db, row.id)).get("booked", 0)
        if data.capacity < booked:
            raise Invalid.field("capacity", f"{booked} places are booked already")
    for name, value in data.model_dump().items():
        setattr(row, name, value)
    await db.flush()
    return await session_read(db, row)


async def session_read(db: AsyncSession, row: ClassSession) -> SessionRead:
    counts = await _counts(db, row.id)
    return SessionRead(
        code=row.code,
        store_id=row.store_id,
        title=row.title,
        room=row.room,
        starts_at=row.starts_at,
        minutes=row.minutes,
        capacity=row.capacity,
        stages=list(row.stages),
        price_fen=row.price_fen,
        opens_at=row.opens_at,
        status=row.status,
        booked=counts.get("booked", 0) + counts.get("attended", 0),
        waitlisted=counts.get("waitlisted", 0),
    )


async def _counts(db: AsyncSession, session_id: uuid.UUID) -> dict[str, int]:
    rows = await db.execute(
        select(ClassBooking.status, func.count())
        .where(ClassBooking.session_id == session_id)
        .group_by(ClassBooking.status)
    )
    return {status: int(n) for status, n in rows.all()}


async def list_sessions(
    db: AsyncSession, plugin: PluginContext, start: datetime, end: datetime
) -> list[SessionRead]:
    stmt = select(ClassSession).where(ClassSession.starts_at >= start, ClassSession.starts_at < end)
    if plugin.store_id is not None:
        stmt = stmt.where(ClassSession.store_id == plugin.store_id)
    rows = (await db.scalars(stmt.order_by(ClassSession.starts_at, ClassSession.code))).all()
    return [await session_read(db, row) for row in rows]


async def _session(
    db: AsyncSession, plugin: PluginContext, code: str, *, lock: bool = False
) -> ClassSession:
    stmt = select(ClassSession).where(ClassSession.code == code)
    if plugin.store_id is not None:  # a store's key books into its own sessions
        stmt = stmt.where(ClassSession.store_id == plugin.store_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    row = await db.scalar(stmt)
    if row is None:
        raise NotFound(f"no session {code!r} here")
    return row


# ------------------------------------------------------------------ booking


async def book(
    db: AsyncSession, plugin: PluginContext, code: str, data: BookingIn
) -> tuple[int, dict[str, Any], bool]:
    """Book a place for a member's child, or a waitlist place when the session is full:
    (status, body, whether it replays the first answer to the same key)."""
    config = ClassesConfig.model_validate(plugin.config)
    facts = await member_facts(db, data.member_id)
    child = next((c for c in facts.children if c.id == data.child_id), None)
    if child is None:
        raise Invalid.field("child_id", "not a child of this member")
    await _lock_child(db, plugin, data.child_id)
    session = await _session(db, plugin, code, lock=True)
    request = {"session": code} | data.model_dump(mode="json", exclude={"idempotency_key"})
    earlier = await replayed(db, plugin, data.idempotency_key, request)
    if earlier is not None:
        return *earlier, True
    now = utcnow()
    _check_open(session, config, facts.tier_code, now)
    if session.stages and child.stage not in session.stages:
        raise Invalid.field(
            "child_id", f"the class is for {session.stages}, the child is {child.stage}"
        )
    await _check_not_booked(db, session, data.child_id)
    row = await _new_booking(db, plugin, config, session, data)
    await db.flush()
    body = await booking_read(db, row, session)
    emit_event(db, plugin, f"booking_{row.status}", "member", row.member_id, _payload(row, session))
    await remember(db, plugin, data.idempotency_key, request, 201, body)
    return 201, body.model_dump(mode="json"), False


async def _lock_child(db: AsyncSession, plugin: PluginContext, child_id: uuid.UUID) -> None:
    await db.execute(
        postgresql.insert(ClassChildLock)
        .values(tenant_id=plugin.tenant_id, id=uuid.uuid4(), child_id=child_id)
        .on_conflict_do_nothing(index_elements=["tenant_id", "child_id"])
    )
    await db.execute(
        select(ClassChildLock.id).where(ClassChildLock.child_id == child_id).with_for_update()
    )


def _check_open(
    session: ClassSession, config: ClassesConfig, tier: str | None, now: datetime
) -> None:
    if session.status != "scheduled" or session.starts_at <= now:
        raise Invalid.field("code", "the session has started or is cancelled")
    early = timedelta(hours=config.tier_early_hours.get(tier or "", 0))
    opens = session.opens_at - early
    if now < opens:
        raise Invalid.field("code", f"booking opens at {opens.isoformat()} for this member")


async def _check_not_booked(db: AsyncSession, session: ClassSession, child_id: uuid.UUID) -> None:
    """Not in this session already, nor in one that overlaps it."""
    ends = session.starts_at + timedelta(minutes=session.minutes)
    held = await db.execute(
        select(ClassSession.code, ClassSession.starts_at, ClassSession.minutes)
        .join(ClassBooking, ClassBooking.session_id == ClassSession.id)
        .where(
            ClassBooking.child_id == child_id,
            ClassBooking.status.in_(HOLDING),
            ClassSession.starts_at < ends,
        )
    )
    for other, starts, minutes in held.all():
        if starts + timedelta(minutes=minutes) > session.starts_at:
            raise Conflict(
                f"child_id: the child is already in {other!r} at that time",
                errors=[FieldError("child_id", f"already in {other}")],
            )


async def _new_booking(
    db: AsyncSession,
    plugin: PluginContext,
    config: ClassesConfig,
    session: ClassSession,
    data: BookingIn,
) -> ClassBooking:
    booked = await _places_taken(db, session.id)
    if booked >= session.capacity and not config.waitlist:
        raise Invalid.field("code", "the session is full")
    row = ClassBooking(
        id=uuid.uuid4(),
        request_key=data.idempotency_key,
        session_id=session.id,
        member_id=data.member_id,
        child_id=data.child_id,
        status="booked" if booked < session.capacity else "waitlisted",
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    if row.status == "booked":
        await _pay(db, config, session, row)
    db.add(row)
    return row


async def _places_taken(db: AsyncSession, session_id: uuid.UUID) -> int:
    return int(
        await db.scalar(
            select(func.count()).where(
                ClassBooking.session_id == session_id,
                ClassBooking.status.in_(("booked", "attended")),
            )
        )
        or 0
    )


async def _pay(
    db: AsyncSession, config: ClassesConfig, session: ClassSession, row: ClassBooking
) -> None:
    """A place is free with the first class benefit the member can use; else the price."""
    held = await member_benefits(db, row.member_id)
    usable = {e.benefit_code for e in held.entitlements if e.usable_here}
    code = next((c for c in config.free_benefits if c in usable), None)
    if code is None:
        row.fee_fen = session.price_fen
        return
    used = await use_benefit(
        db,
        row.member_id,
        code,
        idempotency_key=f"class:{row.id}",
        reference=f"class:{session.code}:{row.id}",
    )
    row.benefit_use_id, row.fee_fen = used.id, 0


# ------------------------------------------------------------------ cancel, check in


async def cancel(db: AsyncSession, plugin: PluginContext, booking_id: uuid.UUID) -> BookingRead:
    """Cancel a booking (again: a no-op); a freed place goes to the first on the waitlist."""
    row, session = await _booking(db, plugin, booking_id, lock=True)
    if row.status == "cancelled":
        return await booking_read(db, row, session)
    if row.status == "attended":
        raise Conflict(
            "the child attended: nothing to cancel", errors=[FieldError("status", "attended")]
        )
    freed = row.status == "booked"
    await _set(db, plugin, row, session, "cancelled")
    if row.benefit_use_id is not None:
        await reverse_benefit_use(db, row.benefit_use_id, "class booking cancelled")
    if freed:
        await _promote(db, plugin, session)
    return await booking_read(db, row, session)


async def _promote(db: AsyncSession, plugin: PluginContext, session: ClassSession) -> None:
    """The first waitlisted booking (in booking order) takes the freed place."""
    first = await db.scalar(
        select(ClassBooking)
        .where(ClassBooking.session_id == session.id, ClassBooking.status == "waitlisted")
        .order_by(ClassBooking.created_at, ClassBooking.id)
        .limit(1)
        .with_for_update()
    )
    if first is None:
        return
    await _pay(db, ClassesConfig.model_validate(plugin.config), session, first)
    await _set(db, plugin, first, session, "booked")


async def check_in(db: AsyncSession, plugin: PluginContext, booking_id: uuid.UUID) -> BookingRead:
    """The child came (once; again: a no-op): points for attending, if the chain gives any."""
    row, session = await _booking(db, plugin, booking_id, lock=True)
    if row.status == "attended":
        return await booking_read(db, row, session)
    if row.status != "booked":
        raise Conflict(
            f"a {row.status} booking cannot check in", errors=[FieldError("status", row.status)]
        )
    await _set(db, plugin, row, session, "attended")
    points = ClassesConfig.model_validate(plugin.config).attendance_points
    if points:
        await award_points(
            db,
            plugin,
            row.member_id,
            points,
            reason=f"亲子课 {session.title}",
            idempotency_key=f"attended:{row.id}",
        )
    return await booking_read(db, row, session)


async def _booking(
    db: AsyncSession, plugin: PluginContext, booking_id: uuid.UUID, *, lock: bool
) -> tuple[ClassBooking, ClassSession]:
    found = await db.scalar(select(ClassBooking.session_id).where(ClassBooking.id == booking_id))
    session = (
        await db.scalar(select(ClassSession).where(ClassSession.id == found)) if found else None
    )
    if session is None or (plugin.store_id is not None and session.store_id != plugin.store_id):
        raise NotFound("no such booking")
    session = await _session(db, plugin, session.code, lock=lock)  # the session's lock first
    row = await db.scalar(
        select(ClassBooking)
        .where(ClassBooking.id == booking_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert row is not None
    return row, session


async def _set(
    db: AsyncSession, plugin: PluginContext, row: ClassBooking, session: ClassSession, status: str
) -> None:
    before = row.status
    row.status, row.updated_at = status, utcnow()
    await db.flush()
    emit_event(
        db, plugin, f"booking_{status}", "member", row.member_id, _payload(row, session, before)
    )


async def roster(db: AsyncSession, plugin: PluginContext, code: str) -> list[BookingRead]:
    """A session's bookings: the places, then the waitlist, each in booking order."""
    session = await _session(db, plugin, code)
    rows = (
        await db.scalars(
            select(ClassBooking)
            .where(ClassBooking.session_id == session.id)
            .order_by(ClassBooking.created_at, ClassBooking.id)
        )
    ).all()
    return [await booking_read(db, row, session) for row in rows]


async def booking_read(db: AsyncSession, row: ClassBooking, session: ClassSession) -> BookingRead:
    position = None
    if row.status == "waitlisted":
        ahead = await db.scalar(
            select(func.count()).where(
                ClassBooking.session_id == session.id,
                ClassBooking.status == "waitlisted",
                (ClassBooking.created_at < row.created_at)
                | ((ClassBooking.created_at == row.created_at) & (ClassBooking.id < row.id)),
            )
        )
        position = int(ahead or 0) + 1
    return BookingRead(
        id=row.id,
        session_code=session.code,
        member_id=row.member_id,
        child_id=row.child_id,
        status=row.status,
        waitlist_position=position,
        fee_fen=row.fee_fen,
        free_by_benefit=row.benefit_use_id is not None,
        created_at=row.created_at,
    )


def _payload(row: ClassBooking, session: ClassSession, before: str | None = None) -> dict[str, Any]:
    return {
        "booking_id": str(row.id),
        "member_id": str(row.member_id),
        "child_id": str(row.child_id),
        "session_code": session.code,
        "starts_at": session.starts_at.isoformat(),
        "from_status": before,
        "status": row.status,
    }
