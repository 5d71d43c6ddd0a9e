"""API key format, generation and hashing.

Formats (the secret is 32 random bytes, base64url):

* platform key: ``npp_<secret>``
* tenant or store key: ``npk_<tenant id, 32 hex>_<secret>``

The tenant id inside a tenant key lets the server set the tenant context *before* looking the
key up, so the lookup itself runs under row-level security like every other tenant query.
Only the SHA-256 of the whole key is stored, with a short prefix for people to recognise it.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

PLATFORM_PREFIX = "npp_"
TENANT_PREFIX = "npk_"
TENANT_HEX_LENGTH = 32
DISPLAYED_SECRET_CHARS = 8

# Scopes a key may carry. HQ keys may hold all; store keys only the till's.
TENANT_SCOPES = frozenset(
    {
        "tenant:read",
        "stores:read",
        "stores:write",
        "keys:read",
        "keys:write",
        "events:read",
        "audit:read",
        "members:read",
        "members:write",
        "members:pii",
        "orders:read",
        "orders:write",
        "points:hold",
        "points:write",
        "loyalty:read",
        "loyalty:write",
        "plugins:read",
        "plugins:write",
        "benefits:read",
        "benefits:use",
        "benefits:write",
        "messages:read",
        "messages:write",
        "exports:read",
        "exports:write",
        "imports:read",
        "imports:write",
        "privacy:read",
        "privacy:write",
        "segments:read",
        "segments:write",
        "coupons:read",
        "coupons:use",
        "coupons:write",
        "referrals:read",
        "referrals:use",
        "referrals:write",
        "campaigns:read",
        "campaigns:write",
        "wallet:read",
        "wallet:topup",
        "wallet:write",
        "payments:read",
        "payments:write",
        "membership:read",
        "membership:sell",
        "membership:write",
        "member_tokens:write",
        "analytics:read",
        "console:read",
        "console:write",
        "settlement:read",
        "settlement:write",
    }
)
STORE_SCOPES = frozenset(
    {
        "tenant:read",
        "stores:read",
        "stores:write",
        "members:read",
        "members:write",
        "members:pii",
        "orders:read",
        "orders:write",
        "points:hold",
        "loyalty:read",
        "plugins:read",
        "plugins:write",
        "benefits:read",
        "benefits:use",
        "coupons:read",
        "coupons:use",
        "referrals:use",
        "wallet:read",
        "wallet:topup",
        "membership:read",
        "membership:sell",
        "analytics:read",
        "settlement:read",
    }
)
DEFAULT_SCOPES = {
    "tenant": TENANT_SCOPES,
    "store": frozenset(
        {
            "tenant:read",
            "stores:read",
            "members:read",
            "members:write",
            "orders:read",
            "orders:write",
            "points:hold",
            "loyalty:read",
            "benefits:read",
            "benefits:use",
            "coupons:read",
            "coupons:use",
            "referrals:use",
            "wallet:read",
            "wallet:topup",
            "membership:read",
            "membership:sell",
        }
    ),
}
ALLOWED_SCOPES = {"tenant": TENANT_SCOPES, "store": STORE_SCOPES}


@dataclass(frozen=True, slots=True)
class ParsedKey:
    kind: str  # "platform" or "tenant" (tenant and store keys share a format)
    tenant_id: uuid.UUID | None
    key_hash: str


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def secret_of(raw: str) -> str:
    """The random part of a key. The secret is base64url, so it may itself contain ``_``:
    split after the fixed-length kind and tenant parts, never at the last ``_``."""
    if raw.startswith(TENANT_PREFIX):
        return raw[len(TENANT_PREFIX) + TENANT_HEX_LENGTH + 1 :]
    return raw[len(PLATFORM_PREFIX) :]


def display_prefix(raw: str) -> str:
    """What a person sees of a key after creation: its kind and the secret's first chars."""
    return raw[: len(TENANT_PREFIX)] + secret_of(raw)[:DISPLAYED_SECRET_CHARS]


def new_platform_key() -> str:
    return PLATFORM_PREFIX + secrets.token_urlsafe(32)


def new_tenant_key(tenant_id: uuid.UUID) -> str:
    return f"{TENANT_PREFIX}{tenant_id.hex}_{secrets.token_urlsafe(32)}"


def parse_key(raw: str) -> ParsedKey | None:
    """Split a presented key into its kind and tenant; ``None`` if it cannot be ours."""
    if raw.startswith(PLATFORM_PREFIX) and len(raw) > 20:
        return ParsedKey("platform", None, hash_key(raw))
    if raw.startswith(TENANT_PREFIX):
        tenant_hex, sep, secret = raw[len(TENANT_PREFIX) :].partition("_")
        if not sep or len(secret) < 20:
            return None
        try:
            tenant_id = uuid.UUID(hex=tenant_hex)
        except ValueError:
            return None
        return ParsedKey("tenant", tenant_id, hash_key(raw))
    return None
