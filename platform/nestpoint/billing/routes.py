"""HTTP routes of tenant billing: translate HTTP to service calls, nothing more.

The operator's (platform key): plans, every chain's plan, usage and state, putting a chain
on a plan, refreshing its usage. HQ's: its own chain's plan, usage and warnings.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, get, put
from litestar.params import FromPath, JSONBody, PathParameter
from litestar.status_codes import HTTP_200_OK

from nestpoint.api.deps import (
    DEFAULT_LIMIT,
    CursorQuery,
    Db,
    LimitQuery,
    hq_only,
    platform_only,
    requires,
)
from nestpoint.api.problems import problems
from nestpoint.billing import jobs as _stripe_side  # noqa: F401  (registers the webhook handlers)
from nestpoint.billing import service
from nestpoint.billing.schemas import (
    PLAN_CODE,
    BillingList,
    BillingView,
    PlanIn,
    PlanRead,
    SubscribeIn,
)
from nestpoint.context import require_tenant

PlanCodePath = Annotated[str, PathParameter(name="code", pattern=PLAN_CODE, max_length=32)]


class PlatformBillingController(Controller):
    """The platform operator bills the chains: plans, subscriptions, usage."""

    path = "/billing"
    tags = ["billing"]
    guards = [platform_only]

    @get(
        "/plans",
        responses=problems(),
        summary="The plans the platform sells",
        operation_id="listBillingPlans",
        description="Platform key only; cheapest first. A null limit is unlimited.",
    )
    async def plans(self, db: Db) -> list[PlanRead]:
        return [PlanRead.model_validate(p) for p in await service.list_plans(db)]

    @put(
        "/plans/{code:str}",
        responses=problems(404, 422),
        status_code=HTTP_200_OK,
        summary="Create or replace a plan",
        operation_id="putBillingPlan",
        description=(
            "Platform key only. The whole plan: name, monthly price in fen and currency, the "
            "limits (members, active stores, enabled plugins, messages per month; null or "
            "left out: unlimited) and whether new subscriptions may pick it. Its chains' "
            "limits follow at once (other processes within the config cache's TTL); a new "
            "price is a new plan in Stripe at the next plan choice."
        ),
    )
    async def put_plan(self, db: Db, code: PlanCodePath, data: JSONBody[PlanIn]) -> PlanRead:
        plan, _ = await service.put_plan(db, code, data)
        return PlanRead.model_validate(plan)

    @get(
        "/tenants",
        responses=problems(),
        summary="Every chain's plan, usage, limits and state",
        operation_id="listTenantBilling",
        description="Platform key only: one entry per tenant, by slug, cursor-paginated.",
    )
    async def tenants(
        self, db: Db, cursor: CursorQuery = None, limit: LimitQuery = DEFAULT_LIMIT
    ) -> BillingList:
        items, next_cursor = await service.list_views(db, cursor=cursor, limit=limit)
        return BillingList(items=items, next_cursor=next_cursor)


class PlatformTenantBillingController(Controller):
    """The operator's billing of one chain: its view, its plan, its usage now."""

    path = "/tenants/{tenant_id:uuid}/billing"
    tags = ["billing"]
    guards = [platform_only]

    @get(
        "/",
        responses=problems(404),
        summary="One chain's plan, usage, limits, state and this month's warnings",
        operation_id="getTenantBilling",
        description="Platform key only; 404 for an unknown tenant.",
    )
    async def tenant(self, db: Db, tenant_id: FromPath[uuid.UUID]) -> BillingView:
        return await service.view_of(db, tenant_id)

    @put(
        "/subscription",
        responses=problems(404, 409, 422),
        status_code=HTTP_200_OK,
        summary="Put a chain on a plan (or move it to another)",
        operation_id="putTenantSubscription",
        description=(
            "Platform key only. Records the choice now (the plan's limits apply at once; "
            "`sync_state: pending`); a worker then creates or changes the chain's customer "
            "and subscription on the platform's Stripe account and records their ids "
            "(`synced`). The same plan again changes nothing. An unknown tenant or plan is "
            "404; a plan no longer offered is 409."
        ),
    )
    async def subscribe(
        self, db: Db, tenant_id: FromPath[uuid.UUID], data: JSONBody[SubscribeIn]
    ) -> BillingView:
        await service.subscribe(db, tenant_id, data.plan_code)
        return await service.view_of(db, tenant_id)

    @put(
        "/usage",
        responses=problems(404),
        status_code=HTTP_200_OK,
        summary="Record a chain's usage now",
        operation_id="refreshTenantUsage",
        description=(
            "Platform key only. Counts the chain's members, active stores, enabled plugins "
            "and this month's messages (what the periodic job does every 15 minutes) and "
            "warns HQ of a limit crossed at 80% or 100%, once per month."
        ),
    )
    async def refresh(self, db: Db, tenant_id: FromPath[uuid.UUID]) -> BillingView:
        await service.refresh_usage(db, tenant_id)
        return await service.view_of(db, tenant_id)


class TenantBillingController(Controller):
    """HQ sees its own chain's plan, usage and state."""

    path = "/billing"
    tags = ["billing"]

    @get(
        "/",
        guards=[requires("tenant:read"), hq_only],
        responses=problems(),
        summary="The chain's plan, usage against its limits, and this month's warnings",
        operation_id="getChainBilling",
        description=(
            "HQ key with `tenant:read`. A limit reached refuses new growth (enrolments, new "
            "stores, another plugin, marketing messages) with 409 `plan-limit-reached`; the "
            "till keeps serving existing members. No subscription: no plan, no limits."
        ),
    )
    async def mine(self, db: Db) -> BillingView:
        return await service.view_of(db, require_tenant().tenant_id)
