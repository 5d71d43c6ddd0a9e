"""Tables of referrals (邀请有礼) and friend assists (好友助力).

* ``referral_settings``: a chain's rules (one row per tenant; none: referrals are off).
* ``referral_codes``: each member's invitation code (made on first ask, never changed).
* ``referrals``: one invitee bound to one inviter (an invitee is referred at most once),
  with the hash of the invitee's device, its status (pending -> rewarded, or review ->
  pending/rejected, or expired) and, once rewarded, the order that qualified and what each
  side got. The reward is given once: the row is locked and its status moves on.
* ``assists`` and ``assist_helpers``: a member asks friends to help; each friend (another
  member, on another device) helps once; the goal-th helper completes the assist and the
  asker gets the reward in that transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal, get_args

from sqlalchemy import (
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

ReferralStatus = Literal["pending", "review", "rewarded", "rejected", "expired"]
REFERRAL_STATUSES: tuple[ReferralStatus, ...] = get_args(ReferralStatus)
AssistStatus = Literal["open", "completed", "expired"]


class ReferralSettingsRow(TenantScoped, Base):
    __tablename__ = "referral_settings"

    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    inviter_points: Mapped[int] = mapped_column(Integer, default=0)
    invitee_points: Mapped[int] = mapped_column(Integer, default=0)
    inviter_coupon: Mapped[str | None] = mapped_column(String(64), default=None)
    invitee_coupon: Mapped[str | None] = mapped_column(String(64), default=None)
    min_order_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    join_window_days: Mapped[int] = mapped_column(Integer, default=7)
    purchase_window_days: Mapped[int] = mapped_column(Integer, default=30)
    max_rewards_per_month: Mapped[int | None] = mapped_column(Integer, default=None)
    farm_limit_per_day: Mapped[int] = mapped_column(Integer, default=5)
    assist_goal: Mapped[int] = mapped_column(Integer, default=3)
    assist_days: Mapped[int] = mapped_column(Integer, default=3)
    assist_points: Mapped[int] = mapped_column(Integer, default=0)
    assist_coupon: Mapped[str | None] = mapped_column(String(64), default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ReferralCode(TenantScoped, Base):
    __tablename__ = "referral_codes"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        UniqueConstraint("tenant_id", "code"),
    )

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    code: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Referral(TenantOwned, Base):
    __tablename__ = "referrals"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "inviter_id"], ["members.tenant_id", "members.id"]),
        ForeignKeyConstraint(["tenant_id", "invitee_id"], ["members.tenant_id", "members.id"]),
        UniqueConstraint("tenant_id", "invitee_id"),
        Index("ix_referrals_status", "tenant_id", "status", "bound_at"),
        Index("ix_referrals_inviter", "tenant_id", "inviter_id", "bound_at"),
        Index("ix_referrals_device", "tenant_id", "device_hash"),
    )

    inviter_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    invitee_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    device_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    store_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # a ReferralStatus
    reason: Mapped[str] = mapped_column(String(200), default="")
    bound_at: Mapped[datetime] = mapped_column(default=utcnow)
    order_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    rewarded_at: Mapped[datetime | None] = mapped_column(default=None)
    inviter_points: Mapped[int] = mapped_column(Integer, default=0)
    invitee_points: Mapped[int] = mapped_column(Integer, default=0)
    inviter_coupon_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    invitee_coupon_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)


class Assist(TenantOwned, Base):
    __tablename__ = "assists"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        Index("ix_assists_member", "tenant_id", "member_id", "status"),
    )

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    goal: Mapped[int] = mapped_column(Integer)
    helpers: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="open")  # an AssistStatus
    idempotency_key: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    reward_points: Mapped[int] = mapped_column(Integer, default=0)
    reward_coupon_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)


class AssistHelper(TenantScoped, Base):
    __tablename__ = "assist_helpers"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "assist_id"], ["assists.tenant_id", "assists.id"]),
        ForeignKeyConstraint(["tenant_id", "helper_id"], ["members.tenant_id", "members.id"]),
    )

    assist_id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    helper_id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    device_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    helped_at: Mapped[datetime] = mapped_column(default=utcnow)
