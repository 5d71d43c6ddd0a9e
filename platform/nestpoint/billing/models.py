"""Tables of the platform's billing of its tenants (docs/billing.md).

All four are **platform tables**, like ``tenants`` and ``platform_keys``: the operator's
records about a chain, with no row-level security. They are read before a tenant is known
(a Stripe webhook names a subscription, not a tenant) and listed across every chain by the
operator. HQ reads only its own chain's rows, by an explicit filter on its tenant.

Their column naming the tenant is ``chain_id`` (the attribute stays ``tenant_id``): in this
schema a ``tenant_id`` column means a tenant-owned table under row-level security
(``tests/test_catalog.py`` holds the catalog to that), which these are not.

* ``billing_plans``: the plans the platform sells (code, monthly price in fen, limits; a
  null limit is unlimited).
* ``billing_subscriptions``: one per tenant: its plan, status, current period, and its
  customer and subscription on the platform's Stripe account, with the state of the
  worker's sync with Stripe (the local intent is written first, the ids after the call).
* ``billing_usage``: the tenant's recorded usage (refreshed by a periodic job and on demand).
* ``billing_warnings``: one row per tenant, period (month), limit and threshold (80, 100):
  the unique key makes each warning happen once per period. Append-only.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal, get_args

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.db.base import Base, new_id, utcnow

SubscriptionStatus = Literal["trialing", "active", "past_due", "canceled"]
SUBSCRIPTION_STATUSES: tuple[SubscriptionStatus, ...] = get_args(SubscriptionStatus)
SyncState = Literal["pending", "synced"]
LimitName = Literal["members", "stores", "plugins", "messages"]
LIMIT_NAMES: tuple[LimitName, ...] = get_args(LimitName)
THRESHOLDS = (80, 100)


class BillingPlan(Base):
    __tablename__ = "billing_plans"
    __table_args__ = (CheckConstraint("price_fen >= 0", name="price"),)

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    price_fen: Mapped[int] = mapped_column(BigInteger)  # per month
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    max_members: Mapped[int | None] = mapped_column(BigInteger, default=None)
    max_stores: Mapped[int | None] = mapped_column(Integer, default=None)
    max_plugins: Mapped[int | None] = mapped_column(Integer, default=None)
    max_messages: Mapped[int | None] = mapped_column(BigInteger, default=None)  # per month
    active: Mapped[bool] = mapped_column(Boolean, default=True)  # offered to new subscriptions
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class BillingSubscription(Base):
    __tablename__ = "billing_subscriptions"
    __table_args__ = (
        CheckConstraint(f"status IN {SUBSCRIPTION_STATUSES}", name="status"),
        CheckConstraint("sync_state IN ('pending', 'synced')", name="sync_state"),
        UniqueConstraint("stripe_subscription_id"),
        Index("ix_billing_subscriptions_sync", "sync_state", "requested_at"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        "chain_id", Uuid(), ForeignKey("tenants.id", ondelete="RESTRICT"), primary_key=True
    )
    plan_code: Mapped[str] = mapped_column(
        String(32), ForeignKey("billing_plans.code", ondelete="RESTRICT")
    )
    status: Mapped[str] = mapped_column(String(16), default="trialing")  # SubscriptionStatus
    current_period_start: Mapped[datetime | None] = mapped_column(default=None)
    current_period_end: Mapped[datetime | None] = mapped_column(default=None)
    # Ordering of Stripe's events (never their arrival): the end of the latest period paid,
    # of the latest period whose payment failed, and the newest subscription event applied.
    paid_through: Mapped[datetime | None] = mapped_column(default=None)
    failed_through: Mapped[datetime | None] = mapped_column(default=None)
    state_event_at: Mapped[int] = mapped_column(BigInteger, default=0)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(64), default=None)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(64), default=None)
    stripe_plan_id: Mapped[str | None] = mapped_column(String(100), default=None)
    # The local intent: a new id at each plan choice (the Stripe calls' idempotency keys
    # derive from it); ``pending`` until the worker recorded Stripe's answer for it.
    sync_state: Mapped[str] = mapped_column(String(16), default="pending")  # SyncState
    sync_intent: Mapped[uuid.UUID] = mapped_column(Uuid(), default=new_id)
    sync_attempts: Mapped[int] = mapped_column(Integer, default=0)
    sync_error: Mapped[str] = mapped_column(String(500), default="")
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    synced_at: Mapped[datetime | None] = mapped_column(default=None)
    canceled_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class BillingUsage(Base):
    __tablename__ = "billing_usage"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        "chain_id", Uuid(), ForeignKey("tenants.id", ondelete="RESTRICT"), primary_key=True
    )
    members: Mapped[int] = mapped_column(BigInteger, default=0)
    stores: Mapped[int] = mapped_column(Integer, default=0)
    plugins: Mapped[int] = mapped_column(Integer, default=0)
    messages: Mapped[int] = mapped_column(BigInteger, default=0)  # this month
    month: Mapped[str] = mapped_column(String(7))  # "2026-11", in the chain's time zone
    refreshed_at: Mapped[datetime] = mapped_column(default=utcnow)


class BillingWarning(Base):
    __tablename__ = "billing_warnings"
    __table_args__ = (
        UniqueConstraint("chain_id", "period", "limit_name", "threshold"),
        CheckConstraint("threshold IN (80, 100)", name="threshold"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        "chain_id", Uuid(), ForeignKey("tenants.id", ondelete="RESTRICT")
    )
    period: Mapped[str] = mapped_column(String(7))  # the month, as billing_usage.month
    limit_name: Mapped[str] = mapped_column(String(16))  # a LimitName
    threshold: Mapped[int] = mapped_column(Integer)
    used: Mapped[int] = mapped_column(BigInteger)
    limit_value: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
