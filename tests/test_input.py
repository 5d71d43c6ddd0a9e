"""Bad input gets a clear 4xx naming the field, never a 500, and writes nothing.

400: the request does not match the OpenAPI schema (not JSON, a wrong type, a bad pattern or
limit); 422: it matches the schema but breaks a rule. Body fields are named by their path in
the body, parameters by where they are (``query.tag``, ``header.content-type``).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty.helpers import new_phone, order_body
from nestpoint.limits import (
    INT32_MAX,
    INT64_MAX,
    MAX_BODY_BYTES,
    MAX_CONFIG_BYTES,
    MAX_FEN,
    MAX_ORDER_FEN,
    MAX_POINTS,
    MAX_THRESHOLD,
)
from nestpoint.loyalty.schemas import MAX_CATEGORY_MULTIPLIERS
from nestpoint.orders.schemas import EXTERNAL_ID
from test_problems import assert_problem, fields

JSON = {"content-type": "application/json"}
LIBRARY_PHONE_TEXT = ("The string supplied", "(0)", "(1)", "(2)", "(3)", "(4)", "(5)")


async def enrol(client: Any, headers: dict[str, str], **extra: Any) -> dict[str, Any]:
    r = await client.post("/api/v1/members", json={"phone": new_phone()} | extra, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def only(body: dict[str, Any], field: str) -> None:
    assert fields(body) == {field}, body


# ------------------------------------------------------------------ query parameters


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/v1/members", "tag"),
        ("/api/v1/members", "tier"),
        ("/api/v1/members", "cursor"),
        ("/api/v1/members/lookup", "phone"),
        ("/api/v1/members/lookup", "identity_value"),
        ("/api/v1/events", "type"),
        ("/api/v1/stores", "cursor"),
        ("/api/v1/tenant/plugin-failures", "plugin"),
    ],
)
async def test_query_text_is_utf8_without_nul(client, make_tenant, row_counts, path, name) -> None:
    t = await make_tenant(("S1",))
    before = await row_counts(t.id)
    for raw in ("a%00b", "%00", "%ED%A0%80", "x%ED%B0%80y", "%FF", "%C3"):
        r = await client.get(f"{path}?{name}={raw}&identity_kind=pos_card", headers=t.hq())
        body = assert_problem(r, 400)
        only(body, f"query.{name}")
    assert await row_counts(t.id) == before


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/benefits/a%00b",
        "/api/v1/stores/S%001",
    ],
)
async def test_a_path_holding_nul_is_400_naming_the_path(client, make_tenant, path) -> None:
    """Found by the fuzz test: a NUL in a text path parameter reached PostgreSQL (a 500)."""
    t = await make_tenant(("S1",))
    body = assert_problem(await client.get(path, headers=t.hq()), 400)
    only(body, "path")


# ------------------------------------------------------------------ JSON bodies


async def test_bodies_that_are_not_sane_json_are_400_naming_the_body(
    client, make_tenant, row_counts
) -> None:
    t = await make_tenant(("S1",))
    before = await row_counts(t.id)
    store = {"code": "S9", "name": "Nine"}
    cases: list[tuple[bytes, dict[str, str], str]] = [
        (b'{"code": "S9", "name": "\xff\xfe"}', JSON, "body"),  # not UTF-8
        (b"[" * 5000 + b"]" * 5000, JSON, "body"),  # 5,000 levels
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, JSON, "body"),
        (b"[" * 33 + b"]" * 33, JSON, "body"),  # one level over the limit
        (b'{"code": "S9", "name": "\\ud800"}', JSON, "body"),  # a lone surrogate
        (b'{"code": "S9", "name": "' + b"x" * MAX_BODY_BYTES + b'"}', JSON, "body"),
        (b"", JSON, "body"),
        (b"{not json", JSON, "body"),
        (json.dumps(store).encode(), {"content-type": "text/plain"}, "header.content-type"),
        (json.dumps(store).encode(), {}, "header.content-type"),
        (json.dumps(store).encode(), {"content-type": "application/xml"}, "header.content-type"),
    ]
    for content, headers, field in cases:
        r = await client.post("/api/v1/stores", content=content, headers={**t.hq(), **headers})
        body = assert_problem(r, 400)
        only(body, field)
        assert "'data'" not in r.text
    r = await client.post(
        "/api/v1/stores",
        content=json.dumps(store).encode(),
        headers={**t.hq(), "content-type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 201, r.text
    after = await row_counts(t.id)
    assert after["stores"] == before["stores"] + 1


async def test_empty_body_says_a_body_is_required(client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    r = await client.post("/api/v1/orders", content=b"", headers={**t.hq(), **JSON})
    body = assert_problem(r, 400)
    assert body["errors"] == [{"field": "body", "message": "a JSON body is required"}]


async def test_text_fields_refuse_nul(client, make_tenant, row_counts) -> None:
    t = await make_tenant(("S1",))
    before = await row_counts(t.id)
    r = await client.post("/api/v1/stores", json={"code": "S9", "name": "a\x00b"}, headers=t.hq())
    only(assert_problem(r, 400), "name")
    r = await client.post("/api/v1/members", json={"phone": "138\x0000000000"}, headers=t.hq())
    only(assert_problem(r, 400), "phone")
    assert await row_counts(t.id) == before


# ------------------------------------------------------------------ strict types


async def test_wrong_types_are_refused_not_coerced(client, make_tenant, row_counts) -> None:
    t = await make_tenant(("S1",))
    member = await enrol(client, t.hq())
    before = await row_counts(t.id)
    for bad in ("2", True, 2.5, None, [2]):
        body = order_body(member={"id": member["id"]})
        body["lines"][0]["quantity"] = bad
        r = await client.post("/api/v1/orders", json=body, headers=t.hq())
        only(assert_problem(r, 400), "lines.0.quantity")
    body = order_body(member={"id": member["id"]})
    body["paid_at"] = 1_700_000_000  # a number is not a date-time
    r = await client.post("/api/v1/orders", json=body, headers=t.hq())
    only(assert_problem(r, 400), "paid_at")
    r = await client.patch("/api/v1/stores/S1", json={"active": "false"}, headers=t.hq())
    only(assert_problem(r, 400), "active")
    r = await client.patch("/api/v1/stores/S1", json={"active": 0}, headers=t.hq())
    only(assert_problem(r, 400), "active")
    r = await client.put(
        f"/api/v1/members/{member['id']}/consents",
        json=[{"channel": "sms", "granted": 1, "source": "till"}],
        headers=t.hq(),
    )
    only(assert_problem(r, 400), "granted")  # an item of the array body
    assert await row_counts(t.id) == before

    body = order_body(member={"id": member["id"]})  # UUIDs and dates from their strings
    body["lines"][0]["quantity"] = 2.0  # JSON has one number type: 2.0 is the integer 2
    r = await client.post("/api/v1/orders", json=body, headers=t.hq())
    assert r.status_code == 201, r.text


# ------------------------------------------------------------------ 400 and 422


async def test_a_rule_broken_is_422_naming_the_field(client, make_tenant, row_counts) -> None:
    t = await make_tenant(("S1",))
    member = await enrol(client, t.hq())
    before = await row_counts(t.id)
    body = order_body(member={"id": member["id"], "phone": new_phone()})
    r = await client.post("/api/v1/orders", json=body, headers=t.hq())
    body = assert_problem(r, 422)
    only(body, "member")
    assert "exactly one of" in body["errors"][0]["message"]
    assert not body["errors"][0]["message"].startswith("Value error")
    assert await row_counts(t.id) == before


async def test_a_duplicate_consent_channel_is_blamed_on_the_consents(
    client, make_tenant, row_counts
) -> None:
    t = await make_tenant(("S1",))
    member = await enrol(client, t.hq())
    before = await row_counts(t.id)
    twice = [
        {"channel": "sms", "granted": True, "source": "till"},
        {"channel": "sms", "granted": False, "source": "till"},
    ]
    r = await client.post(
        "/api/v1/members", json={"phone": new_phone(), "consents": twice}, headers=t.hq()
    )
    body = assert_problem(r, 422)
    only(body, "consents")
    assert "sms" in body["errors"][0]["message"]
    r = await client.put(f"/api/v1/members/{member['id']}/consents", json=twice, headers=t.hq())
    only(assert_problem(r, 422), "body")
    card = {"kind": "pos_card", "value": "C-1"}
    r = await client.post(
        "/api/v1/members",
        json={"phone": new_phone(), "identities": [card, card]},
        headers=t.hq(),
    )
    only(assert_problem(r, 422), "identities")
    assert await row_counts(t.id) == before


async def test_phone_errors_are_ours(client, make_tenant, row_counts) -> None:
    t = await make_tenant(("S1",))
    before = await row_counts(t.id)
    for phone in ("a", "+0", "abc", "+00", "12345", "+86 1", "++86"):
        r = await client.post("/api/v1/members", json={"phone": phone}, headers=t.hq())
        body = assert_problem(r, 422)
        only(body, "phone")
        assert not any(text in r.text for text in LIBRARY_PHONE_TEXT), r.text
        r = await client.get("/api/v1/members/lookup", params={"phone": phone}, headers=t.hq())
        only(assert_problem(r, 422), "query.phone")
        assert not any(text in r.text for text in LIBRARY_PHONE_TEXT), r.text
    assert await row_counts(t.id) == before


# ------------------------------------------------------------------ limits fit the columns


async def test_amounts_at_the_maximum_fit_their_columns(client, make_tenant, row_counts) -> None:
    """At the highest multipliers, orders at the maximum, and growth beyond 32 bits."""
    t = await make_tenant(("S1",))
    r = await client.get("/api/v1/loyalty/program", headers=t.hq())
    program = r.json()
    program.pop("version")
    program["earn_rules"] |= {
        "category_multipliers": {"feeding": 10_000},
        "store_multipliers": {"S1": 10_000},
    }
    program["tiers"][-1]["threshold"] = MAX_THRESHOLD
    program["tiers"][0]["earn_rate_percent"] = 10_000
    r = await client.put("/api/v1/loyalty/program", json=program, headers=t.hq())
    assert r.status_code == 200, r.text
    member = await enrol(client, t.hq())
    line = {"sku": "X", "category": "feeding", "quantity": 1}
    line |= {"unit_price_fen": MAX_FEN, "paid_fen": MAX_ORDER_FEN}
    orders = INT32_MAX // (MAX_ORDER_FEN // 100) + 1  # enough growth to overflow 32 bits
    for _ in range(orders):
        body = order_body(member={"id": member["id"]}, lines=[line])
        r = await client.post("/api/v1/orders", json=body, headers=t.hq())
        assert r.status_code == 201, r.text
    outcome = r.json()["member"]
    assert outcome["growth_value"] == orders * MAX_ORDER_FEN // 100 > INT32_MAX
    assert outcome["points_balance"] < INT64_MAX

    before = await row_counts(t.id)
    body = order_body(member={"id": member["id"]}, lines=[line, line], cash_fen=MAX_FEN)
    r = await client.post("/api/v1/orders", json=body, headers=t.hq())
    only(assert_problem(r, 422), "lines")  # together over the order's maximum
    for field, value in [("unit_price_fen", MAX_FEN + 1), ("paid_fen", MAX_FEN + 1)]:
        r = await client.post(
            "/api/v1/orders",
            json=order_body(member={"id": member["id"]}, lines=[line | {field: value}]),
            headers=t.hq(),
        )
        assert f"lines.0.{field}" in fields(assert_problem(r, 400))
    program["tiers"][-1]["threshold"] = MAX_THRESHOLD + 1
    r = await client.put("/api/v1/loyalty/program", json=program, headers=t.hq())
    only(assert_problem(r, 400), f"tiers.{len(program['tiers']) - 1}.threshold")
    r = await client.post(
        "/api/v1/points/holds",
        json={"member_id": member["id"], "points": MAX_POINTS + 1},
        headers=t.hq(),
    )
    only(assert_problem(r, 400), "points")
    assert await row_counts(t.id) == before
    r = await client.post(
        f"/api/v1/members/{member['id']}/points/adjustments",
        json={"amount": MAX_POINTS, "reason": "most", "idempotency_key": uuid.uuid4().hex},
        headers=t.hq(),
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        "/api/v1/points/holds",
        json={"member_id": member["id"], "points": MAX_POINTS},
        headers=t.hq(),
    )
    assert r.status_code == 201, r.text


async def test_configuration_collections_are_bounded(client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    r = await client.get("/api/v1/loyalty/program", headers=t.hq())
    program = r.json()
    program.pop("version")
    many = {f"cat-{i}": 150 for i in range(MAX_CATEGORY_MULTIPLIERS + 1)}
    program["earn_rules"]["category_multipliers"] = many
    r = await client.put("/api/v1/loyalty/program", json=program, headers=t.hq())
    only(assert_problem(r, 400), "earn_rules.category_multipliers")
    program["earn_rules"]["category_multipliers"] = dict(list(many.items())[:-1])
    r = await client.put("/api/v1/loyalty/program", json=program, headers=t.hq())
    assert r.status_code == 200, r.text
    for key, item in [
        ("excluded_skus", "sku"),
        ("excluded_categories", "cat"),
    ]:
        program["earn_rules"][key] = [f"{item}-{i}" for i in range(2_001)]
        r = await client.put("/api/v1/loyalty/program", json=program, headers=t.hq())
        only(assert_problem(r, 400), f"earn_rules.{key}")
        program["earn_rules"][key] = []
    program["tiers"] = [program["tiers"][0]] * 21
    r = await client.put("/api/v1/loyalty/program", json=program, headers=t.hq())
    assert "tiers" in fields(assert_problem(r, 400))


async def test_plugin_configuration_is_bounded(client, make_tenant) -> None:
    from nestpoint.plugins.manager import get_plugin_host

    t = await make_tenant(("S1",))
    plugin_id = next(iter(get_plugin_host().loaded))
    huge = {"notes": "x" * MAX_CONFIG_BYTES}
    r = await client.put(
        f"/api/v1/tenant/plugins/{plugin_id}", json={"config": huge}, headers=t.hq()
    )
    body = assert_problem(r, 422)
    only(body, "config")
    assert str(MAX_CONFIG_BYTES) in body["errors"][0]["message"]
    r = await client.put(
        f"/api/v1/tenant/plugins/{plugin_id}/stores/S1", json={"config": huge}, headers=t.hq()
    )
    only(assert_problem(r, 422), "config")
    deep: Any = 1
    for _ in range(40):
        deep = {"a": deep}
    r = await client.put(
        f"/api/v1/tenant/plugins/{plugin_id}", json={"config": deep}, headers=t.hq()
    )
    only(assert_problem(r, 400), "body")


# ------------------------------------------------------------------ one external id


async def test_an_external_id_with_a_slash_is_refused(client, make_tenant, row_counts) -> None:
    t = await make_tenant(("S1",))
    before = await row_counts(t.id)
    for external_id in ("a/b", "/", "..", ".", "a" * 101, "a b"):
        r = await client.post("/api/v1/orders", json=order_body(external_id), headers=t.hq())
        only(assert_problem(r, 400), "external_id")
        r = await client.post(
            "/api/v1/orders/pos/ok-1/refunds", json={"external_id": external_id}, headers=t.hq()
        )
        only(assert_problem(r, 400), "external_id")
    assert await row_counts(t.id) == before


def _external_ids() -> list[str]:
    found: list[str] = []

    @given(st.from_regex(EXTERNAL_ID, fullmatch=True).filter(lambda s: len(s) <= 100))
    @settings(
        max_examples=12, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
    )
    def collect(external_id: str) -> None:
        found.append(external_id)

    collect()
    return sorted({*found, ".a", "a.", "...x", ":", "-", "a:b.c_d-e", "9" * 100})


async def test_every_external_id_the_body_accepts_can_be_fetched_and_refunded(
    client, make_tenant
) -> None:
    t = await make_tenant(("S1",))
    for external_id in _external_ids():
        r = await client.post("/api/v1/orders", json=order_body(external_id), headers=t.hq())
        assert r.status_code == 201, (external_id, r.text)
        r = await client.get(f"/api/v1/orders/pos/{external_id}", headers=t.hq())
        assert r.status_code == 200, (external_id, r.text)
        assert r.json()["external_id"] == external_id
        r = await client.post(
            f"/api/v1/orders/pos/{external_id}/refunds",
            json={"external_id": external_id},
            headers=t.hq(),
        )
        assert r.status_code == 201, (external_id, r.text)


# ------------------------------------------------------------------ a hold that is not there


async def test_an_unknown_hold_is_a_declared_404(client, make_tenant, app) -> None:
    t = await make_tenant(("S1",))
    member = await enrol(client, t.hq())
    await client.post(
        f"/api/v1/members/{member['id']}/points/adjustments",
        json={"amount": 500, "reason": "seed", "idempotency_key": uuid.uuid4().hex},
        headers=t.hq(),
    )
    body = order_body(member={"id": member["id"]}, points_used=100, hold_id=str(uuid.uuid4()))
    r = await client.post("/api/v1/orders", json=body, headers=t.hq())
    status = r.status_code
    assert_problem(r, status)
    declared = app.openapi_schema.to_schema()["paths"]["/api/v1/orders"]["post"]["responses"]
    assert str(status) in declared, (status, sorted(declared))
    r = await client.get(f"/api/v1/points/holds/{uuid.uuid4()}", headers=t.hq())
    assert_problem(r, 404)


def test_the_limits_fit_the_columns() -> None:
    """The arithmetic behind nestpoint.limits, against the columns that store the values."""
    from pydantic import TypeAdapter
    from sqlalchemy import BigInteger, Integer

    import nestpoint.db.models  # noqa: F401  (every context's tables)
    from nestpoint.db.base import Base
    from nestpoint.limits import MAX_LINES, MAX_QUANTITY
    from nestpoint.loyalty.schemas import Percent

    tables = Base.metadata.tables
    top = 10_000
    assert TypeAdapter(Percent).json_schema()["maximum"] == top
    most_points_per_order = MAX_ORDER_FEN * top**3 // 100_000_000
    assert isinstance(tables["members"].c.growth_value.type, BigInteger)
    assert isinstance(tables["point_accounts"].c.balance.type, BigInteger)
    assert most_points_per_order * 10_000 < INT64_MAX  # ten thousand such orders per member
    assert isinstance(tables["tier_definitions"].c.threshold.type, Integer)
    assert MAX_THRESHOLD <= INT32_MAX
    assert isinstance(tables["order_lines"].c.quantity.type, Integer)
    assert MAX_QUANTITY * MAX_LINES <= INT32_MAX
    assert MAX_FEN * MAX_LINES < INT64_MAX
