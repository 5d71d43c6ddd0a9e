"""Coupons: a chain's templates, the coupons issued from them, and their ledger.

* ``coupon_templates``: what a coupon gives (满减 amount off above a threshold, percent off
  with a ceiling, a free gift, shipping), on which categories or SKUs, where and when it is
  valid, how many exist (``stock``; ``issued`` counts them out), how many one member may
  hold, whether it combines with other coupons, and its price in points (if members may
  exchange points for it).
* ``coupons``: one issued coupon, to one member, with a code nobody can guess. Its
  ``(template, member, cause)`` is unique: a grant retried (a campaign's job, an exchange
  replayed) finds the coupon it issued. ``status`` moves available -> held (at a till's
  scan) -> redeemed (by an order, which records ``amount_fen``), and back to available when
  a hold is released or the whole order is refunded; ``void`` is final.
* ``coupon_events``: the append-only ledger of those moves (the application role may only
  INSERT and SELECT it): who issued, held, redeemed, restored or voided what, and why.
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

from nestpoint.db.base import Base, TenantOwned, utcnow

CouponKind = Literal["amount_off", "percent_off", "gift", "shipping"]
COUPON_KINDS: tuple[CouponKind, ...] = get_args(CouponKind)
CouponStatus = Literal["available", "held", "redeemed", "void"]
COUPON_STATUSES: tuple[CouponStatus, ...] = get_args(CouponStatus)
CouponEventKind = Literal["issue", "hold", "release", "redeem", "restore", "void"]
COUPON_EVENT_KINDS: tuple[CouponEventKind, ...] = get_args(CouponEventKind)
# Why a coupon was issued; ``cause_id`` names the occasion (a grant's idempotency key, an
# exchange's, a campaign's trigger).
CouponCause = Literal["grant", "exchange", "campaign", "referral", "import"]
COUPON_CAUSES: tuple[CouponCause, ...] = get_args(CouponCause)


class CouponTemplate(TenantOwned, Base):
    __tablename__ = "coupon_templates"
    __table_args__ = (UniqueConstraint("tenant_id", "code"),)

    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # a CouponKind
    threshold_fen: Mapped[int] = mapped_column(BigInteger, default=0)  # 满 X
    amount_off_fen: Mapped[int | None] = mapped_column(BigInteger, default=None)  # 减 Y
    percent_off: Mapped[int | None] = mapped_column(Integer, default=None)
    max_off_fen: Mapped[int | None] = mapped_column(BigInteger, default=None)  # the ceiling
    # Empty: every line counts; otherwise only lines of these categories or SKUs.
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    skus: Mapped[list[str]] = mapped_column(JSON, default=list)
    gift_sku: Mapped[str | None] = mapped_column(String(64), default=None)
    stock: Mapped[int | None] = mapped_column(Integer, default=None)  # None: unlimited
    issued: Mapped[int] = mapped_column(Integer, default=0)
    per_member_limit: Mapped[int | None] = mapped_column(Integer, default=None)
    # Validity: fixed dates, or ``valid_days`` from issue (within the fixed dates if given).
    valid_from: Mapped[datetime | None] = mapped_column(default=None)
    valid_until: Mapped[datetime | None] = mapped_column(default=None)
    valid_days: Mapped[int | None] = mapped_column(Integer, default=None)
    store_codes: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty: every store
    stackable: Mapped[bool] = mapped_column(Boolean, default=False)
    points_price: Mapped[int | None] = mapped_column(Integer, default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Coupon(TenantOwned, Base):
    __tablename__ = "coupons"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "template_id"], ["coupon_templates.tenant_id", "coupon_templates.id"]
        ),
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        UniqueConstraint("tenant_id", "code"),
        UniqueConstraint("tenant_id", "template_id", "member_id", "cause_type", "cause_id"),
        Index("ix_coupons_member", "tenant_id", "member_id", "status"),
        Index("ix_coupons_order", "tenant_id", "order_id"),
        Index("ix_coupons_cause", "tenant_id", "cause_type", "cause_id"),
    )

    template_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    member_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    code: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="available")  # a CouponStatus
    valid_from: Mapped[datetime] = mapped_column()
    valid_until: Mapped[datetime] = mapped_column()
    cause_type: Mapped[str] = mapped_column(String(16))  # a CouponCause
    cause_id: Mapped[str] = mapped_column(String(128))
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    # While held at a till: the hold, its store and until when (a lapsed hold frees it).
    hold_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    hold_store_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    held_until: Mapped[datetime | None] = mapped_column(default=None)
    # Once redeemed: the order and what the coupon paid of it.
    order_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    amount_fen: Mapped[int | None] = mapped_column(BigInteger, default=None)
    redeemed_at: Mapped[datetime | None] = mapped_column(default=None)


class CouponEvent(TenantOwned, Base):
    __tablename__ = "coupon_events"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "coupon_id"], ["coupons.tenant_id", "coupons.id"]),
        Index("ix_coupon_events_coupon", "tenant_id", "coupon_id", "created_at"),
    )

    coupon_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    kind: Mapped[str] = mapped_column(String(16))  # a CouponEventKind
    order_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    store_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    amount_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    reason: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
