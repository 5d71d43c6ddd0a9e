"""HTTP routes of franchise settlement: the chain's rule, monthly periods (compute, close,
show, CSV). HQ computes and closes; a store key with ``settlement:read`` sees its own lines."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK

from nestpoint.api.answers import answered
from nestpoint.api.deps import Db, hq_only, requires
from nestpoint.api.problems import problems
from nestpoint.settlement import service
from nestpoint.settlement.schemas import (
    CloseIn,
    PeriodFigures,
    PeriodList,
    SettlementRules,
)

StoreQuery = Annotated[
    str | None,
    QueryParameter(
        name="store",
        required=False,
        max_length=32,
        description="One store's lines (its code; `HQ`: HQ's line). A store key may name "
        "only its own store (403 otherwise).",
    ),
]
_MONTH = "The month of the chain's calendar, `2026-11` (another form: 404)."


class SettlementController(Controller):
    """Monthly settlement between the franchise stores and HQ (docs/settlement.md)."""

    path = "/settlements"
    tags = ["settlement"]

    @get(
        "/rules",
        guards=[requires("settlement:read")],
        responses=problems(),
        summary="The chain's settlement rule",
        operation_id="getSettlementRules",
        description="Needs `settlement:read`. Until HQ sets one: 1 fen a point, no benefit fees.",
    )
    async def rules(self, db: Db) -> SettlementRules:
        return await service.get_rules(db)

    @put(
        "/rules",
        guards=[requires("settlement:write"), hq_only],
        responses=problems(422),
        status_code=HTTP_200_OK,
        summary="Set the chain's settlement rule",
        operation_id="putSettlementRules",
        description=(
            "HQ key with `settlement:write`. The value of a point between stores and HQ, and "
            "what HQ pays a franchisee per benefit use it fulfils. Applies to months computed "
            "from now on (closed months keep their figures); audited when it changes."
        ),
    )
    async def put_rules(self, db: Db, data: JSONBody[SettlementRules]) -> SettlementRules:
        return await service.put_rules(db, data)

    @get(
        "/",
        guards=[requires("settlement:read")],
        responses=problems(),
        summary="The chain's settlement periods, newest first",
        operation_id="listSettlementPeriods",
        description="Needs `settlement:read`. Drafts and closed months, without their lines.",
    )
    async def periods(self, db: Db) -> PeriodList:
        return await service.list_periods(db)

    @get(
        "/{month:str}",
        guards=[requires("settlement:read")],
        responses=problems(404),
        summary="A month's settlement: the period and its lines",
        operation_id="getSettlementPeriod",
        description=(
            f"Needs `settlement:read`. {_MONTH} As stored (404 before it is computed). A "
            "store key sees only its own store's lines."
        ),
    )
    async def detail(self, db: Db, month: FromPath[str], store: StoreQuery = None) -> PeriodFigures:
        return await service.show(db, month, store)

    @get(
        "/{month:str}/lines.csv",
        guards=[requires("settlement:read")],
        responses={
            200: ResponseSpec(
                data_container=str,
                media_type="text/csv",
                description="One row per line, with a header row; HQ's line has store `HQ`.",
                generate_examples=False,
            ),
            **problems(404),
        },
        summary="A month's settlement lines as CSV",
        operation_id="downloadSettlementLines",
        description=(
            f"Needs `settlement:read`. {_MONTH} The lines as stored; a store key gets only "
            "its own store's."
        ),
    )
    async def csv(self, db: Db, month: FromPath[str], store: StoreQuery = None) -> Response[str]:
        figures = await service.show(db, month, store)
        return Response(
            service.to_csv(figures),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="settlement-{month}.csv"'},
        )

    @post(
        "/{month:str}/compute",
        guards=[requires("settlement:write"), hq_only],
        responses=problems(404, 409, 422),
        status_code=HTTP_200_OK,
        summary="Compute a month's draft from the ledgers",
        operation_id="computeSettlement",
        description=(
            f"HQ key with `settlement:write`. {_MONTH} Computing a draft again gives the same "
            "figures from the same ledgers; a closed month answers its stored figures. 422 "
            "for a month not begun; 409 for a month before the first closed one."
        ),
    )
    async def compute(self, db: Db, month: FromPath[str]) -> PeriodFigures:
        return await service.compute(db, month)

    @post(
        "/{month:str}/close",
        guards=[requires("settlement:write"), hq_only],
        responses=problems(404, 409, 422),
        status_code=HTTP_200_OK,
        summary="Close a month: its figures become immutable",
        operation_id="closeSettlement",
        description=(
            f"HQ key with `settlement:write`. {_MONTH} Computed once more and frozen; "
            "months close in order, once they are over (422 before). Closing a closed month "
            "answers its stored figures; a retry with the same `idempotency_key` replays the "
            "first answer (`Idempotent-Replayed: true`), the key for another month is 409. "
            "Audited."
        ),
    )
    async def close(
        self, db: Db, month: FromPath[str], data: JSONBody[CloseIn]
    ) -> Response[PeriodFigures]:
        return answered(await service.close(db, month, data), PeriodFigures)
