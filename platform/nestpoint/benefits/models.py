"""Tables of the benefits context: the catalog, bundles, entitlements and the uses ledger.

* ``benefits`` is HQ's catalog: one row per benefit a chain offers (a type from the core or
  a plugin, its options, who qualifies, its quota per period, validity and stores).
* ``benefit_bundles`` grant several benefits at once when something happens (a birth).
* ``entitlements`` are what members hold: one row per member, benefit and source (their
  tier, a child's stage, a bundle for one child, an exchange for points). The row is the
  lock every use of it takes.
* ``benefit_uses`` is the quota ledger: append-only (the application role may only INSERT
  and SELECT it). A use is ``+quantity`` in the period it fell in; a reversal is the same
  amount negated, pointing at the use it reverses (at most once: a unique key). What is
  left of a quota is the period's quota less the sum of its rows.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal, get_args

from sqlalchemy import (
    Boolean,
    Date,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.db.base import Base, TenantOwned, utcnow

# How a quota is counted: uses per local day, ISO week, month or year, or over the whole
# life of the entitlement ("grant": e.g. the newborn pack's one delivery).
Period = Literal["day", "week", "month", "year", "grant"]
PERIODS: tuple[Period, ...] = get_args(Period)
# Why a member holds an entitlement. ``tier`` and ``stage`` follow the member (granted while
# they qualify); ``bundle``, ``exchange``, ``campaign`` (a campaign's grant) and ``paid`` (a
# paid card's period: nestpoint.membership) are granted once and run to their expiry.
Source = Literal["tier", "stage", "bundle", "exchange", "campaign", "paid"]
SOURCES: tuple[Source, ...] = get_args(Source)
EntitlementStatus = Literal["active", "expired", "revoked"]
# What a member losing the qualification does to a tier or stage entitlement: ``revoke``
# ends it now; ``run_out`` lets it last to the end of the current quota period.
OnLapse = Literal["revoke", "run_out"]
BundleTrigger = Literal["child_born", "due_date_recorded"]
UseKind = Literal["use", "reverse"]


class Benefit(TenantOwned, Base):
    __tablename__ = "benefits"
    __table_args__ = (UniqueConstraint("tenant_id", "code"),)

    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    type_key: Mapped[str] = mapped_column(String(100))  # core.<key> or <plugin-id>.<key>
    options: Mapped[dict[str, Any]]
    # Qualification besides the tier ladder (a tier lists the codes of its benefits).
    child_stages: Mapped[list[str]] = mapped_column(default=list)
    exchange_points: Mapped[int | None] = mapped_column(Integer, default=None)
    stock: Mapped[int | None] = mapped_column(Integer, default=None)  # exchanges, ever
    per_member_limit: Mapped[int | None] = mapped_column(Integer, default=None)
    quota: Mapped[int] = mapped_column(Integer, default=1)
    tier_quotas: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {tier code: quota}
    period: Mapped[str] = mapped_column(String(8), default="month")  # a Period
    valid_days: Mapped[int | None] = mapped_column(Integer, default=None)
    valid_from: Mapped[date | None] = mapped_column(Date, default=None)
    valid_until: Mapped[date | None] = mapped_column(Date, default=None)
    on_lapse: Mapped[str] = mapped_column(String(8), default="run_out")  # an OnLapse
    store_codes: Mapped[list[str]] = mapped_column(default=list)  # empty: every store
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class BenefitBundle(TenantOwned, Base):
    __tablename__ = "benefit_bundles"
    __table_args__ = (UniqueConstraint("tenant_id", "code"),)

    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    trigger: Mapped[str] = mapped_column(String(24))  # a BundleTrigger
    within_days: Mapped[int] = mapped_column(Integer, default=90)
    benefit_codes: Mapped[list[str]] = mapped_column(default=list)
    points: Mapped[int] = mapped_column(Integer, default=0)  # welcome points with the pack
    valid_days: Mapped[int] = mapped_column(Integer, default=90)  # unless the benefit says
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class BundleGrant(TenantOwned, Base):
    """A bundle given once to a member for one child: the record that it was given (its
    entitlements name it, and its points were credited when it was written)."""

    __tablename__ = "bundle_grants"
    __table_args__ = (
        UniqueConstraint("tenant_id", "member_id", "bundle_id", "child_id"),
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        ForeignKeyConstraint(
            ["tenant_id", "bundle_id"], ["benefit_bundles.tenant_id", "benefit_bundles.id"]
        ),
    )

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    bundle_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    child_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    points: Mapped[int] = mapped_column(Integer, default=0)
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)


class Entitlement(TenantOwned, Base):
    __tablename__ = "entitlements"
    __table_args__ = (
        UniqueConstraint("tenant_id", "member_id", "benefit_id", "source", "source_ref"),
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        ForeignKeyConstraint(["tenant_id", "benefit_id"], ["benefits.tenant_id", "benefits.id"]),
        Index("ix_entitlements_expiry", "tenant_id", "status", "expires_at"),
        # An exchange's stock counts the benefit's exchanges (the till's call, an exchange).
        Index("ix_entitlements_benefit", "tenant_id", "benefit_id", "source"),
    )

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    benefit_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    source: Mapped[str] = mapped_column(String(16))  # a Source
    # Which tier, child, bundle or exchange: "" for tier and stage (one per benefit, kept
    # across tier moves so a period's uses still count), the bundle grant's id for a
    # bundle, the exchange's idempotency key for an exchange.
    source_ref: Mapped[str] = mapped_column(String(150), default="")
    status: Mapped[str] = mapped_column(String(8), default="active")  # an EntitlementStatus
    points_paid: Mapped[int] = mapped_column(Integer, default=0)  # an exchange's price
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    lapsed_at: Mapped[datetime | None] = mapped_column(default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)


class BenefitUse(TenantOwned, Base):
    __tablename__ = "benefit_uses"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "entitlement_id"], ["entitlements.tenant_id", "entitlements.id"]
        ),
        Index("ix_benefit_uses_period", "tenant_id", "entitlement_id", "period_key"),
        Index("ix_benefit_uses_member", "tenant_id", "member_id", "created_at"),
        UniqueConstraint("tenant_id", "reverses_id"),
    )

    entitlement_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    member_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    benefit_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    kind: Mapped[str] = mapped_column(String(8))  # a UseKind
    amount: Mapped[int] = mapped_column(Integer)  # +quantity for a use, negated to reverse
    period_key: Mapped[str] = mapped_column(String(10))  # 2026-11, 2026-W48, grant...
    store_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    reference: Mapped[str] = mapped_column(String(150), default="")  # a booking, an order
    reverses_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    reason: Mapped[str] = mapped_column(String(200), default="")
    actor: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
