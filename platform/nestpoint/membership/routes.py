"""HTTP routes of paid membership (付费会员): HQ's plans and rules, the chain's cards and
sales per store, and a member's card at the till or in the mini-program (buy, read with
its savings, upgrade, cancel, auto-renewal)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from litestar import Controller, Response, get, post, put
from litestar.params import FromPath, JSONBody, PathParameter, QueryParameter
from litestar.status_codes import HTTP_200_OK

from nestpoint.api.answers import answered, created_spec
from nestpoint.api.deps import DEFAULT_LIMIT, Db, LimitQuery, hq_only, requires
from nestpoint.api.problems import problems
from nestpoint.membership import service
from nestpoint.membership.models import MembershipStatus
from nestpoint.membership.schemas import (
    AutoRenewIn,
    CancelIn,
    CancelResult,
    PaidMembershipList,
    PaidMembershipRead,
    PaidMembershipSettings,
    PaidPlanList,
    PaidPlanRead,
    PaidPlanSpec,
    PurchaseIn,
    SalesReport,
    UpgradeIn,
)

# No pattern on the path: a code no plan has is simply not found (404), whatever its shape;
# the body's code rules apply when a plan is created.
PlanCodePath = Annotated[str, PathParameter(name="code", max_length=64)]
NewPlanCodePath = Annotated[
    str, PathParameter(name="code", pattern=r"^[a-z][a-z0-9_-]{0,63}$", max_length=64)
]
StoreCodeQuery = Annotated[str | None, QueryParameter(name="store_code", max_length=32)]
StatusQuery = Annotated[MembershipStatus | None, QueryParameter(name="status")]
SinceQuery = Annotated[datetime | None, QueryParameter(name="since")]
UntilQuery = Annotated[datetime | None, QueryParameter(name="until")]


class PaidPlanController(Controller):
    """HQ's paid cards."""

    path = "/paid-plans"
    tags = ["paid membership"]

    @get(
        "/",
        guards=[requires("membership:read")],
        responses=problems(),
        summary="List the chain's paid plans",
        operation_id="listPaidPlans",
        description="Needs `membership:read`. Every plan, active or not, by code.",
    )
    async def list_plans(self, db: Db) -> PaidPlanList:
        return PaidPlanList(items=await service.list_plans(db))

    @get(
        "/{code:str}",
        guards=[requires("membership:read")],
        responses=problems(404),
        summary="Get a paid plan",
        operation_id="getPaidPlan",
        description="Needs `membership:read`.",
    )
    async def get_plan(self, db: Db, code: PlanCodePath) -> PaidPlanRead:
        return await service.get_plan(db, code)

    @put(
        "/{code:str}",
        guards=[requires("membership:write"), hq_only],
        responses=problems(404, 422),
        status_code=HTTP_200_OK,
        summary="Create or replace a paid plan",
        operation_id="putPaidPlan",
        description=(
            "HQ key with `membership:write`. Period, price in fen, the catalog benefits it "
            "grants (its multiplier: a while-held `core.points_multiplier`), stacking with the "
            "tier and tier retention. Audited when it changes."
        ),
    )
    async def put_plan(
        self, db: Db, code: NewPlanCodePath, data: JSONBody[PaidPlanSpec]
    ) -> PaidPlanRead:
        return await service.put_plan(db, code, data)


class PaidMembershipController(Controller):
    """The chain's rules, its cards, and the cards sold per store."""

    path = "/paid-memberships"
    tags = ["paid membership"]

    @get(
        "/settings",
        guards=[requires("membership:read")],
        responses=problems(),
        summary="The chain's paid-membership rules",
        operation_id="getPaidMembershipSettings",
        description="Needs `membership:read`: grace, reminder and retry days, the refund rule.",
    )
    async def get_settings(self, db: Db) -> PaidMembershipSettings:
        return await service.get_settings(db)

    @put(
        "/settings",
        guards=[requires("membership:write"), hq_only],
        responses=problems(422),
        status_code=HTTP_200_OK,
        summary="Set the chain's paid-membership rules",
        operation_id="putPaidMembershipSettings",
        description="HQ key with `membership:write`. Audited when they change.",
    )
    async def put_settings(
        self, db: Db, data: JSONBody[PaidMembershipSettings]
    ) -> PaidMembershipSettings:
        return await service.put_settings(db, data)

    @get(
        "/",
        guards=[requires("membership:read"), hq_only],
        responses=problems(422),
        summary="The chain's paid cards, newest first",
        operation_id="listPaidMemberships",
        description=(
            "HQ key with `membership:read`. Filter by the store that sold them (`store_code`) "
            "and by `status`."
        ),
    )
    async def list_cards(
        self,
        db: Db,
        store_code: StoreCodeQuery = None,
        status: StatusQuery = None,
        limit: LimitQuery = DEFAULT_LIMIT,
    ) -> PaidMembershipList:
        items = await service.list_cards(db, store_code=store_code, status=status, limit=limit)
        return PaidMembershipList(items=items)

    @get(
        "/sales",
        guards=[requires("membership:read"), hq_only],
        responses=problems(),
        summary="Paid cards sold per store",
        operation_id="getPaidMembershipSales",
        description=(
            "HQ key with `membership:read`. Per store credited at the sale (none: the "
            "mini-program): cards sold and what their payments brought in, less refunds, "
            "settled in `[since, until)`."
        ),
    )
    async def sales(
        self, db: Db, since: SinceQuery = None, until: UntilQuery = None
    ) -> SalesReport:
        return await service.sales(db, since=since, until=until)


class MemberPaidMembershipController(Controller):
    """A member's paid card: buy it, read it with its savings, upgrade, cancel."""

    path = "/members/{member_id:uuid}/paid-memberships"
    tags = ["paid membership"]

    @get(
        "/",
        guards=[requires("membership:read")],
        responses=problems(404),
        summary="The member's paid cards, with what each has saved them",
        operation_id="listMemberPaidMemberships",
        description="Needs `membership:read`. Newest first; each with its charges and savings.",
    )
    async def list_member_cards(self, db: Db, member_id: FromPath[uuid.UUID]) -> PaidMembershipList:
        return PaidMembershipList(items=await service.list_member_cards(db, member_id))

    @post(
        "/",
        guards=[requires("membership:sell")],
        responses=problems(404, 409, 422) | created_spec(PaidMembershipRead),
        summary="Buy a paid card for the member",
        operation_id="buyPaidMembership",
        description=(
            "Needs `membership:sell`. Records the card (`pending`) and asks Stripe for the "
            "plan's price with `payment_method`; the card is active, with its benefits and "
            "multiplier, once the payment succeeds. A store key sells at its own store; an HQ "
            "key names `store_code` or none (the mini-program). 409 when the member holds a "
            "card. Idempotent by `idempotency_key`."
        ),
    )
    async def purchase(
        self, db: Db, member_id: FromPath[uuid.UUID], data: JSONBody[PurchaseIn]
    ) -> Response[PaidMembershipRead]:
        return answered(await service.purchase(db, member_id, data), PaidMembershipRead)

    @get(
        "/{card_id:uuid}",
        guards=[requires("membership:read")],
        responses=problems(404),
        summary="One of the member's paid cards",
        operation_id="getMemberPaidMembership",
        description="Needs `membership:read`. With its charges and its savings so far.",
    )
    async def get_card(
        self, db: Db, member_id: FromPath[uuid.UUID], card_id: FromPath[uuid.UUID]
    ) -> PaidMembershipRead:
        return await service.get_card(db, member_id, card_id)

    @post(
        "/{card_id:uuid}/upgrade",
        guards=[requires("membership:sell")],
        responses=problems(404, 409, 422) | created_spec(PaidMembershipRead),
        summary="Upgrade the card to a dearer plan",
        operation_id="upgradePaidMembership",
        description=(
            "Needs `membership:sell`. Pays the price difference for the rest of the period "
            "(days left counted up, amount rounded up); the new plan's benefits replace the "
            "old one's when it is paid. Idempotent by `idempotency_key`."
        ),
    )
    async def upgrade(
        self,
        db: Db,
        member_id: FromPath[uuid.UUID],
        card_id: FromPath[uuid.UUID],
        data: JSONBody[UpgradeIn],
    ) -> Response[PaidMembershipRead]:
        return answered(await service.upgrade(db, member_id, card_id, data), PaidMembershipRead)

    @post(
        "/{card_id:uuid}/cancel",
        guards=[requires("membership:sell")],
        responses=problems(404, 409, 422) | created_spec(CancelResult),
        summary="Cancel the card: at the period's end, or now with the chain's refund",
        operation_id="cancelPaidMembership",
        description=(
            "Needs `membership:sell`. `period_end` turns auto-renewal off; `now` ends the card "
            "and its benefits and refunds by the chain's rule (rounded down). Idempotent by "
            "`idempotency_key`."
        ),
    )
    async def cancel(
        self,
        db: Db,
        member_id: FromPath[uuid.UUID],
        card_id: FromPath[uuid.UUID],
        data: JSONBody[CancelIn],
    ) -> Response[CancelResult]:
        return answered(await service.cancel(db, member_id, card_id, data), CancelResult)

    @put(
        "/{card_id:uuid}/auto-renew",
        guards=[requires("membership:sell")],
        responses=problems(404, 409, 422),
        status_code=HTTP_200_OK,
        summary="Turn the card's auto-renewal on or off",
        operation_id="setPaidMembershipAutoRenew",
        description="Needs `membership:sell`. Optionally a new saved `payment_method`.",
    )
    async def auto_renew(
        self,
        db: Db,
        member_id: FromPath[uuid.UUID],
        card_id: FromPath[uuid.UUID],
        data: JSONBody[AutoRenewIn],
    ) -> PaidMembershipRead:
        return await service.set_auto_renew(db, member_id, card_id, data)
