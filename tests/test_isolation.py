"""Tenant isolation, twice: in the application (every endpoint, every ORM query) and, on
PostgreSQL, in row-level security (raw SQL bound to a tenant sees only that tenant's rows).

Two tenants A and B are made through the API with the same store codes (S1, S2) and some
canary data only A has: a store whose code exists only in A, an extra HQ key, an update (so
A has events and audit entries of its own). B's keys must never see any of it.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.context import Actor, TenantContextMissing, acting_as, tenant_context
from nestpoint.db import scoped_session
from nestpoint.db.base import Base, TenantScoped, tenant_owned_tables
from nestpoint.db.models import ApiKey, AuditEntry, OutboxEvent, Store

FOUNDATION_TABLES = {"stores", "api_keys", "outbox_events", "audit_entries"}
FOUNDATION_MODELS = (Store, ApiKey, OutboxEvent, AuditEntry)


def tenant_models() -> list[type[Any]]:
    models = [m.class_ for m in Base.registry.mappers if issubclass(m.class_, TenantScoped)]
    assert set(FOUNDATION_MODELS) <= set(models)
    return models


@dataclass
class Pair:
    a: Any  # conftest.TenantHandle
    b: Any
    a_only_code: str
    a_canary_key_id: uuid.UUID
    a_canary_key: str
    a_key_ids: set[str] = field(default_factory=set)
    a_event_ids: set[str] = field(default_factory=set)
    a_audit_ids: set[str] = field(default_factory=set)

    def canaries(self, *, include_code: bool = True) -> set[str]:
        """Strings that identify A's rows; none may appear in a response to B."""
        values = {str(self.a.id), self.a.id.hex, self.a.slug}
        values |= {str(s) for s in self.a.stores.values()}
        values |= self.a_key_ids | self.a_event_ids | self.a_audit_ids
        if include_code:
            values.add(self.a_only_code)
        return values


async def _items(client: Any, path: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Every item of a listing, following cursors."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 200}
        if cursor:
            params["cursor"] = cursor
        r = await client.get(path, params=params, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


@pytest.fixture
async def pair(client, make_tenant) -> Pair:  # type: ignore[no-untyped-def]
    a = await make_tenant(("S1", "S2"))
    b = await make_tenant(("S1", "S2"))
    a_only_code = f"ONLY-A-{uuid.uuid4().hex[:8]}"
    r = await client.post(
        "/api/v1/stores", json={"code": a_only_code, "name": "A's secret store"}, headers=a.hq()
    )
    assert r.status_code == 201, r.text
    a.stores[a_only_code] = uuid.UUID(r.json()["id"])
    r = await client.patch("/api/v1/stores/S1", json={"name": "A flagship"}, headers=a.hq())
    assert r.status_code == 200, r.text
    r = await client.post("/api/v1/api-keys", json={"name": "A canary"}, headers=a.hq())
    assert r.status_code == 201, r.text
    canary_key_id, canary_key = uuid.UUID(r.json()["id"]), r.json()["key"]
    p = Pair(a, b, a_only_code, canary_key_id, canary_key)
    p.a_key_ids = {k["id"] for k in await _items(client, "/api/v1/api-keys", a.hq())}
    p.a_event_ids = {e["id"] for e in await _items(client, "/api/v1/events", a.hq())}
    p.a_audit_ids = {e["id"] for e in await _items(client, "/api/v1/audit", a.hq())}
    # The canary data really exists, so "B sees none of it" is not vacuous.
    assert len(p.a_key_ids) == 4  # HQ, two tills, canary
    assert p.a_event_ids
    assert p.a_audit_ids
    return p


def _assert_no_canary(text_: str, canaries: set[str], where: str) -> None:
    """No canary in a response, except what the caller sent itself (echoed in ``instance``)."""
    leaked = sorted(c for c in canaries if c in text_ and c not in where)
    assert not leaked, f"{where} leaks tenant A's data: {leaked}"


# --------------------------------------------------------------------------- HTTP


async def test_b_lists_never_include_a_rows(client, pair: Pair) -> None:
    b = pair.b
    stores = await _items(client, "/api/v1/stores", b.hq())
    assert {s["id"] for s in stores} == {str(i) for i in b.stores.values()}
    keys = await _items(client, "/api/v1/api-keys", b.hq())
    assert len(keys) == 3
    assert not {k["id"] for k in keys} & pair.a_key_ids
    events = await _items(client, "/api/v1/events", b.hq())
    assert events
    assert not {e["id"] for e in events} & pair.a_event_ids
    audit = await _items(client, "/api/v1/audit", b.hq())
    assert audit
    assert not {e["id"] for e in audit} & pair.a_audit_ids
    r = await client.get("/api/v1/tenant", headers=b.hq())
    assert r.status_code == 200
    assert r.json()["id"] == str(b.id)
    for path in ("/api/v1/stores", "/api/v1/api-keys", "/api/v1/events", "/api/v1/audit"):
        r = await client.get(path, params={"limit": 200}, headers=b.hq())
        _assert_no_canary(r.text, pair.canaries(), path)


async def test_same_store_code_resolves_to_own_tenant(client, pair: Pair) -> None:
    a, b = pair.a, pair.b
    r = await client.get("/api/v1/stores/S1", headers=b.hq())
    assert r.status_code == 200
    assert r.json()["id"] == str(b.stores["S1"])
    r = await client.patch("/api/v1/stores/S1", json={"name": "B renamed"}, headers=b.hq())
    assert r.status_code == 200
    assert r.json()["id"] == str(b.stores["S1"])
    r = await client.get("/api/v1/stores/S1", headers=a.hq())
    assert r.json()["id"] == str(a.stores["S1"])
    assert r.json()["name"] == "A flagship"


async def test_b_gets_404_for_every_a_resource(client, pair: Pair) -> None:
    a, b = pair.a, pair.b
    code = pair.a_only_code
    for method, path, body in [
        ("GET", f"/api/v1/stores/{code}", None),
        ("PATCH", f"/api/v1/stores/{code}", {"name": "pwned"}),
        ("PATCH", f"/api/v1/stores/{code}", {"active": False}),
        ("DELETE", f"/api/v1/api-keys/{pair.a_canary_key_id}", None),
    ]:
        for headers in (b.hq(), b.store("S1")):
            r = await client.request(method, path, json=body, headers=headers)
            if method == "DELETE" and headers != b.hq():
                assert r.status_code == 403, (method, path, r.text)  # store keys manage no keys
                continue
            assert r.status_code == 404, (method, path, r.status_code, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            _assert_no_canary(r.text, pair.canaries(include_code=False), f"{method} {path}")
    # A's resources are untouched and A's canary key still works.
    r = await client.get(f"/api/v1/stores/{code}", headers=a.hq())
    assert r.status_code == 200
    assert r.json()["name"] == "A's secret store"
    assert r.json()["active"] is True
    r = await client.get("/api/v1/tenant", headers={"Authorization": f"Bearer {pair.a_canary_key}"})
    assert r.status_code == 200
    assert r.json()["id"] == str(a.id)
    keys = await _items(client, "/api/v1/api-keys", a.hq())
    assert all(k["revoked_at"] is None for k in keys)


def _fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+):\w+\}", lambda m: values.get(m.group(1), str(uuid.uuid4())), path)


async def test_route_sweep_b_never_sees_a(client, pair: Pair, app) -> None:  # type: ignore[no-untyped-def]
    """Every API route, called by B's keys with A's identifiers, never answers with A's data.

    Routes with a path parameter name one of A's resources: they must fail (403 for platform
    routes, else 404). Routes added later are swept too.
    """
    values = {
        "code": pair.a_only_code,
        "key_id": str(pair.a_canary_key_id),
        "tenant_id": str(pair.a.id),
        "store_id": str(pair.a.stores["S1"]),
    }
    swept = checked_404 = 0
    for route in app.routes:
        if not route.path.startswith("/api/"):
            continue
        for method in sorted(set(route.methods) - {"OPTIONS", "HEAD"}):
            path = _fill(route.path, values)
            for headers in (pair.b.hq(), pair.b.store("S1")):
                body = {"name": "pwned"} if method in ("POST", "PATCH", "PUT") else None
                if method == "POST" and "{" not in route.path:
                    continue  # creating in one's own tenant is no read of A's data
                r = await client.request(method, path, json=body, headers=headers)
                swept += 1
                assert r.status_code < 500, (method, path, r.text)
                _assert_no_canary(r.text, pair.canaries(include_code=False), f"{method} {path}")
                if "{" in route.path:
                    # A request may be refused as malformed first (a body, or a path value
                    # of another format than ours): that reveals nothing.
                    assert r.status_code in (400, 403, 404, 422), (method, path, r.text)
                    if r.status_code in (400, 422):
                        assert r.json()["errors"], (method, path, r.text)
                    names = re.findall(r"\{(\w+):\w+\}", route.path)
                    if (
                        body is None
                        and all(name in values for name in names)
                        and headers == pair.b.hq()
                        # platform routes refuse a tenant key, member routes any key: 403
                        and not route.path.startswith(("/api/v1/tenants", "/api/v1/me/"))
                    ):
                        assert r.status_code == 404, (method, path, r.text)
                        checked_404 += 1
    assert swept >= 20
    assert checked_404 >= 2  # GET /stores/{code}, DELETE /api-keys/{key_id} at least


async def test_key_with_swapped_tenant_is_refused(client, pair: Pair) -> None:
    a, b = pair.a, pair.b
    secret = b.hq_key.split("_", 2)[2]  # npk_<tenant hex>_<secret>; the secret may hold "_"
    forged = f"npk_{a.id.hex}_{secret}"
    r = await client.get("/api/v1/stores", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401
    r = await client.get("/api/v1/stores", headers={"X-API-Key": forged})
    assert r.status_code == 401
    # The untouched key works, through either header.
    r = await client.get("/api/v1/stores", headers={"X-API-Key": b.hq_key})
    assert r.status_code == 200
    assert len(r.json()["items"]) == 2


async def test_store_key_confined_to_its_store(client, pair: Pair) -> None:
    b = pair.b
    s1 = b.store("S1")
    r = await client.get("/api/v1/stores", headers=s1)
    assert r.status_code == 200
    assert [s["id"] for s in r.json()["items"]] == [str(b.stores["S1"])]
    assert r.json()["next_cursor"] is None
    r = await client.get("/api/v1/stores/S1", headers=s1)
    assert r.status_code == 200
    assert r.json()["id"] == str(b.stores["S1"])
    r = await client.patch("/api/v1/stores/S1", json={"region": "north"}, headers=s1)
    assert r.status_code == 200
    assert r.json()["region"] == "north"

    r = await client.get("/api/v1/stores/S2", headers=s1)
    assert r.status_code == 404
    r = await client.patch("/api/v1/stores/S2", json={"name": "taken over"}, headers=s1)
    assert r.status_code == 404
    r = await client.get("/api/v1/stores/S2", headers=b.hq())
    assert r.json()["name"] == "Store S2"

    # Operations a till may not perform at all: 403, whatever the resource.
    r = await client.post("/api/v1/stores", json={"code": "S9", "name": "nine"}, headers=s1)
    assert r.status_code == 403
    r = await client.post(
        "/api/v1/api-keys",
        json={"name": "till", "kind": "store", "store_code": "S1"},
        headers=s1,
    )
    assert r.status_code == 403
    for path in ("/api/v1/api-keys", "/api/v1/events", "/api/v1/audit"):
        r = await client.get(path, headers=s1)
        assert r.status_code == 403, path
        assert r.headers["content-type"].startswith("application/problem+json")
    r = await client.get("/api/v1/stores/S9", headers=b.hq())
    assert r.status_code == 404  # the refused create wrote nothing


async def test_platform_key_cannot_call_tenant_endpoints(
    client, pair: Pair, platform_headers
) -> None:
    calls = [
        ("GET", "/api/v1/tenant", None),
        ("GET", "/api/v1/stores", None),
        ("POST", "/api/v1/stores", {"code": "P1", "name": "platform store"}),
        ("GET", "/api/v1/stores/S1", None),
        ("PATCH", "/api/v1/stores/S1", {"name": "platform rename"}),
        ("GET", "/api/v1/api-keys", None),
        ("POST", "/api/v1/api-keys", {"name": "platform-made"}),
        ("DELETE", f"/api/v1/api-keys/{pair.a_canary_key_id}", None),
        ("GET", "/api/v1/events", None),
        ("GET", "/api/v1/audit", None),
    ]
    for method, path, body in calls:
        r = await client.request(method, path, json=body, headers=platform_headers)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["status"] == 403
    r = await client.get("/api/v1/stores/S1", headers=pair.a.hq())
    assert r.json()["name"] == "A flagship"


async def test_tenant_keys_cannot_call_platform_endpoints(
    client, pair: Pair, platform_headers
) -> None:
    a = pair.a
    slug = f"t-{uuid.uuid4().hex[:12]}"
    for headers in (a.hq(), a.store("S1"), {"Authorization": f"Bearer {pair.a_canary_key}"}):
        for method, path, body in [
            ("GET", "/api/v1/tenants", None),
            ("POST", "/api/v1/tenants", {"slug": slug, "name": "sneaky"}),
            ("GET", f"/api/v1/tenants/{a.id}", None),
            ("PATCH", f"/api/v1/tenants/{a.id}", {"name": "renamed by a tenant"}),
            ("POST", f"/api/v1/tenants/{a.id}/api-keys", {"name": "self-issued"}),
        ]:
            r = await client.request(method, path, json=body, headers=headers)
            assert r.status_code == 403, (method, path, r.status_code, r.text)
    # Nothing was created or changed: the slug is still free, the name unchanged.
    r = await client.post(
        "/api/v1/tenants", json={"slug": slug, "name": "real"}, headers=platform_headers
    )
    assert r.status_code == 201
    r = await client.get(f"/api/v1/tenants/{a.id}", headers=platform_headers)
    assert r.json()["name"] == f"Chain {a.slug}"
    assert len(await _items(client, "/api/v1/api-keys", a.hq())) == 4


# --------------------------------------------------------------------------- ORM (any backend)


async def _add_store(tenant_id: uuid.UUID, code: str) -> None:
    """Write a store row for ``tenant_id`` through the ORM, in the current context."""
    async with scoped_session() as session:
        session.add(Store(tenant_id=tenant_id, code=code, name=f"planted {code}"))
        await session.flush()


async def test_orm_query_without_tenant_fails_closed(pair: Pair) -> None:
    models = tenant_models()
    with tenant_context(None):
        for model in models:
            with pytest.raises(TenantContextMissing):
                async with scoped_session() as session:
                    await session.execute(select(model))
            with pytest.raises(TenantContextMissing):
                async with scoped_session() as session:
                    await session.execute(update(model).values(tenant_id=pair.b.id))
            with pytest.raises(TenantContextMissing):
                async with scoped_session() as session:
                    await session.execute(delete(model))
        with pytest.raises(TenantContextMissing):
            async with scoped_session() as session:
                await session.get(Store, {"tenant_id": pair.a.id, "id": pair.a.stores["S1"]})
        with pytest.raises(TenantContextMissing), acting_as(Actor("system", name="tests")):
            await _add_store(pair.a.id, "NOCTX")
    with tenant_context(pair.a.id):
        async with scoped_session() as session:
            assert await session.scalar(select(Store).where(Store.code == "NOCTX")) is None


async def test_orm_queries_see_only_context_tenant(pair: Pair) -> None:
    a, b = pair.a, pair.b
    with tenant_context(b.id):
        async with scoped_session() as session:
            for model in tenant_models():
                rows = (await session.scalars(select(model))).all()
                assert all(row.tenant_id == b.id for row in rows), model.__name__
                if model in FOUNDATION_MODELS:
                    assert rows, model.__name__
            assert await session.get(Store, {"tenant_id": a.id, "id": a.stores["S1"]}) is None
            assert (await session.scalars(select(Store).where(Store.tenant_id == a.id))).all() == []
            result = await session.execute(
                update(Store).where(Store.id == a.stores["S1"]).values(name="pwned by B")
            )
            assert result.rowcount == 0  # type: ignore[attr-defined]
    with tenant_context(a.id):
        async with scoped_session() as session:
            store = await session.get(Store, {"tenant_id": a.id, "id": a.stores["S1"]})
            assert store is not None
            assert store.name == "A flagship"


async def test_orm_refuses_to_write_another_tenants_row(pair: Pair) -> None:
    a, b = pair.a, pair.b
    with (
        tenant_context(b.id),
        acting_as(Actor("system", name="tests")),
        pytest.raises(TenantContextMissing),
    ):
        await _add_store(a.id, "PLANTED")
    with tenant_context(a.id):
        async with scoped_session() as session:
            assert await session.scalar(select(Store).where(Store.code == "PLANTED")) is None


# --------------------------------------------------------------------------- PostgreSQL RLS


@pytest.fixture
def postgres_only(is_postgres: bool) -> None:
    if not is_postgres:
        pytest.skip("row-level security exists only on PostgreSQL; this run uses SQLite")


async def _raw_insert_store(session: AsyncSession, tenant_id: uuid.UUID, code: str) -> None:
    now = datetime.now(UTC)
    await session.execute(
        text(
            "INSERT INTO stores (tenant_id, id, code, name, kind, format, region, address,"
            " active, created_at, updated_at) VALUES (:tenant_id, :id, :code, 'raw', 'direct',"
            " 'community', '', '', true, :now, :now)"
        ),
        {"tenant_id": tenant_id, "id": uuid.uuid4(), "code": code, "now": now},
    )


@pytest.mark.usefixtures("postgres_only")
async def test_rls_raw_sql_bound_to_b_sees_no_a_rows(pair: Pair) -> None:
    a, b = pair.a, pair.b
    tables = tenant_owned_tables()
    assert set(tables) >= FOUNDATION_TABLES
    with tenant_context(b.id):
        async with scoped_session() as session:
            bound = await session.scalar(text("SELECT current_setting('nestpoint.tenant_id')"))
            assert bound == str(b.id)
            for table in tables:
                tenants = {
                    uuid.UUID(str(t))
                    for t in (await session.scalars(text(f"SELECT tenant_id FROM {table}"))).all()
                }
                assert a.id not in tenants, table
                assert tenants <= {b.id}, table
                if table in FOUNDATION_TABLES:
                    assert tenants == {b.id}, table
                hidden = await session.scalar(
                    text(f"SELECT count(*) FROM {table} WHERE tenant_id = :a"), {"a": a.id}
                )
                assert hidden == 0, table
            result = await session.execute(
                text("UPDATE stores SET name = 'pwned' WHERE tenant_id = :a"), {"a": a.id}
            )
            assert result.rowcount == 0  # type: ignore[attr-defined]
    with tenant_context(a.id):
        async with scoped_session() as session:
            names = set((await session.scalars(text("SELECT name FROM stores"))).all())
            assert "pwned" not in names
            assert "A flagship" in names


@pytest.mark.usefixtures("postgres_only")
async def test_rls_with_no_tenant_returns_nothing(pair: Pair) -> None:
    with tenant_context(None):
        async with scoped_session() as session:
            setting = await session.scalar(
                text("SELECT current_setting('nestpoint.tenant_id', true)")
            )
            assert not setting
            for table in tenant_owned_tables():
                rows = (await session.execute(text(f"SELECT * FROM {table}"))).all()
                assert rows == [], table
    # The same raw query bound to A does find A's rows: the emptiness above is RLS.
    with tenant_context(pair.a.id):
        async with scoped_session() as session:
            assert await session.scalar(text("SELECT count(*) FROM stores")) == 3


@pytest.mark.usefixtures("postgres_only")
async def test_rls_rejects_insert_for_another_tenant(pair: Pair) -> None:
    a, b = pair.a, pair.b
    for bound in (b.id, None):
        with tenant_context(bound):
            with pytest.raises(DBAPIError, match="row-level security"):
                async with scoped_session() as session:
                    await _raw_insert_store(session, a.id, "RAW-PLANT")
            with pytest.raises(DBAPIError, match="row-level security"):
                async with scoped_session() as session:
                    await session.execute(
                        text(
                            "INSERT INTO outbox_events (tenant_id, id, type, subject_type,"
                            " subject_id, payload, occurred_at, attempts, next_attempt_at)"
                            " VALUES (:t, :id, 'x.planted', 'x', 'x', '{}', now(), 0, now())"
                        ),
                        {"t": a.id, "id": uuid.uuid4()},
                    )
    # Control: the same statement for the bound tenant itself is accepted.
    with tenant_context(b.id):
        async with scoped_session() as session:
            await _raw_insert_store(session, b.id, "RAW-OWN")
            assert (
                await session.scalar(text("SELECT count(*) FROM stores WHERE code = 'RAW-OWN'"))
                == 1
            )
    with tenant_context(a.id):
        async with scoped_session() as session:
            assert (
                await session.scalar(text("SELECT count(*) FROM stores WHERE code = 'RAW-PLANT'"))
                == 0
            )
            assert (
                await session.scalar(
                    text("SELECT count(*) FROM outbox_events WHERE type = 'x.planted'")
                )
                == 0
            )


@pytest.mark.usefixtures("postgres_only")
async def test_tenant_binding_is_local_to_the_transaction(pair: Pair) -> None:
    """A pooled connection never carries one tenant's binding into the next transaction."""
    from nestpoint.db import get_database

    database = get_database()
    async with database.session() as session:
        with tenant_context(pair.b.id):
            pid = await session.scalar(text("SELECT pg_backend_pid()"))
            assert await session.scalar(
                text("SELECT current_setting('nestpoint.tenant_id', true)")
            ) == str(pair.b.id)
            await session.commit()
        with tenant_context(None):
            # Same session, new transaction: the binding is gone even on the same connection.
            same_pid = await session.scalar(text("SELECT pg_backend_pid()"))
            setting = await session.scalar(
                text("SELECT current_setting('nestpoint.tenant_id', true)")
            )
            assert not setting, (pid, same_pid, setting)
            assert await session.scalar(text("SELECT count(*) FROM stores")) == 0
            await session.commit()


async def test_orm_scoping_covers_counts_and_core_statements(make_tenant) -> None:
    """Statements the ORM does not treat as entity queries are scoped too: a count over
    ``select_from(Model)``, a Core ``select`` on the table, a Core ``update``."""
    from sqlalchemy import func, select, update

    from nestpoint.context import tenant_context
    from nestpoint.db import scoped_session
    from nestpoint.db.base import table_of
    from nestpoint.tenancy.models import Store

    a = await make_tenant(("A1", "A2", "A3"))
    b = await make_tenant(("B1",))
    stores = table_of(Store)
    with tenant_context(b.id):
        async with scoped_session() as session:
            assert await session.scalar(select(func.count()).select_from(Store)) == 1
            # A count whose only FROM is its WHERE clause's table (found by a helper).
            count = select(func.count()).where(Store.code.in_(["A1", "A2", "B1"]))
            assert await session.scalar(count) == 1
            assert await session.scalar(select(func.count(Store.id))) == 1
            assert (await session.scalars(select(stores.c.code))).all() == ["B1"]
            result = await session.execute(update(stores).values(region="changed"))
            assert result.rowcount == 1  # type: ignore[attr-defined]
    with tenant_context(a.id):
        async with scoped_session() as session:
            regions = (await session.scalars(select(stores.c.region))).all()
    assert "changed" not in regions
