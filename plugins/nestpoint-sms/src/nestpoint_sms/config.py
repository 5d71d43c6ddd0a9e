"""The sms plugin's configuration (the chain's, overridden field by field by a store's).

Credentials are not here: the access key secret is a plugin secret (``access_key_secret``),
set by HQ through ``PUT /api/v1/tenant/plugins/sms/secrets/access_key_secret``.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

TemplateCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
TemplateKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")]

# One limit of the ``limits`` notation: "1/minute", "5/hour", "10/day", "3/10 minutes".
_LIMIT = re.compile(r"^\d+\s*(/|per)\s*(\d+\s*)?(second|minute|hour|day|month|year)s?$")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def check_base_url(value: str) -> str:
    """``https://`` (``http://`` only to a loopback address: a local fake), no trailing
    slash; empty means "not configured". Credentials never travel in clear text."""
    value = value.strip().rstrip("/")
    if not value:
        return value
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return value
    raise ValueError("must be an https:// URL (http:// only to 127.0.0.1 or localhost)")


class SmsConfig(BaseModel):
    """Every field has a default, so the plugin loads before it is configured; it sends
    nothing (``not_configured``) until ``base_url``, ``access_key_id``, ``sign_name``, a
    template and the ``access_key_secret`` secret are set."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(
        "", max_length=300, description="The gateway's address, e.g. https://sms.example.com."
    )
    access_key_id: str = Field(
        "",
        max_length=128,
        pattern=r"^[A-Za-z0-9_.-]*$",
        description="The access key id (AccessKeyId); its secret is the plugin secret.",
    )
    sign_name: str = Field(
        "", max_length=32, description="签名: the sign name the gateway approved, e.g. 贝贝母婴."
    )
    templates: dict[TemplateKey, TemplateCode] = Field(
        default_factory=dict,
        max_length=100,
        description=(
            "Message template key or purpose -> the gateway's template code "
            '({"points_expiring": "SMS_0001"}); the template key is looked up first.'
        ),
    )
    default_template: TemplateCode | None = Field(
        None, description="The template code for a message no entry of `templates` names."
    )
    rate_limits: str = Field(
        "1/minute;5/hour;10/day",
        max_length=200,
        description="Per phone number, for the chain, shared by every worker; empty: none.",
    )
    timeout_seconds: float = Field(5.0, gt=0, le=30, description="Per request to the gateway.")
    callback_max_age_seconds: int = Field(
        300, ge=30, le=3600, description="A delivery receipt's timestamp must be this recent."
    )

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return check_base_url(value)

    @field_validator("rate_limits")
    @classmethod
    def _rate_limits(cls, value: str) -> str:
        items = [item.strip() for item in value.split(";") if item.strip()]
        for item in items:
            if not _LIMIT.match(item):
                raise ValueError(f"{item!r} is not a limit like 1/minute or 10/day")
        return ";".join(items)

    def template_code(self, template: str, purpose: str) -> str | None:
        """The gateway's template code for a message: its template key's, its purpose's,
        or the default (``None``: no template for it)."""
        return self.templates.get(template) or self.templates.get(purpose) or self.default_template
