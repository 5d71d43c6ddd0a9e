"""Mounting plugins' routes under ``/api/v1/plugins/<plugin-id>/``, gated by enablement.

A request reaches a plugin's route only when the plugin is enabled for the caller: for a
store key, for its store; for an HQ key, for the chain or any of its stores. Otherwise the
answer is 404, as if the route did not exist (other stores and tenants learn nothing). The
route's handlers may take ``plugin: PluginContext`` (tenant, store and merged config).
"""

from __future__ import annotations

import inspect
from typing import Any

from litestar import Request, Router
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.handlers import HTTPRouteHandler
from litestar.handlers.base import BaseRouteHandler

from nestpoint.api.problems import problems
from nestpoint.context import current_actor, current_tenant
from nestpoint.errors import NotFound
from nestpoint.plugins.manager import PluginHost
from nestpoint.plugins.types import PluginContext

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
