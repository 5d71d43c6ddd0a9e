"""Coupons through the API: templates, grants and exchanges (idempotent, stock and limits),
the till's check and hold, redemption inside the order (exact amount, exactly once, no
points on what a coupon paid), restoration on a whole refund, merge, and races for one
coupon or the last of the stock (on SQLite too)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from commands import nestpoint as _nestpoint
from loyalty.helpers import order_body
from loyalty.support import adjust, balances, post_order, refund

MILK = {"sku": "MILK-1", "name": "Formula", "category": "feeding", "quantity": 1,
        "unit_price_fen": 10_000, "paid_fen": 10_000}  # fmt: skip
TOY = {"sku": "BLOCKS", "name": "Blocks", "category": "toys", "quantity": 2,
       "unit_price_fen": 2_500, "paid_fen": 5_000}  # fmt: skip


def manjian(**extra: Any) -> dict[str, Any]:
    """满 80 减 20 on feeding, valid 30 days from issue."""
    return {
        "name": "满80减20",
        "kind": "amount_off",
        "threshold_fen": 8_000,
        "amount_off_fen": 2_000,
        "categories": ["feeding"],
        "valid_days": 30,
    } | extra


async def put_template(client: Any, t: Any, code: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await client.put(f"/api/v1/coupon-templates/{code}", json=body, headers=t.hq())
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


async def grant(
    client: Any, headers: dict[str, str], member_id: str, template: str, **extra: Any
) -> httpx.Response:
    body = {"template_code": template, "idempotency_key": uuid.uuid4().hex} | extra
    return await client.post(f"/api/v1/members/{member_id}/coupons", json=body, headers=headers)


async def granted(client: Any, t: Any, member_id: str, template: str) -> dict[str, Any]:
    r = await grant(client, t.hq(), member_id, template)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def till_key(client: Any, t: Any, store: str = "S1") -> dict[str, str]:
    """A store key with the till's default scopes (coupons:read and coupons:use among them)."""
    r = await client.post(
        "/api/v1/api-keys",
        json={"name": f"till {store}", "kind": "store", "store_code": store},
        headers=t.hq(),
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


def paying(member_id: str, code: str, amount: int, lines: list[dict[str, Any]] | None = None,
           **extra: Any) -> dict[str, Any]:  # fmt: skip
    lines = lines or [MILK]
    body = order_body(member={"id": member_id}, lines=lines, **extra)
    total = sum(li["paid_fen"] for li in lines)
    body["payment"] = {
        "cash_fen": total - amount,
        "coupons": [{"code": code, "amount_fen": amount}],
    }
    return body


async def coupon(client: Any, t: Any, code: str) -> dict[str, Any]:
    r = await client.get(f"/api/v1/coupons/{code}", headers=t.hq())
    assert r.status_code == 200, r.text
    return dict(r.json())


# ------------------------------------------------------------------ templates and issue


async def test_a_template_needs_the_fields_of_its_kind(client, make_tenant):
    t = await make_tenant()
    for body, missing in (
        (manjian(amount_off_fen=None), "amount_off_fen"),
        ({"name": "9折", "kind": "percent_off", "valid_days": 7}, "percent_off"),
        ({"name": "赠品", "kind": "gift", "valid_days": 7}, "gift_sku"),
        (manjian(valid_days=None), "valid_until"),
    ):
        r = await client.put("/api/v1/coupon-templates/BAD", json=body, headers=t.hq())
        assert r.status_code == 422, r.text
        assert missing in r.text
    r = await client.put(
        "/api/v1/coupon-templates/BAD", json=manjian(percent_off=10), headers=t.hq()
    )
    assert r.status_code == 422
    assert "percent_off" in r.text
    r = await client.put("/api/v1/coupon-templates/M20", json=manjian(), headers=t.hq())
    assert r.status_code == 201, r.text
    r = await client.put(
        "/api/v1/coupon-templates/M20", json=manjian(name="满80减20 (2)"), headers=t.hq()
    )
    assert r.status_code == 200
    assert r.json()["name"] == "满80减20 (2)"
    r = await client.get("/api/v1/coupon-templates/NOPE", headers=t.hq())
    assert r.status_code == 404


async def test_a_grant_is_idempotent_and_codes_are_unguessable(client, make_tenant, enrol):
    t = await make_tenant()
    m = await enrol(t.hq())
    await put_template(client, t, "M20", manjian())
    body = {"template_code": "M20", "idempotency_key": "grant-0001"}
    first = await client.post(f"/api/v1/members/{m['id']}/coupons", json=body, headers=t.hq())
    again = await client.post(f"/api/v1/members/{m['id']}/coupons", json=body, headers=t.hq())
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert first.json()["code"] == again.json()["code"]
    code = first.json()["code"]
    assert len(code) == 16
    assert code.isalnum()
    assert code.upper() == code
    await put_template(client, t, "M30", manjian(amount_off_fen=3_000))
    other = {"template_code": "M30", "idempotency_key": "grant-0001"}
    r = await client.post(f"/api/v1/members/{m['id']}/coupons", json=other, headers=t.hq())
    assert r.status_code == 409
    assert r.json()["errors"][0]["field"] == "idempotency_key"
    r = await client.get(f"/api/v1/members/{m['id']}/coupons", headers=t.hq())
    assert [c["code"] for c in r.json()] == [code]
    assert (await coupon(client, t, code.lower()))["events"][0]["kind"] == "issue"


async def test_stock_and_the_per_member_limit(client, make_tenant, enrol):
    t = await make_tenant()
    await put_template(client, t, "LIM", manjian(stock=2, per_member_limit=1))
    a, b, c = [await enrol(t.hq()) for _ in range(3)]
    assert (await grant(client, t.hq(), a["id"], "LIM")).status_code == 201
    r = await grant(client, t.hq(), a["id"], "LIM")
    assert r.status_code == 409
    assert r.json()["errors"][0]["field"] == "template_code"
    assert "limit" in r.text
    assert (await grant(client, t.hq(), b["id"], "LIM")).status_code == 201
    r = await grant(client, t.hq(), c["id"], "LIM")
    assert r.status_code == 409
    assert "out of stock" in r.text
    r = await client.get("/api/v1/coupon-templates/LIM", headers=t.hq())
    assert r.json()["issued"] == 2
    r = await client.put(
        "/api/v1/coupon-templates/LIM", json=manjian(stock=1, per_member_limit=1), headers=t.hq()
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "stock"


async def test_points_buy_a_coupon_at_the_till(client, make_tenant, enrol, set_program):
    t = await make_tenant()
    await set_program(t.hq(), points={"pending_days": 0})
    till = await till_key(client, t)
    m = await enrol(t.hq())
    assert (await adjust(client, t.hq(), m["id"], 600)).status_code == 201
    await put_template(client, t, "SWAP", manjian(points_price=500))
    await put_template(client, t, "FREE", manjian())
    r = await grant(client, till, m["id"], "FREE")
    assert r.status_code == 403  # a store key exchanges; only HQ grants for free
    r = await grant(client, till, m["id"], "FREE", pay_with_points=True)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "pay_with_points"
    r = await grant(client, till, m["id"], "SWAP", pay_with_points=True)
    assert r.status_code == 201, r.text
    assert r.json()["points_paid"] == 500
    assert r.json()["cause_type"] == "exchange"
    assert (await balances(client, t.hq(), m["id"]))["balance"] == 100
    r = await grant(client, till, m["id"], "SWAP", pay_with_points=True)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "pay_with_points"
    assert (await balances(client, t.hq(), m["id"]))["balance"] == 100
    r = await client.get("/api/v1/coupon-templates/SWAP", headers=t.hq())
    assert r.json()["issued"] == 1  # the refused exchange issued nothing


# ------------------------------------------------------------------ the till


async def test_check_tells_what_each_coupon_pays(client, make_tenant, enrol):
    t = await make_tenant()
    m = await enrol(t.hq())
    await put_template(client, t, "M20", manjian())
    await put_template(
        client, t, "P10", {"name": "9折", "kind": "percent_off", "percent_off": 10,
                           "max_off_fen": 1_200, "valid_days": 7, "store_codes": ["S2"]}
    )  # fmt: skip
    m20 = await granted(client, t, m["id"], "M20")
    p10 = await granted(client, t, m["id"], "P10")
    body = {"member_id": m["id"], "store_code": "S1", "lines": [MILK, TOY]}
    r = await client.post("/api/v1/coupons/check", json=body, headers=t.hq())
    assert r.status_code == 200, r.text
    by_code = {c["code"]: c for c in r.json()}
    assert by_code[m20["code"]]["usable"]
    assert by_code[m20["code"]]["amount_fen"] == 2_000
    assert not by_code[p10["code"]]["usable"]
    assert "store" in by_code[p10["code"]]["reason"]
    r = await client.post(
        "/api/v1/coupons/check", json=body | {"store_code": "S2", "lines": [TOY]}, headers=t.hq()
    )
    by_code = {c["code"]: c for c in r.json()}
    assert by_code[p10["code"]]["amount_fen"] == 500  # 10% of 50 yuan
    assert not by_code[m20["code"]]["usable"]  # no feeding line: below the threshold
    big = dict(TOY, quantity=40, paid_fen=200_000)
    r = await client.post(
        "/api/v1/coupons/check", json=body | {"store_code": "S2", "lines": [big]}, headers=t.hq()
    )
    assert {c["code"]: c for c in r.json()}[p10["code"]]["amount_fen"] == 1_200  # the ceiling


async def test_an_order_redeems_a_coupon_exactly_once(client, make_tenant, enrol, row_counts):
    t = await make_tenant()
    m = await enrol(t.hq())
    await put_template(client, t, "M20", manjian())
    code = (await granted(client, t, m["id"], "M20"))["code"]
    before = await row_counts(t.id)
    r = await client.post("/api/v1/orders", json=paying(m["id"], code, 1_500), headers=t.hq())
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "payment.coupons.0.amount_fen"
    r = await client.post(
        "/api/v1/orders", json=paying(m["id"], code, 2_000, lines=[TOY]), headers=t.hq()
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "payment.coupons.0.code"
    assert await row_counts(t.id) == before
    body = paying(m["id"], code, 2_000)
    order = await post_order(client, t.hq(), body)
    assert order["coupons"] == [{"code": code, "template_code": "M20", "amount_fen": 2_000}]
    assert order["points_earned"] == 80  # 100 yuan less the 20 the coupon paid
    replay = await client.post("/api/v1/orders", json=body, headers=t.hq())
    assert replay.status_code == 201
    assert replay.json()["id"] == order["id"]
    r = await client.post("/api/v1/orders", json=paying(m["id"], code, 2_000), headers=t.hq())
    assert r.status_code == 409
    assert r.json()["errors"][0]["field"] == "payment.coupons.0.code"
    detail = await coupon(client, t, code)
    assert detail["status"] == "redeemed"
    assert detail["order_id"] == order["id"]
    assert [e["kind"] for e in detail["events"]] == ["issue", "redeem"]
    other = await enrol(t.hq())
    r = await client.post("/api/v1/orders", json=paying(other["id"], code, 2_000), headers=t.hq())
    assert r.status_code in (409, 422)
    assert "another member" in r.text


async def test_coupons_need_a_member_and_combine_only_when_stackable(client, make_tenant, enrol):
    t = await make_tenant()
    m = await enrol(t.hq())
    await put_template(client, t, "M20", manjian())
    await put_template(client, t, "S5", manjian(amount_off_fen=500, stackable=True))
    await put_template(client, t, "S3", manjian(amount_off_fen=300, stackable=True))
    m20, s5, s3 = [await granted(client, t, m["id"], c) for c in ("M20", "S5", "S3")]
    anonymous = order_body(lines=[MILK])
    anonymous["payment"] = {
        "cash_fen": 8_000,
        "coupons": [{"code": m20["code"], "amount_fen": 2_000}],
    }
    r = await client.post("/api/v1/orders", json=anonymous, headers=t.hq())
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "payment.coupons"
    body = paying(m["id"], m20["code"], 2_000)
    body["payment"]["coupons"].append({"code": s5["code"], "amount_fen": 500})
    body["payment"]["cash_fen"] -= 500
    r = await client.post("/api/v1/orders", json=body, headers=t.hq())
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "payment.coupons.0.code"
    body = paying(m["id"], s5["code"], 500)
    body["payment"]["coupons"].append({"code": s3["code"], "amount_fen": 300})
    body["payment"]["cash_fen"] -= 300
    order = await post_order(client, t.hq(), body)
    assert sum(c["amount_fen"] for c in order["coupons"]) == 800


async def test_a_hold_keeps_a_coupon_for_its_till(client, make_tenant, enrol):
    t = await make_tenant()
    m = await enrol(t.hq())
    till = await till_key(client, t, "S1")
    await put_template(client, t, "M20", manjian())
    code = (await granted(client, t, m["id"], "M20"))["code"]
    r = await client.post(
        "/api/v1/coupons/holds", json={"member_id": m["id"], "codes": [code]}, headers=till
    )
    assert r.status_code == 201, r.text
    hold_id = r.json()["hold_id"]
    r = await client.post(
        "/api/v1/coupons/holds", json={"member_id": m["id"], "codes": [code]}, headers=till
    )
    assert r.status_code == 409
    assert r.json()["errors"][0]["field"] == "codes.0"
    elsewhere = paying(m["id"], code, 2_000, store_code="S2")
    r = await client.post("/api/v1/orders", json=elsewhere, headers=t.hq())
    assert r.status_code == 409
    assert "held at another till" in r.text
    r = await client.post(f"/api/v1/coupons/holds/{hold_id}/release", headers=till)
    assert r.status_code == 200
    assert r.json()["status"] == "released"
    r = await client.post(f"/api/v1/coupons/holds/{hold_id}/release", headers=till)
    assert r.status_code == 200  # again: a no-op
    await post_order(client, t.hq(), elsewhere)
    events = [e["kind"] for e in (await coupon(client, t, code))["events"]]
    assert events == ["issue", "hold", "release", "redeem"]


async def test_a_whole_refund_gives_the_coupon_back(client, make_tenant, enrol):
    t = await make_tenant()
    m = await enrol(t.hq())
    await put_template(client, t, "M20", manjian())
    code = (await granted(client, t, m["id"], "M20"))["code"]
    lines = [MILK, dict(TOY, quantity=1, unit_price_fen=5_000)]
    order = await post_order(client, t.hq(), paying(m["id"], code, 2_000, lines=lines))
    r = await refund(
        client, t.hq(), order, {"external_id": "R1", "lines": [{"line_no": 2, "quantity": 1}]}
    )
    assert r.status_code == 201
    assert r.json()["coupons_restored"] == []
    r = await refund(client, t.hq(), order, {"external_id": "R2"})
    assert r.status_code == 201
    assert r.json()["coupons_restored"] == [code]
    detail = await coupon(client, t, code)
    assert detail["status"] == "available"
    assert detail["order_id"] is None
    assert detail["events"][-1]["kind"] == "restore"
    again = await post_order(client, t.hq(), paying(m["id"], code, 2_000))
    assert again["coupons"][0]["code"] == code


async def test_a_merge_moves_the_coupons(client, make_tenant, enrol):
    t = await make_tenant()
    source, target = await enrol(t.hq()), await enrol(t.hq())
    await put_template(client, t, "M20", manjian())
    code = (await granted(client, t, source["id"], "M20"))["code"]
    r = await client.post(
        f"/api/v1/members/{target['id']}/merge",
        json={"source_member_id": source["id"]},
        headers=t.hq(),
    )
    assert r.status_code == 200, r.text
    r = await client.get(f"/api/v1/members/{target['id']}/coupons", headers=t.hq())
    assert [c["code"] for c in r.json()] == [code]
    await post_order(client, t.hq(), paying(target["id"], code, 2_000))


async def test_an_expired_coupon_pays_nothing(client, make_tenant, enrol):
    t = await make_tenant()
    m = await enrol(t.hq())
    now = datetime.now(UTC)
    window = {"valid_days": None, "valid_from": (now - timedelta(days=9)).isoformat(),
              "valid_until": (now + timedelta(seconds=2)).isoformat()}  # fmt: skip
    await put_template(client, t, "SOON", manjian(**window))
    code = (await granted(client, t, m["id"], "SOON"))["code"]
    late = paying(m["id"], code, 2_000)
    late["paid_at"] = (now + timedelta(seconds=3)).isoformat()  # after the end, within skew
    r = await client.post("/api/v1/orders", json=late, headers=t.hq())
    assert r.status_code == 422
    assert "not valid at this time" in r.text


# ------------------------------------------------------------------ races (SQLite too)


@pytest.fixture
def racing(concurrent_client: httpx.AsyncClient) -> httpx.AsyncClient:
    return concurrent_client


async def test_one_coupon_pays_one_of_two_racing_orders(racing, make_tenant, enrol):
    client = racing
    t = await make_tenant()
    m = await enrol(t.hq())
    await put_template(client, t, "M20", manjian())
    code = (await granted(client, t, m["id"], "M20"))["code"]
    answers = await asyncio.gather(
        *(client.post("/api/v1/orders", json=paying(m["id"], code, 2_000), headers=t.hq())
          for _ in range(4))
    )  # fmt: skip
    assert sorted(r.status_code for r in answers) == [201, 409, 409, 409], [r.text for r in answers]
    r = await client.get(f"/api/v1/members/{m['id']}/coupons", headers=t.hq())
    assert [c["status"] for c in r.json()] == ["redeemed"]


async def test_racing_grants_never_pass_the_stock(racing, make_tenant, enrol):
    client = racing
    t = await make_tenant()
    await put_template(client, t, "FEW", manjian(stock=3))
    members = [await enrol(t.hq()) for _ in range(6)]
    answers = await asyncio.gather(*(grant(client, t.hq(), m["id"], "FEW") for m in members))
    assert sorted(r.status_code for r in answers) == [201, 201, 201, 409, 409, 409]
    r = await client.get("/api/v1/coupon-templates/FEW", headers=t.hq())
    assert r.json()["issued"] == 3


# ------------------------------------------------------------------ the operator's commands


async def test_templates_grant_and_show_from_the_command_line(client, make_tenant, enrol):
    t = await make_tenant()
    m = await enrol(t.hq())
    await put_template(client, t, "M20", manjian(stock=10))
    grant_args = ("coupons", "grant", "M20", m["id"], "--tenant", t.slug, "--key", "ops-00001")
    done = await _nestpoint(*grant_args)
    assert done.returncode == 0, done.stderr
    code = done.stdout.split()[1]
    again = await _nestpoint(*grant_args)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split()[1] == code
    assert "already granted" in again.stdout
    listed = await _nestpoint("coupons", "templates", "--tenant", t.slug)
    assert listed.returncode == 0, listed.stderr
    assert "issued 1/10" in listed.stdout
    shown = await _nestpoint("coupons", "show", code, "--tenant", t.slug)
    assert shown.returncode == 0, shown.stderr
    assert "available" in shown.stdout
    assert " issue " in shown.stdout
    missing = await _nestpoint("coupons", "grant", "NOPE", m["id"], "--tenant", t.slug,
                               "--key", "ops-00002")  # fmt: skip
    assert missing.returncode == 2
    assert "no coupon template" in missing.stderr
