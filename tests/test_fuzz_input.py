"""Property: no hostile input gets a 5xx, and every status a route answers is in its OpenAPI.

Every core route (from the app's own OpenAPI) is called with one hostile part at a time:
a query or path parameter holding NUL, a lone surrogate or bytes that are not UTF-8; a body
field replaced by NUL text, a lone surrogate, integers past 32 and 64 bits, floats, wrong
JSON types, deep or huge values; or a whole body that is not UTF-8, nested 5,000 levels,
empty, or sent without a JSON content type. Path parameters name real resources of a tenant
made for the test, and bodies start from valid ones, so a hostile value reaches the
services and the database instead of stopping at the first missing field.

Hypothesis draws the requests (derandomized: CI sees what a developer sees); they are then
sent in the test's event loop. ``NESTPOINT_TEST_FUZZ=thorough`` draws ten times as many.
"""

from __future__ import annotations

import base64
import json
import os
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty.helpers import new_phone, order_body
from test_problems import assert_problem

EXAMPLES = 3000 if os.environ.get("NESTPOINT_TEST_FUZZ") == "thorough" else 300
PROBLEM_STATUSES = {400, 401, 403, 404, 409, 422}

RAW_TEXT = [  # percent-encoded, as they reach the query string or the path
    "%00",
    "a%00b",
    "%ED%A0%80",  # a lone surrogate, encoded
    "x%ED%B3%BFy",
    "%FF",
    "%C0%AF",  # an overlong "/"
    "%C3",
    "x" * 3000,
    "99999999999999999999999",
    "-1",
    "1e309",
    "%20",
]
DEEP: Any = 0
for _ in range(40):
    DEEP = [DEEP]
HOSTILE_JSON: list[Any] = [
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "",
    " ",
    "x" * 100_000,
    2**31,
    2**31 - 1,
    -(2**31) - 1,
    2**63,
    2**63 - 1,
    -(2**63) - 1,
    10**40,
    1e308,
    -1e308,
    0.5,
    -0.0,
    "2",
    True,
    False,
    None,
    [],
    {},
    DEEP,
    list(range(5_000)),
    {f"k{i}": i for i in range(2_000)},
    "2026-02-30T00:00:00+00:00",
    "0001-01-01",
    "9999-12-31T23:59:59+00:00",
    "00000000-0000-0000-0000-000000000000",
]
RAW_BODIES: list[tuple[bytes, str | None]] = [
    (b'{"name": "\xff\xfe"}', "application/json"),
    (b"[" * 5000 + b"]" * 5000, "application/json"),
    (b'{"a":' * 5000 + b"0" + b"}" * 5000, "application/json"),
    (b'{"name": "\\ud800"}', "application/json"),
    (b"", "application/json"),
    (b"null", "application/json"),
    (b"{}", "text/plain"),
    (b"{}", None),
    (b"\x00", "application/json"),
    (b'{"a": 1, "a": 2}', "application/json"),
]


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    query: tuple[str, ...]
    path: tuple[str, ...]
    has_body: bool
    declared: frozenset[int]


def _operations(app: Any) -> list[Operation]:
    spec = app.openapi_schema.to_schema()
    found = []
    for template, item in spec["paths"].items():
        if not template.startswith("/api/"):
            continue
        for method, op in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            if any(tag.startswith("plugin: ") for tag in op.get("tags", [])):
                continue  # routes of installed plugins: their own tests
            params = op.get("parameters", [])
            found.append(
                Operation(
                    method.upper(),
                    template,
                    tuple(p["name"] for p in params if p["in"] == "query"),
                    tuple(p["name"] for p in params if p["in"] == "path"),
                    "requestBody" in op,
                    frozenset(int(code) for code in op.get("responses", {})),
                )
            )
    return sorted(found, key=lambda o: (o.template, o.method))


@dataclass
class World:
    """A tenant with a real resource behind every path parameter."""

    hq: dict[str, str]
    platform: dict[str, str]
    path: dict[str, str]
    member_id: str
    other_member_id: str
    external_id: str
    member: dict[str, str]  # a member token of member_id, for the member API (/api/v1/me)
    card_code: str  # that member's card code, as the till scans it


@pytest.fixture
async def world(client, make_tenant, platform_headers) -> World:  # type: ignore[no-untyped-def]
    from nestpoint.plugins.manager import get_plugin_host

    t = await make_tenant(("S1",))
    hq = t.hq()
    members = []
    for _ in range(2):
        r = await client.post("/api/v1/members", json={"phone": new_phone()}, headers=hq)
        assert r.status_code == 201, r.text
        members.append(r.json()["id"])
    await client.post(
        f"/api/v1/members/{members[0]}/points/adjustments",
        json={"amount": 5000, "reason": "seed", "idempotency_key": uuid.uuid4().hex},
        headers=hq,
    )
    external_id = uuid.uuid4().hex
    r = await client.post(
        "/api/v1/orders", json=order_body(external_id, member={"id": members[0]}), headers=hq
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        "/api/v1/points/holds", json={"member_id": members[0], "points": 100}, headers=hq
    )
    assert r.status_code == 201, r.text
    hold_id = r.json()["id"]
    r = await client.get("/api/v1/api-keys", headers=hq)
    key_id = r.json()["items"][0]["id"]
    message = {"message_key": "fuzz", "template": "points_expiring", "member_ids": [members[0]]}
    r = await client.post("/api/v1/messages", json=message, headers=hq)
    assert r.status_code == 202, r.text
    message_id = r.json()["items"][0]["id"]
    export = {"kind": "members", "format": "csv", "idempotency_key": "fuzz"}
    r = await client.post("/api/v1/exports", json=export, headers=hq)
    assert r.status_code == 202, r.text
    export_id = r.json()["id"]
    r = await client.post("/api/v1/imports", json=_import_body("fuzz"), headers=hq)
    assert r.status_code == 202, r.text
    import_id = r.json()["id"]
    month = f"{datetime.now(ZoneInfo('Asia/Shanghai')):%Y-%m}"  # the chain's month
    r = await client.post(f"/api/v1/settlements/{month}/compute", headers=hq)
    assert r.status_code == 200, r.text
    r = await client.post(
        "/api/v1/console-users", json={"login": "fuzz", "role": "hq_analyst"}, headers=hq
    )
    assert r.status_code == 201, r.text
    console_user_id = r.json()["id"]
    path = {
        "tenant_id": str(t.id),
        "member_id": members[0],
        "child_id": str(uuid.uuid4()),
        "identity_id": str(uuid.uuid4()),
        "hold_id": hold_id,
        "key_id": key_id,
        "code": "S1",
        "channel": "pos",
        "external_id": external_id,
        "plugin_id": next(iter(get_plugin_host().loaded)),
        "use_id": str(uuid.uuid4()),
        "entitlement_id": str(uuid.uuid4()),
        "message_id": message_id,
        "export_id": export_id,
        "import_id": import_id,
        "referral_id": str(uuid.uuid4()),
        "assist_id": str(uuid.uuid4()),
        "run_id": str(uuid.uuid4()),
        "card_id": str(uuid.uuid4()),
        "topup_id": str(uuid.uuid4()),
        "payment_id": str(uuid.uuid4()),
        "key": "points_expiring",
        "locale": "zh-CN",
        "name": "password",
        "month": month,
        "user_id": console_user_id,
    }
    r = await client.post("/api/v1/member-tokens", json={"member_id": members[0]}, headers=hq)
    assert r.status_code == 201, r.text
    member = {"Authorization": f"Bearer {r.json()['token']}"}
    card_code = (await client.get("/api/v1/me/card", headers=member)).json()["code"]
    return World(hq, platform_headers, path, members[0], members[1], external_id, member, card_code)


def _base_body(op: Operation, w: World) -> Any:
    """A valid body for the operation, so a hostile value goes as deep as it can."""
    key = uuid.uuid4().hex
    line = {"sku": "S-1", "category": "feeding", "quantity": 1}
    line |= {"unit_price_fen": 1000, "paid_fen": 1000}
    bodies: dict[tuple[str, str], Any] = {
        ("POST", "/api/v1/tenants"): {"slug": f"f-{key[:10]}", "name": "Fuzz"},
        ("PATCH", "/api/v1/tenants/{tenant_id}"): {"name": "Fuzz", "timezone": "Asia/Shanghai"},
        ("POST", "/api/v1/tenants/{tenant_id}/api-keys"): {"name": "k", "kind": "tenant"},
        ("POST", "/api/v1/stores"): {"code": f"F{key[:8]}", "name": "Fuzz", "active": True},
        ("PATCH", "/api/v1/stores/{code}"): {"name": "S1", "region": "east"},
        ("POST", "/api/v1/api-keys"): {
            "name": "till",
            "kind": "store",
            "store_code": "S1",
            "scopes": ["members:read"],
        },
        ("POST", "/api/v1/members"): {
            "phone": new_phone(),
            "name": "王芳",
            "tags": ["vip"],
            "consents": [{"channel": "sms", "granted": True, "source": "till"}],
            "identities": [{"kind": "pos_card", "value": key}],
        },
        ("PATCH", "/api/v1/members/{member_id}"): {"name": "王芳", "tags": ["a"]},
        ("POST", "/api/v1/members/{member_id}/children"): {
            "nickname": "豆豆",
            "birth_date": "2025-01-01",
        },
        ("PATCH", "/api/v1/members/{member_id}/children/{child_id}"): {"nickname": "x"},
        ("POST", "/api/v1/members/{member_id}/children/{child_id}/birth"): {
            "birth_date": "2025-01-01"
        },
        ("PUT", "/api/v1/members/{member_id}/consents"): [
            {"channel": "sms", "granted": True, "source": "till"}
        ],
        ("POST", "/api/v1/members/{member_id}/identities"): {"kind": "pos_card", "value": key},
        ("POST", "/api/v1/members/{member_id}/phone-change"): {
            "phone": new_phone(),
            "idempotency_key": key,
        },
        ("POST", "/api/v1/members/{member_id}/phone-change/confirm"): {"code": "123456"},
        ("POST", "/api/v1/members/{member_id}/merge"): {"source_member_id": w.other_member_id},
        ("POST", "/api/v1/members/{member_id}/family"): {"member_id": w.other_member_id},
        ("POST", "/api/v1/members/{member_id}/points/adjustments"): {
            "amount": 10,
            "reason": "fuzz",
            "idempotency_key": key,
        },
        ("POST", "/api/v1/members/{member_id}/points/transfers"): {
            "to_member_id": w.other_member_id,
            "amount": 1,
            "idempotency_key": key,
        },
        ("POST", "/api/v1/members/{member_id}/growth"): {
            "amount": 10,
            "reason": "fuzz",
            "idempotency_key": key,
        },
        ("POST", "/api/v1/orders"): _with_stored_value(
            order_body(key, member={"id": w.member_id}, lines=[line])
        ),
        ("POST", "/api/v1/orders/preview"): {
            "store_code": "S1",
            "member": {"id": w.member_id},
            "lines": [line],
        },
        ("POST", "/api/v1/orders/{channel}/{external_id}/refunds"): {
            "external_id": key,
            "lines": [{"line_no": 1, "quantity": 1}],
        },
        ("POST", "/api/v1/points/holds"): {"member_id": w.member_id, "points": 1},
        ("PUT", "/api/v1/tenant/plugins/{plugin_id}"): {"enabled": True, "config": {}},
        ("PUT", "/api/v1/tenant/plugins/{plugin_id}/stores/{code}"): {"enabled": True},
        ("PUT", "/api/v1/benefits/{code}"): {"name": "Gift", "type": "core.gift", "quota": 1},
        ("PUT", "/api/v1/benefit-bundles/{code}"): {"name": "Pack", "points": 10},
        ("POST", "/api/v1/members/{member_id}/benefits/{code}/uses"): {"idempotency_key": key},
        ("POST", "/api/v1/members/{member_id}/benefits/{code}/exchanges"): {"idempotency_key": key},
        ("POST", "/api/v1/benefit-uses/{use_id}/reverse"): {"reason": "fuzz"},
        ("PUT", "/api/v1/messaging/settings"): {
            "channel_order": ["sms", "email"],
            "quiet_hours": {"start": "21:00", "end": "08:00", "action": "defer"},
            "frequency_cap": {"count": 4, "days": 7, "exempt": ["birthday"]},
            "transactional": {"points_earned": True},
        },
        ("PUT", "/api/v1/messaging/templates/{key}/{locale}"): {
            "subject": "提醒",
            "body": "{{ member_name }} {{ points_expiring }}",
            "html": "<p>{{ member_name }}</p>",
        },
        ("POST", "/api/v1/messaging/preview"): {
            "key": "points_expiring",
            "locale": "zh-CN",
            "member_id": w.member_id,
            "params": {"extra": "x"},
        },
        ("POST", "/api/v1/messages"): {
            "message_key": key,
            "template": "points_expiring",
            "member_ids": [w.member_id],
            "params": {"extra": 1},
        },
        ("PUT", "/api/v1/tenant/plugins/{plugin_id}/secrets/{name}"): {"value": "s3cr3t"},
        ("POST", "/api/v1/exports"): {"kind": "members", "format": "xlsx", "idempotency_key": key},
        ("POST", "/api/v1/imports"): _import_body(key),
        ("POST", "/api/v1/imports/preview"): {
            "kind": "children",
            "content": base64.b64encode(b"member_phone,legacy_id\n13800000000,C1\n").decode(),
            "mapping": {"legacy_id": "legacy_id"},
        },
        ("POST", "/api/v1/members/{member_id}/data-exports"): {
            "reason": "PIPL access request #1",
            "idempotency_key": key,
        },
        ("POST", "/api/v1/segments/preview"): {"rule": _segment_rule()},
        ("PUT", "/api/v1/segments/{code}"): {"name": "Fuzz", "rule": _segment_rule()},
        ("PUT", "/api/v1/coupon-templates/{code}"): {
            "name": "满80减20",
            "kind": "amount_off",
            "threshold_fen": 8000,
            "amount_off_fen": 2000,
            "valid_days": 30,
        },
        ("POST", "/api/v1/members/{member_id}/coupons"): {
            "template_code": "S1",
            "idempotency_key": key,
        },
        ("POST", "/api/v1/coupons/check"): {
            "member_id": w.member_id,
            "store_code": "S1",
            "lines": [{"sku": "MILK-1", "category": "feeding", "paid_fen": 10000}],
        },
        ("POST", "/api/v1/coupons/holds"): {"member_id": w.member_id, "codes": ["S1"]},
        ("POST", "/api/v1/coupons/{code}/void"): {"reason": "fuzz"},
        ("PUT", "/api/v1/referrals/settings"): {
            "enabled": True,
            "inviter_points": 200,
            "invitee_points": 100,
            "min_order_fen": 5000,
        },
        ("POST", "/api/v1/referrals"): {
            "code": "ABCD2345",
            "invitee_id": w.other_member_id,
            "device_id": "device-0001",
        },
        ("POST", "/api/v1/referrals/{referral_id}/review"): {"approve": True, "reason": "ok"},
        ("POST", "/api/v1/members/{member_id}/assists"): {"idempotency_key": key},
        ("POST", "/api/v1/assists/{assist_id}/helpers"): {
            "helper_id": w.other_member_id,
            "device_id": "device-0002",
        },
        ("PUT", "/api/v1/segments/thresholds"): {
            "recency_days": 30,
            "frequency_orders": 4,
            "monetary_fen": 50000,
            "core_fen": 600000,
        },
        ("POST", "/api/v1/campaigns"): {
            "code": f"F{key[:8]}",
            "name": "Fuzz",
            "kind": "birthday_month",
            "schedule": {"kind": "triggered", "on": "child_age_months", "months": 6},
            "audience": {"rule": _segment_rule()},
            "actions": [
                {"type": "grant_points", "points": 100},
                {"type": "send_message", "template": "points_expiring", "params": {"a": "b"}},
            ],
            "budget": {"points": 10000, "coupons": 10},
            "caps": {"points_per_member": 500, "coupons_per_member": 1},
            "goal": {"metric": "orders", "target": 10},
            "holdout_percent": 10,
        },
        ("PUT", "/api/v1/settlements/rules"): {
            "point_value_fen": 1,
            "benefit_fee_fen": 200,
            "benefit_fees": {"wipes-pack": 500},
        },
        ("POST", "/api/v1/settlements/{month}/close"): {"idempotency_key": key},
        ("PUT", "/api/v1/wallet/rules"): {
            "bonus_tiers": [{"threshold_fen": 100000, "bonus_fen": 10000}],
        },
        ("POST", "/api/v1/members/{member_id}/wallet/topups"): {
            "amount_fen": 100000,
            "store_code": "S1",
            "tender": "cash",
            "idempotency_key": key,
        },
        ("PUT", "/api/v1/payments/stripe"): {
            "secret_key": "sk_test_fuzz",
            "webhook_secret": "whsec_fuzz",
            "publishable_key": "pk_test_fuzz",
        },
        ("POST", "/api/v1/members/{member_id}/wallet/adjustments"): {
            "principal_fen": 100,
            "bonus_fen": -1,
            "reason": "fuzz",
            "store_code": "S1",
            "idempotency_key": key,
        },
        ("PUT", "/api/v1/paid-plans/{code}"): {
            "name": "Black card",
            "period": "year",
            "price_fen": 29900,
            "benefits": [],
            "stacks_with_tier": True,
            "retain_tier": True,
        },
        ("PUT", "/api/v1/paid-memberships/settings"): {
            "grace_days": 7,
            "reminder_days": 7,
            "retry_days": 1,
            "refund_rule": "pro_rata",
            "full_refund_days": 7,
        },
        ("POST", "/api/v1/members/{member_id}/paid-memberships"): {
            "plan": "black",
            "payment_method": "pm_card_visa",
            "store_code": "S1",
            "auto_renew": True,
            "idempotency_key": key,
        },
        ("POST", "/api/v1/members/{member_id}/paid-memberships/{card_id}/upgrade"): {
            "plan": "plus",
            "idempotency_key": key,
        },
        ("POST", "/api/v1/members/{member_id}/paid-memberships/{card_id}/cancel"): {
            "when": "now",
            "reason": "fuzz",
            "idempotency_key": key,
        },
        ("PUT", "/api/v1/members/{member_id}/paid-memberships/{card_id}/auto-renew"): {
            "auto_renew": False,
            "payment_method": "pm_card_visa",
        },
        ("PUT", "/api/v1/billing/plans/{code}"): {
            "name": "Fuzz plan",
            "price_fen": 9900,
            "currency": "CNY",
            "max_members": 100000,
            "max_stores": None,
            "active": True,
        },
        ("PUT", "/api/v1/tenants/{tenant_id}/billing/subscription"): {"plan_code": "enterprise"},
        # The member API: the other member's tokens (revoking the world's own would leave
        # the /me routes nothing to answer but 401).
        ("POST", "/api/v1/member-tokens"): {"member_id": w.member_id},
        ("POST", "/api/v1/member-tokens/revoke"): {"member_id": w.other_member_id},
        # No valid WeChat app here: the bind would call WeChat, which the tests have not
        # (tests/memberapi/test_wechat.py runs it against a fake); it answers 404.
        ("POST", "/api/v1/me/wechat"): {"code": "abc"},
        # No SMS channel in this chain: a valid start is 409 phone-code-undeliverable.
        ("POST", "/api/v1/me/phone-change"): {"phone": new_phone(), "idempotency_key": key},
        ("POST", "/api/v1/me/phone-change/confirm"): {"code": "123456"},
        ("POST", "/api/v1/members/lookup-by-code"): {"code": w.card_code},
        ("POST", "/api/v1/console-users"): {
            "login": f"u{key[:8]}",
            "role": "store_clerk",
            "store_code": "S1",
            "locale": "en",
            "password": "a long enough password",
        },
        ("PATCH", "/api/v1/console-users/{user_id}"): {
            "role": "hq_analyst",
            "locale": "zh-CN",
            "disabled": False,
            "reset_password": False,
        },
        ("POST", "/api/v1/campaigns/templates/{key}/instantiate"): {
            "code": f"F{key[:8]}",
            "message_template": "points_expiring",
            "points": 100,
        },
    }
    return bodies.get((op.method, op.template), {})


def _segment_rule() -> dict[str, Any]:
    return {
        "all": [
            {"field": "tag", "op": "has", "value": "vip"},
            {"not": {"field": "home_store", "op": "in", "value": ["S1"]}},
            {"field": "spend_fen", "op": "gte", "value": 100, "days": 90, "category": "feeding"},
            {"field": "child_turns_months", "value": {"months": 6, "within_days": 7}},
            {"field": "rfm_group", "op": "in", "value": ["important_value"]},
        ]
    }


def _with_stored_value(body: dict[str, Any]) -> dict[str, Any]:
    """An order body whose payment names stored value too (0), so it is fuzzed."""
    return body | {"payment": body["payment"] | {"stored_value_fen": 0}}


def _import_body(key: str) -> dict[str, Any]:
    """A members file of one row, base64, as POST /imports takes it."""
    content = base64.b64encode("phone,name\n13800000000,王芳\n".encode()).decode()
    return {"kind": "members", "format": "csv", "content": content, "idempotency_key": key}


def _leaf_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths: list[tuple[Any, ...]] = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            paths += _leaf_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += _leaf_paths(item, (*prefix, index))
    return paths


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value.get(head), rest, new)}
    copy = list(value)
    copy[head] = _replaced(copy[head], rest, new)
    return copy


@dataclass(frozen=True)
class Attack:
    op_index: int
    where: str  # query | path | field | body
    pick: int  # which parameter, field or raw body
    value: int  # which hostile value


def _attacks(count: int) -> list[Attack]:
    drawn: list[Attack] = []
    attack = st.builds(
        Attack,
        st.integers(0, 10_000),
        st.sampled_from(["query", "path", "field", "field", "body"]),
        st.integers(0, 10_000),
        st.integers(0, 10_000),
    )

    @given(attack)
    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def collect(a: Attack) -> None:
        drawn.append(a)

    collect()
    return drawn


def _request(op: Operation, a: Attack, w: World) -> tuple[str, bytes | None, dict[str, str], str]:
    """(url, body, headers, what was hostile) for one attack on one operation."""
    path = dict(w.path)
    query: dict[str, str] = {}
    body = _base_body(op, w)
    raw_body: bytes | None = None
    content_type: str | None = "application/json"
    what = a.where
    if a.where == "query":
        name = (*op.query, "x")[a.pick % (len(op.query) + 1)]
        query[name] = RAW_TEXT[a.value % len(RAW_TEXT)]
        what = f"query {name}={query[name][:40]}"
    elif a.where == "path" and op.path:
        name = op.path[a.pick % len(op.path)]
        path[name] = RAW_TEXT[a.value % len(RAW_TEXT)]
        what = f"path {name}={path[name][:40]}"
    elif a.where == "body" and op.has_body:
        raw_body, content_type = RAW_BODIES[a.pick % len(RAW_BODIES)]
        what = f"body {raw_body[:40]!r} as {content_type}"
    elif op.has_body:
        targets = _leaf_paths(body) or [("x",)]
        target = targets[a.pick % len(targets)]
        new = HOSTILE_JSON[a.value % len(HOSTILE_JSON)]
        body = _replaced(body, target, new)
        what = f"field {'.'.join(map(str, target))}={json.dumps(new)[:40]}"
    url = re.sub(r"\{(\w+)\}", lambda m: quote(path[m.group(1)], safe="%"), op.template)
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    headers = w.platform if op.template.startswith("/api/v1/tenants") else w.hq
    if op.template == "/api/v1/me" or op.template.startswith("/api/v1/me/"):
        headers = w.member
    if content_type:
        headers = {**headers, "content-type": content_type}
    if raw_body is None and op.has_body:
        raw_body = json.dumps(body).encode()
    return url, raw_body, headers, what


async def test_no_hostile_input_gets_a_5xx_or_an_undeclared_status(client, app, world) -> None:
    operations = _operations(app)
    assert len(operations) > 40
    seen: dict[int, int] = {}
    for attack in _attacks(EXAMPLES):
        op = operations[attack.op_index % len(operations)]
        url, body, headers, what = _request(op, attack, world)
        r = await client.request(op.method, url, content=body, headers=headers)
        case = f"{op.method} {op.template} with {what}: {r.status_code} {r.text[:300]}"
        assert r.status_code < 500, case
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
        if r.status_code >= 400:
            problem = assert_problem(r, r.status_code)
            router_miss = r.status_code in {404, 405} and attack.where == "path"
            assert r.status_code in op.declared or router_miss, case
            if r.status_code in {400, 422}:
                assert problem["errors"], case
                assert all(e["field"] and e["message"] for e in problem["errors"]), case
    assert seen.keys() & {200, 201, 204}, seen  # some requests went all the way through
    assert seen.keys() <= {200, 201, 202, 204, *PROBLEM_STATUSES, 405}, seen
