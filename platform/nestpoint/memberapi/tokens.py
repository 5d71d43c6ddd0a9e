"""Member tokens: their format, and resolving a presented one into a member actor.

A member token is ``npm_<tenant id, 32 hex>_<secret>`` (32 random bytes, base64url): like an
API key it carries its tenant, so the server sets the tenant context *before* looking the
token up, and the lookup runs under row-level security like every tenant query. Only the
SHA-256 of the whole token is stored (``member_tokens.token_hash``).

A token is resolved on every request, without a cache: a revoked token, an expired one, or
one whose member was merged away or erased stops working at once, on every instance. The
cost is one indexed read per request of the member API (the till's API keys are cached;
members' requests are far fewer and far less hurried).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select

from nestpoint.context import Actor, TenantContext, tenant_context
from nestpoint.db import Database, scoped_session, utcnow
from nestpoint.memberapi.models import MemberToken
from nestpoint.members.models import Member
from nestpoint.tenancy.models import Tenant

MEMBER_TOKEN_PREFIX = "npm_"  # noqa: S105 - a prefix, not a secret
_TENANT_HEX = 32
_DISPLAYED = 8


@dataclass(frozen=True, slots=True)
class ParsedToken:
    tenant_id: uuid.UUID
    token_hash: str


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def is_member_token(raw: str) -> bool:
    """Whether a presented credential is shaped as a member token (not an API key)."""
    return raw.startswith(MEMBER_TOKEN_PREFIX)


def new_token(tenant_id: uuid.UUID) -> str:
    return f"{MEMBER_TOKEN_PREFIX}{tenant_id.hex}_{secrets.token_urlsafe(32)}"


def display_prefix(raw: str) -> str:
    """What a person sees of a token: the kind and the first characters of the secret."""
    return MEMBER_TOKEN_PREFIX + raw[len(MEMBER_TOKEN_PREFIX) + _TENANT_HEX + 1 :][:_DISPLAYED]


def parse_token(raw: str) -> ParsedToken | None:
    """The tenant and hash of a presented token; ``None`` if it cannot be one of ours."""
    if not is_member_token(raw):
        return None
    tenant_hex, sep, secret = raw[len(MEMBER_TOKEN_PREFIX) :].partition("_")
    if not sep or len(tenant_hex) != _TENANT_HEX or len(secret) < 20:
        return None
    try:
        tenant_id = uuid.UUID(hex=tenant_hex)
    except ValueError:
        return None
    return ParsedToken(tenant_id, hash_token(raw))


def member_actor(member_id: uuid.UUID) -> Actor:
    """The actor of a request made with a member's token: no scope, so every guard of the
    staff API refuses it; the member API's guard accepts only this kind."""
    return Actor("member", member_id, frozenset(), f"member:{member_id}")


async def resolve(database: Database, raw: str) -> tuple[TenantContext, Actor] | None:
    """The tenant and actor of a member token, or ``None`` when it is malformed, unknown,
    revoked, expired, of an inactive chain, or of a member who is not active (merged away
    or erased)."""
    parsed = parse_token(raw)
    if parsed is None:
        return None
    with tenant_context(parsed.tenant_id):
        async with scoped_session(database) as session:
            member_id = await session.scalar(
                select(MemberToken.member_id)
                .join(
                    Member,
                    (Member.tenant_id == MemberToken.tenant_id)
                    & (Member.id == MemberToken.member_id),
                )
                .join(Tenant, Tenant.id == MemberToken.tenant_id)
                .where(
                    MemberToken.token_hash == parsed.token_hash,
                    MemberToken.revoked_at.is_(None),
                    MemberToken.expires_at > utcnow(),
                    Member.status == "active",
                    Tenant.active.is_(True),
                )
            )
    if member_id is None:
        return None
    return TenantContext(parsed.tenant_id), member_actor(member_id)
