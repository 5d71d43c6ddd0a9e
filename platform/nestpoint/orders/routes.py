"""HTTP routes of the orders context: orders, refunds, and the earn preview."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.params import JSONBody, PathParameter
from litestar.status_codes import HTTP_200_OK

from nestpoint.api.answers import answered, created_spec
from nestpoint.api.deps import Db, requires
from nestpoint.api.problems import problems
from nestpoint.orders import service
from nestpoint.orders.schemas import (
    EXTERNAL_ID,
    ORDER_CHANNEL,
    OrderIn,
    OrderResult,
    PreviewIn,
    PreviewResult,
    RefundIn,
    RefundResult,
)

# The very patterns of the body (orders/schemas.py): an order recorded is an order found.
ChannelPath = Annotated[str, PathParameter(name="channel", pattern=ORDER_CHANNEL)]
ExternalIdPath = Annotated[
    str, PathParameter(name="external_id", pattern=EXTERNAL_ID, min_length=1, max_length=100)
]


class OrderController(Controller):
    path = "/orders"
    tags = ["orders"]

    @post(
        "/",
        guards=[requires("orders:write")],
        responses=problems(404, 409, 422) | created_spec(OrderResult),
        summary="Record a paid order; earns points (idempotent by channel + external id)",
        operation_id="createOrder",
        description=(
            "Needs `orders:write`; a store key records for its own store, an HQ key names "
            "`store_code`. The same channel and external id with the same body replays the first "
            "201 (`Idempotent-Replayed: true`), with a different body it is 409; points are "
            "credited exactly once."
        ),
    )
    async def create(self, db: Db, data: JSONBody[OrderIn]) -> Response[OrderResult]:
        return answered(await service.create_order(db, data), OrderResult)

    @post(
        "/preview",
        guards=[requires("orders:write")],
        responses=problems(404, 422),
        status_code=HTTP_200_OK,
        summary="Points a basket would earn; writes nothing",
        operation_id="previewOrder",
        description=(
            "Needs `orders:write`; the earn rules an order would apply (the member's tier, "
            "multipliers, daily cap) and the most points the basket may use. Refused at an inactive"
            " store like an order."
        ),
    )
    async def preview(self, db: Db, data: JSONBody[PreviewIn]) -> PreviewResult:
        return await service.preview(db, data)

    @get(
        "/{channel:str}/{external_id:str}",
        guards=[requires("orders:read")],
        responses=problems(404),
        summary="Get an order as first recorded, with refund state",
        operation_id="getOrder",
        description=(
            "Needs `orders:read`; the order is found by its channel and external id (the receipt "
            "number)."
        ),
    )
    async def get_order(
        self, db: Db, channel: ChannelPath, external_id: ExternalIdPath
    ) -> OrderResult:
        order = await service.get_order(db, channel, external_id)
        return OrderResult.model_validate(service.order_summary(order))  # with refund state

    @post(
        "/{channel:str}/{external_id:str}/refunds",
        guards=[requires("orders:write")],
        responses=problems(404, 409, 422) | created_spec(RefundResult),
        summary="Refund lines or all of an order; reverses the points they earned",
        operation_id="refundOrder",
        description=(
            "Needs `orders:write`; omit `lines` to refund everything left. Idempotent per order and"
            " refund external id (a replay answers the first 201, a different body 409); points "
            "already spent become debt, and points that paid for the refunded share return as a new"
            " lot."
        ),
    )
    async def refund(
        self, db: Db, channel: ChannelPath, external_id: ExternalIdPath, data: JSONBody[RefundIn]
    ) -> Response[RefundResult]:
        return answered(await service.create_refund(db, channel, external_id, data), RefundResult)
