"""HTTP routes of stored value (储值): the chain's rules and liability (HQ), a member's
wallet, top-ups at the till and HQ's adjustments. Spending is an order's tender
(``payment.stored_value_fen``, orders/routes.py)."""

from __future__ import annotations

import uuid

from litestar import Controller, Response, get, post, put
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK

from nestpoint.api.answers import answered, created_spec
from nestpoint.api.deps import DEFAULT_LIMIT, CursorQuery, Db, LimitQuery, hq_only, requires
from nestpoint.api.problems import problems
from nestpoint.wallet import service
from nestpoint.wallet.schemas import (
    Liability,
    TopupIn,
    TopupRead,
    TopupResult,
    WalletAdjustmentIn,
    WalletEntryList,
    WalletEntryRead,
    WalletRead,
    WalletRules,
)


class WalletController(Controller):
    """The chain's stored-value rules and what it owes its members."""

    path = "/wallet"
    tags = ["wallet"]

    @get(
        "/rules",
        guards=[requires("wallet:read")],
        responses=problems(),
        summary="The chain's stored-value bonus rules",
        operation_id="getWalletRules",
        description="Needs `wallet:read`. No tiers: top-ups get no bonus.",
    )
    async def rules(self, db: Db) -> WalletRules:
        return await service.get_rules(db)

    @put(
        "/rules",
        guards=[requires("wallet:write"), hq_only],
        responses=problems(422),
        status_code=HTTP_200_OK,
        summary="Set the chain's stored-value bonus rules",
        operation_id="putWalletRules",
        description=(
            "HQ key with `wallet:write`. Tiers of top-up thresholds (rising) and their bonus: "
            "the highest tier a top-up reaches gives its bonus. Applies to top-ups from now on; "
            "audited when it changes."
        ),
    )
    async def put_rules(self, db: Db, data: JSONBody[WalletRules]) -> WalletRules:
        return await service.put_rules(db, data)

    @get(
        "/liability",
        guards=[requires("wallet:read"), hq_only],
        responses=problems(),
        summary="What the chain owes its members in stored value, per store and in total",
        operation_id="getWalletLiability",
        description=(
            "HQ key with `wallet:read`. Principal (members' own money) and bonus apart, by the "
            "store the value came in at, read from the ledger's lots."
        ),
    )
    async def liability(self, db: Db) -> Liability:
        return await service.liability(db)


class MemberWalletController(Controller):
    """A member's stored value: the balance, the ledger, top-ups, adjustments."""

    path = "/members/{member_id:uuid}/wallet"
    tags = ["wallet"]

    @get(
        "/",
        guards=[requires("wallet:read")],
        responses=problems(404),
        summary="The member's stored-value balance",
        operation_id="getWallet",
        description=(
            "Needs `wallet:read`. Principal and bonus apart (the bonus is spent last), read "
            "from the ledger's running totals, never from a cache."
        ),
    )
    async def balance(self, db: Db, member_id: FromPath[uuid.UUID]) -> WalletRead:
        return await service.balance(db, member_id)

    @get(
        "/entries",
        guards=[requires("wallet:read")],
        responses=problems(404),
        summary="The member's stored-value ledger, oldest first",
        operation_id="listWalletEntries",
        description="Needs `wallet:read`; cursor-paginated, append-only entries with their cause.",
    )
    async def entries(
        self,
        db: Db,
        member_id: FromPath[uuid.UUID],
        cursor: CursorQuery = None,
        limit: LimitQuery = DEFAULT_LIMIT,
    ) -> WalletEntryList:
        page = await service.list_entries(db, member_id, cursor=cursor, limit=limit)
        items = [WalletEntryRead.model_validate(e) for e in page.items]
        return WalletEntryList(items=items, next_cursor=page.next_cursor)

    @post(
        "/topups",
        guards=[requires("wallet:topup")],
        responses=problems(404, 409, 422) | created_spec(TopupResult),
        summary="Top up the member's stored value (cash at the till, or through Stripe)",
        operation_id="createTopup",
        description=(
            "Needs `wallet:topup`; a store key tops up at its own store, an HQ key names "
            "`store_code`. The chain's bonus rule adds its bonus. `cash` is credited at once; "
            "`stripe` (with `payment_method`) answers `status: pending` and is credited once "
            "the payment succeeds (409 `stripe-not-configured` without the chain's Stripe "
            "account). A retry with the same `idempotency_key` replays the first 201; another "
            "body with it is 409. Audited."
        ),
    )
    async def top_up(
        self, db: Db, member_id: FromPath[uuid.UUID], data: JSONBody[TopupIn]
    ) -> Response[TopupResult]:
        return answered(await service.top_up(db, member_id, data), TopupResult)

    @get(
        "/topups/{topup_id:uuid}",
        guards=[requires("wallet:read")],
        responses=problems(404),
        summary="A top-up paid through Stripe, and whether it is credited yet",
        operation_id="getTopup",
        description="Needs `wallet:read`. `pending` until the payment succeeds or fails.",
    )
    async def topup(
        self, db: Db, member_id: FromPath[uuid.UUID], topup_id: FromPath[uuid.UUID]
    ) -> TopupRead:
        return await service.get_topup(db, member_id, topup_id)

    @post(
        "/adjustments",
        guards=[requires("wallet:write"), hq_only],
        responses=problems(404, 409, 422) | created_spec(WalletEntryRead),
        summary="Adjust the member's stored value by hand (HQ)",
        operation_id="adjustWallet",
        description=(
            "HQ key with `wallet:write`: principal and bonus each credited or debited, with a "
            "reason; a debit beyond the balance is 422. Idempotent by `idempotency_key`. "
            "Audited."
        ),
    )
    async def adjust(
        self, db: Db, member_id: FromPath[uuid.UUID], data: JSONBody[WalletAdjustmentIn]
    ) -> Response[WalletEntryRead]:
        return answered(await service.adjust(db, member_id, data), WalletEntryRead)
