"""Stripe payments: the chain's Stripe account, a member's Stripe customer, payments and
their refunds, and the webhook events Stripe sent (the inbox).

* ``stripe_accounts``: a chain's own Stripe keys, sealed with the core's keys (never
  answered, logged or put in an event).
* ``stripe_customers``: the Stripe customer of a member, made on their first payment.
* ``payments``: one charge a domain asked for (a top-up, a paid card, a renewal): its
  purpose and subject (what it pays for), the amount in fen, and its state, ``pending``
  (recorded; a worker has not had Stripe's answer yet) -> ``submitted`` (a PaymentIntent
  exists) -> ``succeeded`` or ``failed``. One payment per (purpose, subject).
* ``payment_refunds``: money given back on a payment, one per (payment, cause).
* ``stripe_events`` and ``platform_stripe_events``: every webhook event as Stripe sent it
  (the raw body, kept for audit), once per event id, with what applying it did. The first
  for the chains' own accounts (tenant-owned, row-level security); the second for the
  platform's account (tenant billing), which belongs to no chain. The application may
  insert them and update only their state columns, never the body.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal, get_args

from sqlalchemy import BigInteger, Index, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.db.base import Base, TenantOwned, TenantScoped, new_id, utcnow

PaymentStatus = Literal["pending", "submitted", "succeeded", "failed"]
PAYMENT_STATUSES: tuple[PaymentStatus, ...] = get_args(PaymentStatus)
FINAL_STATUSES = frozenset({"succeeded", "failed"})
# ``received``: stored, not applied yet; ``held``: names something not recorded here yet
# (applied again later); ``applied``; ``ignored``: nothing here cares about it.
EventStatus = Literal["received", "held", "applied", "ignored"]
EVENT_STATUSES: tuple[EventStatus, ...] = get_args(EventStatus)


class StripeAccount(TenantScoped, Base):
    """A chain's own Stripe account: its secret key and webhook signing secret, sealed."""

    __tablename__ = "stripe_accounts"

    secret_key_enc: Mapped[str] = mapped_column(Text)
    webhook_secret_enc: Mapped[str] = mapped_column(Text)
    publishable_key: Mapped[str] = mapped_column(String(255), default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str] = mapped_column(String(100), default="")


class StripeCustomer(TenantScoped, Base):
    """The Stripe customer of one member (in the chain's account)."""

    __tablename__ = "stripe_customers"

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Payment(TenantOwned, Base):
    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("tenant_id", "purpose", "subject_id", name="uq_payments_subject"),
        Index("ix_payments_intent", "tenant_id", "stripe_payment_intent"),
        Index("ix_payments_status", "tenant_id", "status", "created_at"),
    )

    purpose: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    member_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    store_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    payment_method: Mapped[str | None] = mapped_column(String(255), default=None)
    description: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")  # a PaymentStatus
    stripe_payment_intent: Mapped[str | None] = mapped_column(String(255), default=None)
    failure: Mapped[str] = mapped_column(String(300), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # A worker holds the payment until then while it talks to Stripe; a sweep takes over a
    # payment whose worker died (and finds the PaymentIntent it may have made).
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    refunded_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column(default=None)


class PaymentRefund(TenantOwned, Base):
    __tablename__ = "payment_refunds"
    __table_args__ = (
        UniqueConstraint("tenant_id", "payment_id", "cause", name="uq_payment_refunds_cause"),
        Index("ix_payment_refunds_status", "tenant_id", "status", "created_at"),
    )

    payment_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    cause: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")  # a PaymentStatus
    stripe_refund: Mapped[str | None] = mapped_column(String(255), default=None)
    failure: Mapped[str] = mapped_column(String(300), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column(default=None)


class _EventColumns:
    event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(100))
    object_id: Mapped[str] = mapped_column(String(255), default="")
    created: Mapped[int] = mapped_column(BigInteger)  # Stripe's own time of the event
    payload: Mapped[str] = mapped_column(Text)  # the raw body, byte for byte as received
    status: Mapped[str] = mapped_column(String(16), default="received")  # an EventStatus
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[str] = mapped_column(String(300), default="")
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    applied_at: Mapped[datetime | None] = mapped_column(default=None)


class StripeEvent(_EventColumns, TenantOwned, Base):
    """A webhook event of a chain's own Stripe account."""

    __tablename__ = "stripe_events"
    __table_args__ = (
        UniqueConstraint("tenant_id", "event_id", name="uq_stripe_events_event"),
        Index("ix_stripe_events_object", "tenant_id", "object_id"),
        Index("ix_stripe_events_status", "tenant_id", "status", "received_at"),
    )


class PlatformStripeEvent(_EventColumns, Base):
    """A webhook event of the platform's own Stripe account (tenant billing)."""

    __tablename__ = "platform_stripe_events"
    __table_args__ = (
        UniqueConstraint("event_id", name="uq_platform_stripe_events_event"),
        Index("ix_platform_stripe_events_object", "object_id"),
        Index("ix_platform_stripe_events_status", "status", "received_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=new_id)
