"""HTTP routes of coupons: templates (HQ), a member's coupons, the till's check and hold."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, Response, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, PathParameter
from litestar.status_codes import HTTP_200_OK

from nestpoint.api.answers import answered, created_spec
from nestpoint.api.deps import Db, hq_only, requires
from nestpoint.api.problems import problems
from nestpoint.context import current_actor
from nestpoint.coupons import service
from nestpoint.coupons.schemas import (
    CODE_PATTERN,
    CheckIn,
    CheckResult,
    CouponDetail,
    CouponHoldIn,
    CouponHoldRead,
    CouponRead,
    IssueIn,
    TemplateIn,
    TemplateRead,
    VoidIn,
)

TemplatePath = Annotated[str, PathParameter(name="code", pattern=CODE_PATTERN, max_length=64)]
CouponPath = Annotated[
    str, PathParameter(name="code", pattern=r"^[0-9A-Za-z-]{1,32}$", max_length=32)
]


class CouponTemplateController(Controller):
    """A chain's coupon templates (HQ)."""

    path = "/coupon-templates"
    tags = ["coupons"]

    @get(
        "/",
        guards=[requires("coupons:read")],
        responses=problems(),
        summary="The chain's coupon templates, by code",
        operation_id="listCouponTemplates",
        description="Needs `coupons:read`; with how many of each were issued.",
    )
    async def all(self, db: Db) -> list[TemplateRead]:
        return await service.list_templates(db)

    @get(
        "/{code:str}",
        guards=[requires("coupons:read")],
        responses=problems(404),
        summary="One coupon template",
        operation_id="getCouponTemplate",
        description="Needs `coupons:read`; with how many were issued so far.",
    )
    async def detail(self, db: Db, code: TemplatePath) -> TemplateRead:
        return TemplateRead.model_validate(await service.get_template(db, code, field="code"))

    @put(
        "/{code:str}",
        guards=[requires("coupons:write"), hq_only],
        responses={
            200: ResponseSpec(data_container=TemplateRead, description="Replaced."),
            201: ResponseSpec(data_container=TemplateRead, description="Created."),
            **problems(404, 422),
        },
        summary="Create or replace a coupon template",
        operation_id="putCouponTemplate",
        description=(
            "HQ key with `coupons:write`. 201 when the code is new, 200 when it replaces the "
            "template (coupons issued keep their own validity; `stock` may not drop below what "
            "was issued). Each kind needs its own fields (422 naming what is missing). Audited."
        ),
    )
    async def put(
        self, db: Db, code: TemplatePath, data: JSONBody[TemplateIn]
    ) -> Response[TemplateRead]:
        read, created = await service.put_template(db, code, data)
        return Response(read, status_code=201 if created else 200)


class CouponController(Controller):
    """Issued coupons: the till's check and hold, reading and voiding one."""

    path = "/coupons"
    tags = ["coupons"]

    @post(
        "/check",
        guards=[requires("coupons:use")],
        responses=problems(404, 422),
        status_code=HTTP_200_OK,
        summary="What the member's coupons would pay on a basket (nothing is held)",
        operation_id="checkCoupons",
        description=(
            "Needs `coupons:use`. Each of the member's usable coupons (or those named) with "
            "what it pays on these lines at this store now, or why it cannot be used. The order "
            "gives a usable one as `payment.coupons[] = {code, amount_fen}`."
        ),
    )
    async def check(self, db: Db, data: JSONBody[CheckIn]) -> list[CheckResult]:
        return await service.check(db, data)

    @post(
        "/holds",
        guards=[requires("coupons:use")],
        responses=problems(404, 409, 422) | created_spec(CouponHoldRead),
        summary="Hold coupons at scan (freed after the points hold timeout)",
        operation_id="holdCoupons",
        description=(
            "Needs `coupons:use`. Until an order redeems them, a release, or the timeout, no "
            "other till or channel can redeem them. With `idempotency_key` a retry replays the "
            "first 201; a coupon already held, redeemed or void is 409."
        ),
    )
    async def hold(self, db: Db, data: JSONBody[CouponHoldIn]) -> Response[CouponHoldRead]:
        return answered(await service.hold(db, data), CouponHoldRead)

    @post(
        "/holds/{hold_id:uuid}/release",
        guards=[requires("coupons:use")],
        responses=problems(404, 409),
        status_code=HTTP_200_OK,
        summary="Release held coupons (exactly once)",
        operation_id="releaseCoupons",
        description=(
            "Needs `coupons:use`; a store key releases only its own store's holds. Again is a "
            "no-op; a hold an order redeemed is 409."
        ),
    )
    async def release(self, db: Db, hold_id: FromPath[uuid.UUID]) -> CouponHoldRead:
        return await service.release(db, hold_id)

    @get(
        "/{code:str}",
        guards=[requires("coupons:read")],
        responses=problems(404),
        summary="One coupon and its ledger",
        operation_id="getCoupon",
        description="Issued, held, released, redeemed, restored and voided, with when and why.",
    )
    async def detail(self, db: Db, code: CouponPath) -> CouponDetail:
        return await service.get_coupon(db, code)

    @post(
        "/{code:str}/void",
        guards=[requires("coupons:write"), hq_only],
        responses=problems(404, 409, 422),
        status_code=HTTP_200_OK,
        summary="Void an unused coupon for good",
        operation_id="voidCoupon",
        description="HQ key with `coupons:write`. Again is a no-op; a redeemed one is 409. "
        " Audited.",
    )
    async def void(self, db: Db, code: CouponPath, data: JSONBody[VoidIn]) -> CouponDetail:
        return await service.void(db, code, data.reason)


class MemberCouponController(Controller):
    """A member's coupons; a grant or an exchange for points."""

    path = "/members/{member_id:uuid}/coupons"
    tags = ["coupons"]

    @get(
        "/",
        guards=[requires("coupons:read")],
        responses=problems(404),
        summary="The member's coupons, newest first",
        operation_id="listMemberCoupons",
        description=(
            "Needs `coupons:read`. Every coupon the member was issued, with its status; one "
            "past its end unused says `expired` (a merged member's coupons are the survivor's)."
        ),
    )
    async def of_member(self, db: Db, member_id: FromPath[uuid.UUID]) -> list[CouponRead]:
        return await service.member_coupons(db, member_id)

    @post(
        "/",
        guards=[requires("coupons:use")],
        responses=problems(403, 404, 409, 422) | created_spec(CouponRead),
        summary="Give the member a coupon: a grant, or an exchange for points (idempotent)",
        operation_id="issueCoupon",
        description=(
            "With `pay_with_points` the member pays the template's `points_price` (积分兑券; "
            "`coupons:use`); without it, a free grant (`coupons:write`, 403 otherwise). Out of "
            "stock, over the per-member limit or an inactive template is 409 naming "
            "`template_code`; too few points is 422 naming `pay_with_points`. A retry with the "
            "same `idempotency_key` replays the first 201; another body with it is 409."
        ),
    )
    async def issue(
        self, db: Db, member_id: FromPath[uuid.UUID], data: JSONBody[IssueIn]
    ) -> Response[CouponRead]:
        may_grant = current_actor().has("coupons:write")
        answer = await service.grant_or_exchange(db, member_id, data, may_grant=may_grant)
        return answered(answer, CouponRead)
