"""Stored value (储值) through the API: bonus rules, top-ups at the till (idempotent), paying
an order with it (principal first, bonus last, no points on it, exactly once), refunds back
to the balance, the liability report, merges, and racing spends that never overdraw (on
SQLite too)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy import func, select

from loyalty.helpers import order_body
from loyalty.support import all_pages, audit, refund
from nestpoint.context import tenant_context

TIERS = {"bonus_tiers": [{"threshold_fen": 50_000, "bonus_fen": 3_000},
                         {"threshold_fen": 100_000, "bonus_fen": 10_000}]}  # fmt: skip


def line(paid: int, sku: str = "MILK-1", quantity: int = 1) -> dict[str, Any]:
    return {"sku": sku, "name": "Formula", "category": "feeding", "quantity": quantity,
            "unit_price_fen": paid // quantity, "paid_fen": paid}  # fmt: skip


async def set_rules(client: Any, t: Any, rules: dict[str, Any] = TIERS) -> None:
    r = await client.put("/api/v1/wallet/rules", json=rules, headers=t.hq())
    assert r.status_code == 200, r.text


async def top_up(
    client: Any, headers: dict[str, str], member_id: str, amount: int, **extra: Any
) -> httpx.Response:
    body = {"amount_fen": amount, "idempotency_key": uuid.uuid4().hex} | extra
    return await client.post(
        f"/api/v1/members/{member_id}/wallet/topups", json=body, headers=headers
    )


async def topped(client: Any, t: Any, member_id: str, amount: int, store: str = "S1") -> Any:
    r = await top_up(client, t.hq(), member_id, amount, store_code=store)
    assert r.status_code == 201, r.text
    return r.json()


async def wallet(client: Any, t: Any, member_id: str) -> dict[str, Any]:
    r = await client.get(f"/api/v1/members/{member_id}/wallet", headers=t.hq())
    assert r.status_code == 200, r.text
    return dict(r.json())


async def entries(client: Any, t: Any, member_id: str) -> list[dict[str, Any]]:
    return await all_pages(client, f"/api/v1/members/{member_id}/wallet/entries", t.hq())


async def derivable(client: Any, t: Any, member_id: str) -> dict[str, Any]:
    """The balance, checked against the sums of the member's entries and the last entry."""
    got = await wallet(client, t, member_id)
    rows = await entries(client, t, member_id)
    assert got["principal_fen"] == sum(e["principal_fen"] for e in rows)
    assert got["bonus_fen"] == sum(e["bonus_fen"] for e in rows)
    if rows:  # one of the entries written last (one transaction shares a time) ends there
        last = [e for e in rows if e["created_at"] == rows[-1]["created_at"]]
        ends = {(e["principal_after"], e["bonus_after"]) for e in last}
        assert (got["principal_fen"], got["bonus_fen"]) in ends
    assert got["principal_fen"] >= 0
    assert got["bonus_fen"] >= 0
    return got


def paying(member_id: str | None, stored: int, lines: list[dict[str, Any]], **extra: Any) -> Any:
    body = order_body(member={"id": member_id} if member_id else None, lines=lines, **extra)
    total = sum(li["paid_fen"] for li in lines)
    body["payment"] = {"cash_fen": total - stored, "stored_value_fen": stored}
    return body


# ------------------------------------------------------------------ rules and top-ups


async def test_rules_are_validated_audited_and_give_the_highest_tier_reached(
    client, make_tenant, enrol
):
    t = await make_tenant()
    r = await client.get("/api/v1/wallet/rules", headers=t.hq())
    assert r.json() == {"bonus_tiers": [], "bonus_valid_days": None}
    bad = {"bonus_tiers": [{"threshold_fen": 100_000, "bonus_fen": 1},
                           {"threshold_fen": 100_000, "bonus_fen": 2}]}  # fmt: skip
    r = await client.put("/api/v1/wallet/rules", json=bad, headers=t.hq())
    assert r.status_code in (400, 422)
    assert "bonus_tiers" in r.text
    await set_rules(client, t)
    await set_rules(client, t)  # the same again changes nothing
    assert len(await audit(client, t.hq(), "wallet.rules_put")) == 1
    m = await enrol(t.hq())
    amounts = {10_000: 0, 50_000: 3_000, 99_999: 3_000, 100_000: 10_000, 500_000: 10_000}
    for amount, bonus in amounts.items():
        got = await topped(client, t, m["id"], amount)
        assert (got["amount_fen"], got["bonus_fen"], got["tender"]) == (amount, bonus, "cash")
    balance = await derivable(client, t, m["id"])
    assert balance["principal_fen"] == sum(amounts)
    assert balance["bonus_fen"] == sum(amounts.values())
    kinds = [e["kind"] for e in await entries(client, t, m["id"])]
    assert kinds.count("topup") == 5
    assert kinds.count("bonus") == 4
    assert len(await audit(client, t.hq(), "wallet.topup")) == 5


async def test_a_top_up_is_idempotent_by_its_key(client, make_tenant, enrol):
    t = await make_tenant()
    await set_rules(client, t)
    m = await enrol(t.hq())
    body = {"amount_fen": 100_000, "store_code": "S1", "idempotency_key": "topup-0001"}
    url = f"/api/v1/members/{m['id']}/wallet/topups"
    first = await client.post(url, json=body, headers=t.hq())
    again = await client.post(url, json=body, headers=t.hq())
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert first.json() == again.json()
    other = await client.post(url, json=body | {"amount_fen": 5}, headers=t.hq())
    assert other.status_code == 409
    assert other.json()["errors"][0]["field"] == "idempotency_key"
    assert (await derivable(client, t, m["id"]))["balance_fen"] == 110_000


async def test_the_till_tops_up_at_its_own_store_and_hq_names_one(client, make_tenant, enrol):
    t = await make_tenant()
    m = await enrol(t.hq())
    r = await client.post(
        "/api/v1/api-keys",
        json={"name": "till", "kind": "store", "store_code": "S2"},
        headers=t.hq(),
    )
    till = {"Authorization": f"Bearer {r.json()['key']}"}
    r = await top_up(client, till, m["id"], 20_000)
    assert r.status_code == 201, r.text
    assert r.json()["store_id"] == str(t.stores["S2"])
    r = await top_up(client, till, m["id"], 20_000, store_code="S1")
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "store_code"
    r = await top_up(client, t.hq(), m["id"], 20_000)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "store_code"
    r = await top_up(client, t.hq(), m["id"], 20_000, store_code="S1", tender="stripe")
    assert r.status_code == 422  # Stripe needs the member's payment method
    assert r.json()["errors"][0]["field"] == "payment_method"
    r = await top_up(client, t.hq(), m["id"], 20_000, store_code="S1", tender="card")
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == "tender"
    # The till may not adjust balances or set rules; an unknown member is 404.
    r = await client.put("/api/v1/wallet/rules", json=TIERS, headers=till)
    assert r.status_code == 403
    adj = {"principal_fen": 100, "reason": "x", "idempotency_key": uuid.uuid4().hex}
    r = await client.post(f"/api/v1/members/{m['id']}/wallet/adjustments", json=adj, headers=till)
    assert r.status_code == 403
    r = await top_up(client, till, str(uuid.uuid4()), 20_000)
    assert r.status_code == 404
    r = await client.get(f"/api/v1/members/{m['id']}/wallet", headers=till)
    assert r.json()["balance_fen"] == 20_000


async def test_hq_adjusts_principal_and_bonus_never_below_zero(client, make_tenant, enrol):
    t = await make_tenant()
    m = await enrol(t.hq())
    url = f"/api/v1/members/{m['id']}/wallet/adjustments"
    body = {"principal_fen": 5_000, "bonus_fen": 700, "reason": "migrated card",
            "idempotency_key": "adj-00001"}  # fmt: skip
    r = await client.post(url, json=body, headers=t.hq())
    assert r.status_code == 201, r.text
    again = await client.post(url, json=body, headers=t.hq())
    assert again.headers.get("Idempotent-Replayed") == "true"
    down = {"bonus_fen": -701, "reason": "fix", "idempotency_key": "adj-00002"}
    r = await client.post(url, json=down, headers=t.hq())
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "bonus_fen"
    r = await client.post(url, json=down | {"bonus_fen": -700}, headers=t.hq())
    assert r.status_code == 201
    got = await derivable(client, t, m["id"])
    assert (got["principal_fen"], got["bonus_fen"]) == (5_000, 0)
    r = await client.post(url, json={"reason": "none", "idempotency_key": "adj-00003"},
                          headers=t.hq())  # fmt: skip
    assert r.status_code == 422


# ------------------------------------------------------------------ paying and refunds


async def test_an_order_spends_principal_first_and_earns_no_points_on_it(
    client, make_tenant, enrol
):
    t = await make_tenant()
    await set_rules(client, t)
    m = await enrol(t.hq())
    await topped(client, t, m["id"], 100_000)  # 100,000 principal + 10,000 bonus
    body = paying(m["id"], 105_000, [line(120_000)])
    r = await client.post("/api/v1/orders", json=body, headers=t.hq())
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["stored_value_fen"] == 105_000
    assert order["points_earned"] == 150  # on the 15,000 fen paid in cash only
    got = await derivable(client, t, m["id"])
    assert (got["principal_fen"], got["bonus_fen"]) == (0, 5_000)
    spend = (await entries(client, t, m["id"]))[-1]
    assert (spend["kind"], spend["principal_fen"], spend["bonus_fen"]) == ("spend", -100_000,
                                                                           -5_000)  # fmt: skip
    assert (spend["cause_type"], spend["cause_id"]) == ("order", order["id"])
    again = await client.post("/api/v1/orders", json=body, headers=t.hq())
    assert again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == order
    other = body | {"payment": {"cash_fen": 119_000, "stored_value_fen": 1_000}}
    r = await client.post("/api/v1/orders", json=other, headers=t.hq())
    assert r.status_code == 409
    assert (await wallet(client, t, m["id"]))["balance_fen"] == 5_000


async def test_too_little_stored_value_or_no_member_is_refused(client, make_tenant, enrol):
    t = await make_tenant()
    m = await enrol(t.hq())
    r = await client.post("/api/v1/orders", json=paying(m["id"], 1, [line(5_000)]),
                          headers=t.hq())  # fmt: skip
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "payment.stored_value_fen"
    await topped(client, t, m["id"], 3_000)
    r = await client.post("/api/v1/orders", json=paying(m["id"], 3_001, [line(5_000)]),
                          headers=t.hq())  # fmt: skip
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "payment.stored_value_fen"
    r = await client.post("/api/v1/orders", json=paying(None, 1_000, [line(5_000)]),
                          headers=t.hq())  # fmt: skip
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "payment.stored_value_fen"
    body = paying(m["id"], 3_000, [line(5_000)])
    body["payment"]["cash_fen"] = 1_000
    r = await client.post("/api/v1/orders", json=body, headers=t.hq())
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "payment"
    assert (await derivable(client, t, m["id"]))["balance_fen"] == 3_000


async def test_refunds_give_principal_back_first_then_the_bonus(client, make_tenant, enrol):
    t = await make_tenant()
    await set_rules(client, t)
    m = await enrol(t.hq())
    await topped(client, t, m["id"], 50_000)  # 50,000 principal + 3,000 bonus
    # Two lines of 30,000; 53,000 stored value (50,000 principal, 3,000 bonus) + 7,000 cash.
    order = (await client.post("/api/v1/orders", json=paying(m["id"], 53_000,
             [line(30_000, "A"), line(30_000, "B")]), headers=t.hq())).json()  # fmt: skip
    assert (await wallet(client, t, m["id"]))["balance_fen"] == 0
    r = await refund(
        client, t.hq(), order, {"external_id": "R1", "lines": [{"line_no": 1, "quantity": 1}]}
    )
    assert r.status_code == 201, r.text
    assert r.json()["stored_value_returned_fen"] == 26_500  # half of what stored value paid
    got = await derivable(client, t, m["id"])
    assert (got["principal_fen"], got["bonus_fen"]) == (26_500, 0)
    again = await refund(
        client, t.hq(), order, {"external_id": "R1", "lines": [{"line_no": 1, "quantity": 1}]}
    )
    assert again.headers.get("Idempotent-Replayed") == "true"
    r = await refund(client, t.hq(), order, {"external_id": "R2"})
    assert r.json()["stored_value_returned_fen"] == 26_500
    got = await derivable(client, t, m["id"])
    assert (got["principal_fen"], got["bonus_fen"]) == (50_000, 3_000)
    kinds = [(e["kind"], e["cause_type"]) for e in await entries(client, t, m["id"])]
    assert kinds[-2:] == [("refund", "refund"), ("refund", "refund")]


async def test_the_liability_report_by_store(client, make_tenant, enrol):
    t = await make_tenant()
    await set_rules(client, t)
    a, b = await enrol(t.hq()), await enrol(t.hq())
    await topped(client, t, a["id"], 100_000, "S1")
    await topped(client, t, b["id"], 50_000, "S2")
    await topped(client, t, b["id"], 10_000, "S1")
    r = await client.post("/api/v1/orders", json=paying(b["id"], 20_000, [line(20_000)],
                          store_code="S2"), headers=t.hq())  # fmt: skip
    assert r.status_code == 201, r.text
    r = await client.get("/api/v1/wallet/liability", headers=t.hq())
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["principal_fen"], report["bonus_fen"], report["members"]) == (
        140_000, 13_000, 2)  # fmt: skip
    by_store = {s["store_code"]: (s["principal_fen"], s["bonus_fen"]) for s in report["stores"]}
    # b's principal is spent oldest first: the 50,000 of S2 pays the order's 20,000.
    assert by_store == {"S1": (110_000, 10_000), "S2": (30_000, 3_000)}
    total = sum([(await wallet(client, t, m["id"]))["balance_fen"] for m in (a, b)])
    assert total == report["principal_fen"] + report["bonus_fen"]
    r = await client.get("/api/v1/wallet/liability", headers=t.store("S1"))
    assert r.status_code == 403


async def test_a_merge_moves_stored_value_to_the_survivor(client, make_tenant, enrol):
    t = await make_tenant()
    await set_rules(client, t)
    a, b = await enrol(t.hq()), await enrol(t.hq())
    await topped(client, t, a["id"], 10_000)
    await topped(client, t, b["id"], 50_000)
    r = await client.post(
        f"/api/v1/members/{a['id']}/merge", json={"source_member_id": b["id"]}, headers=t.hq()
    )
    assert r.status_code in (200, 201), r.text
    got = await derivable(client, t, a["id"])
    assert (got["principal_fen"], got["bonus_fen"]) == (60_000, 3_000)
    r = await client.post("/api/v1/orders", json=paying(a["id"], 63_000, [line(63_000)]),
                          headers=t.hq())  # fmt: skip
    assert r.status_code == 201, r.text
    assert (await derivable(client, t, a["id"]))["balance_fen"] == 0


# ------------------------------------------------------------------ races


async def test_racing_spends_never_overdraw(concurrent_client, make_tenant, enrol):
    client = concurrent_client
    t = await make_tenant()
    m = await enrol(t.hq())
    await topped(client, t, m["id"], 35_000)
    answers = await asyncio.gather(
        *(client.post("/api/v1/orders", json=paying(m["id"], 10_000, [line(10_000)]),
                      headers=t.hq()) for _ in range(8))
    )  # fmt: skip
    codes = sorted(r.status_code for r in answers)
    assert codes == [201] * 3 + [422] * 5, [r.text for r in answers]
    assert (await derivable(client, t, m["id"]))["balance_fen"] == 5_000


async def test_racing_retries_of_one_top_up_and_one_order_apply_once(
    concurrent_client, make_tenant, enrol
):
    client = concurrent_client
    t = await make_tenant()
    m = await enrol(t.hq())
    body = {"amount_fen": 30_000, "store_code": "S1", "idempotency_key": "race-topup-1"}
    url = f"/api/v1/members/{m['id']}/wallet/topups"
    answers = await asyncio.gather(*(client.post(url, json=body, headers=t.hq())
                                     for _ in range(8)))  # fmt: skip
    assert [r.status_code for r in answers] == [201] * 8, [r.text for r in answers]
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in answers) == 7
    order = paying(m["id"], 20_000, [line(20_000)])
    answers = await asyncio.gather(*(client.post("/api/v1/orders", json=order, headers=t.hq())
                                     for _ in range(8)))  # fmt: skip
    assert [r.status_code for r in answers] == [201] * 8, [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    assert (await derivable(client, t, m["id"]))["balance_fen"] == 10_000


# ------------------------------------------------------------------ the ledger's grants


async def test_the_ledger_is_append_only_for_the_app(is_postgres, make_tenant):
    """The app role may only read and append ``wallet_entries`` (PostgreSQL grants; SQLite
    has no roles, so there it checks that the table is one the migration made)."""
    from sqlalchemy import text

    from nestpoint.db import scoped_session
    from nestpoint.wallet.models import WalletEntry

    t = await make_tenant(("S1",))
    with tenant_context(t.id):
        async with scoped_session() as session:
            if not is_postgres:
                assert await session.scalar(select(func.count()).select_from(WalletEntry)) == 0
                return
            rights = {
                p: await session.scalar(
                    text("SELECT has_table_privilege(current_user, 'wallet_entries', :p)"),
                    {"p": p},
                )
                for p in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
            }
    assert rights == {"SELECT": True, "INSERT": True, "UPDATE": False, "DELETE": False,
                      "TRUNCATE": False}  # fmt: skip
