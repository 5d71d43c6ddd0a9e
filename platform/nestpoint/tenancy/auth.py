"""Resolving a presented API key (or a member token) into the request's tenant, store and
actor."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update

from nestpoint.cache import BoundedCache
from nestpoint.context import Actor, TenantContext, tenant_context
from nestpoint.db import Database, scoped_session, utcnow
from nestpoint.memberapi import tokens as member_tokens
from nestpoint.tenancy.keys import ParsedKey, parse_key
from nestpoint.tenancy.models import ApiKey, PlatformKey, Tenant

# last_used_at is recorded at most this often per key, so authentication stays read-only on
# the hot path and a busy till does not serialise on one row.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: TenantContext | None
    actor: Actor


# Resolved keys are cached per process for ``config_cache_seconds`` (5 s), so a busy till
# authenticates without a database round trip. Revoking a key or deactivating a tenant
# clears this process's cache at once; other processes follow within the TTL.
_principals: BoundedCache[str, Principal] = BoundedCache("tenancy.api_keys", max_size=10_000)


def forget_principals() -> None:
    _principals.clear()


async def authenticate(database: Database, raw_key: str) -> Principal | None:
    """The principal for a key, or ``None`` when the key is unknown, revoked or inactive.

    A member token (``npm_...``, the member API) resolves to a ``member`` actor, uncached
    (``nestpoint.memberapi.tokens``)."""
    if member_tokens.is_member_token(raw_key):
        found = await member_tokens.resolve(database, raw_key)
        return None if found is None else Principal(*found)
    parsed = parse_key(raw_key)
    if parsed is None:
        return None
    cached = _principals.get(parsed.key_hash)
    if cached is not None:
        return cached
    principal = await _resolve(database, parsed)
    if principal is not None:  # an unknown key is looked up again: it may be new
        _principals.put(parsed.key_hash, principal)
    return principal


async def _resolve(database: Database, parsed: ParsedKey) -> Principal | None:
    now = utcnow()
    if parsed.kind == "platform":
        async with scoped_session(database) as session:
            row = await session.scalar(
                select(PlatformKey).where(
                    PlatformKey.key_hash == parsed.key_hash, PlatformKey.revoked_at.is_(None)
                )
            )
            if row is None:
                return None
            if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
                row.last_used_at = now
            return Principal(None, Actor("platform", row.id, frozenset({"platform"}), row.name))

    with tenant_context(parsed.tenant_id):
        async with scoped_session(database) as session:
            found = (
                await session.execute(
                    select(
                        ApiKey.id,
                        ApiKey.kind,
                        ApiKey.store_id,
                        ApiKey.scopes,
                        ApiKey.name,
                        ApiKey.last_used_at,
                    )
                    .join(Tenant, Tenant.id == ApiKey.tenant_id)
                    .where(
                        ApiKey.key_hash == parsed.key_hash,
                        ApiKey.revoked_at.is_(None),
                        Tenant.active.is_(True),
                    )
                )
            ).one_or_none()
            if found is None:
                return None
            if found.last_used_at is None or now - found.last_used_at > LAST_USED_RESOLUTION:
                await session.execute(
                    update(ApiKey).where(ApiKey.id == found.id).values(last_used_at=now)
                )
    assert parsed.tenant_id is not None
    return Principal(
        TenantContext(parsed.tenant_id, found.store_id),
        Actor(found.kind, found.id, frozenset(found.scopes), found.name),
    )
