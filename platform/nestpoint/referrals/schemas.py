"""API shapes of referrals and friend assists."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from nestpoint.coupons.schemas import TemplateCode
from nestpoint.limits import MAX_FEN, MAX_POINTS
from nestpoint.schemas import Strict

IdempotencyKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{8,100}$")]
InviteCode = Annotated[str, Field(pattern=r"^[0-9A-Za-z]{4,16}$")]
DeviceId = Annotated[
    str,
    Field(
        min_length=8,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="The app's or mini-program's device id; only its hash is kept.",
    ),
]
Points = Annotated[int, Field(ge=0, le=MAX_POINTS)]


class ReferralSettings(Strict):
    """A chain's referral and friend-assist rules (docs/referrals.md)."""

    model_config = ConfigDict(from_attributes=True, extra="forbid")

    enabled: bool = False
    inviter_points: Points = Field(0, description="The inviter's reward, in points.")
    invitee_points: Points = Field(0, description="The invitee's reward, in points.")
    inviter_coupon: TemplateCode | None = Field(None, description="And/or a coupon.")
    invitee_coupon: TemplateCode | None = None
    min_order_fen: int = Field(
        0, ge=0, le=MAX_FEN, description="The invitee's first purchase must pay at least this."
    )
    join_window_days: int = Field(
        7, ge=0, le=365, description="Only a member who joined within this many days is bound."
    )
    purchase_window_days: int = Field(
        30, ge=1, le=365, description="The first purchase must come within this many days."
    )
    max_rewards_per_month: int | None = Field(
        None, ge=1, le=10_000, description="An inviter's rewards per calendar month (UTC)."
    )
    farm_limit_per_day: int = Field(
        5, ge=1, le=10_000,
        description="Invitees of one inviter enrolled at one store in a day before review.",
    )  # fmt: skip
    assist_goal: int = Field(3, ge=1, le=100, description="Friends an assist needs.")
    assist_days: int = Field(3, ge=1, le=90, description="How long an assist stays open.")
    assist_points: Points = Field(0, description="The asker's reward when the goal is met.")
    assist_coupon: TemplateCode | None = None


class CodeRead(BaseModel):
    member_id: uuid.UUID
    code: str


class BindIn(Strict):
    """Bind a new member to the inviter whose code they came with."""

    code: InviteCode
    invitee_id: uuid.UUID
    device_id: DeviceId | None = None


class ReferralRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    inviter_id: uuid.UUID
    invitee_id: uuid.UUID
    store_id: uuid.UUID | None
    status: str = Field(description="pending, review, rewarded, rejected or expired.")
    reason: str
    bound_at: datetime
    order_id: uuid.UUID | None = Field(description="The invitee's first purchase that qualified.")
    rewarded_at: datetime | None
    inviter_points: int
    invitee_points: int
    inviter_coupon_id: uuid.UUID | None
    invitee_coupon_id: uuid.UUID | None


class ReviewIn(Strict):
    approve: bool
    reason: Annotated[str, Field(min_length=1, max_length=200)]


class AssistIn(Strict):
    idempotency_key: IdempotencyKey


class HelpIn(Strict):
    helper_id: uuid.UUID
    device_id: DeviceId | None = None


class AssistRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    member_id: uuid.UUID
    goal: int
    helpers: int
    status: str = Field(description="open, completed or expired.")
    created_at: datetime
    expires_at: datetime
    completed_at: datetime | None
    reward_points: int
    reward_coupon_id: uuid.UUID | None


class RewardRun(BaseModel):
    rewarded: int
    expired: int
