"""HTTP routes of payments: the chain's Stripe account, its payments (HQ), and Stripe's
webhooks (no key: the signature is the authentication)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get, post, put
from litestar.params import FromPath, JSONBody, PathParameter, QueryParameter
from litestar.status_codes import HTTP_200_OK

from nestpoint.api.deps import DEFAULT_LIMIT, CursorQuery, Db, LimitQuery, hq_only, requires
from nestpoint.api.problems import problems
from nestpoint.context import Actor, TenantContext, set_request_context
from nestpoint.errors import NotFound
from nestpoint.payments import service, webhooks
from nestpoint.payments.models import PaymentStatus
from nestpoint.payments.schemas import (
    PaymentDetail,
    PaymentList,
    PaymentRead,
    RefundRead,
    StripeAccountIn,
    StripeAccountRead,
    WebhookAck,
)
from nestpoint.plugins.routing import public_tenant


class PaymentController(Controller):
    """The chain's Stripe account and the payments made through it."""

    path = "/payments"
    tags = ["payments"]

    @get(
        "/stripe",
        guards=[requires("payments:read"), hq_only],
        responses=problems(),
        summary="Whether the chain's Stripe account is set (never its keys)",
        operation_id="getStripeAccount",
        description="HQ key with `payments:read`.",
    )
    async def account(self, db: Db) -> StripeAccountRead:
        return await service.get_account(db)

    @put(
        "/stripe",
        guards=[requires("payments:write"), hq_only],
        responses=problems(422),
        status_code=HTTP_200_OK,
        summary="Set the chain's own Stripe account keys",
        operation_id="putStripeAccount",
        description=(
            "HQ key with `payments:write`. The secret key and the webhook signing secret are "
            "sealed with the core's keys and never answered back; audited without them. "
            "Point the account's webhook endpoint at `/webhooks/stripe/chains/{tenant_slug}`."
        ),
    )
    async def put_account(self, db: Db, data: JSONBody[StripeAccountIn]) -> StripeAccountRead:
        return await service.put_account(db, data)

    @get(
        "/",
        guards=[requires("payments:read"), hq_only],
        responses=problems(),
        summary="The chain's payments, newest last",
        operation_id="listPayments",
        description="HQ key with `payments:read`; filter by status, purpose or member.",
    )
    async def list_payments(
        self,
        db: Db,
        status: Annotated[PaymentStatus | None, QueryParameter(name="status")] = None,
        purpose: Annotated[str | None, QueryParameter(name="purpose", max_length=32)] = None,
        member_id: Annotated[uuid.UUID | None, QueryParameter(name="member_id")] = None,
        cursor: CursorQuery = None,
        limit: LimitQuery = DEFAULT_LIMIT,
    ) -> PaymentList:
        page = await service.list_payments(
            db, status=status, purpose=purpose, member_id=member_id, limit=limit, cursor=cursor
        )
        return PaymentList(
            items=[PaymentRead.model_validate(p) for p in page.items], next_cursor=page.next_cursor
        )

    @get(
        "/{payment_id:uuid}",
        guards=[requires("payments:read"), hq_only],
        responses=problems(404),
        summary="One payment and its refunds",
        operation_id="getPayment",
        description="HQ key with `payments:read`.",
    )
    async def detail(self, db: Db, payment_id: FromPath[uuid.UUID]) -> PaymentDetail:
        payment = await service.get_payment(db, payment_id)
        refunds = await service.refunds_of(db, payment_id)
        return PaymentDetail(
            **PaymentRead.model_validate(payment).model_dump(),
            refunds=[RefundRead.model_validate(r) for r in refunds],
        )


SlugPath = Annotated[str, PathParameter(name="tenant_slug", max_length=63)]
WEBHOOK_DESCRIPTION = (
    "Called by Stripe, with no key: the `Stripe-Signature` header must verify with the "
    "endpoint's signing secret and be at most 300 s old (401 otherwise: forged, stale or "
    "replayed-with-an-old-signature deliveries are refused). The event is stored once per "
    "event id and applied by a worker; a second delivery of the same event answers 200 "
    "with `duplicate: true` and changes nothing."
)


async def _body(request: Request[Any, Any, Any]) -> tuple[bytes, str | None]:
    return await request.body(), request.headers.get("stripe-signature")


@post(
    "/webhooks/stripe/chains/{tenant_slug:str}",
    tags=["payments"],
    responses=problems(400, 401, 404),
    status_code=HTTP_200_OK,
    summary="Stripe's webhook events of a chain's own account",
    operation_id="receiveChainStripeEvent",
    description=WEBHOOK_DESCRIPTION,
    security=[],
)
async def receive_chain_event(
    request: Request[Any, Any, Any], db: Db, tenant_slug: SlugPath
) -> WebhookAck:
    tenant_id = await public_tenant(tenant_slug)
    if tenant_id is None:
        raise NotFound("no such page")
    set_request_context(TenantContext(tenant_id), Actor("system", name="stripe:webhook"))
    payload, signature = await _body(request)
    duplicate, _ = await webhooks.receive_chain_event(db, payload, signature)
    return WebhookAck(duplicate=duplicate)


@post(
    "/webhooks/stripe/platform",
    tags=["payments"],
    responses=problems(400, 401),
    status_code=HTTP_200_OK,
    summary="Stripe's webhook events of the platform's own account (tenant billing)",
    operation_id="receivePlatformStripeEvent",
    description=WEBHOOK_DESCRIPTION,
    security=[],
)
async def receive_platform_event(request: Request[Any, Any, Any], db: Db) -> WebhookAck:
    set_request_context(None, Actor("system", name="stripe:platform-webhook"))
    payload, signature = await _body(request)
    duplicate, _ = await webhooks.receive_platform_event(db, payload, signature)
    return WebhookAck(duplicate=duplicate)


WEBHOOK_ROUTES = [receive_chain_event, receive_platform_event]
