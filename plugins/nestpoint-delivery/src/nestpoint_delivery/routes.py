"""The plugin's routes, under ``/api/v1/plugins/delivery/``: book, the queue, statuses."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from litestar import Response, get, post
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK

from nestpoint.plugins.api import Db, Plugin, problems
from nestpoint_delivery import service
from nestpoint_delivery.schemas import DayLoad, DeliveryIn, DeliveryRead, Status, StatusIn

REPLAYED_HEADER = "Idempotent-Replayed"


@post(
    "/requests",
    summary="Book a home delivery (送货上门) from the caller's store",
    operation_id="createDeliveryRequest",
    responses=problems(409),
    description=(
        "A store key books for its store. The slot must be free and inside the window (次日达: "
        "tomorrow until the store's cut-off, then the day after). The member's free-delivery "
        "benefit is used when they can use it here, otherwise the fee applies. Idempotent by "
        "`idempotency_key` (a replay says `Idempotent-Replayed: true`)."
    ),
)
async def create(plugin: Plugin, db: Db, data: JSONBody[DeliveryIn]) -> Response[DeliveryRead]:
    status, body, replayed = await service.create(db, plugin, data)
    headers = {REPLAYED_HEADER: "true"} if replayed else {}
    return Response(DeliveryRead.model_validate(body), status_code=status, headers=headers)


@get(
    "/requests/{request_id:uuid}",
    summary="Get a delivery",
    operation_id="getDeliveryRequest",
    description="A store key sees its own store's deliveries; an HQ key, the chain's.",
)
async def get_one(plugin: Plugin, db: Db, request_id: FromPath[uuid.UUID]) -> DeliveryRead:
    return await service.get(db, plugin, request_id)


@post(
    "/requests/{request_id:uuid}/status",
    status_code=HTTP_200_OK,
    summary="Move a delivery along: scheduled, out for delivery, delivered, failed, cancelled",
    operation_id="setDeliveryStatus",
    responses=problems(409),
    description=(
        "409 for a move its status does not allow; the same status again is a no-op. "
        "Cancelling gives the free-delivery benefit back. Each change raises "
        "`delivery.status_changed` for the member."
    ),
)
async def set_status(
    plugin: Plugin, db: Db, request_id: FromPath[uuid.UUID], data: JSONBody[StatusIn]
) -> DeliveryRead:
    return await service.change_status(db, plugin, request_id, data.status, data.note)


@get(
    "/queue",
    summary="A day's fulfilment queue (the store's, or the chain's for HQ)",
    operation_id="listDeliveryQueue",
    description="By slot and booking time; filter by `status`.",
)
async def queue(
    plugin: Plugin,
    db: Db,
    day: Annotated[date, QueryParameter(name="date")],
    status: Annotated[Status | None, QueryParameter(name="status")] = None,
) -> list[DeliveryRead]:
    return await service.queue(db, plugin, day, status)


@get(
    "/slots",
    summary="What is left of each slot of a day at the caller's store",
    operation_id="getDeliverySlots",
    description="Capacity, booked and left per slot, and whether the day is bookable now.",
)
async def slots(
    plugin: Plugin, db: Db, day: Annotated[date, QueryParameter(name="date")]
) -> DayLoad:
    return await service.day_load(db, plugin, day)


HANDLERS = (create, get_one, set_status, queue, slots)
