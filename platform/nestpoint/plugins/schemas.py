"""API and manifest shapes of the plugin platform.

A configuration (the chain's or a store's) is a JSON object of at most 16 KiB and 32 levels
(``nestpoint.limits``); a manifest names at most ``MAX_PLUGINS`` plugins and
``MAX_STORE_SETTINGS`` store settings per plugin.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from nestpoint.limits import bounded_json
from nestpoint.schemas import Strict
from nestpoint.tenancy.schemas import StoreCode

Config = Annotated[dict[str, Any], AfterValidator(bounded_json)]
MAX_PLUGINS = 100
MAX_STORE_SETTINGS = 5_000


class ChainSettingUpdate(Strict):
    """HQ's setting of a plugin for the whole chain (omitted fields keep their value)."""

    enabled: bool | None = Field(
        default=None, description="On for every store (a store's own setting may turn it off)."
    )
    allow_store_opt_in: bool | None = Field(
        default=None, description="Store keys may enable and configure it for their store."
    )
    config: Config | None = Field(
        default=None,
        description="The chain's configuration (replaces the previous one); at most 16 KiB.",
    )


class StoreSettingUpdate(Strict):
    """A store's own setting of a plugin (omitted fields keep their value)."""

    enabled: bool | None = None
    config: Config | None = Field(
        default=None,
        description="Overrides the chain's configuration field by field; at most 16 KiB.",
    )


class StoreSettingRead(BaseModel):
    store_id: uuid.UUID
    store_code: str
    enabled: bool
    config: dict[str, Any]
    effective_config: dict[str, Any]


class PluginRead(BaseModel):
    id: str
    package: str
    version: str
    hooks: list[str]
    config_schema: dict[str, Any] | None = Field(description="JSON Schema of the config.")
    enabled: bool = Field(description="On chain-wide.")
    allow_store_opt_in: bool
    config: dict[str, Any]
    effective_config: dict[str, Any]
    stores: list[StoreSettingRead]
    enabled_here: bool = Field(
        description="For a store key: enabled for its store. For HQ: enabled anywhere."
    )
    recent_failures: int = Field(description="Failures recorded in the last 24 hours.")
    last_failure_at: datetime | None


class PluginList(BaseModel):
    items: list[PluginRead]


class FailureRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    plugin_id: str
    hook: str
    store_id: uuid.UUID | None
    event_id: uuid.UUID | None
    event_type: str | None
    attempt: int
    kind: str
    error: str
    final: bool
    occurred_at: datetime


class FailureList(BaseModel):
    items: list[FailureRead]
    next_cursor: str | None


class StorePluginManifest(Strict):
    code: StoreCode
    enabled: bool = True
    config: Config = {}


class PluginManifest(Strict):
    """A plugin's setting in a tenant manifest (``[[plugins]]``)."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,100}$")
    enabled: bool = False
    allow_store_opt_in: bool = False
    config: Config = {}
    stores: list[StorePluginManifest] = Field([], max_length=MAX_STORE_SETTINGS)


class SecretRead(BaseModel):
    """A credential the plugin declares: whether the chain has set it, never its value."""

    name: str
    description: str
    set: bool
    updated_at: datetime | None = None
    updated_by: str | None = None


class SecretList(BaseModel):
    items: list[SecretRead]


class SecretWrite(Strict):
    """A credential's new value: stored encrypted, never answered back."""

    value: str = Field(min_length=1, max_length=4096, description="The value (write-only).")
