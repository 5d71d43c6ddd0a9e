"""HTTP routes of the tenancy context: translate HTTP to service calls, nothing more."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, delete, get, patch, post
from litestar.params import FromPath, JSONBody, PathParameter

from nestpoint.api.deps import (
    DEFAULT_LIMIT,
    CursorQuery,
    Db,
    LimitQuery,
    hq_only,
    platform_only,
    requires,
)
from nestpoint.api.problems import problems
from nestpoint.context import current_actor, require_tenant
from nestpoint.tenancy import service
from nestpoint.tenancy.schemas import (
    STORE_CODE,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyRead,
    StoreCreate,
    StoreList,
    StoreRead,
    StoreUpdate,
    TenantCreate,
    TenantList,
    TenantRead,
    TenantUpdate,
)

StoreCodePath = Annotated[str, PathParameter(name="code", pattern=STORE_CODE, max_length=32)]


class PlatformTenantController(Controller):
    """The operator's registry of tenants (platform key only)."""

    path = "/tenants"
    tags = ["platform"]
    guards = [platform_only]

    @post(
        "/",
        responses=problems(409, 422),
        summary="Create a tenant (a store chain)",
        operation_id="createTenant",
        description=(
            "Platform key only. The slug is unique across the platform (409 otherwise); the new "
            "tenant has no keys until one is created for it."
        ),
    )
    async def create(self, db: Db, data: JSONBody[TenantCreate]) -> TenantRead:
        return TenantRead.model_validate(await service.create_tenant(db, data))

    @get(
        "/",
        responses=problems(),
        summary="List tenants",
        operation_id="listTenants",
        description="Platform key only: every tenant of the platform, cursor-paginated.",
    )
    async def list(
        self, db: Db, cursor: CursorQuery = None, limit: LimitQuery = DEFAULT_LIMIT
    ) -> TenantList:
        page = await service.list_tenants(db, cursor=cursor, limit=limit)
        return TenantList(
            items=[TenantRead.model_validate(t) for t in page.items], next_cursor=page.next_cursor
        )

    @get(
        "/{tenant_id:uuid}",
        responses=problems(404),
        summary="Get a tenant",
        operation_id="getTenant",
        description="Platform key only; 404 for an unknown id.",
    )
    async def get(self, db: Db, tenant_id: FromPath[uuid.UUID]) -> TenantRead:
        return TenantRead.model_validate(await service.get_tenant(db, tenant_id))

    @patch(
        "/{tenant_id:uuid}",
        responses=problems(404, 422),
        summary="Update a tenant",
        operation_id="updateTenant",
        description=(
            "Platform key only; only the fields sent change. `active: false` deactivates the chain:"
            " its keys get 401 (other processes follow within the key cache's TTL)."
        ),
    )
    async def update(
        self, db: Db, tenant_id: FromPath[uuid.UUID], data: JSONBody[TenantUpdate]
    ) -> TenantRead:
        tenant, _ = await service.update_tenant(db, tenant_id, data)
        return TenantRead.model_validate(tenant)

    @post(
        "/{tenant_id:uuid}/api-keys",
        responses=problems(404, 422),
        summary="Create a key for a tenant (how HQ gets its first key)",
        operation_id="createTenantApiKey",
        description=(
            "Platform key only; the key may carry any scope its kind allows. The secret is in this "
            "response only: it is stored as a hash and cannot be read again."
        ),
    )
    async def create_key(
        self, db: Db, tenant_id: FromPath[uuid.UUID], data: JSONBody[ApiKeyCreate]
    ) -> ApiKeyCreated:
        api_key, secret = await service.create_api_key_for_tenant(
            db, tenant_id, data, f"platform:{current_actor().key_id}"
        )
        return ApiKeyCreated.model_validate(
            {**ApiKeyRead.model_validate(api_key).model_dump(), "key": secret}
        )


class CurrentTenantController(Controller):
    """The caller's own tenant."""

    path = "/tenant"
    tags = ["tenancy"]

    @get(
        "/",
        guards=[requires("tenant:read")],
        responses=problems(),
        summary="The tenant this key belongs to",
        operation_id="getCurrentTenant",
        description=(
            "Any HQ or store key with `tenant:read`; answers the caller's own tenant and no other."
        ),
    )
    async def get(self, db: Db) -> TenantRead:
        return TenantRead.model_validate(await service.get_tenant(db, require_tenant().tenant_id))


class StoreController(Controller):
    """A tenant's stores. A store key sees and changes only its own store."""

    path = "/stores"
    tags = ["stores"]

    @get(
        "/",
        guards=[requires("stores:read")],
        responses=problems(),
        summary="List stores",
        operation_id="listStores",
        description="Needs `stores:read`; cursor-paginated. A store key sees only its own store.",
    )
    async def list(
        self, db: Db, cursor: CursorQuery = None, limit: LimitQuery = DEFAULT_LIMIT
    ) -> StoreList:
        page = await service.list_stores(db, cursor=cursor, limit=limit)
        return StoreList(
            items=[StoreRead.model_validate(s) for s in page.items], next_cursor=page.next_cursor
        )

    @post(
        "/",
        guards=[requires("stores:write"), hq_only],
        responses=problems(409, 422),
        summary="Create a store",
        operation_id="createStore",
        description=(
            "HQ key with `stores:write`. The store code is unique within the chain (409 otherwise);"
            " the new store trades at once."
        ),
    )
    async def create(self, db: Db, data: JSONBody[StoreCreate]) -> StoreRead:
        return StoreRead.model_validate(await service.create_store(db, data))

    @get(
        "/{code:str}",
        guards=[requires("stores:read")],
        responses=problems(404),
        summary="Get a store by code",
        operation_id="getStore",
        description="Needs `stores:read`. A store key gets 404 for any store but its own.",
    )
    async def get(self, db: Db, code: StoreCodePath) -> StoreRead:
        return StoreRead.model_validate(await service.get_store(db, code))

    @patch(
        "/{code:str}",
        guards=[requires("stores:write")],
        responses=problems(404, 422),
        summary="Update a store",
        operation_id="updateStore",
        description=(
            "Needs `stores:write`; a store key may change only its own store. `active: false` stops"
            " new orders, previews, holds and enrolments there; reads and refunds of past sales "
            "stay possible."
        ),
    )
    async def update(self, db: Db, code: StoreCodePath, data: JSONBody[StoreUpdate]) -> StoreRead:
        store, _ = await service.update_store(db, code, data)
        return StoreRead.model_validate(store)


class ApiKeyController(Controller):
    """HQ manages the chain's API keys: HQ keys and store-bound till keys."""

    path = "/api-keys"
    tags = ["api keys"]
    guards = [hq_only]

    @post(
        "/",
        guards=[requires("keys:write")],
        responses=problems(422),
        summary="Create an API key (the secret is in the response, once)",
        operation_id="createApiKey",
        description=(
            "HQ key with `keys:write`. It may grant only scopes it holds itself (403 naming each "
            "offending field); the secret is stored as a hash and cannot be read again."
        ),
    )
    async def create(self, db: Db, data: JSONBody[ApiKeyCreate]) -> ApiKeyCreated:
        actor = current_actor()
        api_key, secret = await service.create_api_key(db, data, str(actor.key_id or ""))
        return ApiKeyCreated.model_validate(
            {**ApiKeyRead.model_validate(api_key).model_dump(), "key": secret}
        )

    @get(
        "/",
        guards=[requires("keys:read")],
        responses=problems(),
        summary="List API keys",
        operation_id="listApiKeys",
        description=(
            "HQ key with `keys:read`: the chain's HQ and store keys with their prefixes and scopes,"
            " never their secrets."
        ),
    )
    async def list(
        self, db: Db, cursor: CursorQuery = None, limit: LimitQuery = DEFAULT_LIMIT
    ) -> ApiKeyList:
        page = await service.list_api_keys(db, cursor=cursor, limit=limit)
        return ApiKeyList(
            items=[ApiKeyRead.model_validate(k) for k in page.items], next_cursor=page.next_cursor
        )

    @delete(
        "/{key_id:uuid}",
        guards=[requires("keys:write")],
        responses=problems(404),
        status_code=200,
        summary="Revoke an API key",
        operation_id="revokeApiKey",
        description=(
            "HQ key with `keys:write`, only for keys holding no more scopes than the caller (403 "
            "naming `key_id`). The key gets 401 at once in this process, in others within the key "
            "cache's TTL."
        ),
    )
    async def revoke(self, db: Db, key_id: FromPath[uuid.UUID]) -> ApiKeyRead:
        return ApiKeyRead.model_validate(await service.revoke_api_key(db, key_id))
