"""API and manifest shapes of the tenancy context (pydantic: every error names its field)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from nestpoint.schemas import Strict
from nestpoint.text import optional, required

Locale = Literal["zh-CN", "en"]
StoreKind = Literal["direct", "franchise"]
KeyKind = Literal["tenant", "store"]
STORE_KINDS = ("direct", "franchise")


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


def _sorted_kinds(kinds: list[str]) -> list[str]:
    return sorted(set(kinds))


def _direct_only() -> list[StoreKind]:
    return ["direct"]


# Store kinds whose keys see every member of the chain (the rest see their own members).
SharedWith = Annotated[
    list[StoreKind], Field(max_length=len(STORE_KINDS)), AfterValidator(_sorted_kinds)
]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
TimeZone = Annotated[
    str, StringConstraints(min_length=1, max_length=64), AfterValidator(_known_zone)
]
# Free text refuses NUL; a name needs a character that is not a space (nestpoint.text).
Name = Annotated[str, required(200)]
STORE_CODE = r"^[A-Za-z0-9_-]{1,32}$"  # the body's and the path's (tenancy/routes.py)
StoreCode = Annotated[str, StringConstraints(pattern=STORE_CODE)]
MAX_STORES = 5_000  # stores in one tenant manifest
StoreFormat = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
Region = Annotated[str, optional(100)]
Address = Annotated[str, optional(500)]
Scope = Annotated[str, StringConstraints(pattern=r"^[a-z_]+:[a-z_]+$")]


class TenantCreate(Strict):
    slug: Slug
    name: Name
    currency: Currency = "CNY"
    timezone: TimeZone = "Asia/Shanghai"
    locale: Locale = "zh-CN"
    members_shared_with: SharedWith = Field(
        default_factory=_direct_only,
        description="Store kinds whose keys see every member of the chain.",
    )


class TenantUpdate(Strict):
    name: Name | None = None
    currency: Currency | None = None
    timezone: TimeZone | None = None
    locale: Locale | None = None
    members_shared_with: SharedWith | None = None
    active: StrictBool | None = None


class TenantRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    slug: str
    name: str
    currency: str
    timezone: str
    locale: str
    members_shared_with: list[str]
    active: bool
    created_at: datetime
    updated_at: datetime


class TenantList(BaseModel):
    items: list[TenantRead]
    next_cursor: str | None


class StoreCreate(Strict):
    code: StoreCode
    name: Name
    kind: StoreKind = "direct"
    format: StoreFormat = "community"
    region: Region = ""
    address: Address = ""
    active: StrictBool = True


class StoreUpdate(Strict):
    name: Name | None = None
    kind: StoreKind | None = None
    format: StoreFormat | None = None
    region: Region | None = None
    address: Address | None = None
    active: StrictBool | None = None


class StoreRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    code: str
    name: str
    kind: str
    format: str
    region: str
    address: str
    active: bool
    created_at: datetime
    updated_at: datetime


class StoreList(BaseModel):
    items: list[StoreRead]
    next_cursor: str | None


class ApiKeyCreate(Strict):
    name: Name
    kind: KeyKind = "tenant"
    store_code: StoreCode | None = Field(
        default=None, description="Required for a store key: the store it is bound to."
    )
    scopes: list[Scope] | None = Field(
        default=None, description="Defaults to the kind's default scopes.", max_length=100
    )


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    kind: str
    store_id: uuid.UUID | None
    scopes: list[str]
    key_prefix: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The secret key. Shown once; only its hash is stored.")


class ApiKeyList(BaseModel):
    items: list[ApiKeyRead]
    next_cursor: str | None
