"""HTTP routes of plugin enablement: translate HTTP to service calls, nothing more.

Under ``/api/v1/tenant/plugins`` (the caller's tenant), apart from the plugins' own routes
under ``/api/v1/plugins/<plugin-id>/``.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, delete, get, post, put
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.params import JSONBody, PathParameter, QueryParameter

from nestpoint.api.deps import DEFAULT_LIMIT, CursorQuery, Db, LimitQuery, hq_only, requires
from nestpoint.api.problems import problems
from nestpoint.errors import NotFound
from nestpoint.plugins import secrets, service
from nestpoint.plugins.manager import get_plugin_host
from nestpoint.plugins.schemas import (
    ChainSettingUpdate,
    FailureList,
    FailureRead,
    PluginList,
    PluginRead,
    SecretList,
    SecretWrite,
    StoreSettingUpdate,
)
from nestpoint.tenancy.routes import StoreCodePath

SecretNamePath = Annotated[
    str, PathParameter(name="name", pattern=r"^[a-z][a-z0-9_]{0,63}$", max_length=64)
]
PluginIdPath = Annotated[
    str, PathParameter(name="plugin_id", pattern=r"^[A-Za-z0-9_.-]{1,100}$", max_length=100)
]


async def installed_plugin(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard: an unknown plugin id is 404 before the body is even read."""
    plugin_id = connection.path_params.get("plugin_id")
    if plugin_id is not None and plugin_id not in get_plugin_host().loaded:
        raise NotFound(f"no installed plugin {plugin_id!r}")


class TenantPluginController(Controller):
    """Installed plugins and where they are enabled in the caller's chain."""

    path = "/tenant/plugins"
    tags = ["plugins"]
    guards = [installed_plugin]

    @get(
        "/",
        guards=[requires("plugins:read")],
        responses=problems(),
        summary="List plugins",
        operation_id="listPlugins",
        description=(
            "Needs `plugins:read`: every installed plugin and where it is enabled in the caller's "
            "chain."
        ),
    )
    async def list(self, db: Db) -> PluginList:
        return PluginList(items=await service.describe(db, get_plugin_host()))

    @get(
        "/{plugin_id:str}",
        guards=[requires("plugins:read")],
        responses=problems(404),
        summary="A plugin, its configuration schema and its settings here",
        operation_id="getPlugin",
        description="Needs `plugins:read`; 404 for a plugin that is not installed.",
    )
    async def detail(self, db: Db, plugin_id: PluginIdPath) -> PluginRead:
        return (await service.describe(db, get_plugin_host(), plugin_id))[0]

    @put(
        "/{plugin_id:str}",
        guards=[requires("plugins:write"), hq_only],
        responses=problems(404, 422),
        summary="Enable, disable or configure a plugin for the whole chain (HQ)",
        operation_id="setPluginForChain",
        description=(
            "HQ key with `plugins:write`; only the fields sent change. The configuration is checked"
            " against the plugin's schema (422 otherwise)."
        ),
    )
    async def set_chain(
        self, db: Db, plugin_id: PluginIdPath, data: JSONBody[ChainSettingUpdate]
    ) -> PluginRead:
        host = get_plugin_host()
        await service.set_chain(db, host, plugin_id, data)
        return (await service.describe(db, host, plugin_id))[0]

    @post(
        "/{plugin_id:str}/disable",
        guards=[requires("plugins:write"), hq_only],
        responses=problems(404),
        status_code=200,
        summary="Disable a plugin for the chain and every store at once (HQ)",
        operation_id="disablePlugin",
        description=(
            "HQ key with `plugins:write`; turns it off for the chain and in every store's own "
            "setting. Configuration is kept, so enabling it again restores the previous set-up."
        ),
    )
    async def disable(self, db: Db, plugin_id: PluginIdPath) -> PluginRead:
        host = get_plugin_host()
        await service.disable_everywhere(db, host, plugin_id)
        return (await service.describe(db, host, plugin_id))[0]

    @put(
        "/{plugin_id:str}/stores/{code:str}",
        guards=[requires("plugins:write")],
        responses=problems(404, 422),
        summary="Enable, disable or configure a plugin for one store",
        operation_id="setPluginForStore",
        description=(
            "HQ for any store; a store key for its own store when the chain allows. The "
            "configuration is checked against the plugin's schema."
        ),
    )
    async def set_store(
        self,
        db: Db,
        plugin_id: PluginIdPath,
        code: StoreCodePath,
        data: JSONBody[StoreSettingUpdate],
    ) -> PluginRead:
        host = get_plugin_host()
        await service.set_store(db, host, plugin_id, code, data)
        return (await service.describe(db, host, plugin_id))[0]

    @delete(
        "/{plugin_id:str}/stores/{code:str}",
        guards=[requires("plugins:write")],
        responses=problems(404),
        status_code=200,
        summary="Remove a store's own setting (the store follows the chain again)",
        operation_id="clearPluginForStore",
        description=(
            "Needs `plugins:write`; a store key only for its own store, when the chain lets stores "
            "set the plugin. Removing an absent setting changes nothing."
        ),
    )
    async def clear_store(self, db: Db, plugin_id: PluginIdPath, code: StoreCodePath) -> PluginRead:
        host = get_plugin_host()
        await service.clear_store(db, host, plugin_id, code)
        return (await service.describe(db, host, plugin_id))[0]

    @get(
        "/{plugin_id:str}/secrets",
        guards=[requires("plugins:read"), hq_only],
        responses=problems(404),
        summary="The plugin's credentials: which the chain has set (never their values)",
        operation_id="listPluginSecrets",
        description="HQ key with `plugins:read`. Values are write-only: no answer carries one.",
    )
    async def list_secrets(self, db: Db, plugin_id: PluginIdPath) -> SecretList:
        return SecretList(items=await secrets.describe(db, get_plugin_host(), plugin_id))

    @put(
        "/{plugin_id:str}/secrets/{name:str}",
        guards=[requires("plugins:write"), hq_only],
        responses=problems(404, 422),
        summary="Set a plugin's credential for the chain (HQ; write-only)",
        operation_id="setPluginSecret",
        description=(
            "HQ key with `plugins:write`. Stored encrypted; audited without the value; 404 "
            "naming `name` for a secret the plugin does not declare."
        ),
    )
    async def set_secret(
        self, db: Db, plugin_id: PluginIdPath, name: SecretNamePath, data: JSONBody[SecretWrite]
    ) -> SecretList:
        host = get_plugin_host()
        await secrets.put(db, host, plugin_id, name, data.value)
        return SecretList(items=await secrets.describe(db, host, plugin_id))

    @delete(
        "/{plugin_id:str}/secrets/{name:str}",
        guards=[requires("plugins:write"), hq_only],
        responses=problems(404),
        status_code=200,
        summary="Clear a plugin's credential (HQ)",
        operation_id="clearPluginSecret",
        description="HQ key with `plugins:write`; clearing an unset secret changes nothing.",
    )
    async def clear_secret(
        self, db: Db, plugin_id: PluginIdPath, name: SecretNamePath
    ) -> SecretList:
        host = get_plugin_host()
        await secrets.clear(db, host, plugin_id, name)
        return SecretList(items=await secrets.describe(db, host, plugin_id))

    @get(
        "/{plugin_id:str}/failures",
        guards=[requires("plugins:read")],
        responses=problems(404),
        summary="A plugin's recorded failures here, oldest first",
        operation_id="listPluginFailuresOfPlugin",
        description=(
            "Needs `plugins:read`; cursor-paginated. A store key sees its store's failures."
        ),
    )
    async def failures(
        self,
        db: Db,
        plugin_id: PluginIdPath,
        cursor: CursorQuery = None,
        limit: LimitQuery = DEFAULT_LIMIT,
    ) -> FailureList:
        page = await service.list_failures(db, plugin_id=plugin_id, cursor=cursor, limit=limit)
        return FailureList(
            items=[FailureRead.model_validate(f) for f in page.items], next_cursor=page.next_cursor
        )


class PluginFailureController(Controller):
    """Every plugin's failures in the caller's chain (a store key: its store's)."""

    path = "/tenant/plugin-failures"
    tags = ["plugins"]

    @get(
        "/",
        guards=[requires("plugins:read")],
        responses=problems(),
        summary="Plugin failures, oldest first",
        operation_id="listPluginFailures",
        description=(
            "Needs `plugins:read`; cursor-paginated, every plugin's (or `plugin`'s) failures. A "
            "store key sees its store's."
        ),
    )
    async def list(
        self,
        db: Db,
        cursor: CursorQuery = None,
        limit: LimitQuery = DEFAULT_LIMIT,
        plugin: Annotated[str | None, QueryParameter(name="plugin", max_length=100)] = None,
    ) -> FailureList:
        page = await service.list_failures(db, plugin_id=plugin, cursor=cursor, limit=limit)
        return FailureList(
            items=[FailureRead.model_validate(f) for f in page.items], next_cursor=page.next_cursor
        )
