"""HTTP routes of the benefits context: HQ's catalog and bundles, and a member's benefits
at the till (what they can use here, use one, give a use back, exchange points)."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, Response, get, post, put
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK
from pydantic import ValidationError

from nestpoint.api.answers import answered, created_spec
from nestpoint.api.deps import Db, hq_only, requires
from nestpoint.api.problems import problems
from nestpoint.benefits import service
from nestpoint.benefits.schemas import (
    BenefitBody,
    BenefitList,
    BenefitRead,
    BenefitSpec,
    BenefitTypeList,
    BundleBody,
    BundleList,
    BundleRead,
    BundleSpec,
    EntitlementRead,
    ExchangeIn,
    ExchangeRead,
    MemberBenefits,
    ReverseIn,
    UseIn,
    UseRead,
)
from nestpoint.errors import Invalid

CodePath = FromPath[str]
StoreCodeQuery = Annotated[str | None, QueryParameter(name="store_code", max_length=32)]


def _with_code(model: type[BenefitSpec] | type[BundleSpec], code: str, body: object) -> object:
    """The path's code joined to the body; a bad code is a 422 naming ``code``."""
    try:
        return model(code=code, **body.model_dump())  # type: ignore[attr-defined]
    except ValidationError as exc:
        raise Invalid.field("code", "lower-case letters, digits, - and _; 64 at most") from exc


class BenefitCatalogController(Controller):
    path = "/benefits"
    tags = ["benefits"]

    @get(
        "/",
        guards=[requires("benefits:read")],
        responses=problems(),
        summary="List the chain's benefit catalog",
        operation_id="listBenefits",
        description="Needs `benefits:read`. Every benefit, active or not, by code.",
    )
    async def list_benefits(self, db: Db) -> BenefitList:
        return BenefitList(items=await service.list_benefits(db))

    @get(
        "/{code:str}",
        guards=[requires("benefits:read")],
        responses=problems(404),
        summary="Get a benefit",
        operation_id="getBenefit",
        description="Needs `benefits:read`.",
    )
    async def get_benefit(self, db: Db, code: CodePath) -> BenefitRead:
        return await service.get_benefit(db, code)

    @put(
        "/{code:str}",
        guards=[requires("benefits:write"), hq_only],
        responses=problems(404, 422),
        status_code=HTTP_200_OK,
        summary="Create or replace a benefit (HQ)",
        operation_id="putBenefit",
        description=(
            "Needs `benefits:write` on an HQ key. The type is `core.<key>` or a plugin's "
            "(`GET /benefit-types`: a plugin's only once it is enabled in the chain); `options` "
            "are validated by the type's schema and errors name `options.<field>`. A tier "
            "grants the benefit by listing its code in the tier's `benefits`. Audited."
        ),
    )
    async def put_benefit(self, db: Db, code: CodePath, data: JSONBody[BenefitBody]) -> BenefitRead:
        spec = _with_code(BenefitSpec, code, data)
        return await service.put_benefit(db, spec)  # type: ignore[arg-type]


class BenefitTypeController(Controller):
    path = "/benefit-types"
    tags = ["benefits"]

    @get(
        "/",
        guards=[requires("benefits:read")],
        responses=problems(),
        summary="List the benefit types HQ may use here",
        operation_id="listBenefitTypes",
        description=(
            "Needs `benefits:read`. The core's types and those of the plugins enabled in the "
            "chain, each with the JSON schema of its `options`."
        ),
    )
    async def list_types(self, db: Db) -> BenefitTypeList:
        kinds = await service.benefit_types(db)
        return BenefitTypeList(items=[service.type_read(k, v) for k, v in sorted(kinds.items())])


class BundleController(Controller):
    path = "/benefit-bundles"
    tags = ["benefits"]

    @get(
        "/",
        guards=[requires("benefits:read")],
        responses=problems(),
        summary="List the chain's bundles (场景组合)",
        operation_id="listBenefitBundles",
        description="Needs `benefits:read`.",
    )
    async def list_bundles(self, db: Db) -> BundleList:
        return BundleList(items=await service.list_bundles(db))

    @put(
        "/{code:str}",
        guards=[requires("benefits:write"), hq_only],
        responses=problems(404, 422),
        status_code=HTTP_200_OK,
        summary="Create or replace a bundle (HQ)",
        operation_id="putBenefitBundle",
        description=(
            "Needs `benefits:write` on an HQ key. Every benefit named must be in the catalog "
            "(422 naming `benefits.<i>`). Given once per child when its birth (or due date) is "
            "recorded within `within_days`. Audited."
        ),
    )
    async def put_bundle(self, db: Db, code: CodePath, data: JSONBody[BundleBody]) -> BundleRead:
        spec = _with_code(BundleSpec, code, data)
        return await service.put_bundle(db, spec)  # type: ignore[arg-type]


class MemberBenefitController(Controller):
    path = "/members/{member_id:uuid}/benefits"
    tags = ["benefits"]

    @get(
        "/",
        guards=[requires("benefits:read")],
        responses=problems(404, 422),
        summary="What this member holds and can use here now (the till's call)",
        operation_id="getMemberBenefits",
        description=(
            "Needs `benefits:read`. Each entitlement with its quota, what is left this period "
            "(in the chain's time zone) and whether it can be used at the caller's store (a "
            "store key's own; an HQ key's `store_code`, or anywhere without one), with the "
            "reason when not; and what the member's points can buy here."
        ),
    )
    async def member_benefits(
        self, db: Db, member_id: FromPath[uuid.UUID], store_code: StoreCodeQuery = None
    ) -> MemberBenefits:
        return await service.member_benefits(db, member_id, store_code)

    @post(
        "/{code:str}/uses",
        guards=[requires("benefits:use")],
        responses=problems(404, 409, 422) | created_spec(UseRead),
        summary="Use a benefit (idempotent)",
        operation_id="useBenefit",
        description=(
            "Needs `benefits:use`. Uses the member's entitlement of the benefit that expires "
            "soonest and has quota left. 422 `benefit-not-held`, `benefit-unavailable` (not at "
            "this store) or `benefit-used-up`; a retry with the same `idempotency_key` replays "
            "the first 201, a different body with it is 409."
        ),
    )
    async def use(
        self, db: Db, member_id: FromPath[uuid.UUID], code: CodePath, data: JSONBody[UseIn]
    ) -> Response[UseRead]:
        return answered(await service.use(db, member_id, code, data), UseRead)

    @post(
        "/{code:str}/exchanges",
        guards=[requires("benefits:use")],
        responses=problems(404, 409, 422) | created_spec(ExchangeRead),
        summary="Exchange points for a benefit (积分兑换, idempotent)",
        operation_id="exchangeBenefit",
        description=(
            "Needs `benefits:use`. Spends the benefit's `exchange_points` through the points "
            "ledger and grants it. 422 `insufficient-points`, `exchange-refused` (not for "
            "exchange, out of stock, the member's limit) or `benefit-unavailable`."
        ),
    )
    async def exchange(
        self, db: Db, member_id: FromPath[uuid.UUID], code: CodePath, data: JSONBody[ExchangeIn]
    ) -> Response[ExchangeRead]:
        return answered(await service.exchange(db, member_id, code, data), ExchangeRead)


class BenefitReversalController(Controller):
    path = "/"
    tags = ["benefits"]

    @post(
        "/benefit-uses/{use_id:uuid}/reverse",
        guards=[requires("benefits:use")],
        responses=problems(404, 422),
        status_code=HTTP_200_OK,
        summary="Give a use back (a cancelled booking, a refund), exactly once",
        operation_id="reverseBenefitUse",
        description=(
            "Needs `benefits:use`; a store key reverses only its own store's uses. Reversing "
            "again answers the same reversal."
        ),
    )
    async def reverse_use(
        self, db: Db, use_id: FromPath[uuid.UUID], data: JSONBody[ReverseIn]
    ) -> UseRead:
        return await service.reverse_use(db, use_id, data.reason)

    @post(
        "/benefit-exchanges/{entitlement_id:uuid}/reverse",
        guards=[requires("benefits:use")],
        responses=problems(404, 409),
        status_code=HTTP_200_OK,
        summary="Undo an exchange: the points come back, exactly once",
        operation_id="reverseBenefitExchange",
        description=(
            "Needs `benefits:use`. 409 when the exchanged benefit has been used (reverse the use "
            "first); undoing again is a no-op."
        ),
    )
    async def reverse_exchange(
        self, db: Db, entitlement_id: FromPath[uuid.UUID]
    ) -> EntitlementRead:
        return await service.reverse_exchange(db, entitlement_id)
