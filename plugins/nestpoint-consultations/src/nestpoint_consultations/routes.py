"""The plugin's routes: for staff keys under ``/api/v1/plugins/consultations/``, and for
the member of a member token under ``/api/v1/me/plugins/consultations/`` (``MEMBER_HANDLERS``)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from litestar import Response, get, post, put
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT
from pydantic import TypeAdapter, ValidationError

from nestpoint.plugins.api import Db, Invalid, Plugin, current_member_id, problems
from nestpoint_consultations import service
from nestpoint_consultations.schemas import (
    AdviserIn,
    AdviserRead,
    BookingIn,
    Code,
    ConsultantIn,
    ConsultantRead,
    ConsultationRead,
    Day,
    ExceptionIn,
    MyBookingIn,
    MyConsultation,
    OutcomeIn,
    RescheduleIn,
)

REPLAYED_HEADER = "Idempotent-Replayed"
CODE: TypeAdapter[str] = TypeAdapter(Code)


def _code(code: str) -> str:
    try:
        return CODE.validate_python(code)
    except ValidationError as exc:
        raise Invalid.field("code", "lower-case letters, digits, - and _; 64 at most") from exc


@put(
    "/consultants/{code:str}",
    status_code=HTTP_200_OK,
    responses=problems(409),
    summary="Create or change a consultant at the caller's store, with weekly hours",
    operation_id="putConsultant",
    description="A store key: 育儿顾问 (parenting), nutritionist, lactation specialist.",
)
async def put_consultant(
    plugin: Plugin, db: Db, code: FromPath[str], data: JSONBody[ConsultantIn]
) -> ConsultantRead:
    return await service.put_consultant(db, plugin, _code(code), data)


@get(
    "/consultants",
    summary="The consultants (the store's, or the chain's for HQ)",
    operation_id="listConsultants",
    description="With their weekly hours.",
)
async def list_consultants(plugin: Plugin, db: Db) -> list[ConsultantRead]:
    return await service.list_consultants(db, plugin)


@put(
    "/consultants/{code:str}/exceptions/{day:date}",
    status_code=HTTP_204_NO_CONTENT,
    summary="A day a consultant is away (no hours) or works other hours",
    operation_id="putConsultantException",
    description="Bookings already made that day stay; cancel them if needed.",
)
async def put_exception(
    plugin: Plugin, db: Db, code: FromPath[str], day: FromPath[date], data: JSONBody[ExceptionIn]
) -> None:
    await service.put_exception(db, plugin, _code(code), day, data)


@get(
    "/consultants/{code:str}/slots",
    summary="A consultant's free slots on a day",
    operation_id="getConsultantSlots",
    description="Slots after the booking cut-off and within the days bookable ahead.",
)
async def slots(
    plugin: Plugin, db: Db, code: FromPath[str], day: Annotated[date, QueryParameter(name="date")]
) -> Day:
    return await service.free_slots(db, plugin, _code(code), day)


@post(
    "/consultants/{code:str}/bookings",
    responses=problems(409),
    summary="Book a consultation (free with the member's benefit, else by the chain's rule)",
    operation_id="createConsultation",
    description=(
        "422 naming `starts_at` (not a slot, inside the cut-off, too far ahead) or `member_id` "
        "(no free consultation left and the chain refuses paid ones); 409 when the slot was just "
        "taken. Idempotent by `idempotency_key` (a replay says `Idempotent-Replayed: true`)."
    ),
)
async def book(
    plugin: Plugin, db: Db, code: FromPath[str], data: JSONBody[BookingIn]
) -> Response[ConsultationRead]:
    status, body, replayed = await service.book(db, plugin, _code(code), data)
    headers = {REPLAYED_HEADER: "true"} if replayed else {}
    return Response(ConsultationRead.model_validate(body), status_code=status, headers=headers)


@post(
    "/bookings/{consultation_id:uuid}/reschedule",
    status_code=HTTP_200_OK,
    responses=problems(409),
    summary="Move a consultation to another free slot of the same consultant",
    operation_id="rescheduleConsultation",
    description="Before the cut-off; the same time again is a no-op.",
)
async def reschedule(
    plugin: Plugin, db: Db, consultation_id: FromPath[uuid.UUID], data: JSONBody[RescheduleIn]
) -> ConsultationRead:
    return await service.reschedule(db, plugin, consultation_id, data.starts_at)


@post(
    "/bookings/{consultation_id:uuid}/cancel",
    status_code=HTTP_200_OK,
    responses=problems(409, 422),
    summary="Cancel a consultation before the cut-off (a used benefit comes back)",
    operation_id="cancelConsultation",
    description="Cancelling again is a no-op; after the cut-off it is 422 naming `starts_at`.",
)
async def cancel(plugin: Plugin, db: Db, consultation_id: FromPath[uuid.UUID]) -> ConsultationRead:
    return await service.cancel(db, plugin, consultation_id)


@post(
    "/bookings/{consultation_id:uuid}/outcome",
    status_code=HTTP_200_OK,
    responses=problems(409),
    summary="Record how it went: completed (with notes, HQ-only) or no-show",
    operation_id="recordConsultationOutcome",
    description="Only once it has started. Too many no-shows stop free booking for a while.",
)
async def outcome(
    plugin: Plugin, db: Db, consultation_id: FromPath[uuid.UUID], data: JSONBody[OutcomeIn]
) -> ConsultationRead:
    return await service.record_outcome(db, plugin, consultation_id, data.status, data.notes)


@get(
    "/members/{member_id:uuid}/consultations",
    summary="A member's consultations (notes for HQ keys only)",
    operation_id="listMemberConsultations",
    description="Oldest first.",
)
async def member_consultations(
    plugin: Plugin, db: Db, member_id: FromPath[uuid.UUID]
) -> list[ConsultationRead]:
    return await service.member_consultations(db, plugin, member_id)


@put(
    "/members/{member_id:uuid}/adviser",
    status_code=HTTP_200_OK,
    summary="Bind a consultant to a member as their adviser",
    operation_id="putMemberAdviser",
    description="Replaces an earlier adviser.",
)
async def bind_adviser(
    plugin: Plugin, db: Db, member_id: FromPath[uuid.UUID], data: JSONBody[AdviserIn]
) -> AdviserRead:
    return await service.bind_adviser(db, plugin, member_id, data.consultant_code)


@get(
    "/members/{member_id:uuid}/adviser",
    summary="A member's adviser",
    operation_id="getMemberAdviser",
    description="404 when none is bound.",
)
async def get_adviser(plugin: Plugin, db: Db, member_id: FromPath[uuid.UUID]) -> AdviserRead:
    return await service.get_adviser(db, member_id)


HANDLERS = (
    put_consultant, list_consultants, put_exception, slots, book, reschedule, cancel, outcome,
    member_consultations, bind_adviser, get_adviser,
)  # fmt: skip


# ---------------------------------------------------------------- the member's own (member API)


@get(
    "/consultants",
    summary="The consultants a member can book (the chain's, where the plugin is on)",
    operation_id="listConsultantsForMe",
    description="Member token. Active consultants at the stores where the plugin is enabled.",
)
async def my_consultants(plugin: Plugin, db: Db) -> list[ConsultantRead]:
    return await service.bookable_consultants(db, plugin)


@get(
    "/consultants/{code:str}/slots",
    responses=problems(404, 422),
    summary="A consultant's free slots on a day, for the member to book",
    operation_id="getConsultantSlotsForMe",
    description=(
        "Member token. Slots after the booking cut-off and within the days bookable ahead, "
        "by the rules of the consultant's store; 404 for a consultant not offered here."
    ),
)
async def my_slots(
    plugin: Plugin, db: Db, code: FromPath[str], date: Annotated[date, QueryParameter()]
) -> Day:
    # Named as the query parameter, so a bad value is a problem naming ``query.date``.
    return await service.my_free_slots(db, plugin, _code(code), date)


@post(
    "/consultants/{code:str}/bookings",
    status_code=HTTP_201_CREATED,
    responses=problems(404, 409, 422),
    summary="Book a consultation for myself",
    operation_id="bookMyConsultation",
    description=(
        "Member token. Free with the member's consultation benefit, else by the chain's rule "
        "(`fee_fen` is paid at the store). 409 naming `starts_at` when the slot was just taken; "
        "422 naming `starts_at` (not a slot, inside the cut-off, too far ahead) or `member_id` "
        "(no free consultation left and the chain refuses paid ones). Idempotent by "
        "`idempotency_key` (a replay says `Idempotent-Replayed: true`)."
    ),
)
async def book_mine(
    plugin: Plugin, db: Db, code: FromPath[str], data: JSONBody[MyBookingIn]
) -> Response[MyConsultation]:
    member_id = current_member_id()
    status, body, replayed = await service.book_mine(db, plugin, member_id, _code(code), data)
    headers = {REPLAYED_HEADER: "true"} if replayed else {}
    return Response(body, status_code=status, headers=headers)


@get(
    "/bookings",
    summary="My consultations, oldest first",
    operation_id="listMyConsultations",
    description="Member token. Every status; the consultant's notes are never shown here.",
)
async def my_bookings(db: Db) -> list[MyConsultation]:
    return await service.my_consultations(db, current_member_id())


@post(
    "/bookings/{consultation_id:uuid}/cancel",
    status_code=HTTP_200_OK,
    responses=problems(404, 409, 422),
    summary="Cancel one of my consultations (a used benefit comes back)",
    operation_id="cancelMyConsultation",
    description=(
        "Member token. Before the cut-off (after it: 422 naming `starts_at`); cancelling "
        "again is a no-op; a completed or missed one is 409. Another member's: 404."
    ),
)
async def cancel_mine(
    plugin: Plugin, db: Db, consultation_id: FromPath[uuid.UUID]
) -> MyConsultation:
    return await service.cancel_mine(db, plugin, current_member_id(), consultation_id)


MEMBER_HANDLERS = (my_consultants, my_slots, book_mine, my_bookings, cancel_mine)
