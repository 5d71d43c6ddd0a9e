"""The classes' rules: sessions, booking windows by tier, capacity, the waitlist, check-in.

Locks, in one order: the child's row (``class_child_locks``, made on first booking), then
the session's row. A booking holds both while it checks that the child is not already in
this or an overlapping session and counts the places, so parallel bookings never overfill
a session nor book one child twice; a cancellation holds the session's row while it frees
the place and promotes the first on the waitlist (in booking order). A free place uses the
member's class benefit through the core, keyed by the booking; cancelling gives it back.

A member books and cancels their own through the member API (``*_mine`` below): the same
rules, run at the session's store (its configuration; the benefit used there), only where
the plugin is on at that store, with the member's key made their own.
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
    acting_at_store,
    audit,
    award_points,
    emit_event,
    member_benefits,
    member_facts,
    member_key,
    plugin_at_store,
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
    MyBookingIn,
    MyClassBooking,
    MySessionRead,
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
    audit(db, plugin, "booked", "class_booking", row.id, _audited(row, session))
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
    opens = opens_for(session, config, tier)
    if now < opens:
        raise Invalid.field("code", f"booking opens at {opens.isoformat()} for this member")


def opens_for(session: ClassSession, config: ClassesConfig, tier: str | None) -> datetime:
    """When booking opens for a member of ``tier``: earlier by the tier's early hours."""
    return session.opens_at - timedelta(hours=config.tier_early_hours.get(tier or "", 0))


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
    promoted = await _promote(db, plugin, session) if freed else None
    changes = _audited(row, session) | {"promoted_booking_id": str(promoted) if promoted else None}
    audit(db, plugin, "cancelled", "class_booking", row.id, changes)
    return await booking_read(db, row, session)


async def _promote(
    db: AsyncSession, plugin: PluginContext, session: ClassSession
) -> uuid.UUID | None:
    """The first waitlisted booking (in booking order) takes the freed place: its id."""
    first = await db.scalar(
        select(ClassBooking)
        .where(ClassBooking.session_id == session.id, ClassBooking.status == "waitlisted")
        .order_by(ClassBooking.created_at, ClassBooking.id)
        .limit(1)
        .with_for_update()
    )
    if first is None:
        return None
    await _pay(db, ClassesConfig.model_validate(plugin.config), session, first)
    await _set(db, plugin, first, session, "booked")
    return first.id


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


MEMBER_BOOKINGS_SHOWN = 50


async def member_bookings(
    db: AsyncSession, plugin: PluginContext, member_id: uuid.UUID
) -> list[tuple[ClassBooking, ClassSession]]:
    """The member's latest class bookings with their sessions, latest session first; a
    store's context sees only its own sessions (as its key would)."""
    stmt = (
        select(ClassBooking, ClassSession)
        .join(ClassSession, ClassSession.id == ClassBooking.session_id)
        .where(ClassBooking.member_id == member_id)
    )
    if plugin.store_id is not None:
        stmt = stmt.where(ClassSession.store_id == plugin.store_id)
    stmt = stmt.order_by(ClassSession.starts_at.desc(), ClassBooking.created_at.desc())
    rows = (await db.execute(stmt.limit(MEMBER_BOOKINGS_SHOWN))).all()
    return [(booking, session) for booking, session in rows]


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


def _audited(row: ClassBooking, session: ClassSession) -> dict[str, Any]:
    return _payload(row, session) | {"fee_fen": row.fee_fen, "store_id": str(session.store_id)}


# ------------------------------------------------------------------ the member's own

UPCOMING = timedelta(days=31)  # the member's default window
LONGEST = timedelta(days=92)


async def _offered(db: AsyncSession, plugin: PluginContext, session: ClassSession) -> PluginContext:
    """The plugin at the session's store (that store's configuration); 404 where the
    plugin is off there, as if the session did not exist."""
    here = await plugin_at_store(db, plugin, session.store_id)
    if here is None:
        raise NotFound(f"no session {session.code!r} here")
    return here


async def upcoming_sessions(
    db: AsyncSession,
    plugin: PluginContext,
    member_id: uuid.UUID,
    start: datetime | None,
    end: datetime | None,
) -> list[MySessionRead]:
    """Scheduled sessions not started yet, starting between ``start`` (default now) and
    ``end`` (default a month on; 92 days at most), at the stores where the plugin is on,
    each with when booking opens for this member's tier."""
    for name, value in (("from", start), ("to", end)):
        if value is not None and value.tzinfo is None:
            raise Invalid.field(name, "needs an offset (2026-12-01T10:00:00+08:00)")
    start = max(start or utcnow(), utcnow())
    end = end or start + UPCOMING
    if not start < end <= start + LONGEST:
        raise Invalid.field("to", "after from (or now), and at most 92 days after it")
    tier = (await member_facts(db, member_id)).tier_code
    rows = (
        await db.scalars(
            select(ClassSession)
            .where(
                ClassSession.status == "scheduled",
                ClassSession.starts_at >= start,
                ClassSession.starts_at < end,
            )
            .order_by(ClassSession.starts_at, ClassSession.code)
        )
    ).all()
    stores: dict[uuid.UUID, PluginContext | None] = {}
    found: list[MySessionRead] = []
    for row in rows:
        if row.store_id not in stores:
            stores[row.store_id] = await plugin_at_store(db, plugin, row.store_id)
        here = stores[row.store_id]
        if here is None:
            continue
        opens = opens_for(row, ClassesConfig.model_validate(here.config), tier)
        read = await session_read(db, row)
        found.append(MySessionRead(**read.model_dump(), opens_for_me_at=opens))
    return found


async def book_mine(
    db: AsyncSession, plugin: PluginContext, member_id: uuid.UUID, code: str, data: MyBookingIn
) -> tuple[int, MyClassBooking, bool]:
    """The member books a place for their child, at the session's store, as :func:`book`
    (the same locks, capacity, waitlist and idempotency; the key made the member's own)."""
    session = await _session(db, plugin, code)
    here = await _offered(db, plugin, session)
    booking = BookingIn(
        idempotency_key=member_key(member_id, data.idempotency_key),
        member_id=member_id,
        child_id=data.child_id,
    )
    with acting_at_store(here):
        status, body, again = await book(db, here, code, booking)
    return status, my_booking(body, session), again


async def cancel_mine(
    db: AsyncSession, plugin: PluginContext, member_id: uuid.UUID, booking_id: uuid.UUID
) -> MyClassBooking:
    """The member cancels one of their own bookings (another's: 404), by :func:`cancel`'s
    rules (the place goes to the waitlist; again: a no-op; attended: 409)."""
    session = await db.scalar(
        select(ClassSession)
        .join(ClassBooking, ClassBooking.session_id == ClassSession.id)
        .where(ClassBooking.id == booking_id, ClassBooking.member_id == member_id)
    )
    if session is None:
        raise NotFound("no such booking")
    here = await _offered(db, plugin, session)
    with acting_at_store(here):
        cancelled = await cancel(db, here, booking_id)
    return my_booking(cancelled.model_dump(), session)


async def my_class_bookings(db: AsyncSession, member_id: uuid.UUID) -> list[MyClassBooking]:
    """The member's bookings (every child, every status), by the session's start."""
    rows = (
        await db.execute(
            select(ClassBooking, ClassSession)
            .join(ClassSession, ClassSession.id == ClassBooking.session_id)
            .where(ClassBooking.member_id == member_id)
            .order_by(ClassSession.starts_at, ClassBooking.created_at, ClassBooking.id)
        )
    ).all()
    return [
        my_booking((await booking_read(db, row, session)).model_dump(), session)
        for row, session in rows
    ]


def my_booking(booked: dict[str, Any], session: ClassSession) -> MyClassBooking:
    """A booking (``BookingRead``'s fields) with its session, as the member sees it."""
    return MyClassBooking.model_validate(
        booked
        | {
            "title": session.title,
            "room": session.room,
            "store_id": session.store_id,
            "starts_at": session.starts_at,
            "minutes": session.minutes,
        }
    )
