"""The e-mail connector's configuration (the chain's, overridden field by field by a store's).

Every field has a default, so enabling the plugin never fails; until ``host`` and
``from_address`` are set the connector answers "not configured" (not accepted, no retry:
the message falls back to the member's next channel at once). The SMTP password is not
here: it is the write-only secret ``password`` (``PUT .../secrets/password``), since every
``plugins:read`` key can read the configuration.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from nestpoint_email.address import normalise_address

Security = Literal["none", "starttls", "tls"]

# The port each security mode listens on by convention (RFC 8314 and RFC 6409).
DEFAULT_PORTS: dict[str, int] = {"none": 25, "starttls": 587, "tls": 465}

# A host name or an IP literal: letters, digits, dots, hyphens, colons (IPv6), no spaces.
_HOST = re.compile(r"^[A-Za-z0-9.:\-\[\]]{1,253}$")


class EmailConfig(BaseModel):
    """How the chain's mail is sent: its SMTP relay (a provider's or its own) and sender."""

    host: str = Field(
        default="",
        max_length=253,
        description="SMTP server host name (e.g. smtp.exmail.qq.com); empty: not configured.",
    )
    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="SMTP port; empty: the security mode's usual one (25, 587 or 465).",
    )
    security: Security = Field(
        default="starttls",
        description=(
            "`starttls` (upgrade a plain connection, required), `tls` (TLS from the first "
            "byte, port 465) or `none` (plain SMTP: only for a relay on a trusted network; "
            "a password would travel in clear)."
        ),
    )
    username: str = Field(
        default="",
        max_length=256,
        description="SMTP login; empty: no authentication. The password is the secret.",
    )
    from_address: str = Field(
        default="",
        max_length=254,
        description="The sender's address (From and envelope sender); empty: not configured.",
    )
    from_name: str = Field(
        default="",
        max_length=100,
        description="The sender's display name (e.g. 贝贝母婴 Bloom), encoded as needed.",
    )
    timeout: float = Field(
        default=15.0,
        gt=0,
        le=60,
        description="Seconds allowed for each step of the SMTP conversation.",
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        value = value.strip()
        if value and not _HOST.match(value):
            raise ValueError("a host name or IP address, without scheme, port or spaces")
        return value

    @field_validator("from_address")
    @classmethod
    def _from_address(cls, value: str) -> str:
        value = value.strip()
        if value and normalise_address(value) is None:
            raise ValueError("not an e-mail address")
        return value

    @field_validator("from_name")
    @classmethod
    def _from_name(cls, value: str) -> str:
        if any(ch in value for ch in "\r\n\0"):
            raise ValueError("a single line of text")
        return value.strip()

    @property
    def effective_port(self) -> int:
        return self.port or DEFAULT_PORTS[self.security]

    @property
    def configured(self) -> bool:
        return bool(self.host and self.from_address)
