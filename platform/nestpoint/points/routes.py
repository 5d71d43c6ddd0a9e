"""HTTP routes for holds at the till: hold at scan, release on cancel.

A hold is captured only by the order that pays with it (``payment.hold_id``), so the tier's
redemption cap applies and a refund of that order returns the points. A store key sees only
the holds made at its own store.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK

from nestpoint.api.answers import answered, created_spec
from nestpoint.api.deps import DEFAULT_LIMIT, CursorQuery, Db, LimitQuery, requires
from nestpoint.api.problems import problems
from nestpoint.context import require_tenant
from nestpoint.loyalty.service import get_program
from nestpoint.members.service import get_active_member
from nestpoint.orders.routes import MemberQuery, StoreQuery
from nestpoint.orders.service import listed_store
from nestpoint.points import service
from nestpoint.points.models import HoldStatus
from nestpoint.points.schemas import HoldIn, HoldList, HoldRead, HoldSummary


class HoldController(Controller):
    path = "/points/holds"
    tags = ["points"]

    @post(
        "/",
        guards=[requires("points:hold")],
        responses=problems(404, 409, 422) | created_spec(HoldRead),
        summary="Hold points at scan (released automatically after the timeout)",
        operation_id="createHold",
        description=(
            "Needs `points:hold`; the hold belongs to the caller's store. With `idempotency_key` a "
            "retry replays the first 201 (`Idempotent-Replayed: true`), a different body is 409. "
            "Only an order naming it (`payment.hold_id`) captures it."
        ),
    )
    async def create(self, db: Db, data: JSONBody[HoldIn]) -> Response[HoldRead]:
        member = await get_active_member(db, data.member_id)
        answer = await service.hold(
            db,
            await get_program(db),
            member.id,
            data.points,
            idempotency_key=data.idempotency_key,
            order_ref=data.order_ref,
            store_id=require_tenant().store_id,
        )
        return answered(answer, HoldRead)

    @get(
        "/",
        guards=[requires("points:hold")],
        responses=problems(422),
        summary="List holds, newest first, by member, status and store",
        operation_id="listHolds",
        description=(
            "Needs `points:hold`; cursor-paginated. A store key lists its own store's holds only "
            "(naming another store is 403); an HQ key lists every hold, HQ's own (no store) too."
        ),
    )
    async def list_holds(
        self,
        db: Db,
        cursor: CursorQuery = None,
        limit: LimitQuery = DEFAULT_LIMIT,
        member: MemberQuery = None,
        status: Annotated[HoldStatus | None, QueryParameter(name="status")] = None,
        store: StoreQuery = None,
    ) -> HoldList:
        page = await service.list_holds(
            db,
            cursor=cursor,
            limit=limit,
            member_id=member,
            status=status,
            store_id=await listed_store(db, store),
        )
        return HoldList(
            items=[HoldSummary.model_validate(h) for h in page.items],
            next_cursor=page.next_cursor,
        )

    @get(
        "/{hold_id:uuid}",
        guards=[requires("points:hold")],
        responses=problems(404),
        summary="Get a hold",
        operation_id="getHold",
        description=(
            "Needs `points:hold`. A store key sees only the holds made at its own store (404 "
            "otherwise); an HQ key sees every hold."
        ),
    )
    async def get_hold(self, db: Db, hold_id: FromPath[uuid.UUID]) -> HoldRead:
        return HoldRead.model_validate(await service.get_hold(db, hold_id))

    @post(
        "/{hold_id:uuid}/release",
        guards=[requires("points:hold")],
        responses=problems(404, 409),
        status_code=HTTP_200_OK,
        summary="Release a hold: the points return (exactly once)",
        operation_id="releaseHold",
        description=(
            "Needs `points:hold`; a store key releases only its own store's holds. Releasing again "
            "is a no-op answering the hold; a hold already captured by an order is 409."
        ),
    )
    async def release(self, db: Db, hold_id: FromPath[uuid.UUID]) -> HoldRead:
        return HoldRead.model_validate(await service.release_hold(db, hold_id))
