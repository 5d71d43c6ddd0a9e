"""API shapes of the member API: tokens, the chain's WeChat app, and the member's own view."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from nestpoint.members.schemas import ChildRead, ConsentRead, IdentityKind, Phone
from nestpoint.schemas import Strict
from nestpoint.text import required

# ---- tokens


class MemberTokenIn(Strict):
    """Name the member: exactly one of ``member_id``, ``phone``, or ``identity_kind`` with
    ``identity_value`` (as the till's lookup does)."""

    member_id: uuid.UUID | None = None
    phone: Phone | None = None
    identity_kind: IdentityKind | None = None
    identity_value: Annotated[str, required(128)] | None = None

    @model_validator(mode="after")
    def _one_way(self) -> MemberTokenIn:
        if (self.identity_kind is None) != (self.identity_value is None):
            raise ValueError("give identity_kind and identity_value together")
        ways = [self.member_id is not None, self.phone is not None, self.identity_kind is not None]
        if sum(ways) != 1:
            raise ValueError("give exactly one of member_id, phone, or identity_kind and value")
        return self


class MemberTokenRead(BaseModel):
    token: str = Field(description="Send as `Authorization: Bearer <token>`; shown only now.")
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the scheme's name
    member_id: uuid.UUID = Field(
        description="The member it acts for (a merged member's "
        "survivor when the request named the merged one)."
    )
    expires_at: datetime
    expires_in: int = Field(description="Seconds until it expires.")


class RevokeIn(Strict):
    member_id: uuid.UUID


class RevokeRead(BaseModel):
    member_id: uuid.UUID
    revoked: int = Field(
        description="Tokens revoked now (already revoked or expired: not counted)."
    )


# ---- the chain's WeChat mini-program


class WechatAppIn(Strict):
    """The chain's mini-program (write-only secret: never answered back)."""

    appid: str = Field(pattern=r"^wx[0-9a-f]{16}$", description="The mini-program's AppID.")
    secret: str = Field(
        pattern=r"^[0-9A-Za-z]{16,64}$", description="The mini-program's AppSecret."
    )
    enrol_by_phone: bool = Field(
        False,
        description="A phone WeChat verified (`POST /member-auth/{tenant_slug}/wechat/phone`) "
        "that no member holds enrols a new member; false: 404 `wechat-phone-not-member`.",
    )


class WechatAppRead(BaseModel):
    configured: bool
    appid: str = ""
    enrol_by_phone: bool = False
    updated_at: datetime | None = None
    updated_by: str = ""


class WechatLoginIn(Strict):
    code: str = Field(
        pattern=r"^[0-9A-Za-z_-]{1,128}$",
        description="The code `wx.login()` gave the mini-program.",
    )


class WechatPhoneLoginIn(Strict):
    code: str = Field(
        pattern=r"^[0-9A-Za-z_-]{1,128}$",
        description="The code `wx.login()` gave the mini-program.",
    )
    phone_code: str = Field(
        pattern=r"^[0-9A-Za-z_-]{1,128}$",
        description="The `code` of the `getPhoneNumber` button's event (WeChat's phone "
        "check): the phone WeChat verified finds the member.",
    )


class WechatBindRead(BaseModel):
    member_id: uuid.UUID
    kinds: list[str] = Field(
        description="The identities bound: `mp_openid`, and `mp_unionid` when WeChat gave one."
    )


# ---- the member's own view


class MeRead(BaseModel):
    """The member's own profile (their own data: shown in full)."""

    id: uuid.UUID
    phone: str
    name: str | None
    gender: str
    birthday: date | None
    home_store_id: uuid.UUID | None
    joined_at: datetime
    tier_code: str | None
    tier_name: str
    growth_value: int
    points_balance: int
    wallet_balance_fen: int
    children: list[ChildRead]
    consents: list[ConsentRead]


class CardRead(BaseModel):
    member_id: uuid.UUID
    name: str | None
    tier_code: str | None
    tier_name: str
    code: str = Field(
        description="What the QR code holds; the till sends it to "
        "`POST /api/v1/members/lookup-by-code`."
    )
    issued_at: datetime
    expires_at: datetime = Field(
        description="The till refuses it after this (422 `member-code-expired`)."
    )
    refresh_in: int = Field(
        description="Seconds after which to fetch a new code (before it expires)."
    )


class CodeLookupIn(Strict):
    code: str = Field(min_length=1, max_length=100, description="The scanned QR code.")


class ExpiringPoints(BaseModel):
    expires_at: datetime
    points: int


class PointsRead(BaseModel):
    member_id: uuid.UUID
    balance: int = Field(description="Ledger balance: available + pending - debt.")
    available: int = Field(description="Spendable now.")
    pending: int = Field(description="Earned, spendable after the pending period.")
    held: int = Field(description="Set aside at a till right now.")
    debt: int
    lifetime_earned: int
    expiring: list[ExpiringPoints] = Field(
        description="The points left, by when they expire, soonest first (at most 100)."
    )


class PointEntryRead(BaseModel):
    id: uuid.UUID
    kind: str
    amount: int
    balance_after: int
    cause_type: str
    reason: str
    created_at: datetime


class PointEntryList(BaseModel):
    items: list[PointEntryRead]
    next_cursor: str | None


class TierStep(BaseModel):
    code: str
    name: str
    threshold: int


class TierProgressRead(BaseModel):
    tier_code: str
    tier_name: str
    growth_value: int
    tier_since: datetime | None
    protected_until: datetime | None = Field(description="Not downgraded before this.")
    next_tier: TierStep | None = Field(description="None at the top of the ladder.")
    growth_to_next: int | None = Field(description="Growth value still needed for it.")
    progress_percent: int = Field(
        description="0-100 of the way from this tier to the next (100 at the top)."
    )
    ladder: list[TierStep]


class MyMessage(BaseModel):
    id: uuid.UUID
    purpose: str
    channel: str | None
    status: str
    subject: str
    body: str
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None


class MyMessageList(BaseModel):
    items: list[MyMessage]
    next_cursor: str | None
