"""The webhook's configuration (the chain's, overridden field by field by a store's).

Every field has a default, so enabling never fails; until ``url`` is set (and the secret
``signing_secret``), each event fails with "not configured" and is retried by the outbox,
so nothing is lost while HQ finishes the set-up (see ``docs/plugins/webhook.md``).
"""

from __future__ import annotations

import re

import httpx
from pydantic import BaseModel, Field, ValidationInfo, field_validator

from nestpoint_webhook.destinations import (
    current_settings,
    host_refusal,
    in_allowed_networks,
    literal_address,
)

# ``member.joined``, ``points.*``, ``*``, ``delivery.status_changed``...
_PATTERN = re.compile(r"^(\*|[a-z0-9_]+(\.([a-z0-9_]+|\*))*)$")


def check_url(value: str, *, destination: bool = True) -> str:
    """A URL the plugin may post to, as far as can be told without resolving it: ``https``
    (``http`` only when the operator allows private networks, for a receiver inside them),
    a host, no user or password in it, and (``destination``) no refused IP literal or
    ``localhost``."""
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"not a URL: {exc}") from exc
    if url.scheme not in ("https", "http"):
        raise ValueError("the URL must start with https://")
    if not url.host:
        raise ValueError("the URL has no host")
    if url.userinfo:
        raise ValueError("put no user or password in the URL: the signature authenticates")
    if url.fragment:
        raise ValueError("the URL may not have a #fragment")
    if not destination:
        return value
    settings = current_settings()
    if url.scheme == "http" and not settings.allowed_networks:
        raise ValueError("the URL must start with https://")
    refused = host_refusal(url.host, settings)
    if refused is not None:
        raise ValueError(f"destination refused: {refused}")
    literal = literal_address(url.host)
    if url.scheme == "http" and literal and not in_allowed_networks(literal, settings):
        raise ValueError("plain http only to the operator's allowed networks: use https://")
    return value


class WebhookConfig(BaseModel):
    """Where the chain's events go, which ones, and how long a receiver may take."""

    url: str = Field(
        default="",
        max_length=2000,
        description="The receiver's URL (https://...); empty: not configured.",
    )
    events: list[str] = Field(
        default_factory=list,
        max_length=50,
        description=(
            "Event types to send, as patterns (`member.joined`, `points.*`, `*`); "
            "empty: every event."
        ),
    )
    timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=30,
        description=(
            "Seconds the receiver has to answer (DNS and connecting included); keep it "
            "under the host's event timeout (NESTPOINT_PLUGINS_EVENT_TIMEOUT_SECONDS, 10 s)."
        ),
    )
    replay_window_seconds: int = Field(
        default=300,
        ge=60,
        le=3600,
        description=(
            "How old a signature receivers should accept (the `tolerance` of "
            "`verify_signature`): published for them; each attempt is signed afresh."
        ),
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        # When sending (context ``{"sending": True}``) the destination is checked after
        # resolving the host instead, every address of it.
        sending = bool(info.context and info.context.get("sending"))
        return check_url(value, destination=not sending) if value else value

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if len(pattern) > 100 or not _PATTERN.match(pattern):
                raise ValueError(
                    f"{pattern!r} is not an event type pattern (e.g. member.joined, points.*)"
                )
        return value
