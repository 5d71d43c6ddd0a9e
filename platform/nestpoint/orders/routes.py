"""HTTP routes of the orders context: orders, refunds, and the earn preview."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.params import JSONBody, PathParameter, QueryParameter
from litestar.status_codes import HTTP_200_OK

from nestpoint.api.answers import answered, created_spec
from nestpoint.api.deps import DEFAULT_LIMIT, CursorQuery, Db, LimitQuery, requires
from nestpoint.api.problems import problems
from nestpoint.orders import service
from nestpoint.orders.schemas import (
    EXTERNAL_ID,
    ORDER_CHANNEL,
    OrderIn,
    OrderList,
    OrderResult,
    OrderSummary,
    PreviewIn,
    PreviewResult,
    RefundIn,
    RefundList,
    RefundResult,
)
from nestpoint.tenancy.schemas import STORE_CODE

# The very patterns of the body (orders/schemas.py): an order recorded is an order found.
ChannelPath = Annotated[str, PathParameter(name="channel", pattern=ORDER_CHANNEL)]
ExternalIdPath = Annotated[
    str, PathParameter(name="external_id", pattern=EXTERNAL_ID, min_length=1, max_length=100)
]

# The filters of the order and refund listings (local days: the chain's time zone).
MemberQuery = Annotated[
    uuid.UUID | None, QueryParameter(name="member", description="A member's id.")
]
StoreQuery = Annotated[
    str | None,
    QueryParameter(
        name="store",
        pattern=STORE_CODE,
        description="A store's code (a store key: its own only, 403 otherwise).",
    ),
]
DayQuery = Annotated[
    date | None, QueryParameter(name="day", description="One local day (the chain's time zone).")
]
FromQuery = Annotated[
    date | None, QueryParameter(name="from", description="From this local day (inclusive).")
]
ToQuery = Annotated[
    date | None, QueryParameter(name="to", description="Up to this local day (inclusive).")
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

    @get(
        "/",
        guards=[requires("orders:read")],
        responses=problems(422),
        summary="List orders, newest paid first, by member, store and local day",
        operation_id="listOrders",
        description=(
            "Needs `orders:read`; cursor-paginated. `day`, or `from` and `to` (inclusive), are "
            "local days in the chain's time zone (422 for both kinds at once, or `from` after "
            "`to`). A store key lists its own store's orders only (naming another store is 403)."
        ),
    )
    async def list_orders(
        self,
        db: Db,
        cursor: CursorQuery = None,
        limit: LimitQuery = DEFAULT_LIMIT,
        member: MemberQuery = None,
        store: StoreQuery = None,
        day: DayQuery = None,
        since: FromQuery = None,
        until: ToQuery = None,
    ) -> OrderList:
        page = await service.list_orders(
            db,
            cursor=cursor,
            limit=limit,
            member_id=member,
            store_code=store,
            day=day,
            since=since,
            until=until,
        )
        return OrderList(
            items=[OrderSummary.model_validate(o) for o in page.items],
            next_cursor=page.next_cursor,
        )

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


class RefundController(Controller):
    path = "/refunds"
    tags = ["orders"]

    @get(
        "/",
        guards=[requires("orders:read")],
        responses=problems(422),
        summary="List refunds, newest first, by the order's member and store, and local day",
        operation_id="listRefunds",
        description=(
            "Needs `orders:read`; cursor-paginated. `day`, or `from` and `to` (inclusive), are "
            "local days of the refund in the chain's time zone. A store key lists the refunds of "
            "its own store's orders only (naming another store is 403)."
        ),
    )
    async def list_refunds(
        self,
        db: Db,
        cursor: CursorQuery = None,
        limit: LimitQuery = DEFAULT_LIMIT,
        member: MemberQuery = None,
        store: StoreQuery = None,
        day: DayQuery = None,
        since: FromQuery = None,
        until: ToQuery = None,
    ) -> RefundList:
        page = await service.list_refunds(
            db,
            cursor=cursor,
            limit=limit,
            member_id=member,
            store_code=store,
            day=day,
            since=since,
            until=until,
        )
        return RefundList(items=page.items, next_cursor=page.next_cursor)
