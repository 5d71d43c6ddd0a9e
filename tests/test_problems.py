"""Errors are RFC 9457 problem details naming the bad field, and bad requests write nothing.
Every response carries an ``x-request-id`` (a sane incoming one is echoed)."""

from __future__ import annotations

import re
from typing import Any

import pytest

PROBLEM_JSON = "application/problem+json"
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


def assert_problem(r: Any, status: int) -> dict[str, Any]:
    """The response is a problem document for ``status``; returns its body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].split(";")[0].strip() == PROBLEM_JSON
    body = r.json()
    assert isinstance(body["type"], str)
    assert body["type"].startswith("https://")
    assert isinstance(body["title"], str)
    assert body["title"]
    assert body["status"] == status
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert body["request_id"] == r.headers["x-request-id"]
    return body


def fields(body: dict[str, Any]) -> set[str]:
    return {e["field"] for e in body["errors"]}


async def test_bad_store_body_names_each_field_and_writes_nothing(
    client, make_tenant, row_counts
) -> None:
    t = await make_tenant(("S1",))
    before = await row_counts(t.id)
    r = await client.post(
        "/api/v1/stores",
        json={"code": "bad code!", "name": "x", "kind": "pop-up", "colour": "pink"},
        headers=t.hq(),
    )
    body = assert_problem(r, 400)
    assert fields(body) == {"code", "kind", "colour"}
    assert all(e["message"] for e in body["errors"])
    for field in ("code", "kind"):
        assert field in body["detail"]

    r = await client.post("/api/v1/stores", json={"name": "no code"}, headers=t.hq())
    assert fields(assert_problem(r, 400)) == {"code"}
    r = await client.patch("/api/v1/stores/S1", json={"kind": "kiosk"}, headers=t.hq())
    assert fields(assert_problem(r, 400)) == {"kind"}
    r = await client.post(
        "/api/v1/stores",
        content=b"{not json",
        headers={**t.hq(), "content-type": "application/json"},
    )
    assert_problem(r, 400)
    assert await row_counts(t.id) == before
    r = await client.get("/api/v1/stores/S1", headers=t.hq())
    assert r.json()["kind"] == "direct"


async def test_bad_query_parameters_are_named(client, make_tenant, row_counts) -> None:
    t = await make_tenant(("S1",))
    before = await row_counts(t.id)
    for query, field in [
        ("limit=0", "query.limit"),
        ("limit=201", "query.limit"),
        ("limit=ten", "query.limit"),
        ("cursor=%24%24garbage%24%24", "query.cursor"),
        ("cursor=" + "A" * 501, "query.cursor"),
    ]:
        for path in ("/api/v1/stores", "/api/v1/events", "/api/v1/audit", "/api/v1/api-keys"):
            r = await client.get(f"{path}?{query}", headers=t.hq())
            body = assert_problem(r, 400)
            assert fields(body) == {field}, (path, query, body)
            assert field in body["detail"]
    r = await client.get("/api/v1/stores/bad%20code", headers=t.hq())
    assert fields(assert_problem(r, 400)) == {"path.code"}
    assert await row_counts(t.id) == before


async def test_duplicate_store_code_is_409_naming_code(client, make_tenant, row_counts) -> None:
    t = await make_tenant(("S1",))
    before = await row_counts(t.id)
    r = await client.post(
        "/api/v1/stores", json={"code": "S1", "name": "second S1"}, headers=t.hq()
    )
    body = assert_problem(r, 409)
    assert [e["field"].rsplit(".", 1)[-1] for e in body["errors"]] == ["code"]
    assert "S1" in body["detail"]
    assert await row_counts(t.id) == before
    r = await client.get("/api/v1/stores/S1", headers=t.hq())
    assert r.json()["name"] == "Store S1"


async def test_missing_or_unknown_key_is_401_problem(client, make_tenant) -> None:
    t = await make_tenant(())
    secret = t.hq_key.split("_", 2)[2]  # npk_<tenant hex>_<secret>
    for headers in [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": f"Basic {t.hq_key}"},
        {"Authorization": "Bearer npk_not-a-key"},
        {"Authorization": f"Bearer {t.hq_key}x"},
        {"Authorization": f"Bearer npk_{'0' * 32}_{secret}"},
        {"Authorization": f"Bearer npp_{secret}"},
        {"X-API-Key": "npp_" + "x" * 40},
    ]:
        r = await client.get("/api/v1/stores", headers=headers)
        body = assert_problem(r, 401)
        assert GENERATED_ID.match(r.headers["x-request-id"])
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert t.hq_key not in r.text
        assert secret not in r.text
        assert body["errors"] == []
    r = await client.get("/api/v1/stores", headers=t.hq())
    assert r.status_code == 200


async def test_every_response_carries_a_request_id(client, make_tenant, platform_headers) -> None:
    t = await make_tenant(("S1",))
    responses = [
        await client.get("/healthz"),
        await client.get("/readyz"),
        await client.get("/schema/openapi.json"),
        await client.get("/api/v1/stores", headers=t.hq()),
        await client.post("/api/v1/stores", json={"code": "S2", "name": "two"}, headers=t.hq()),
        await client.post("/api/v1/stores", json={"code": "S2", "name": "two"}, headers=t.hq()),
        await client.get("/api/v1/stores?limit=0", headers=t.hq()),
        await client.get("/api/v1/stores"),
        await client.get("/api/v1/stores", headers=platform_headers),
        await client.get("/api/v1/stores/NOPE", headers=t.hq()),
        await client.delete("/api/v1/stores/S1", headers=t.hq()),  # 405: no such method
        await client.get("/api/v1/no-such-thing", headers=t.hq()),  # 404: no such route
        await client.delete("/api/v1/api-keys/not-a-uuid", headers=t.hq()),
    ]
    statuses = sorted({r.status_code for r in responses})
    assert statuses == [200, 201, 400, 401, 403, 404, 405, 409]
    ids = [r.headers.get("x-request-id") for r in responses]
    assert all(i and GENERATED_ID.match(i) for i in ids), ids
    assert len(set(ids)) == len(ids)
    for r in responses:
        if r.status_code >= 400:
            assert_problem(r, r.status_code)


async def test_sane_incoming_request_id_is_echoed_and_audited(client, make_tenant) -> None:
    t = await make_tenant(())
    rid = "till-42.req_000123"
    r = await client.post(
        "/api/v1/stores",
        json={"code": "RID", "name": "traced"},
        headers={**t.hq(), "X-Request-ID": rid},
    )
    assert r.status_code == 201
    assert r.headers["x-request-id"] == rid
    store_id = r.json()["id"]
    r = await client.get("/api/v1/audit", params={"limit": 200}, headers=t.hq())
    entries = [e for e in r.json()["items"] if e["subject_id"] == store_id]
    assert [(e["action"], e["request_id"]) for e in entries] == [("store.created", rid)]

    for headers in ({"X-Request-ID": rid}, {"X-Request-ID": rid, **t.hq()}):
        r = await client.get("/api/v1/stores/NOPE", headers=headers)
        assert r.headers["x-request-id"] == rid
        assert r.json()["request_id"] == rid
    r = await client.get("/api/v1/no-such-thing", headers={"X-Request-ID": rid, **t.hq()})
    assert r.headers["x-request-id"] == rid
    assert r.json()["request_id"] == rid


async def test_insane_incoming_request_id_is_replaced(client, make_tenant) -> None:
    t = await make_tenant(())
    for bad in ("short", "has spaces in it", "x" * 65, "<script>alert(1)</script>", "a/b/c/d/e"):
        r = await client.get("/api/v1/stores", headers={**t.hq(), "X-Request-ID": bad})
        assert r.status_code == 200
        assert r.headers["x-request-id"] != bad
        assert GENERATED_ID.match(r.headers["x-request-id"])


async def test_a_database_that_does_not_answer_is_503_with_retry_after(
    app, monkeypatch: pytest.MonkeyPatch
):
    """Nothing listens where the database should be: every request that needs it answers
    503 with Retry-After (a till retries with the same key), never a 500."""
    from litestar.testing import AsyncTestClient

    from nestpoint.db.session import reset_database
    from nestpoint.settings import get_settings

    monkeypatch.setenv("NESTPOINT_DATABASE_URL", "postgresql+asyncpg://nobody@127.0.0.1:9/none")
    get_settings.cache_clear()
    reset_database()
    try:
        async with AsyncTestClient(app=app) as client:
            r = await client.get(
                "/api/v1/stores", headers={"Authorization": f"Bearer npk_{'ab' * 16}_{'s' * 43}"}
            )
            readiness = await client.get("/readyz")
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        reset_database()
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "5"
    assert r.json()["type"].endswith("/unavailable")
    assert readiness.status_code == 503
