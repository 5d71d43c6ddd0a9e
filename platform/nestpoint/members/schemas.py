"""API shapes of the members context."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    StringConstraints,
    model_validator,
)

from nestpoint.schemas import Strict
from nestpoint.tenancy.schemas import StoreCode
from nestpoint.text import NOT_BLANK, optional, required

Gender = Literal["female", "male", "unknown"]
Channel = Literal["sms", "wecom", "mini_program", "email"]
IdentityKind = Literal[
    "pos_card", "mall_user", "mp_openid", "mp_unionid", "app_user", "email", "wecom_userid"
]
JoinChannel = Literal["pos", "mall", "mini_program", "app", "import", "api"]
Stage = Literal["pregnant", "birth_overdue", "0-6m", "6-12m", "1-3y", "3-6y", "older"]
# The schema's part of a phone (trimmed, no NUL, not blank); whether it is a number is the
# phone rule's (a 422 naming the field).
Phone = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32, pattern=NOT_BLANK)
]
Name = Annotated[str, required(100)]
Tag = Annotated[str, required(32)]
Source = Annotated[str, required(50)]
MAX_TAGS = 50
MAX_CHILDREN = 10
MAX_IDENTITIES = 10


class IdentityIn(Strict):
    kind: IdentityKind
    value: Annotated[str, required(128)]


class ChildIn(Strict):
    nickname: Annotated[str, optional(50)] = ""
    gender: Gender = "unknown"
    birth_date: date | None = None
    due_date: date | None = Field(None, description="For a pregnancy: the expected due date.")

    @model_validator(mode="after")
    def _one_date(self) -> ChildIn:
        if (self.birth_date is None) == (self.due_date is None):
            raise ValueError("give exactly one of birth_date (a child) or due_date (a pregnancy)")
        return self


class ChildUpdate(Strict):
    nickname: Annotated[str, optional(50)] | None = None
    gender: Gender | None = None


class BirthIn(Strict):
    birth_date: date
    gender: Gender | None = None
    nickname: Annotated[str, optional(50)] | None = None


class ChildRead(BaseModel):
    id: uuid.UUID
    nickname: str = Field(description="Empty for a member outside the store key's reach.")
    gender: str
    birth_date: date | None = Field(description="Shown only to keys with members:pii.")
    due_date: date | None = Field(description="Shown only to keys with members:pii.")
    stage: Stage = Field(description="Derived from the dates on every read; always shown.")


class IdentityRead(BaseModel):
    id: uuid.UUID = Field(description="For unlinking it (DELETE .../identities/{id}).")
    kind: str
    value: str = Field(description="Masked (****1234) unless the key has members:pii.")


class ConsentIn(Strict):
    channel: Channel
    granted: bool
    source: Source


def one_per_channel(consents: list[ConsentIn]) -> list[ConsentIn]:
    channels = [c.channel for c in consents]
    if duplicates := sorted({c for c in channels if channels.count(c) > 1}):
        raise ValueError(f"one consent per channel: {', '.join(duplicates)} given twice")
    return consents


def _distinct_identities(identities: list[IdentityIn]) -> list[IdentityIn]:
    pairs = [(i.kind, i.value) for i in identities]
    if len(set(pairs)) != len(pairs):
        raise ValueError("an identity is given twice")
    return identities


Consents = Annotated[list[ConsentIn], Field(max_length=4), AfterValidator(one_per_channel)]
Identities = Annotated[
    list[IdentityIn], Field(max_length=MAX_IDENTITIES), AfterValidator(_distinct_identities)
]


class ConsentRead(BaseModel):
    channel: str
    granted: bool
    source: str
    updated_at: datetime


class GuardianConsentIn(Strict):
    granted: bool
    source: Source


class MemberCreate(Strict):
    phone: Phone
    name: Name | None = None
    gender: Gender = "unknown"
    birthday: date | None = None
    home_store_code: StoreCode | None = None
    join_channel: JoinChannel = "api"
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    consents: Consents = Field(default_factory=list)
    guardian_consent: GuardianConsentIn | None = Field(
        None, description="The guardian's separate consent to children's data (PIPL)."
    )
    children: list[ChildIn] = Field(default_factory=list, max_length=MAX_CHILDREN)
    identities: Identities = Field(default_factory=list)


class MemberUpdate(Strict):
    name: Name | None = None
    gender: Gender | None = None
    birthday: date | None = None
    home_store_code: StoreCode | None = None
    tags: list[Tag] | None = Field(None, max_length=MAX_TAGS)
    guardian_consent: GuardianConsentIn | None = None


class MemberRead(BaseModel):
    id: uuid.UUID
    phone: str = Field(description="Masked unless the key has the members:pii scope.")
    name: str | None
    gender: str
    birthday: date | None = Field(description="Shown only to keys with members:pii.")
    birthday_month: int | None = Field(
        description="The birthday's month (1-12), for birthday privileges at the till."
    )
    home_store_id: uuid.UUID | None
    join_channel: str
    join_store_id: uuid.UUID | None
    joined_at: datetime
    tags: list[str]
    status: str
    merged_into_id: uuid.UUID | None
    tier_code: str | None
    growth_value: int
    points_balance: int
    guardian_consent: bool
    children: list[ChildRead]
    identities: list[IdentityRead]
    consents: list[ConsentRead]


class MemberSummary(BaseModel):
    id: uuid.UUID
    phone: str = Field(description="Masked unless the key has the members:pii scope.")
    name: str | None
    tier_code: str | None
    home_store_id: uuid.UUID | None
    joined_at: datetime
    tags: list[str]
    status: str


class MemberList(BaseModel):
    items: list[MemberSummary]
    next_cursor: str | None


class MergeIn(Strict):
    source_member_id: uuid.UUID = Field(description="The duplicate member merged into this one.")


class FamilyIn(Strict):
    member_id: uuid.UUID = Field(description="Another member to join this member's family.")


PhoneChangeStatus = Literal["pending", "confirmed", "cancelled", "expired"]


class PhoneChangeIn(Strict):
    phone: Phone = Field(description="The new phone: the code goes to it by SMS.")
    idempotency_key: (
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{8,100}$")] | None
    ) = Field(None, description="A retry with the same key replays the first 202, sends nothing.")


class PhoneChangeRead(BaseModel):
    id: uuid.UUID
    status: PhoneChangeStatus
    phone: str = Field(description="The new phone, masked.")
    expires_at: datetime = Field(description="The code is refused after this.")
    attempts_left: int = Field(description="Wrong codes accepted before the change is cancelled.")
    message_id: uuid.UUID | None = Field(description="The code's message (GET /messages/{id}).")


class PhoneConfirmIn(Strict):
    code: Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")] = Field(
        description="The six-digit code sent to the new phone."
    )
