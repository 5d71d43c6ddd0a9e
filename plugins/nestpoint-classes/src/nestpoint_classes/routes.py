"""The plugin's routes, under ``/api/v1/plugins/classes/``: sessions, bookings, check-in;
and the member's own under ``/api/v1/me/plugins/classes/`` (``MEMBER_HANDLERS``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from litestar import Response, get, post, put
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from pydantic import TypeAdapter, ValidationError

from nestpoint.plugins.api import Db, Invalid, Plugin, current_member_id, problems
from nestpoint_classes import service
from nestpoint_classes.schemas import (
    BookingIn,
    BookingRead,
    Code,
    MyBookingIn,
    MyClassBooking,
    MySessionRead,
    SessionIn,
    SessionRead,
)

REPLAYED_HEADER = "Idempotent-Replayed"
CODE: TypeAdapter[str] = TypeAdapter(Code)


def _code(code: str) -> str:
    """The path's session code, checked like a body field (a 422 naming ``code``)."""
    try:
        return CODE.validate_python(code)
    except ValidationError as exc:
        raise Invalid.field("code", "lower-case letters, digits, - and _; 64 at most") from exc


@put(
    "/sessions/{code:str}",
    status_code=HTTP_200_OK,
    summary="Create or change a class session at the caller's store",
    operation_id="putClassSession",
    responses=problems(409),
    description=(
        "A store key schedules its own sessions: room, time, capacity, the children's stages it "
        "is for, price, and when booking opens (higher tiers earlier, by the plugin's "
        "`tier_early_hours`). Capacity cannot drop below the places already booked."
    ),
)
async def put_session(
    plugin: Plugin, db: Db, code: FromPath[str], data: JSONBody[SessionIn]
) -> SessionRead:
    return await service.put_session(db, plugin, _code(code), data)


@get(
    "/sessions",
    summary="Sessions starting between two times (the store's, or the chain's for HQ)",
    operation_id="listClassSessions",
    description="With places booked and the waitlist's length.",
)
async def list_sessions(
    plugin: Plugin,
    db: Db,
    start: Annotated[datetime, QueryParameter(name="from")],
    end: Annotated[datetime, QueryParameter(name="to")],
) -> list[SessionRead]:
    return await service.list_sessions(db, plugin, start, end)


@post(
    "/sessions/{code:str}/bookings",
    summary="Book a place for a member's child (or join the waitlist when full)",
    operation_id="createClassBooking",
    responses=problems(409),
    description=(
        "422 naming `child_id` (not the member's, or the wrong stage) or `code` (not open yet "
        "for the member's tier, started, full without a waitlist); 409 when the child is "
        "already in this or an overlapping session. A free place uses the member's class "
        "benefit. Idempotent by `idempotency_key` (a replay says `Idempotent-Replayed: true`)."
    ),
)
async def book(
    plugin: Plugin, db: Db, code: FromPath[str], data: JSONBody[BookingIn]
) -> Response[BookingRead]:
    status, body, replayed = await service.book(db, plugin, _code(code), data)
    headers = {REPLAYED_HEADER: "true"} if replayed else {}
    return Response(BookingRead.model_validate(body), status_code=status, headers=headers)


@get(
    "/sessions/{code:str}/bookings",
    summary="A session's roster: places, then the waitlist, in booking order",
    operation_id="listClassBookings",
    description="A store key sees its own sessions.",
)
async def roster(plugin: Plugin, db: Db, code: FromPath[str]) -> list[BookingRead]:
    return await service.roster(db, plugin, _code(code))


@post(
    "/bookings/{booking_id:uuid}/cancel",
    status_code=HTTP_200_OK,
    summary="Cancel a booking: the place goes to the first on the waitlist",
    operation_id="cancelClassBooking",
    responses=problems(409),
    description="Gives a used class benefit back; cancelling again is a no-op.",
)
async def cancel(plugin: Plugin, db: Db, booking_id: FromPath[uuid.UUID]) -> BookingRead:
    return await service.cancel(db, plugin, booking_id)


@post(
    "/bookings/{booking_id:uuid}/check-in",
    status_code=HTTP_200_OK,
    summary="Check a booked child in at the store (points for attending, if configured)",
    operation_id="checkInClassBooking",
    responses=problems(409),
    description="Once: checking in again is a no-op; a waitlisted or cancelled booking is 409.",
)
async def check_in(plugin: Plugin, db: Db, booking_id: FromPath[uuid.UUID]) -> BookingRead:
    return await service.check_in(db, plugin, booking_id)


HANDLERS = (put_session, list_sessions, book, roster, cancel, check_in)


# ---------------------------------------------------------------- the member's own (member API)


@get(
    "/sessions",
    responses=problems(422),
    summary="Upcoming class sessions a member can book",
    operation_id="listClassSessionsForMe",
    description=(
        "Member token. Scheduled sessions not started yet at the stores where the plugin is "
        "enabled, starting from `from` (default now) to `to` (default a month on; 92 days at "
        "most: 422 naming `to`), with places booked, the waitlist's length and "
        "`opens_for_me_at` (booking opens earlier for higher tiers)."
    ),
)
async def my_sessions(
    plugin: Plugin,
    db: Db,
    start: Annotated[datetime | None, QueryParameter(name="from")] = None,
    end: Annotated[datetime | None, QueryParameter(name="to")] = None,
) -> list[MySessionRead]:
    return await service.upcoming_sessions(db, plugin, current_member_id(), start, end)


@post(
    "/sessions/{code:str}/bookings",
    status_code=HTTP_201_CREATED,
    responses=problems(404, 409, 422),
    summary="Book a place in a class for one of my children (or join its waitlist)",
    operation_id="bookMyClassSeat",
    description=(
        "Member token. `booked`, or `waitlisted` with its `waitlist_position` when the session "
        "is full and keeps a waitlist. 422 naming `child_id` (not the member's child, or the "
        "wrong stage) or `code` (not open yet for the member's tier, started, full without a "
        "waitlist); 409 naming `child_id` when the child is already in this or an overlapping "
        "session. A free place uses the member's class benefit. Idempotent by "
        "`idempotency_key` (a replay says `Idempotent-Replayed: true`)."
    ),
)
async def book_mine(
    plugin: Plugin, db: Db, code: FromPath[str], data: JSONBody[MyBookingIn]
) -> Response[MyClassBooking]:
    member_id = current_member_id()
    status, body, replayed = await service.book_mine(db, plugin, member_id, _code(code), data)
    headers = {REPLAYED_HEADER: "true"} if replayed else {}
    return Response(body, status_code=status, headers=headers)


@get(
    "/bookings",
    summary="My class bookings, by the session's start",
    operation_id="listMyClassBookings",
    description="Member token. Every child's, every status, with the session.",
)
async def my_bookings(db: Db) -> list[MyClassBooking]:
    return await service.my_class_bookings(db, current_member_id())


@post(
    "/bookings/{booking_id:uuid}/cancel",
    status_code=HTTP_200_OK,
    responses=problems(404, 409),
    summary="Cancel one of my class bookings: the place goes to the waitlist",
    operation_id="cancelMyClassBooking",
    description=(
        "Member token. Gives a used class benefit back; cancelling again is a no-op; an "
        "attended booking is 409. Another member's: 404."
    ),
)
async def cancel_mine(plugin: Plugin, db: Db, booking_id: FromPath[uuid.UUID]) -> MyClassBooking:
    return await service.cancel_mine(db, plugin, current_member_id(), booking_id)


MEMBER_HANDLERS = (my_sessions, book_mine, my_bookings, cancel_mine)
