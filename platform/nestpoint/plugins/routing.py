"""Mounting plugins' routes under ``/api/v1/plugins/<plugin-id>/``, gated by enablement.

A request reaches a plugin's route only when the plugin is enabled for the caller: for a
store key, for its store; for an HQ key, for the chain or any of its stores. Otherwise the
answer is 404, as if the route did not exist (other stores and tenants learn nothing). The
route's handlers may take ``plugin: PluginContext`` (tenant, store and merged config).

Public routes (``RouteRegistry.add_public``) are mounted under
``/public/<tenant-slug>/<plugin-id>/`` and take no key: the chain is found by its slug and
must be active with the plugin enabled somewhere (else 404); the request runs in the
chain's tenant context (``plugin.store_id`` is ``None``, ``plugin.config`` the chain's);
the middleware counts it against the per-client-address limit (``api/ratelimit.py``).

Member routes (``RouteRegistry.add_member``) are mounted under
``/api/v1/me/plugins/<plugin-id>/``: the middleware lets a member token (and only there)
through and counts it against the member's limit; ``member_only`` refuses an API key (403);
the plugin must be enabled for the chain or any of its stores (else 404), as for public
routes, since a member belongs to the chain rather than to a store. The request runs in the
member's chain (``plugin.store_id`` is ``None``, ``plugin.config`` the chain's).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import uuid
from typing import Any

from litestar import Request, Router
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.handlers import HTTPRouteHandler
from litestar.handlers.base import BaseRouteHandler
from sqlalchemy import select

from nestpoint.api.deps import member_only
from nestpoint.api.problems import problems
from nestpoint.api.ratelimit import PUBLIC_PATH_PREFIX
from nestpoint.cache import BoundedCache
from nestpoint.context import (
    Actor,
    TenantContext,
    current_actor,
    current_tenant,
    set_request_context,
)
from nestpoint.db import scoped_session
from nestpoint.errors import NotFound
from nestpoint.plugins.manager import PluginHost
from nestpoint.plugins.types import PluginContext
from nestpoint.tenancy.models import Tenant

PLUGIN_ROUTE_SCOPE_NOTE = "Plugin routes answer 404 where the plugin is not enabled."


async def _context_for(host: PluginHost, plugin_id: str) -> PluginContext:
    ctx = current_tenant()
    if ctx is None or current_actor().kind not in ("tenant", "store"):
        raise NotFound("no such route")
    enabled = await host.enabled_plugins(ctx.tenant_id, ctx.store_id, anywhere=ctx.store_id is None)
    if plugin_id not in enabled:
        raise NotFound("no such route")
    return PluginContext(plugin_id, ctx.tenant_id, ctx.store_id, enabled[plugin_id])


def _document_not_found(handlers: list[Any]) -> None:
    """Every plugin route may answer 404 (not enabled here), and one that takes a body 422
    (a body or a rule refused): say so in the OpenAPI schema."""
    for handler in handlers:
        if isinstance(handler, HTTPRouteHandler):
            takes_body = "data" in inspect.signature(handler.fn).parameters
            statuses = (404, 422) if takes_body else (404,)
            handler.responses = {**problems(*statuses), **(handler.responses or {})}


def plugin_router(host: PluginHost, plugin_id: str, handlers: list[Any]) -> Router:
    _document_not_found(handlers)

    async def enabled_guard(
        connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
    ) -> None:
        connection.state["nestpoint_plugin"] = await _context_for(host, plugin_id)

    async def provide_plugin(request: Request[Any, Any, Any]) -> PluginContext:
        context = request.state.get("nestpoint_plugin")
        if isinstance(context, PluginContext):
            return context
        return await _context_for(host, plugin_id)

    return Router(
        path=f"/plugins/{plugin_id}",
        route_handlers=handlers,
        guards=[enabled_guard],
        dependencies={"plugin": Provide(provide_plugin)},
        tags=[f"plugin: {plugin_id}"],
    )


def plugin_routers(host: PluginHost) -> list[Router]:
    """One Litestar router per loaded plugin with routes, at ``/plugins/<plugin-id>``."""
    return [
        plugin_router(host, pid, host.contributions[pid].routes)
        for pid in sorted(host.loaded)
        if host.contributions[pid].routes
    ]


# ---------------------------------------------------------------------------- public routes

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# Active tenants by slug, for the public routes (a miss is looked up again: it may be new;
# a deactivated chain stops answering within the cache's TTL).
_public_tenants: BoundedCache[str, uuid.UUID] = BoundedCache(
    "plugins.public_tenants", max_size=10_000
)
PUBLIC_429 = (
    "Over the rate limit of this client address on the public routes "
    "(`NESTPOINT_PUBLIC_RATE_LIMIT`): retry after `Retry-After` seconds."
)


def public_path(tenant_slug: str, plugin_id: str, path: str = "") -> str:
    """Where a plugin's public route ``path`` answers for a chain."""
    return f"{PUBLIC_PATH_PREFIX}{tenant_slug}/{plugin_id}{path}"


async def public_tenant(slug: str) -> uuid.UUID | None:
    """The id of the active tenant with this slug, or ``None``."""
    if not _SLUG.match(slug):
        return None
    found = _public_tenants.get(slug)
    if found is not None:
        return found
    async with scoped_session() as session:  # tenants carry no tenant_id: no context needed
        tenant_id = await session.scalar(
            select(Tenant.id).where(Tenant.slug == slug, Tenant.active.is_(True))
        )
    return None if tenant_id is None else _public_tenants.put(slug, tenant_id)


def _document_public(handlers: list[Any]) -> None:
    """A public route answers 404 (no such chain, or the plugin is off there), 429 (over
    the client's limit), 400 and 503; 422 when it takes a body. Never 401 or 403."""
    for handler in handlers:
        if isinstance(handler, HTTPRouteHandler):
            takes_body = "data" in inspect.signature(handler.fn).parameters
            statuses = (404, 422) if takes_body else (404,)
            specs = {k: v for k, v in problems(*statuses).items() if k not in (401, 403)}
            specs[429] = dataclasses.replace(specs[429], description=PUBLIC_429)
            handler.responses = {**specs, **(handler.responses or {})}


def public_plugin_router(host: PluginHost, plugin_id: str, handlers: list[Any]) -> Router:
    _document_public(handlers)
    actor = Actor("system", name=f"public:{plugin_id}")

    async def public_guard(
        connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
    ) -> None:
        tenant_id = await public_tenant(str(connection.path_params.get("tenant_slug", "")))
        if tenant_id is None:
            raise NotFound("no such page")
        # For the rest of the request (reset by the request id middleware when it ends).
        set_request_context(TenantContext(tenant_id), actor)
        enabled = await host.enabled_plugins(tenant_id, None, anywhere=True)
        if plugin_id not in enabled:
            raise NotFound("no such page")
        connection.state["nestpoint_plugin"] = PluginContext(
            plugin_id, tenant_id, None, enabled[plugin_id]
        )

    async def provide_plugin(request: Request[Any, Any, Any]) -> PluginContext:
        context = request.state.get("nestpoint_plugin")
        if isinstance(context, PluginContext):
            return context
        raise NotFound("no such page")

    return Router(
        path=f"{PUBLIC_PATH_PREFIX}{{tenant_slug:str}}/{plugin_id}",
        route_handlers=handlers,
        guards=[public_guard],
        dependencies={"plugin": Provide(provide_plugin)},
        tags=[f"plugin: {plugin_id}"],
    )


def public_plugin_routers(host: PluginHost) -> list[Router]:
    """One router per loaded plugin with public routes, at ``/public/{tenant_slug}/<id>``."""
    return [
        public_plugin_router(host, pid, host.contributions[pid].public_routes)
        for pid in sorted(host.loaded)
        if host.contributions[pid].public_routes
    ]


# ---------------------------------------------------------------------------- member routes

MEMBER_PLUGIN_PATH = "/me/plugins"  # under /api/v1, where the middleware accepts member tokens
MEMBER_DESCRIPTIONS = {
    401: "No member token, or one unknown, revoked or expired.",
    403: "Not a member token (an API key opens no member route).",
    404: "The plugin is not enabled in the member's chain, or no such row of the member's.",
    429: "Over this member's rate limit (`NESTPOINT_MEMBER_RATE_LIMIT`): retry after "
    "`Retry-After` seconds.",
}


def _document_member(handlers: list[Any]) -> None:
    """A member route answers 401 and 403 as the member API does, 404 (the plugin is off in
    the chain, or another member's row), 429 over the member's limit, and 422 with a body.
    What 401, 403 and 429 mean is the core's, whatever the handler declared."""
    for handler in handlers:
        if isinstance(handler, HTTPRouteHandler):
            takes_body = "data" in inspect.signature(handler.fn).parameters
            specs = problems(*((404, 422) if takes_body else (404,)))
            specs[404] = dataclasses.replace(specs[404], description=MEMBER_DESCRIPTIONS[404])
            specs = {**specs, **(handler.responses or {})}
            for status in (401, 403, 429):
                described = MEMBER_DESCRIPTIONS[status]
                specs[status] = dataclasses.replace(specs[status], description=described)
            handler.responses = specs


def member_plugin_router(host: PluginHost, plugin_id: str, handlers: list[Any]) -> Router:
    _document_member(handlers)

    async def enabled_in_chain(
        connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
    ) -> None:
        ctx = current_tenant()
        if ctx is None:  # member_only ran first: a member token always names its chain
            raise NotFound("no such route")
        enabled = await host.enabled_plugins(ctx.tenant_id, None, anywhere=True)
        if plugin_id not in enabled:
            raise NotFound("no such route")
        connection.state["nestpoint_plugin"] = PluginContext(
            plugin_id, ctx.tenant_id, None, enabled[plugin_id]
        )

    async def provide_plugin(request: Request[Any, Any, Any]) -> PluginContext:
        context = request.state.get("nestpoint_plugin")
        if isinstance(context, PluginContext):
            return context
        raise NotFound("no such route")

    return Router(
        path=f"{MEMBER_PLUGIN_PATH}/{plugin_id}",
        route_handlers=handlers,
        guards=[member_only, enabled_in_chain],
        dependencies={"plugin": Provide(provide_plugin)},
        tags=[f"plugin: {plugin_id}"],
    )


def member_plugin_routers(host: PluginHost) -> list[Router]:
    """One router per loaded plugin with member routes, at ``/me/plugins/<plugin-id>``
    (under ``/api/v1``)."""
    return [
        member_plugin_router(host, pid, host.contributions[pid].member_routes)
        for pid in sorted(host.loaded)
        if host.contributions[pid].member_routes
    ]
