"""API keys: the secret is shown once and stored only as a hash; revocation, last use, the
scopes a key may carry, and what a key without a scope may not do."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from nestpoint.context import Actor, acting_as, tenant_context
from nestpoint.db import scoped_session
from nestpoint.db.models import ApiKey, AuditEntry, OutboxEvent
from nestpoint.errors import Forbidden
from nestpoint.tenancy import keys, service
from nestpoint.tenancy.keys import DEFAULT_SCOPES
from nestpoint.tenancy.schemas import ApiKeyCreate


def secret_part(key: str) -> str:
    """The random secret of ``npk_<tenant hex>_<secret>`` (the secret itself may hold "_")."""
    prefix, tenant_hex, secret = key.split("_", 2)
    assert prefix == "npk"
    assert len(tenant_hex) == 32
    return secret


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def create_key(client: Any, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    r = await client.post("/api/v1/api-keys", json={"name": "test key", **body}, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def listed(client: Any, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    r = await client.get("/api/v1/api-keys", params={"limit": 200}, headers=headers)
    assert r.status_code == 200, r.text
    return {k["id"]: k for k in r.json()["items"]}


async def test_secret_is_returned_once_and_never_listed(client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    created = await create_key(client, t.hq(), name="reporting")
    secret = created["key"]
    random_part = secret_part(secret)
    assert secret.startswith(f"npk_{t.id.hex}_")
    assert len(random_part) >= 42
    assert created["key_prefix"]
    assert random_part not in created["key_prefix"]
    assert secret.startswith(created["key_prefix"][:4])

    r = await client.get("/api/v1/api-keys", params={"limit": 200}, headers=t.hq())
    assert random_part not in r.text
    item = {k["id"]: k for k in r.json()["items"]}[created["id"]]
    assert "key" not in item
    assert item["key_prefix"] == created["key_prefix"]
    assert item["name"] == "reporting"
    r = await client.delete(f"/api/v1/api-keys/{created['id']}", headers=t.hq())
    assert r.status_code == 200
    assert random_part not in r.text
    assert "key" not in r.json()
    # Two keys never share a secret.
    other = await create_key(client, t.hq())
    assert other["key"] != secret


async def test_database_stores_only_a_sha256(client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    created = await create_key(client, t.hq(), kind="store", store_code="S1")
    secret = created["key"]
    random_part = secret_part(secret)
    table = ApiKey.__table__
    with tenant_context(t.id):
        async with scoped_session() as session:
            row = (
                await session.execute(select(table).where(table.c.id == uuid.UUID(created["id"])))
            ).one()
            audit = (await session.scalars(select(AuditEntry.changes))).all()
            payloads = (await session.scalars(select(OutboxEvent.payload))).all()
    values = row._asdict()
    assert values["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    for column, value in values.items():
        text_value = str(value)
        assert secret not in text_value, column
        assert random_part not in text_value, column
        assert random_part[:16] not in text_value, column
    # Nor does the secret reach the audit trail or the outbox.
    dumped = json.dumps([*audit, *payloads], default=str)
    assert random_part[:16] not in dumped


async def test_revoked_key_gets_401(client, make_tenant, row_counts) -> None:
    t = await make_tenant(("S1",))
    created = await create_key(client, t.hq())
    key = bearer(created["key"])
    r = await client.get("/api/v1/stores", headers=key)
    assert r.status_code == 200

    r = await client.delete(f"/api/v1/api-keys/{created['id']}", headers=t.hq())
    assert r.status_code == 200
    revoked_at = r.json()["revoked_at"]
    assert revoked_at is not None
    for path in ("/api/v1/stores", "/api/v1/tenant", "/api/v1/api-keys"):
        r = await client.get(path, headers=key)
        assert r.status_code == 401, path
        assert r.headers["content-type"].startswith("application/problem+json")
    assert (await listed(client, t.hq()))[created["id"]]["revoked_at"] == revoked_at

    # Revoking again changes nothing (no second audit entry or event).
    counts = await row_counts(t.id)
    r = await client.delete(f"/api/v1/api-keys/{created['id']}", headers=t.hq())
    assert r.status_code == 200
    assert r.json()["revoked_at"] == revoked_at
    assert await row_counts(t.id) == counts
    # The other keys still work.
    r = await client.get("/api/v1/stores", headers=t.store("S1"))
    assert r.status_code == 200


async def test_unknown_key_id_is_404(client, make_tenant) -> None:
    t = await make_tenant(())
    r = await client.delete(f"/api/v1/api-keys/{uuid.uuid4()}", headers=t.hq())
    assert r.status_code == 404


async def test_last_used_at_is_recorded(client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    created = await create_key(client, t.hq())
    assert created["last_used_at"] is None
    assert (await listed(client, t.hq()))[created["id"]]["last_used_at"] is None

    before = datetime.now(UTC) - timedelta(seconds=1)
    r = await client.get("/api/v1/tenant", headers=bearer(created["key"]))
    assert r.status_code == 200
    after = datetime.now(UTC) + timedelta(seconds=1)
    used = (await listed(client, t.hq()))[created["id"]]["last_used_at"]
    assert used is not None
    assert before <= datetime.fromisoformat(used) <= after


async def test_store_key_scopes_are_limited(client, make_tenant, row_counts) -> None:
    t = await make_tenant(("S1",))
    before = await row_counts(t.id)
    for scopes in (["stores:read", "keys:write"], ["events:read"], ["audit:read"]):
        r = await client.post(
            "/api/v1/api-keys",
            json={"name": "greedy till", "kind": "store", "store_code": "S1", "scopes": scopes},
            headers=t.hq(),
        )
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in r.json()["errors"]] == ["scopes"]
        assert scopes[-1] in r.json()["errors"][0]["message"]
    r = await client.post(
        "/api/v1/api-keys",
        json={"name": "confused", "scopes": ["nothing:here"]},
        headers=t.hq(),
    )
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["scopes"]
    assert await row_counts(t.id) == before


async def test_store_binding_rules(client, make_tenant, row_counts) -> None:
    t = await make_tenant(("S1",))
    before = await row_counts(t.id)
    for body in (
        {"kind": "store"},
        {"kind": "store", "store_code": "NOPE"},
        {"kind": "tenant", "store_code": "S1"},
    ):
        r = await client.post("/api/v1/api-keys", json={"name": "k", **body}, headers=t.hq())
        assert r.status_code == 422, (body, r.text)
        assert [e["field"] for e in r.json()["errors"]] == ["store_code"], body
    # Both problems at once: both are named.
    r = await client.post(
        "/api/v1/api-keys",
        json={"name": "k", "kind": "store", "scopes": ["keys:write"]},
        headers=t.hq(),
    )
    assert r.status_code == 422
    assert sorted(e["field"] for e in r.json()["errors"]) == ["scopes", "store_code"]
    assert await row_counts(t.id) == before

    created = await create_key(client, t.hq(), kind="store", store_code="S1")
    assert created["kind"] == "store"
    assert created["store_id"] == str(t.stores["S1"])
    assert set(created["scopes"]) == set(DEFAULT_SCOPES["store"])


async def test_key_without_stores_write_gets_403_on_patch(client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    reader = await create_key(client, t.hq(), scopes=["stores:read"])
    till = await create_key(client, t.hq(), kind="store", store_code="S1")  # default scopes
    for key in (reader["key"], till["key"]):
        r = await client.get("/api/v1/stores/S1", headers=bearer(key))
        assert r.status_code == 200
        r = await client.patch("/api/v1/stores/S1", json={"name": "renamed"}, headers=bearer(key))
        assert r.status_code == 403, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "stores:write" in r.json()["detail"]
    r = await client.post(
        "/api/v1/stores", json={"code": "S2", "name": "two"}, headers=bearer(reader["key"])
    )
    assert r.status_code == 403
    r = await client.get("/api/v1/stores/S1", headers=t.hq())
    assert r.json()["name"] == "Store S1"
    # A reader cannot read what its scopes do not name either.
    r = await client.get("/api/v1/tenant", headers=bearer(reader["key"]))
    assert r.status_code == 403


async def test_keys_of_a_deactivated_tenant_get_401(client, make_tenant, platform_headers) -> None:
    t = await make_tenant(("S1",))
    r = await client.patch(
        f"/api/v1/tenants/{t.id}", json={"active": False}, headers=platform_headers
    )
    assert r.status_code == 200
    assert r.json()["active"] is False
    for headers in (t.hq(), t.store("S1")):
        r = await client.get("/api/v1/stores", headers=headers)
        assert r.status_code == 401
    r = await client.patch(
        f"/api/v1/tenants/{t.id}", json={"active": True}, headers=platform_headers
    )
    assert r.status_code == 200
    r = await client.get("/api/v1/stores", headers=t.hq())
    assert r.status_code == 200


# ------------------------------------------------------------------ what a key may grant


async def refused(client: Any, headers: dict[str, str], body: dict[str, Any]) -> list[str]:
    """POST a key that must be refused with 403; the fields the problem names."""
    r = await client.post("/api/v1/api-keys", json={"name": "minted", **body}, headers=headers)
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return [e["field"] for e in r.json()["errors"]]


async def test_a_key_grants_only_scopes_it_holds(client, make_tenant, row_counts) -> None:
    t = await make_tenant(("S1",))
    minter = bearer((await create_key(client, t.hq(), scopes=["keys:write"]))["key"])
    before = await row_counts(t.id)
    # Explicit scopes it does not hold: each one named by its index.
    fields = await refused(
        client, minter, {"scopes": ["keys:write", "members:pii", "points:write"]}
    )
    assert fields == ["scopes.1", "scopes.2"]
    fields = await refused(
        client, minter, {"kind": "store", "store_code": "S1", "scopes": ["members:pii"]}
    )
    assert fields == ["scopes.0"]
    # The kind's defaults are granted only when the key holds all of them.
    assert await refused(client, minter, {}) == ["scopes"]
    assert await refused(client, minter, {"kind": "store", "store_code": "S1"}) == ["scopes"]
    assert await row_counts(t.id) == before

    # What it holds it may pass on, to an HQ key or a store key.
    passed = await create_key(client, minter, scopes=["keys:write"])
    assert passed["scopes"] == ["keys:write"]


async def test_a_minted_key_cannot_grant_more_than_its_parent(client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    parent = await create_key(
        client, t.hq(), scopes=["keys:write", "members:read", "orders:write", "stores:read"]
    )
    till = await create_key(
        client,
        bearer(parent["key"]),
        kind="store",
        store_code="S1",
        scopes=["members:read", "orders:write"],
    )
    assert till["scopes"] == ["members:read", "orders:write"]
    child = await create_key(client, bearer(parent["key"]), scopes=["keys:write", "members:read"])
    # The child holds keys:write but not orders:write: it cannot hand that on.
    fields = await refused(
        client, bearer(child["key"]), {"scopes": ["members:read", "orders:write"]}
    )
    assert fields == ["scopes.1"]
    # A scope no key kind allows is bad input (422), whoever asks.
    r = await client.post(
        "/api/v1/api-keys",
        json={"name": "k", "scopes": ["nothing:here"]},
        headers=bearer(child["key"]),
    )
    assert r.status_code == 422


async def test_hq_and_platform_keys_grant_every_scope_a_kind_allows(
    client, make_tenant, platform_headers
) -> None:
    t = await make_tenant(("S1",))
    everything = sorted(keys.TENANT_SCOPES)
    assert (await create_key(client, t.hq(), scopes=everything))["scopes"] == everything
    r = await client.post(
        f"/api/v1/tenants/{t.id}/api-keys",
        json={"name": "second HQ", "scopes": everything},
        headers=platform_headers,
    )
    assert r.status_code == 201, r.text
    till = await create_key(
        client, t.hq(), kind="store", store_code="S1", scopes=sorted(keys.STORE_SCOPES)
    )
    assert till["scopes"] == sorted(keys.STORE_SCOPES)


async def test_store_keys_never_mint_keys(client, make_tenant, row_counts) -> None:
    t = await make_tenant(("S1", "S2"))
    till = await create_key(
        client, t.hq(), kind="store", store_code="S1", scopes=sorted(keys.STORE_SCOPES)
    )
    before = await row_counts(t.id)
    for body in (
        {},
        {"kind": "tenant", "scopes": ["members:read"]},
        {"kind": "store", "store_code": "S1", "scopes": ["members:read"]},
        {"kind": "store", "store_code": "S2", "scopes": ["members:read"]},
    ):
        r = await client.post(
            "/api/v1/api-keys", json={"name": "k", **body}, headers=bearer(till["key"])
        )
        assert r.status_code == 403, (body, r.text)
    assert await row_counts(t.id) == before


async def test_the_service_refuses_store_keys_minting_beyond_their_store(make_tenant) -> None:
    """The rule holds below the route too: a store actor mints only its own store's keys,
    with its own scopes."""
    t = await make_tenant(("S1", "S2"))
    actor = Actor("store", uuid.uuid4(), frozenset({"members:read", "orders:write"}), "till")

    async def attempt(**body: Any) -> list[str]:
        with acting_as(actor), tenant_context(t.id, t.stores["S1"]):
            async with scoped_session() as session:
                try:
                    await service.create_api_key(
                        session, ApiKeyCreate(name="k", **body), created_by="till"
                    )
                except Forbidden as exc:
                    await session.rollback()
                    return [e.field for e in exc.errors]
                await session.rollback()
                return []

    assert await attempt(kind="tenant", scopes=["members:read"]) == ["kind"]
    assert await attempt(kind="store", store_code="S2", scopes=["members:read"]) == ["store_code"]
    assert await attempt(kind="store", store_code="S1", scopes=["members:pii"]) == ["scopes.0"]
    assert await attempt(kind="store", store_code="S1") == ["scopes"]
    assert await attempt(kind="store", store_code="S1", scopes=["members:read"]) == []


# ------------------------------------------------------------------ the displayed prefix


def test_display_prefix_survives_underscores_in_the_secret() -> None:
    tenant_id = uuid.uuid4()
    secret = "ab_cd_efgh_ijklmnopqrstuvwxyz0123456789-_ABCD"
    raw = f"npk_{tenant_id.hex}_{secret}"
    assert keys.display_prefix(raw) == "npk_ab_cd_ef"
    assert keys.display_prefix("npp_" + secret) == "npp_ab_cd_ef"
    assert keys.parse_key(raw) == keys.ParsedKey("tenant", tenant_id, keys.hash_key(raw))


async def test_listed_prefix_is_the_start_of_the_secret(client, make_tenant, monkeypatch) -> None:
    t = await make_tenant(("S1",))
    monkeypatch.setattr(keys.secrets, "token_urlsafe", lambda _: "x_y_" + "z" * 39)
    created = await create_key(client, t.hq())
    assert created["key"] == f"npk_{t.id.hex}_x_y_{'z' * 39}"
    assert created["key_prefix"] == "npk_x_y_zzzz"
    assert (await listed(client, t.hq()))[created["id"]]["key_prefix"] == "npk_x_y_zzzz"
    monkeypatch.undo()
    r = await client.get("/api/v1/tenant", headers=bearer(created["key"]))
    assert r.status_code == 200


async def test_a_key_revokes_only_keys_holding_no_more_than_it_does(client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    minter = await create_key(client, t.hq(), scopes=["keys:write", "members:read"])
    weaker = await create_key(client, bearer(minter["key"]), scopes=["members:read"])
    hq = await create_key(client, t.hq())  # every HQ scope
    r = await client.delete(f"/api/v1/api-keys/{hq['id']}", headers=bearer(minter["key"]))
    assert r.status_code == 403, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["key_id"]
    r = await client.get("/api/v1/stores", headers=bearer(hq["key"]))
    assert r.status_code == 200  # still works
    r = await client.delete(f"/api/v1/api-keys/{weaker['id']}", headers=bearer(minter["key"]))
    assert r.status_code == 200, r.text
    r = await client.delete(f"/api/v1/api-keys/{hq['id']}", headers=t.hq())
    assert r.status_code == 200, r.text
