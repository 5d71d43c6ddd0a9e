"""The wecom plugin's configuration (the chain's, overridden field by field by a store's).

The application's secret is not here: it is the plugin secret ``corp_secret``, set by HQ
through ``PUT /api/v1/tenant/plugins/wecom/secrets/corp_secret``.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def check_base_url(value: str) -> str:
    """``https://`` (``http://`` only to a loopback address: a local fake), no trailing
    slash. The secret travels in the token request's query: never in clear text."""
    value = value.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return value
    raise ValueError("must be an https:// URL (http:// only to 127.0.0.1 or localhost)")


class WeComConfig(BaseModel):
    """Every field has a default, so the plugin loads before it is configured; it sends
    nothing (``not_configured``) until ``corp_id``, ``agent_id`` and the ``corp_secret``
    secret are set."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(
        "https://qyapi.weixin.qq.com", max_length=300, description="WeCom's API (or a fake)."
    )
    corp_id: str = Field(
        "", max_length=64, pattern=r"^[A-Za-z0-9_-]*$", description="企业ID (CorpID), ww…"
    )
    agent_id: int = Field(0, ge=0, le=2**31 - 1, description="The application's AgentId.")
    msgtype: Literal["text", "textcard"] = Field(
        "text", description="text: subject and body; textcard: a card linking to card_url."
    )
    card_url: str = Field(
        "",
        max_length=2048,
        validate_default=True,
        description="The card's link (textcard; required for it).",
    )
    card_button: str = Field("详情", max_length=4, description="The card's button text.")
    timeout_seconds: float = Field(5.0, gt=0, le=30, description="Per request to WeCom.")

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return check_base_url(value)

    @field_validator("card_url")
    @classmethod
    def _card_url(cls, value: str, info: ValidationInfo) -> str:
        if value and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http(s):// URL")
        if not value and info.data.get("msgtype") == "textcard":
            raise ValueError("a textcard needs a link")
        return value
