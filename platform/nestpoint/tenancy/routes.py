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

    @post("/", responses=problems(409, 422), summary="Create a tenant (a store chain)")
    async def create(self, db: Db, data: JSONBody[TenantCreate]) -> TenantRead:
        return TenantRead.model_validate(await service.create_tenant(db, data))

    @get("/", responses=problems(), summary="List tenants")
    async def list(
        self, db: Db, cursor: CursorQuery = None, limit: LimitQuery = DEFAULT_LIMIT
    ) -> TenantList:
        page = await service.list_tenants(db, cursor=cursor, limit=limit)
        return TenantList(
            items=[TenantRead.model_validate(t) for t in page.items], next_cursor=page.next_cursor
        )

    @get("/{tenant_id:uuid}", responses=problems(404), summary="Get a tenant")
    async def get(self, db: Db, tenant_id: FromPath[uuid.UUID]) -> TenantRead:
        return TenantRead.model_validate(await service.get_tenant(db, tenant_id))

    @patch("/{tenant_id:uuid}", responses=problems(404, 422), summary="Update a tenant")
    async def update(
        self, db: Db, tenant_id: FromPath[uuid.UUID], data: JSONBody[TenantUpdate]
    ) -> TenantRead:
        tenant, _ = await service.update_tenant(db, tenant_id, data)
        return TenantRead.model_validate(tenant)

    @post(
        "/{tenant_id:uuid}/api-keys",
        responses=problems(404, 422),
        summary="Create a key for a tenant (how HQ gets its first key)",
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
    )
    async def get(self, db: Db) -> TenantRead:
        return TenantRead.model_validate(await service.get_tenant(db, require_tenant().tenant_id))


class StoreController(Controller):
    """A tenant's stores. A store key sees and changes only its own store."""

    path = "/stores"
    tags = ["stores"]

    @get("/", guards=[requires("stores:read")], responses=problems(), summary="List stores")
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
    )
    async def create(self, db: Db, data: JSONBody[StoreCreate]) -> StoreRead:
        return StoreRead.model_validate(await service.create_store(db, data))

    @get(
        "/{code:str}",
        guards=[requires("stores:read")],
        responses=problems(404),
        summary="Get a store by code",
    )
    async def get(self, db: Db, code: StoreCodePath) -> StoreRead:
        return StoreRead.model_validate(await service.get_store(db, code))

    @patch(
        "/{code:str}",
        guards=[requires("stores:write")],
        responses=problems(404, 422),
        summary="Update a store",
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
    )
    async def create(self, db: Db, data: JSONBody[ApiKeyCreate]) -> ApiKeyCreated:
        actor = current_actor()
        api_key, secret = await service.create_api_key(db, data, str(actor.key_id or ""))
        return ApiKeyCreated.model_validate(
            {**ApiKeyRead.model_validate(api_key).model_dump(), "key": secret}
        )

    @get("/", guards=[requires("keys:read")], responses=problems(), summary="List API keys")
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
    )
    async def revoke(self, db: Db, key_id: FromPath[uuid.UUID]) -> ApiKeyRead:
        return ApiKeyRead.model_validate(await service.revoke_api_key(db, key_id))
