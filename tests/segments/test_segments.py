"""Custom segments through the API: the rule language over a small population (each
condition, and/or/not), validation naming the bad node, preview, saved segments with their
live count and members, masking without members:pii, audit and scopes."""

from __future__ import annotations

from typing import Any

from segments.helpers import Population, populate

PREVIEW = "/api/v1/segments/preview"


def leaf(field: str, op: str, value: Any, **extra: Any) -> dict[str, Any]:
    return {"field": field, "op": op, "value": value, **extra}


async def _preview(client: Any, headers: dict[str, str], rule: Any) -> dict[str, Any]:
    r = await client.post(PREVIEW, json={"rule": rule}, headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _key(client: Any, tenant: Any, scopes: list[str]) -> dict[str, str]:
    r = await client.post(
        "/api/v1/api-keys", json={"name": "analyst", "scopes": scopes}, headers=tenant.hq()
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


def _cases(p: Population) -> list[tuple[Any, set[str]]]:
    everyone = p.all()
    never_lately = {p.silent, p.lapsed, p.pregnant, p.baby}
    vip = {p.silent, p.core}
    return [
        (leaf("last_order_days_ago", "gte", 90), never_lately),
        (leaf("last_order_days_ago", "lte", 30), {p.recent, p.core}),
        (leaf("last_order_days_ago", "lte", 120), {p.recent, p.core, p.lapsed}),
        (leaf("last_order_days_ago", "gte", 121), never_lately - {p.lapsed}),
        (leaf("spend_fen", "gte", 500000, days=365), {p.core}),
        (leaf("spend_fen", "gte", 500000, days=30), set()),
        (leaf("spend_fen", "gte", 20000, days=90, category="feeding"), {p.recent}),
        (leaf("spend_fen", "lte", 10000, days=90, category="toys"), everyone),
        (leaf("spend_fen", "lte", 9999, days=90, category="toys"), everyone - {p.recent}),
        (leaf("orders", "gte", 2, days=365), {p.core}),
        (leaf("orders", "lte", 0, days=90), never_lately),
        (leaf("orders", "gte", 1, days=90, category="diapers"), {p.core}),
        (
            {
                "all": [
                    leaf("child_stage", "in", ["pregnant"]),
                    leaf("due_within_weeks", "lte", 8),
                ]
            },
            {p.pregnant},
        ),
        (leaf("due_within_weeks", "lte", 4), set()),
        (leaf("child_turns_months", "within", {"months": 6, "within_days": 7}), {p.baby}),
        ({"field": "child_turns_months", "value": {"months": 6, "within_days": 2}}, set()),
        (leaf("child_stage", "in", ["0-6m", "1-3y"]), {p.baby}),
        (leaf("tag", "has", "vip"), vip),
        ({"not": leaf("tag", "has", "vip")}, everyone - vip),
        (leaf("gender", "eq", "female"), {p.silent, p.recent, p.core}),
        (leaf("gender", "in", ["male"]), {p.lapsed}),
        (leaf("home_store", "in", ["S1"]), {p.silent}),
        # Members without a home store are in the complement: `not` is exact.
        ({"not": leaf("home_store", "in", ["S1"])}, everyone - {p.silent}),
        (leaf("joined_days_ago", "lte", 100), {p.baby}),
        (leaf("joined_days_ago", "between", [30, 50]), {p.baby}),
        (leaf("joined_days_ago", "between", [41, 50]), set()),
        (leaf("joined_days_ago", "gte", 365), everyone - {p.baby}),
        (leaf("birthday_month", "in", [3, 4]), {p.silent}),
        ({"not": leaf("birthday_month", "in", [3])}, everyone - {p.silent}),
        (leaf("points_balance", "gte", 1), {p.lapsed, p.recent, p.core}),
        (leaf("points_balance", "lte", 0), never_lately - {p.lapsed}),
        (
            {"any": [leaf("tag", "has", "vip"), leaf("home_store", "in", ["S2"])]},
            vip | {p.lapsed, p.recent},
        ),
        (
            {
                "all": [
                    leaf("gender", "eq", "female"),
                    {"not": {"any": [leaf("tag", "has", "vip"), leaf("growth_value", "gte", 1)]}},
                ]
            },
            set(),
        ),
        (leaf("growth_value", "lte", 0), never_lately - {p.lapsed}),
    ]


async def test_each_condition_and_combinator(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    population = await populate(client, tenant)
    for rule, expected in _cases(population):
        body = await _preview(client, tenant.hq(), rule)
        got = {m["id"] for m in body["sample"]}
        assert (body["count"], got) == (len(expected), expected), rule


async def test_preview_masks_without_members_pii(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    p = await populate(client, tenant)
    rule = leaf("tag", "has", "vip")
    full = await _preview(client, tenant.hq(), rule)
    assert full["count"] == 2
    silent = next(m for m in full["sample"] if m["id"] == p.silent)
    assert (silent["name"], "****" in silent["phone"]) == ("王芳", False)
    assert [m["id"] for m in full["sample"]] == sorted(m["id"] for m in full["sample"])
    analyst = await _key(client, tenant, ["segments:read", "members:read"])
    masked = await _preview(client, analyst, rule)
    silent = next(m for m in masked["sample"] if m["id"] == p.silent)
    assert "****" in silent["phone"]  # as in the members list: the phone is masked
    # Nothing is saved by a preview.
    r = await client.get("/api/v1/segments", headers=tenant.hq())
    assert (r.status_code, r.json()["items"]) == (200, [])
    # A key without members:read, or a store key, may not preview.
    only_segments = await _key(client, tenant, ["segments:read"])
    r = await client.post(PREVIEW, json={"rule": rule}, headers=only_segments)
    assert r.status_code == 403, r.text
    r = await client.post(PREVIEW, json={"rule": rule}, headers=tenant.store("S1"))
    assert r.status_code == 403, r.text


async def _bad(client: Any, tenant: Any, rule: Any, status: int) -> list[dict[str, str]]:
    r = await client.post(PREVIEW, json={"rule": rule}, headers=tenant.hq())
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return list(r.json()["errors"])


async def test_a_bad_tree_names_the_bad_node(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    ok = leaf("tier", "in", ["gold"])
    errors = await _bad(client, tenant, {"all": [ok, leaf("tier", "in", 5)]}, 422)
    assert [e["field"] for e in errors] == ["rule.all.1.value"]
    errors = await _bad(client, tenant, {"any": [{"not": leaf("orders", "gte", -1, days=9)}]}, 422)
    assert [e["field"] for e in errors] == ["rule.any.0.not.value"]
    errors = await _bad(client, tenant, {"all": [leaf("shoe_size", "in", [3])]}, 422)
    assert [e["field"] for e in errors] == ["rule.all.0.field"]
    errors = await _bad(client, tenant, {"not": leaf("gender", "eq", "x")}, 422)
    assert {e["field"] for e in errors} == {"rule.not.value"}  # each member of the union
    errors = await _bad(client, tenant, {"both": []}, 422)
    assert [e["field"] for e in errors] == ["rule"]
    errors = await _bad(client, tenant, leaf("spend_fen", "gte", 1), 422)  # no days
    assert [e["field"] for e in errors] == ["rule.days"]
    errors = await _bad(client, tenant, leaf("joined_days_ago", "between", [9, 3]), 422)
    assert [e["field"] for e in errors] == ["rule"]
    errors = await _bad(client, tenant, leaf("birthday_month", "in", [13]), 422)
    assert [e["field"] for e in errors] == ["rule.value.0"]
    errors = await _bad(client, tenant, {"all": [ok], "extra": 1}, 422)
    assert [e["field"] for e in errors] == ["rule.extra"]
    errors = await _bad(client, tenant, "tier", 400)  # not an object: the schema
    assert [e["field"] for e in errors] == ["rule"]
    # Limits: 6 levels, 50 conditions (a 422 naming the node where the limit is passed).
    deep: Any = ok
    for _ in range(6):
        deep = {"not": deep}
    errors = await _bad(client, tenant, deep, 422)
    assert [e["field"] for e in errors] == ["rule" + ".not" * 6]
    errors = await _bad(client, tenant, {"any": [ok] * 51}, 422)
    assert [e["field"] for e in errors] == ["rule.any.50"]
    # A store the chain does not have.
    errors = await _bad(client, tenant, leaf("home_store", "in", ["S1", "NOPE"]), 422)
    assert [(e["field"], e["message"]) for e in errors] == [("rule", "no store with code 'NOPE'")]
    # Five levels and 50 conditions are fine.
    r = await client.post(PREVIEW, json={"rule": {"all": [ok] * 50}}, headers=tenant.hq())
    assert r.status_code == 200, r.text


async def test_saved_segments(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    p = await populate(client, tenant)
    hq = tenant.hq()
    silent = {"name": "Silent members", "rule": leaf("last_order_days_ago", "gte", 90)}
    r = await client.put("/api/v1/segments/silent", json=silent, headers=hq)
    assert r.status_code == 201, r.text
    created = r.json()
    assert (created["code"], created["rule"]) == ("silent", silent["rule"])
    r = await client.put("/api/v1/segments/silent", json=silent, headers=hq)
    assert r.status_code == 200, r.text
    assert r.json()["updated_at"] == created["updated_at"]  # nothing changed
    r = await client.get("/api/v1/segments/silent", headers=hq)
    assert r.status_code == 200, r.text
    assert r.json()["count"] == 4
    # Replaced: the live count follows the rule.
    silent["rule"] = leaf("last_order_days_ago", "gte", 121)
    r = await client.put("/api/v1/segments/silent", json=silent, headers=hq)
    assert r.status_code == 200, r.text
    r = await client.get("/api/v1/segments/silent", headers=hq)
    assert r.json()["count"] == 3
    core = {"name": "Core value circle", "rule": leaf("spend_fen", "gte", 500000, days=365)}
    r = await client.put("/api/v1/segments/core", json=core, headers=hq)
    assert r.status_code == 201, r.text
    r = await client.get("/api/v1/segments", headers=hq)
    assert r.status_code == 200, r.text
    assert [s["code"] for s in r.json()["items"]] == ["core", "silent"]
    # Members, paginated by id, masked without members:pii.
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        r = await client.get("/api/v1/segments/silent/members", params=params, headers=hq)
        assert r.status_code == 200, r.text
        seen += [m["id"] for m in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted({p.silent, p.pregnant, p.baby})
    analyst = await _key(client, tenant, ["segments:read", "members:read"])
    r = await client.get("/api/v1/segments/silent/members", headers=analyst)
    assert r.status_code == 200, r.text
    assert all("****" in m["phone"] for m in r.json()["items"])
    # Writing needs segments:write; a bad rule is refused and nothing changes.
    r = await client.put("/api/v1/segments/x", json=core, headers=analyst)
    assert r.status_code == 403, r.text
    bad = {"name": "Bad", "rule": {"all": [leaf("tier", "in", 5)]}}
    r = await client.put("/api/v1/segments/core", json=bad, headers=hq)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "rule.all.0.value"
    r = await client.put("/api/v1/segments/Bad%20Code", json=core, headers=hq)
    assert r.status_code == 400, r.text
    r = await client.get("/api/v1/segments/core", headers=hq)
    assert (r.json()["rule"], r.json()["count"]) == (core["rule"], 1)
    # Deleted: 204, then 404 everywhere.
    r = await client.delete("/api/v1/segments/core", headers=hq)
    assert r.status_code == 204, r.text
    for path in ("/api/v1/segments/core", "/api/v1/segments/core/members"):
        r = await client.get(path, headers=hq)
        assert r.status_code == 404, r.text
    r = await client.delete("/api/v1/segments/core", headers=hq)
    assert r.status_code == 404, r.text
    # Audited: created, replaced, deleted.
    r = await client.get("/api/v1/audit", params={"limit": 200}, headers=hq)
    actions = [e["action"] for e in r.json()["items"] if e["action"].startswith("segments.")]
    assert actions == [
        "segments.created",
        "segments.replaced",
        "segments.created",
        "segments.deleted",
    ]


async def test_segments_belong_to_their_chain(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    a = await make_tenant()
    b = await make_tenant()
    pa = await populate(client, a)
    body = {"name": "VIP", "rule": leaf("tag", "has", "vip")}
    r = await client.put("/api/v1/segments/vip", json=body, headers=a.hq())
    assert r.status_code == 201, r.text
    for path in ("/api/v1/segments/vip", "/api/v1/segments/vip/members"):
        r = await client.get(path, headers=b.hq())
        assert r.status_code == 404, r.text
    # The same code in B is B's own, over B's members (none).
    r = await client.put("/api/v1/segments/vip", json=body, headers=b.hq())
    assert r.status_code == 201, r.text
    r = await client.get("/api/v1/segments/vip", headers=b.hq())
    assert r.json()["count"] == 0
    r = await client.get("/api/v1/segments/vip", headers=a.hq())
    assert r.json()["count"] == 2
    r = await client.get("/api/v1/segments/vip/members", headers=a.hq())
    assert {m["id"] for m in r.json()["items"]} == {pa.silent, pa.core}
    # Only active members: an erased one leaves every segment.
    r = await client.post(
        f"/api/v1/members/{pa.core}/erasure",
        json={"reason": "PIPL deletion request #1"},
        headers=a.hq(),
    )
    assert r.status_code == 200, r.text
    r = await client.get("/api/v1/segments/vip/members", headers=a.hq())
    assert [m["id"] for m in r.json()["items"]] == [pa.silent]
    r = await client.post(
        PREVIEW, json={"rule": {"not": leaf("tag", "has", "nobody")}}, headers=a.hq()
    )
    assert r.json()["count"] == len(pa.all()) - 1
