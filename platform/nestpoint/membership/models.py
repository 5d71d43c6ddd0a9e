"""Tables of paid membership (付费会员).

* ``paid_plans``: HQ's cards (yearly, monthly, a trial of N days): price in fen, the
  benefit codes the card carries, whether it stacks with the growth tier, tier retention.
* ``paid_membership_settings``: a chain's rules (grace days, reminder days, refund rule).
* ``paid_memberships``: one card a member holds (or tried to buy): its plan, status,
  current period, auto-renewal and the saved payment method, the store that sold it.
* ``paid_membership_charges``: every payment asked for a card: the purchase, each renewal
  attempt, an upgrade's difference. Each names its ``nestpoint.payments`` payment; its
  status moves ``pending`` -> ``succeeded`` | ``failed`` once (a conditional update under
  the card's row lock), which is what makes the payment handlers exactly once. The
  benefits a succeeded charge grants are entitlements of source ``paid`` whose
  ``source_ref`` is the charge's id.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal, get_args

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.db.base import Base, TenantOwned, TenantScoped, utcnow

PlanPeriod = Literal["year", "month", "trial"]
PLAN_PERIODS: tuple[PlanPeriod, ...] = get_args(PlanPeriod)
# pending: bought, payment not yet through; active; grace: a renewal failed, benefits kept
# until ``grace_until``; lapsed: the period (or the grace) ended unpaid; cancelled: ended
# early by the member (with the chain's refund); failed: the purchase's payment failed.
MembershipStatus = Literal["pending", "active", "grace", "lapsed", "cancelled", "failed"]
MEMBERSHIP_STATUSES: tuple[MembershipStatus, ...] = get_args(MembershipStatus)
LIVE_STATUSES = ("pending", "active", "grace")  # one of these per member at a time
HELD_STATUSES = ("active", "grace")  # the card's benefits are held
ChargeKind = Literal["purchase", "renewal", "upgrade"]
CHARGE_KINDS: tuple[ChargeKind, ...] = get_args(ChargeKind)
ChargeStatus = Literal["pending", "succeeded", "failed"]
RefundRule = Literal["none", "pro_rata", "full_within"]
REFUND_RULES: tuple[RefundRule, ...] = get_args(RefundRule)


class PaidPlan(TenantOwned, Base):
    __tablename__ = "paid_plans"
    __table_args__ = (UniqueConstraint("tenant_id", "code"),)

    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    period: Mapped[str] = mapped_column(String(8))  # a PlanPeriod
    trial_days: Mapped[int | None] = mapped_column(Integer, default=None)  # trial only
    price_fen: Mapped[int] = mapped_column(BigInteger)
    benefits: Mapped[list[str]] = mapped_column(JSON, default=list)  # catalog codes
    stacks_with_tier: Mapped[bool] = mapped_column(Boolean, default=True)
    retain_tier: Mapped[bool] = mapped_column(Boolean, default=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PaidMembershipSettingsRow(TenantScoped, Base):
    """A chain's paid-membership rules (one row per tenant; none: the defaults)."""

    __tablename__ = "paid_membership_settings"

    grace_days: Mapped[int] = mapped_column(Integer, default=7)
    reminder_days: Mapped[int] = mapped_column(Integer, default=7)
    retry_days: Mapped[int] = mapped_column(Integer, default=1)
    refund_rule: Mapped[str] = mapped_column(String(16), default="pro_rata")  # a RefundRule
    full_refund_days: Mapped[int] = mapped_column(Integer, default=7)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PaidMembership(TenantOwned, Base):
    __tablename__ = "paid_memberships"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        ForeignKeyConstraint(["tenant_id", "plan_id"], ["paid_plans.tenant_id", "paid_plans.id"]),
        Index("ix_paid_memberships_member", "tenant_id", "member_id", "created_at"),
        Index("ix_paid_memberships_due", "tenant_id", "status", "period_end"),
        Index("ix_paid_memberships_store", "tenant_id", "store_id", "created_at"),
    )

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    plan_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    status: Mapped[str] = mapped_column(String(12), default="pending")  # a MembershipStatus
    auto_renew: Mapped[bool] = mapped_column(Boolean, default=True)
    payment_method: Mapped[str | None] = mapped_column(String(255), default=None)
    store_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)  # None: online
    period_start: Mapped[datetime | None] = mapped_column(default=None)
    period_end: Mapped[datetime | None] = mapped_column(default=None)
    grace_until: Mapped[datetime | None] = mapped_column(default=None)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    reminded_for: Mapped[datetime | None] = mapped_column(default=None)  # the period_end
    current_charge_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    # The member's tier protection before the card extended it (restored when it ends early).
    protected_before: Mapped[datetime | None] = mapped_column(default=None)
    protected_until: Mapped[datetime | None] = mapped_column(default=None)  # what the card set
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PaidMembershipCharge(TenantOwned, Base):
    __tablename__ = "paid_membership_charges"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "membership_id"], ["paid_memberships.tenant_id", "paid_memberships.id"]
        ),
        Index("ix_paid_membership_charges_membership", "tenant_id", "membership_id", "created_at"),
        Index("ix_paid_membership_charges_payment", "tenant_id", "payment_id"),
    )

    membership_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    kind: Mapped[str] = mapped_column(String(12))  # a ChargeKind
    plan_id: Mapped[uuid.UUID] = mapped_column(Uuid())  # the plan paid for (an upgrade's new one)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(12), default="pending")  # a ChargeStatus
    payment_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    store_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    period_start: Mapped[datetime | None] = mapped_column(default=None)  # set when applied
    period_end: Mapped[datetime | None] = mapped_column(default=None)
    refunded_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    failure: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column(default=None)
