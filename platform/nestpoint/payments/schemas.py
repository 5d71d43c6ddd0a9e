"""API shapes of payments: the chain's Stripe account, payments and refunds."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from nestpoint.payments.models import PaymentStatus
from nestpoint.schemas import Strict

# A Stripe payment method id, made on the member's device by Stripe's SDK (card, Alipay,
# WeChat Pay): Nestpoint never sees card numbers.
PaymentMethodId = Annotated[
    str, Field(min_length=4, max_length=255, pattern=r"^(pm|card|src)_[A-Za-z0-9_]+$")
]


class StripeAccountIn(Strict):
    """A chain's own Stripe account keys (write-only: never answered back)."""

    secret_key: str = Field(
        min_length=8,
        max_length=255,
        pattern=r"^(sk|rk)_(test|live)_[A-Za-z0-9_]+$",
        description="The account's secret (or restricted) key.",
    )
    webhook_secret: str = Field(
        min_length=8,
        max_length=255,
        pattern=r"^whsec_[A-Za-z0-9_]+$",
        description="Signing secret of the webhook endpoint "
        "`/webhooks/stripe/chains/{tenant_slug}` in the chain's Stripe dashboard.",
    )
    publishable_key: str = Field(
        default="",
        max_length=255,
        pattern=r"^(pk_(test|live)_[A-Za-z0-9_]+)?$",
        description="The publishable key the chain's mini-program uses (answered back).",
    )


class StripeAccountRead(BaseModel):
    configured: bool
    publishable_key: str = ""
    updated_at: datetime | None = None
    updated_by: str = ""


class RefundRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    amount_fen: int
    cause: str
    reason: str
    status: PaymentStatus
    stripe_refund: str | None
    failure: str
    created_at: datetime
    settled_at: datetime | None


class PaymentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    purpose: str = Field(description="What it pays for: `wallet_topup`, `paid_membership`...")
    subject_id: uuid.UUID = Field(description="The record of the purpose it pays for.")
    member_id: uuid.UUID | None
    store_id: uuid.UUID | None
    amount_fen: int
    currency: str
    status: PaymentStatus
    stripe_payment_intent: str | None
    failure: str
    attempts: int
    refunded_fen: int = Field(description="Refunded or being refunded.")
    created_at: datetime
    settled_at: datetime | None


class PaymentDetail(PaymentRead):
    refunds: list[RefundRead]


class PaymentList(BaseModel):
    items: list[PaymentRead]
    next_cursor: str | None


class WebhookAck(BaseModel):
    received: bool = True
    duplicate: bool = Field(description="True: this event id was received before (no-op).")
