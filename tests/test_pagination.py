"""Cursor (keyset) pagination: complete, ordered, stable under inserts, strict about input."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import pytest

CODES = ["C-07", "A-01", "F-06", "B-02", "E-05", "D-04", "B-03"]
LISTINGS = ("/api/v1/stores", "/api/v1/api-keys", "/api/v1/events", "/api/v1/audit")


def token(value: Any) -> str:
    """A cursor in the API's encoding (base64url JSON) holding ``value``."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


async def pages(client: Any, path: str, headers: dict[str, str], limit: int) -> list[list[Any]]:
    result: list[list[Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        r = await client.get(path, params=params, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        result.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return result
        assert len(result) < 100, "pagination does not terminate"


@pytest.fixture
async def seven_stores(client, make_tenant):  # type: ignore[no-untyped-def]
    t = await make_tenant(())
    for code in random.sample(CODES, len(CODES)):  # creation order is not listing order
        r = await client.post(
            "/api/v1/stores", json={"code": code, "name": f"Store {code}"}, headers=t.hq()
        )
        assert r.status_code == 201, r.text
    return t


async def test_seven_stores_in_pages_of_three(client, seven_stores) -> None:
    t = seven_stores
    result = await pages(client, "/api/v1/stores", t.hq(), 3)
    assert [len(p) for p in result] == [3, 3, 1]
    codes = [s["code"] for p in result for s in p]
    assert codes == sorted(CODES)  # ordered, no gap, no duplicate
    assert len({s["id"] for p in result for s in p}) == len(CODES)

    whole = await pages(client, "/api/v1/stores", t.hq(), 200)
    assert len(whole) == 1
    assert [s["code"] for s in whole[0]] == sorted(CODES)
    exact = await pages(client, "/api/v1/stores", t.hq(), 7)
    assert [len(p) for p in exact] == [7]  # a full last page has no next cursor


async def test_pages_are_stable_under_inserts(client, seven_stores) -> None:
    t = seven_stores
    r = await client.get("/api/v1/stores", params={"limit": 3}, headers=t.hq())
    first = [s["code"] for s in r.json()["items"]]
    cursor = r.json()["next_cursor"]
    assert first == sorted(CODES)[:3]
    assert cursor
    for code in ("A-00", "Z-99"):  # one before the cursor, one after it
        r = await client.post("/api/v1/stores", json={"code": code, "name": code}, headers=t.hq())
        assert r.status_code == 201
    rest: list[str] = []
    while cursor:
        r = await client.get(
            "/api/v1/stores", params={"limit": 3, "cursor": cursor}, headers=t.hq()
        )
        assert r.status_code == 200
        rest += [s["code"] for s in r.json()["items"]]
        cursor = r.json()["next_cursor"]
    assert rest == [*sorted(CODES)[3:], "Z-99"]


@pytest.mark.parametrize("path", ["/api/v1/events", "/api/v1/audit", "/api/v1/api-keys"])
async def test_other_listings_page_completely(client, make_tenant, path: str) -> None:
    t = await make_tenant(("S1", "S2", "S3"))
    whole = await pages(client, path, t.hq(), 200)
    assert len(whole) == 1
    assert len(whole[0]) >= 4
    paged = await pages(client, path, t.hq(), 2)
    assert all(len(p) == 2 for p in paged[:-1])
    assert 1 <= len(paged[-1]) <= 2
    assert [i["id"] for p in paged for i in p] == [i["id"] for i in whole[0]]


async def test_garbage_cursors_are_400_naming_query_cursor(client, seven_stores) -> None:
    t = seven_stores
    r = await client.get("/api/v1/stores", params={"limit": 3}, headers=t.hq())
    stores_cursor = r.json()["next_cursor"]
    r = await client.get("/api/v1/events", params={"limit": 3}, headers=t.hq())
    events_cursor = r.json()["next_cursor"]
    assert stores_cursor
    assert events_cursor

    garbage = [
        "garbage!!",
        "%%%",
        token("not a list"),
        token({"code": "A-01"}),
        token([]),
        token(["A-01", "extra"]),
        base64.urlsafe_b64encode(b"\xff\xfe not utf-8").decode(),
        "x" * 501,
    ]
    by_listing = {
        "/api/v1/stores": [*garbage, token([5]), token([None]), events_cursor],
        "/api/v1/api-keys": [*garbage, token([5]), token(["not-a-uuid"]), stores_cursor],
        "/api/v1/events": [
            *garbage,
            stores_cursor,
            token(["yesterday", "00000000-0000-0000-0000-000000000000"]),
            token([5, "00000000-0000-0000-0000-000000000000"]),
            token(["2026-01-01T00:00:00+00:00", 5]),
            token(["2026-01-01T00:00:00", "00000000-0000-0000-0000-000000000000"]),
        ],
        "/api/v1/audit": [*garbage, token(["2026-01-01T00:00:00+00:00", ["nested"]])],
    }
    for path, cursors in by_listing.items():
        for cursor in cursors:
            r = await client.get(path, params={"cursor": cursor}, headers=t.hq())
            assert r.status_code == 400, (path, cursor, r.status_code, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            assert [e["field"] for e in r.json()["errors"]] == ["query.cursor"], (path, cursor)


async def test_limit_out_of_range_is_400_naming_query_limit(client, seven_stores) -> None:
    t = seven_stores
    for path in LISTINGS:
        for limit in ("0", "201", "-1", "3.5", "many"):
            r = await client.get(path, params={"limit": limit}, headers=t.hq())
            assert r.status_code == 400, (path, limit, r.text)
            assert [e["field"] for e in r.json()["errors"]] == ["query.limit"], (path, limit)
        for limit in ("1", "200"):
            r = await client.get(path, params={"limit": limit}, headers=t.hq())
            assert r.status_code == 200, (path, limit)
            assert 1 <= len(r.json()["items"]) <= int(limit)


async def test_a_cursor_works_only_on_the_listing_that_issued_it(
    client, seven_stores, make_tenant
) -> None:
    """Cursors are signed and bound to their listing, its filters and its tenant."""
    t = seven_stores
    other = await make_tenant(("S1", "S2", "S3"))
    for phone in ("13800000001", "13800000002", "13800000003"):
        r = await client.post("/api/v1/members", json={"phone": phone}, headers=t.hq())
        assert r.status_code == 201, r.text
    issued = {}
    for path in ("/api/v1/stores", "/api/v1/events", "/api/v1/members", "/api/v1/audit"):
        r = await client.get(path, params={"limit": 1}, headers=t.hq())
        issued[path] = r.json()["next_cursor"]
        assert issued[path], path
    r = await client.get("/api/v1/stores", params={"limit": 1}, headers=other.hq())
    foreign = r.json()["next_cursor"]

    def refused(r: Any) -> bool:
        return r.status_code == 400 and [e["field"] for e in r.json()["errors"]] == ["query.cursor"]

    for path, cursor in issued.items():
        r = await client.get(path, params={"cursor": cursor}, headers=t.hq())
        assert r.status_code == 200, (path, r.text)  # the listing that issued it
        for elsewhere in set(issued) - {path}:
            r = await client.get(elsewhere, params={"cursor": cursor}, headers=t.hq())
            assert refused(r), (path, elsewhere, r.text)
        payload, _, signature = cursor.partition(".")
        forged = [
            payload,  # unsigned
            f"{payload}.{signature[::-1]}",
            f"{token(['Z-99'])}.{signature}",  # another position, the old signature
            f"{payload}.",
            f"{payload}.{signature}x",
        ]
        for cursor in forged:
            r = await client.get(path, params={"cursor": cursor}, headers=t.hq())
            assert refused(r), (path, cursor, r.text)
    r = await client.get("/api/v1/stores", params={"cursor": foreign}, headers=t.hq())
    assert refused(r)  # another tenant's
    r = await client.get(
        "/api/v1/members",
        params={"cursor": issued["/api/v1/members"], "tag": "vip"},
        headers=t.hq(),
    )
    assert refused(r)  # the same listing with other filters


async def test_cursors_are_signed_with_a_key_derived_from_the_shared_hash_key(app):
    """No NESTPOINT_CURSOR_KEY: the app signs with a key derived from the personal-data hash
    key (shared by every process), not with the development key anyone can read."""
    from nestpoint.db import pagination
    from nestpoint.members import pii

    assert pagination._signing_key == pii.derived_key(b"nestpoint cursors")
    assert pagination._signing_key != pagination._DEVELOPMENT_KEY
    assert pii.derived_key(b"another purpose") != pagination._signing_key
