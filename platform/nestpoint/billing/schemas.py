"""Shapes of the billing API: plans, a tenant's subscription, usage, limits and warnings."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from nestpoint.billing.models import LimitName, SubscriptionStatus, SyncState
from nestpoint.limits import MAX_FEN
from nestpoint.schemas import Strict

PLAN_CODE = r"^[A-Za-z0-9_-]{1,32}$"
PlanCode = Annotated[str, Field(pattern=PLAN_CODE, max_length=32, examples=["growth"])]
Count = Annotated[int, Field(ge=0, le=10**12)]


class PlanIn(Strict):
    """A plan, whole (``PUT`` creates or replaces it). A limit left out or ``null`` is
    unlimited."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    price_fen: Annotated[int, Field(ge=0, le=MAX_FEN, description="Monthly, in fen.")]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$", max_length=3)] = "CNY"
    max_members: Count | None = None
    max_stores: Annotated[int, Field(ge=0, le=10**6)] | None = None
    max_plugins: Annotated[int, Field(ge=0, le=10**4)] | None = None
    max_messages: Annotated[Count | None, Field(description="Per calendar month.")] = None
    active: bool = True


class PlanRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    price_fen: int
    currency: str
    max_members: int | None
    max_stores: int | None
    max_plugins: int | None
    max_messages: int | None
    active: bool


class SubscribeIn(Strict):
    """Put the tenant on a plan (or move it to another): the worker makes it so in Stripe."""

    plan_code: PlanCode


class LimitRead(BaseModel):
    """One limit: what the plan allows (``null``: unlimited), what is used, and where it
    stands (``ok``, ``warning`` from 80%, ``reached`` at 100%: new growth is refused)."""

    name: LimitName
    limit: int | None
    used: int
    state: str


class WarningRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    period: str
    limit_name: str
    threshold: int
    used: int
    limit_value: int
    created_at: datetime


class SubscriptionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    plan_code: str
    status: SubscriptionStatus
    current_period_start: datetime | None
    current_period_end: datetime | None
    stripe_customer_id: str | None
    stripe_subscription_id: str | None
    sync_state: SyncState
    sync_error: str
    requested_at: datetime
    synced_at: datetime | None


class BillingView(BaseModel):
    """A tenant's plan, subscription, usage against its limits, and this period's warnings.
    With no subscription the chain has no plan and no limits."""

    tenant_id: uuid.UUID
    tenant_slug: str
    plan: PlanRead | None
    subscription: SubscriptionRead | None
    limits: list[LimitRead]
    usage_month: str | None
    usage_refreshed_at: datetime | None
    warnings: list[WarningRead]


class BillingList(BaseModel):
    items: list[BillingView]
    next_cursor: str | None
