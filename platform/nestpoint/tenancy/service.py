"""Rules of the tenancy context: tenants, stores and API keys. No HTTP here; never commits."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.audit.service import record
from nestpoint.billing import service as billing
from nestpoint.cache import BoundedCache
from nestpoint.context import Actor, current_actor, current_tenant, require_tenant, tenant_context
from nestpoint.db import utcnow
from nestpoint.db.pagination import Page, paginate
from nestpoint.db.session import rebind_tenant
from nestpoint.errors import Conflict, FieldError, Forbidden, Invalid, NotFound
from nestpoint.events.service import emit
from nestpoint.tenancy import keys
from nestpoint.tenancy.auth import forget_principals
from nestpoint.tenancy.models import ApiKey, PlatformKey, Store, Tenant
from nestpoint.tenancy.schemas import (
    ApiKeyCreate,
    StoreCreate,
    StoreUpdate,
    TenantCreate,
    TenantUpdate,
)

# ---------------------------------------------------------------------------- tenants


async def create_tenant(session: AsyncSession, data: TenantCreate) -> Tenant:
    """Platform operation: register a chain. Its first audit entry and event go with it."""
    if await session.scalar(select(Tenant.id).where(Tenant.slug == data.slug)):
        raise Conflict(
            f"a tenant with slug {data.slug!r} exists", errors=[FieldError("slug", "already taken")]
        )
    tenant = Tenant(id=uuid.uuid4(), **data.model_dump())
    session.add(tenant)
    await session.flush()
    with tenant_context(tenant.id):
        await rebind_tenant(session)
        record(session, "tenant.created", "tenant", tenant.id, data.model_dump())
        emit(session, "tenant.created", "tenant", tenant.id, {"slug": tenant.slug})
        await session.flush()
    await rebind_tenant(session)
    return tenant


async def get_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> Tenant:
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("no such tenant")
    return tenant


async def get_tenant_by_slug(session: AsyncSession, slug: str) -> Tenant | None:
    return await session.scalar(select(Tenant).where(Tenant.slug == slug))


async def list_tenants(session: AsyncSession, *, cursor: str | None, limit: int) -> Page[Tenant]:
    return await paginate(session, select(Tenant), (Tenant.slug,), cursor=cursor, limit=limit)


def _apply_changes(obj: Any, changes: dict[str, Any]) -> dict[str, Any]:
    """Set changed attributes; return ``{field: [old, new]}`` for those that really changed."""
    diff: dict[str, Any] = {}
    for name, value in changes.items():
        old = getattr(obj, name)
        if old != value:
            diff[name] = [old, value]
            setattr(obj, name, value)
    return diff


async def update_tenant(
    session: AsyncSession, tenant_id: uuid.UUID, data: TenantUpdate
) -> tuple[Tenant, dict[str, Any]]:
    tenant = await get_tenant(session, tenant_id)
    diff = _apply_changes(tenant, data.model_dump(exclude_none=True))
    if "active" in diff:
        forget_principals()  # a deactivated tenant's keys stop working now
    if "members_shared_with" in diff:
        _sharing.clear()  # store keys' reach follows now in this process
    if diff:
        with tenant_context(tenant.id):
            await rebind_tenant(session)
            record(session, "tenant.updated", "tenant", tenant.id, diff)
            emit(session, "tenant.updated", "tenant", tenant.id, {"changes": diff})
            await session.flush()
        await rebind_tenant(session)
    return tenant, diff


# ---------------------------------------------------------------------------- stores


def _store_query() -> Select[Store]:
    """Stores visible to the caller: all the tenant's, or only its own for a store key."""
    stmt = select(Store)
    ctx = current_tenant()
    if ctx is not None and ctx.store_id is not None:
        stmt = stmt.where(Store.id == ctx.store_id)
    return stmt


async def get_store(session: AsyncSession, code: str) -> Store:
    store = await session.scalar(_store_query().where(Store.code == code))
    if store is None:
        raise NotFound(f"no store with code {code!r}")
    return store


async def list_stores(session: AsyncSession, *, cursor: str | None, limit: int) -> Page[Store]:
    return await paginate(session, _store_query(), (Store.code,), cursor=cursor, limit=limit)


# The tenant's active stores, cached per process for ``config_cache_seconds`` so the till's
# check costs no round trip. A store missing from the set is looked up again once before it
# is refused (fails closed, and a store activated elsewhere trades at once); creating or
# updating a store here clears the cache, other processes follow within the TTL.
_trading: BoundedCache[uuid.UUID, frozenset[uuid.UUID]] = BoundedCache(
    "tenancy.trading_stores", max_size=1_024
)


def forget_trading_stores() -> None:
    _trading.clear()
    _sharing.clear()


# Whether the chain shares all its members with a store (its kind is in
# ``tenants.members_shared_with``): the reach of every store key's request, so it is cached
# like the trading stores. Changing a store or the tenant here clears it at once; other
# processes follow within the TTL.
_sharing: BoundedCache[tuple[uuid.UUID, uuid.UUID], bool] = BoundedCache(
    "tenancy.store_sharing", max_size=10_000
)


async def store_shares_members(session: AsyncSession, store_id: uuid.UUID) -> bool:
    key = (require_tenant().tenant_id, store_id)
    cached = _sharing.get(key)
    if cached is not None:
        return cached
    row = (
        await session.execute(
            select(Store.kind, Tenant.members_shared_with)
            .join(Tenant, Tenant.id == Store.tenant_id)
            .where(Store.id == store_id)
        )
    ).one_or_none()
    return _sharing.put(key, row is not None and row.kind in (row.members_shared_with or []))


# The tenant's stores (code -> id), cached per process for ``config_cache_seconds``: a
# chain has at most hundreds of stores, and the till names its store on every order. A
# code missing from the cache may be new: callers reload once (``refresh``) before failing.
_store_codes: BoundedCache[uuid.UUID, dict[str, uuid.UUID]] = BoundedCache(
    "tenancy.store_codes", max_size=1_024
)


async def store_codes(session: AsyncSession, *, refresh: bool = False) -> dict[str, uuid.UUID]:
    tenant_id = require_tenant().tenant_id
    cached = None if refresh else _store_codes.get(tenant_id)
    if cached is not None:
        return cached
    rows = (await session.execute(select(Store.code, Store.id))).all()
    return _store_codes.put(tenant_id, {row.code: row.id for row in rows})


async def _trading_store_ids(session: AsyncSession, *, refresh: bool) -> frozenset[uuid.UUID]:
    tenant_id = require_tenant().tenant_id
    cached = None if refresh else _trading.get(tenant_id)
    if cached is not None:
        return cached
    ids = frozenset((await session.scalars(select(Store.id).where(Store.active.is_(True)))).all())
    return _trading.put(tenant_id, ids)


async def ensure_store_trading(
    session: AsyncSession, store_id: uuid.UUID, field: str = "store_code"
) -> None:
    """New business (orders, holds, enrolments) happens only at an active store.

    An inactive store stays readable. Its own key is refused with 403 (the key may not
    trade); any other key naming it with 422 (the request names a store that does not
    trade). Both name ``field``.
    """
    for refresh in (False, True):
        if store_id in await _trading_store_ids(session, refresh=refresh):
            return
    code = await session.scalar(select(Store.code).where(Store.id == store_id))
    message = f"store {code!r} is inactive: no new orders, holds or enrolments there"
    if require_tenant().store_id == store_id:
        raise Forbidden(f"{field}: {message}", errors=[FieldError(field, message)])
    raise Invalid.field(field, message)


async def create_store(session: AsyncSession, data: StoreCreate) -> Store:
    ctx = require_tenant()
    if ctx.store_id is not None:
        raise NotFound("stores are created by HQ")
    if await session.scalar(select(Store.id).where(Store.code == data.code)):
        raise Conflict(
            f"a store with code {data.code!r} exists", errors=[FieldError("code", "already taken")]
        )
    if data.active:
        await billing.ensure_store_room(session)  # the plan's store limit (docs/billing.md)
    store = Store(**data.model_dump())
    session.add(store)
    forget_trading_stores()
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent create of the same code
        raise Conflict(
            f"a store with code {data.code!r} exists", errors=[FieldError("code", "already taken")]
        ) from exc
    record(session, "store.created", "store", store.id, data.model_dump())
    emit(session, "store.created", "store", store.id, {"code": store.code}, store_id=store.id)
    return store


async def update_store(
    session: AsyncSession, code: str, data: StoreUpdate
) -> tuple[Store, dict[str, Any]]:
    store = await get_store(session, code)
    if data.active and not store.active:  # a reactivated store is a store more
        await billing.ensure_store_room(session, field="active")
    diff = _apply_changes(store, data.model_dump(exclude_none=True))
    if "active" in diff or "kind" in diff:
        forget_trading_stores()  # a deactivated store stops trading now in this process
    if diff:
        record(session, "store.updated", "store", store.id, diff)
        emit(
            session,
            "store.updated",
            "store",
            store.id,
            {"code": store.code, "changes": diff},
            store_id=store.id,
        )
    return store, diff


# ---------------------------------------------------------------------------- API keys


async def create_api_key(
    session: AsyncSession, data: ApiKeyCreate, created_by: str
) -> tuple[ApiKey, str]:
    """Create an HQ or store key; returns the row and the secret (shown once)."""
    ctx = require_tenant()
    errors: list[FieldError] = []
    store_id: uuid.UUID | None = None
    if data.kind == "store":
        if not data.store_code:
            errors.append(FieldError("store_code", "required for a store key"))
        else:
            store = await session.scalar(select(Store).where(Store.code == data.store_code))
            if store is None:
                errors.append(FieldError("store_code", f"no store with code {data.store_code!r}"))
            else:
                store_id = store.id
    elif data.store_code:
        errors.append(FieldError("store_code", "only a store key is bound to a store"))
    scopes = sorted(set(data.scopes) if data.scopes is not None else keys.DEFAULT_SCOPES[data.kind])
    not_allowed = sorted(set(scopes) - keys.ALLOWED_SCOPES[data.kind])
    if not_allowed:
        errors.append(FieldError("scopes", f"not allowed for a {data.kind} key: {not_allowed}"))
    if errors:
        raise Invalid(_joined(errors), errors=errors)
    refused = _grant_errors(current_actor(), data, store_id, scopes)
    if refused:
        raise Forbidden(_joined(refused), errors=refused)

    secret = keys.new_tenant_key(ctx.tenant_id)
    api_key = ApiKey(
        name=data.name,
        kind=data.kind,
        store_id=store_id,
        scopes=scopes,
        key_prefix=keys.display_prefix(secret),
        key_hash=keys.hash_key(secret),
        created_by=created_by,
    )
    session.add(api_key)
    await session.flush()
    record(
        session,
        "api_key.created",
        "api_key",
        api_key.id,
        {"name": data.name, "kind": data.kind, "store_id": str(store_id or ""), "scopes": scopes},
    )
    emit(session, "api_key.created", "api_key", api_key.id, {"kind": data.kind})
    return api_key, secret


def _joined(errors: list[FieldError]) -> str:
    return "; ".join(f"{e.field}: {e.message}" for e in errors)


def _grant_errors(
    creator: Actor, data: ApiKeyCreate, store_id: uuid.UUID | None, scopes: list[str]
) -> list[FieldError]:
    """Why ``creator`` may not mint this key: a key grants only what it holds itself.

    The platform and the system (manifests, the demo) grant anything a kind allows. An HQ key
    grants only scopes it holds. A store key could mint only keys of its own store with its
    own scopes (the route refuses store keys before this: no store key holds ``keys:write``).
    """
    if creator.kind in ("platform", "system"):
        return []
    if creator.kind not in ("tenant", "store"):
        return [FieldError("kind", f"a {creator.kind} key cannot create API keys")]
    errors: list[FieldError] = []
    if creator.kind == "store":
        if data.kind != "store":
            errors.append(FieldError("kind", "a store key cannot create HQ keys"))
        elif store_id != require_tenant().store_id:
            errors.append(
                FieldError("store_code", "a store key creates keys of its own store only")
            )
    if data.scopes is None:
        missing = sorted(set(scopes) - creator.scopes)
        if missing:
            errors.append(
                FieldError(
                    "scopes",
                    f"the default scopes of a {data.kind} key include {missing}, which this key"
                    " does not hold: list the scopes to grant",
                )
            )
    else:
        errors.extend(
            FieldError(f"scopes.{i}", f"{scope!r} is not held by this key, so it cannot grant it")
            for i, scope in enumerate(data.scopes)
            if not creator.has(scope)
        )
    return errors


async def create_api_key_for_tenant(
    session: AsyncSession, tenant_id: uuid.UUID, data: ApiKeyCreate, created_by: str
) -> tuple[ApiKey, str]:
    """Platform operation: a key for a tenant, e.g. its first HQ key."""
    await get_tenant(session, tenant_id)
    with tenant_context(tenant_id):
        await rebind_tenant(session)
        api_key, secret = await create_api_key(session, data, created_by)
        await session.flush()
    await rebind_tenant(session)
    return api_key, secret


async def list_api_keys(session: AsyncSession, *, cursor: str | None, limit: int) -> Page[ApiKey]:
    return await paginate(session, select(ApiKey), (ApiKey.id,), cursor=cursor, limit=limit)


async def revoke_api_key(session: AsyncSession, key_id: uuid.UUID) -> ApiKey:
    api_key = await session.scalar(select(ApiKey).where(ApiKey.id == key_id))
    if api_key is None:
        raise NotFound("no such API key")
    stronger = sorted(set(api_key.scopes) - _holds(current_actor()))
    if stronger:  # else a key holding only keys:write could switch off an HQ's keys
        raise Forbidden(
            f"key_id: the key holds scopes this key does not ({stronger})",
            errors=[FieldError("key_id", "a key revokes only keys holding no more than it does")],
        )
    if api_key.revoked_at is None:
        forget_principals()
        api_key.revoked_at = utcnow()
        record(session, "api_key.revoked", "api_key", api_key.id, {})
        emit(session, "api_key.revoked", "api_key", api_key.id, {})
    return api_key


def _holds(actor: Actor) -> set[str]:
    """The scopes ``actor`` may grant or take away: all for the platform and the system."""
    if actor.kind in ("platform", "system"):
        return set(keys.TENANT_SCOPES)
    return set(actor.scopes)


async def create_platform_key(session: AsyncSession, name: str) -> tuple[PlatformKey, str]:
    secret = keys.new_platform_key()
    row = PlatformKey(
        name=name, key_prefix=keys.display_prefix(secret), key_hash=keys.hash_key(secret)
    )
    session.add(row)
    await session.flush()
    return row, secret


async def selling_store(
    session: AsyncSession, code: str | None, *, required: bool, doing: str
) -> uuid.UUID | None:
    """The store a sale or a top-up is booked at: a store key's own (it may name only that
    one: 422 on ``store_code``), or the one an HQ key names (without one: 422 when
    ``required``, else none, a sale in the mini-program). The store must trade."""
    ctx = require_tenant()
    if ctx.store_id is not None:
        if code is not None:
            own = next((c for c, i in (await store_codes(session)).items() if i == ctx.store_id),
                       None)  # fmt: skip
            if code != own:
                raise Invalid.field("store_code", f"a store key {doing} at its own store")
        await ensure_store_trading(session, ctx.store_id)
        return ctx.store_id
    if code is None:
        if required:
            raise Invalid.field("store_code", "required with an HQ key")
        return None
    for refresh in (False, True):
        codes = await store_codes(session, refresh=refresh)
        if code in codes:
            await ensure_store_trading(session, codes[code])
            return codes[code]
    raise Invalid.field("store_code", f"no store with code {code!r}")
