"""Franchise settlement through the API and the ledgers: a month with cross-store
redemptions settles to zero, expiry goes back to the issuing store, a closed month is
immutable and re-runnable, a late entry lands in the next open month, a store key sees only
its own lines, and racing closes close once (on PostgreSQL and SQLite)."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import DBAPIError

from commands import nestpoint
from loyalty.helpers import order_body
from loyalty.support import adjust, audit, refund, run_job
from nestpoint.context import tenant_context
from nestpoint.db import scoped_session
from nestpoint.points.jobs import expire_points
from nestpoint.settlement import service
from nestpoint.settlement.models import SettlementLine, SettlementPeriod
from nestpoint.settlement.schemas import CloseIn, SettlementRules
from nestpoint.settlement.service import Figures, StoreInfo, build_lines, window


def line(paid: int) -> dict[str, Any]:
    return {"sku": "MILK-1", "name": "Formula", "category": "feeding", "quantity": 1,
            "unit_price_fen": paid, "paid_fen": paid}  # fmt: skip


async def buy(
    client: Any, t: Any, store: str, member_id: str, paid: int, points_used: int = 0
) -> dict[str, Any]:
    body = order_body(
        member={"id": member_id}, store_code=store, lines=[line(paid)], points_used=points_used
    )
    r = await client.post("/api/v1/orders", json=body, headers=t.hq())
    assert r.status_code == 201, r.text
    return dict(r.json())


async def this_month(client: Any, t: Any) -> tuple[str, ZoneInfo]:
    r = await client.get("/api/v1/tenant", headers=t.hq())
    assert r.status_code == 200, r.text
    zone = ZoneInfo(r.json()["timezone"])
    return f"{datetime.now(zone):%Y-%m}", zone


def by_store(figures: dict[str, Any], origin: str | None = None) -> dict[str, dict[str, Any]]:
    lines = figures["lines"]
    if origin is not None:
        lines = [x for x in lines if x["origin_month"] == origin]
    return {x["store_code"] or "HQ": x for x in lines}


async def compute(client: Any, t: Any, month: str) -> dict[str, Any]:
    r = await client.post(f"/api/v1/settlements/{month}/compute", headers=t.hq())
    assert r.status_code == 200, r.text
    return dict(r.json())


async def close(client: Any, t: Any, month: str, key: str) -> Any:
    return await client.post(
        f"/api/v1/settlements/{month}/close", json={"idempotency_key": key}, headers=t.hq()
    )


def after(month: str, zone: ZoneInfo, days: int = 1) -> datetime:
    return window(month, zone)[1] + timedelta(days=days)


async def test_a_month_with_cross_store_redemptions_settles_to_zero(client, chain, enrol) -> None:
    t = await chain()
    r = await client.put("/api/v1/settlements/rules", json={"point_value_fen": 2}, headers=t.hq())
    assert r.status_code == 200, r.text
    m1, m2, m3 = [await enrol(t.hq()) for _ in range(3)]
    earned_a = await buy(client, t, "A", m1["id"], 50_000)  # earned at A ...
    redeemed_b = await buy(client, t, "B", m1["id"], 20_000, 300)  # ... redeemed at B
    await buy(client, t, "D", m2["id"], 30_000)  # earned at the direct store ...
    redeemed_a = await buy(client, t, "A", m2["id"], 10_000, 200)  # ... redeemed at A
    assert (await adjust(client, t.hq(), m3["id"], 1_000)).status_code == 201  # HQ's points
    redeemed_b2 = await buy(client, t, "B", m3["id"], 10_000, 400)
    # The order at B is refunded: its earning is clawed back, its 300 points come back.
    r = await refund(client, t.hq(), redeemed_b, {"external_id": "R1"})
    assert r.status_code == 201, r.text
    month, _ = await this_month(client, t)

    figures = await compute(client, t, month)

    lines = by_store(figures)
    assert set(lines) == {"A", "B", "D", "HQ"}
    a, b, d, hq = lines["A"], lines["B"], lines["D"], lines["HQ"]
    assert a["points_issued"] == earned_a["points_earned"] + redeemed_a["points_earned"]
    assert a["points_redeemed"] == 200
    assert b["points_issued"] == redeemed_b2["points_earned"]  # 197 earned, 197 clawed back
    assert b["points_redeemed"] == 400  # 300 + 400 - 300 returned
    assert (d["points_issued"], d["settles"], d["net_fen"]) == (300, False, 0)
    assert hq["points_issued"] == 1_000
    assert a["net_fen"] == (200 - a["points_issued"]) * 2
    assert a["issued_fen"] == a["points_issued"] * 2
    assert b["net_fen"] == (400 - b["points_issued"]) * 2
    assert hq["net_fen"] == -(a["net_fen"] + b["net_fen"])
    assert sum(x["net_fen"] for x in figures["lines"]) == 0
    assert figures["period"]["status"] == "draft"
    assert figures["period"]["point_value_fen"] == 2

    # Again: the same figures from the same ledgers; the stored draft is what GET shows.
    again = await compute(client, t, month)
    assert again["lines"] == figures["lines"]
    shown = await client.get(f"/api/v1/settlements/{month}", headers=t.hq())
    assert shown.status_code == 200
    assert shown.json()["lines"] == figures["lines"]
    listed = await client.get("/api/v1/settlements", headers=t.hq())
    assert [p["month"] for p in listed.json()["items"]] == [month]


async def test_expired_points_go_back_to_the_store_that_issued_them(client, chain, enrol) -> None:
    t = await chain()
    m1 = await enrol(t.hq())
    earned = await buy(client, t, "A", m1["id"], 50_000)  # 500 points at A
    at_b = await buy(client, t, "B", m1["id"], 20_000, 200)  # 200 of them spent at B
    later = datetime.now(UTC) + timedelta(days=1200)  # past every lot's expiry
    await run_job(t.id, lambda s: expire_points(s, later))

    zone = ZoneInfo("Asia/Shanghai")
    month = service.month_of(later, zone)
    figures = await run_job(t.id, lambda s: service.compute(s, month, later + timedelta(days=1)))

    lines = {x.store_code or "HQ": x for x in figures.lines}
    assert lines["A"].points_expired == earned["points_earned"] - 200  # A's lot, what is left
    assert lines["B"].points_expired == at_b["points_earned"]  # B's own earning
    assert lines["HQ"].points_expired == 0
    assert lines["A"].expired_fen == lines["A"].points_expired  # 1 fen a point: released
    assert lines["A"].net_fen == lines["A"].points_expired
    assert lines["HQ"].net_fen == -(lines["A"].net_fen + lines["B"].net_fen)
    assert sum(x.net_fen for x in figures.lines) == 0


async def test_a_closed_month_is_immutable_rerunnable_and_late_entries_land_next_month(
    client, chain, enrol, settlement_clock, is_postgres
) -> None:
    t = await chain()
    m1 = await enrol(t.hq())
    earned = await buy(client, t, "A", m1["id"], 50_000)
    await buy(client, t, "B", m1["id"], 20_000, 300)
    month, zone = await this_month(client, t)
    settlement_clock.at(datetime.now(UTC))
    r = await close(client, t, month, "close-key-0001")
    assert r.status_code == 422, r.text  # the month is not over
    assert r.json()["errors"][0]["field"] == "month"

    settlement_clock.at(after(month, zone))
    r = await close(client, t, month, "close-key-0001")
    assert r.status_code == 200, r.text
    closed = r.json()
    assert closed["period"]["status"] == "closed"
    assert by_store(closed)["A"]["points_issued"] == earned["points_earned"]
    assert sum(x["net_fen"] for x in closed["lines"]) == 0
    # The same key again: the first answer; another key: the same stored figures.
    again = await close(client, t, month, "close-key-0001")
    assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (200, "true")
    assert again.json() == closed
    other = await close(client, t, month, "close-key-0002")
    assert other.status_code == 200
    assert other.json() == closed
    assert "Idempotent-Replayed" not in other.headers
    # The key names one close: for another month it is a conflict.
    r = await close(client, t, service.next_month(month), "close-key-0001")
    assert r.status_code == 409, r.text
    assert r.json()["errors"][0]["field"] == "idempotency_key"
    assert len(await audit(client, t.hq(), "settlement.closed")) == 1

    # Computing a closed month answers its stored figures.
    assert (await compute(client, t, month)) == closed

    # The database refuses to change a closed period or its lines: the trigger, and on
    # PostgreSQL first the app role's grants (it may not update a line nor delete a period).
    refused = "permission denied" if is_postgres else "immutable"
    with tenant_context(t.id):
        for statement, why in (
            (update(SettlementLine).values(net_fen=0), refused),
            (delete(SettlementLine), "immutable"),
            (update(SettlementPeriod).values(status="draft"), "immutable"),
            (delete(SettlementPeriod), refused),
        ):
            with pytest.raises(DBAPIError, match=why):
                async with scoped_session() as session:
                    await session.execute(statement)

    # A late entry: the A order is refunded now, so its clawback is dated inside the closed
    # month. The closed month keeps its figures; the next one carries the clawback.
    r = await refund(client, t.hq(), earned, {"external_id": "LATE-1"})
    assert r.status_code == 201, r.text
    shown = await client.get(f"/api/v1/settlements/{month}", headers=t.hq())
    assert shown.json() == closed
    assert (await compute(client, t, month)) == closed

    following = service.next_month(month)
    settlement_clock.at(window(following, zone)[0] + timedelta(days=1))
    draft = await compute(client, t, following)
    late = by_store(draft, origin=month)
    assert set(late) == {"A", "HQ"}
    assert late["A"]["points_issued"] == -earned["points_earned"]
    assert late["A"]["net_fen"] == earned["points_earned"]  # HQ gives A its funding back
    assert late["HQ"]["net_fen"] == -earned["points_earned"]
    assert all(x["net_fen"] == 0 for x in by_store(draft, origin=following).values())
    assert sum(x["net_fen"] for x in draft["lines"]) == 0
    assert (await compute(client, t, following))["lines"] == draft["lines"]

    # Once that month closes with the late line, the month after carries nothing more.
    settlement_clock.at(after(following, zone))
    r = await close(client, t, following, "close-key-0003")
    assert r.status_code == 200, r.text
    assert by_store(r.json(), origin=month)["A"]["points_issued"] == -earned["points_earned"]
    third = service.next_month(following)
    settlement_clock.at(window(third, zone)[0] + timedelta(days=1))
    assert {x["origin_month"] for x in (await compute(client, t, third))["lines"]} == {third}

    # Months close in order, and nothing before the first closed month is settled.
    settlement_clock.at(after(service.next_month(third), zone))
    r = await close(client, t, service.next_month(third), "close-key-0004")
    assert r.status_code == 409, r.text
    r = await client.post(
        f"/api/v1/settlements/{service.previous_month(month)}/compute", headers=t.hq()
    )
    assert r.status_code == 409, r.text


async def test_a_store_key_sees_only_its_own_lines(client, chain, enrol, make_tenant) -> None:
    t = await chain()
    m1 = await enrol(t.hq())
    await buy(client, t, "A", m1["id"], 50_000)
    await buy(client, t, "B", m1["id"], 20_000, 300)
    month, _ = await this_month(client, t)
    await compute(client, t, month)
    r = await client.post(
        "/api/v1/api-keys",
        json={"name": "A books", "kind": "store", "store_code": "A", "scopes": ["settlement:read"]},
        headers=t.hq(),
    )
    assert r.status_code == 201, r.text
    store_a = {"Authorization": f"Bearer {r.json()['key']}"}

    r = await client.get(f"/api/v1/settlements/{month}", headers=store_a)
    assert r.status_code == 200, r.text
    assert [x["store_code"] for x in r.json()["lines"]] == ["A"]
    r = await client.get(f"/api/v1/settlements/{month}/lines.csv", headers=store_a)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    rows = r.text.splitlines()
    assert rows[0].startswith("status,month,origin_month,store_code")
    assert [row.split(",")[3] for row in rows[1:]] == ["A"]
    assert (await client.get("/api/v1/settlements", headers=store_a)).status_code == 200
    # HQ's operations and the rule are HQ's; a key without the scope reads nothing.
    r = await client.post(f"/api/v1/settlements/{month}/compute", headers=store_a)
    assert r.status_code == 403
    r = await client.put("/api/v1/settlements/rules", json={}, headers=store_a)
    assert r.status_code == 403
    r = await client.get(f"/api/v1/settlements/{month}", headers=t.store("A"))
    assert r.status_code == 403
    # HQ's CSV has every line; another chain sees no such month.
    r = await client.get(f"/api/v1/settlements/{month}/lines.csv", headers=t.hq())
    assert [row.split(",")[3] for row in r.text.splitlines()[1:]] == ["A", "B", "D", "HQ"]
    # One store's lines, for HQ; a store key names only its own store.
    r = await client.get(f"/api/v1/settlements/{month}?store=B", headers=t.hq())
    assert [x["store_code"] for x in r.json()["lines"]] == ["B"]
    r = await client.get(f"/api/v1/settlements/{month}/lines.csv?store=HQ", headers=t.hq())
    assert [row.split(",")[3] for row in r.text.splitlines()[1:]] == ["HQ"]
    r = await client.get(f"/api/v1/settlements/{month}?store=A", headers=store_a)
    assert [x["store_code"] for x in r.json()["lines"]] == ["A"]
    r = await client.get(f"/api/v1/settlements/{month}?store=B", headers=store_a)
    assert r.status_code == 403
    assert r.json()["errors"][0]["field"] == "query.store"
    other = await make_tenant(("S1",))
    r = await client.get(f"/api/v1/settlements/{month}", headers=other.hq())
    assert r.status_code == 404


async def test_racing_closes_close_the_month_once(
    client, concurrent_client, chain, enrol, settlement_clock
) -> None:
    t = await chain()
    m1 = await enrol(t.hq())
    await buy(client, t, "A", m1["id"], 50_000)
    await buy(client, t, "B", m1["id"], 20_000, 300)
    month, zone = await this_month(client, t)
    settlement_clock.at(after(month, zone))

    answers = await asyncio.gather(
        *(
            concurrent_client.post(
                f"/api/v1/settlements/{month}/close",
                json={"idempotency_key": f"race-key-{i % 2}"},
                headers=t.hq(),
            )
            for i in range(4)
        )
    )

    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert len({str(a.json()["lines"]) for a in answers}) == 1
    with tenant_context(t.id):
        async with scoped_session() as session:
            periods = await session.scalar(select(func.count()).select_from(SettlementPeriod))
            lines = await session.scalar(select(func.count()).select_from(SettlementLine))
    assert periods == 1
    assert lines == len(answers[0].json()["lines"]) == 4  # A, B, D and HQ, once
    assert len(await audit(client, t.hq(), "settlement.closed")) == 1


async def test_months_are_checked(client, chain) -> None:
    t = await chain()
    for bad in ("2026-13", "26-11", "2026-1", "1999-12", "abcd-ef"):
        r = await client.get(f"/api/v1/settlements/{bad}", headers=t.hq())
        assert r.status_code == 404, bad
        r = await client.post(f"/api/v1/settlements/{bad}/compute", headers=t.hq())
        assert r.status_code == 404, bad
    r = await client.get("/api/v1/settlements/2026-01", headers=t.hq())
    assert r.status_code == 404  # not computed
    r = await client.post("/api/v1/settlements/2999-01/compute", headers=t.hq())
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "month"


async def test_the_rule_is_hqs_and_audited_when_it_changes(client, chain) -> None:
    t = await chain()
    r = await client.get("/api/v1/settlements/rules", headers=t.hq())
    assert r.json() == {"point_value_fen": 1, "benefit_fee_fen": 0, "benefit_fees": {}}
    rule = {"point_value_fen": 1, "benefit_fee_fen": 200, "benefit_fees": {"consult": 3000}}
    for _ in range(2):
        r = await client.put("/api/v1/settlements/rules", json=rule, headers=t.hq())
        assert r.status_code == 200, r.text
    assert (await client.get("/api/v1/settlements/rules", headers=t.hq())).json() == rule
    assert len(await audit(client, t.hq(), "settlement.rules_put")) == 1
    bad = {"point_value_fen": -1}
    r = await client.put("/api/v1/settlements/rules", json=bad, headers=t.hq())
    assert r.status_code == 400


# ------------------------------------------------------------------ the pure steps


def test_a_month_is_the_chains_calendar_month() -> None:
    new_york = ZoneInfo("America/New_York")
    assert window("2026-03", new_york) == (
        datetime(2026, 3, 1, 5, tzinfo=UTC),  # EST
        datetime(2026, 4, 1, 4, tzinfo=UTC),  # EDT
    )
    shanghai = ZoneInfo("Asia/Shanghai")
    assert window("2026-12", shanghai) == (
        datetime(2026, 11, 30, 16, tzinfo=UTC),
        datetime(2026, 12, 31, 16, tzinfo=UTC),
    )
    assert service.next_month("2026-12") == "2027-01"
    assert service.previous_month("2027-01") == "2026-12"
    assert service.parse_month("2026-00") is None


def test_lines_settle_to_zero_and_only_franchise_stores_carry_money() -> None:
    kinds = (("A", "franchise"), ("B", "franchise"), ("D", "direct"))
    a, b, d = (StoreInfo(uuid.uuid4(), code, kind) for code, kind in kinds)
    rules = SettlementRules(point_value_fen=3, benefit_fee_fen=100, benefit_fees={"gift": 500})
    ledger = {
        a.id: Figures(issued=700, redeemed=50, expired=20, uses={"gift": 2, "consult": 1}),
        b.id: Figures(issued=-10, redeemed=900),
        d.id: Figures(issued=400, redeemed=300, uses={"gift": 5}),
        None: Figures(issued=1000, redeemed=7, uses={"consult": 3}),
    }
    stores = {s.id: s for s in (a, b, d)}
    built = build_lines(ledger, stores, rules, "2026-11", "2026-11", every_store=True)
    lines = {x["store_code"] or "HQ": x for x in built}
    assert lines["A"]["benefits_fen"] == 2 * 500 + 100
    assert lines["A"]["net_fen"] == (50 + 20 - 700) * 3 + 1100
    assert lines["B"]["net_fen"] == (900 + 10) * 3
    assert (lines["D"]["net_fen"], lines["D"]["benefits_fen"], lines["D"]["benefit_uses"]) == (
        0, 0, 5)  # fmt: skip
    assert lines["HQ"]["points_issued"] == 1000
    assert lines["HQ"]["net_fen"] == -(lines["A"]["net_fen"] + lines["B"]["net_fen"])
    assert sum(x["net_fen"] for x in lines.values()) == 0


async def test_a_franchisee_is_paid_for_the_benefits_it_fulfils(client, chain, enrol) -> None:
    t = await chain()
    rule = {"point_value_fen": 1, "benefit_fee_fen": 100, "benefit_fees": {"bottle": 800}}
    assert (
        await client.put("/api/v1/settlements/rules", json=rule, headers=t.hq())
    ).status_code == 200
    bottle = {"name": "奶瓶 Feeding bottle", "type": "core.gift", "period": "grant",
              "options": {"sku": "BOTTLE-1"}, "exchange_points": 500}  # fmt: skip
    r = await client.put("/api/v1/benefits/bottle", json=bottle, headers=t.hq())
    assert r.status_code == 200, r.text
    m1 = await enrol(t.hq())
    earned = await buy(client, t, "A", m1["id"], 50_000)
    assert earned["points_earned"] == 500
    r = await client.post(
        f"/api/v1/members/{m1['id']}/benefits/bottle/exchanges",
        json={"idempotency_key": uuid.uuid4().hex, "store_code": "A"},
        headers=t.hq(),
    )
    assert r.status_code == 201, r.text
    for store in ("B", "B"):  # handed over at B; the second use is refused (one per grant)
        r = await client.post(
            f"/api/v1/members/{m1['id']}/benefits/bottle/uses",
            json={"idempotency_key": uuid.uuid4().hex, "store_code": store},
            headers=t.hq(),
        )
    assert r.status_code == 422, r.text
    month, _ = await this_month(client, t)

    lines = by_store(await compute(client, t, month))

    assert (lines["A"]["points_issued"], lines["A"]["net_fen"]) == (500, -500)
    assert lines["HQ"]["points_redeemed"] == 500  # an exchange is HQ's redemption
    assert (lines["B"]["benefit_uses"], lines["B"]["benefits_fen"]) == (1, 800)
    assert lines["B"]["net_fen"] == 800
    assert lines["HQ"]["net_fen"] == 500 - 800
    assert sum(x["net_fen"] for x in lines.values()) == 0


async def test_the_monthly_job_computes_last_months_draft(client, chain, enrol) -> None:
    t = await chain()
    m1 = await enrol(t.hq())
    await buy(client, t, "A", m1["id"], 50_000)
    month, zone = await this_month(client, t)
    first = window(month, zone)[1] + timedelta(hours=6)  # 06:00 on the 1st, the chain's time

    computed = await run_job(t.id, lambda s: service.compute_last_month(s, first))

    assert computed == month
    shown = await client.get(f"/api/v1/settlements/{month}", headers=t.hq())
    assert shown.status_code == 200
    assert by_store(shown.json())["A"]["points_issued"] == 500
    await run_job(
        t.id, lambda s: service.close(s, month, CloseIn(idempotency_key="job-close-1"), first)
    )
    # A closed month is left as it is.
    assert await run_job(t.id, lambda s: service.compute_last_month(s, first)) is None


async def test_the_command_computes_shows_and_closes(
    client, chain, enrol, settlement_clock
) -> None:
    t = await chain()
    m1 = await enrol(t.hq())
    await buy(client, t, "A", m1["id"], 50_000)
    month, zone = await this_month(client, t)

    done = await nestpoint("settlement", "compute", "--tenant", t.slug, "--month", month)
    assert done.returncode == 0, done.stderr
    assert f"{month}  draft" in done.stdout
    assert any(row.split()[:3] == ["A", month, "500"] for row in done.stdout.splitlines())
    done = await nestpoint("settlement", "show", "--tenant", t.slug, "--month", month, "--csv")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("status,month,origin_month,store_code")
    done = await nestpoint("settlement", "close", "--tenant", t.slug, "--month", month)
    assert done.returncode == 2  # not over yet
    assert "not over" in done.stderr
    settlement_clock.at(after(month, zone))
    done = await nestpoint("settlement", "close", "--tenant", t.slug, "--month", month, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["period"]["status"] == "closed"
    done = await nestpoint("settlement", "show", "--tenant", t.slug, "--month", "2026-13")
    assert done.returncode == 2


def test_the_worked_example_of_the_docs() -> None:
    """docs/settlement.md's November, line by line."""
    kinds = (("HZ-01", "franchise"), ("NB-02", "franchise"), ("SH-01", "direct"))
    hz, nb, sh = (StoreInfo(uuid.uuid4(), code, kind) for code, kind in kinds)
    rules = SettlementRules(
        point_value_fen=1, benefit_fee_fen=200, benefit_fees={"wipes-pack": 500}
    )
    ledger = {
        hz.id: Figures(issued=500 + 96, redeemed=400),
        nb.id: Figures(
            issued=197, redeemed=300, expired=120, uses={"wipes-pack": 2, "free-shipping": 1}
        ),
        sh.id: Figures(issued=800, redeemed=200),
        None: Figures(issued=1000),
    }
    stores = {s.id: s for s in (hz, nb, sh)}
    built = build_lines(ledger, stores, rules, "2026-11", "2026-11", every_store=True)
    columns = ("points_issued", "points_redeemed", "points_expired", "benefit_uses",
               "issued_fen", "redeemed_fen", "expired_fen", "benefits_fen", "net_fen")  # fmt: skip
    table = {x["store_code"] or "HQ": tuple(x[c] for c in columns) for x in built}
    assert table == {
        "HZ-01": (596, 400, 0, 0, 596, 400, 0, 0, -196),
        "NB-02": (197, 300, 120, 3, 197, 300, 120, 1200, 1423),
        "SH-01": (800, 200, 0, 0, 0, 0, 0, 0, 0),
        "HQ": (1000, 0, 0, 0, 793, 700, 120, 1200, -1227),
    }


async def test_a_worker_runs_the_monthly_job(client, chain, worker) -> None:
    from nestpoint.jobs.broker import JobRef
    from nestpoint.jobs.daily import DAILY_JOBS
    from nestpoint.settlement.actors import JOB

    monthly = [job for job in DAILY_JOBS if job.actor_name == JOB]
    assert [(j.at.hour, j.day_of_month) for j in monthly] == [(6, 1)]
    t = await chain()
    month, _ = await this_month(client, t)

    JobRef(JOB).send(str(t.id))

    for _ in range(100):
        r = await client.get("/api/v1/settlements", headers=t.hq())
        if r.json()["items"]:
            break
        await asyncio.sleep(0.1)
    assert [(p["month"], p["status"]) for p in r.json()["items"]] == [
        (service.previous_month(month), "draft")
    ]


@pytest.mark.parametrize("seed", [1, 2])
async def test_random_months_settle_to_zero_and_account_for_every_point(
    client, chain, enrol, seed
) -> None:
    """Random orders at every store, redemptions (direct and through holds, captured or
    released), partial and full refunds and HQ adjustments: the month's nets add up to zero,
    and what was issued less what was redeemed is what the members hold (every point is on
    exactly one line)."""
    rng = random.Random(seed)
    t = await chain()
    members = [(await enrol(t.hq()))["id"] for _ in range(4)]
    placed: list[dict[str, Any]] = []

    async def available(member_id: str) -> int:
        r = await client.get(f"/api/v1/members/{member_id}/points", headers=t.hq())
        return int(r.json()["available"])

    for step in range(30):
        member, store = rng.choice(members), rng.choice("ABD")
        op = rng.choice(["buy", "buy", "redeem", "hold", "refund", "adjust"])
        lines = [{"sku": f"SKU-{n}", "name": "Item", "category": "feeding", "quantity": 2,
                  "unit_price_fen": 5_000 * n, "paid_fen": 10_000 * n} for n in (1, 2)]  # fmt: skip
        if op == "adjust":
            amount = rng.choice([300, 1_000, -50])
            r = await adjust(client, t.hq(), member, amount)
            assert r.status_code in (201, 422), r.text
        elif op == "refund" and placed:
            order = rng.choice(placed)
            body: dict[str, Any] = {"external_id": f"R{step}"}
            if rng.random() < 0.5:
                body["lines"] = [{"line_no": rng.choice([1, 2]), "quantity": 1}]
            r = await refund(client, t.hq(), order, body)
            assert r.status_code in (201, 422), r.text
        else:
            points = min(await available(member), 3_000) if op in ("redeem", "hold") else 0
            points = rng.randint(0, points)
            body = order_body(member={"id": member}, store_code=store, lines=lines,
                              points_used=points)  # fmt: skip
            if op == "hold" and points:
                r = await client.post(
                    "/api/v1/points/holds",
                    json={"member_id": member, "points": points},
                    headers=t.hq(),
                )
                assert r.status_code == 201, r.text
                if rng.random() < 0.5:  # released at the till: nothing is redeemed
                    url = f"/api/v1/points/holds/{r.json()['id']}/release"
                    assert (await client.post(url, headers=t.hq())).status_code == 200
                    continue
                body["payment"]["hold_id"] = r.json()["id"]
            r = await client.post("/api/v1/orders", json=body, headers=t.hq())
            assert r.status_code == 201, r.text
            placed.append(r.json())
    month, _ = await this_month(client, t)

    figures = await compute(client, t, month)

    lines = figures["lines"]
    assert sum(x["net_fen"] for x in lines) == 0
    issued = sum(x["points_issued"] for x in lines)
    redeemed = sum(x["points_redeemed"] for x in lines)
    assert sum(x["points_expired"] for x in lines) == 0
    balances = 0
    for member in members:
        r = await client.get(f"/api/v1/members/{member}/points", headers=t.hq())
        balances += r.json()["balance"]
    assert issued - redeemed == balances
    franchise = [x for x in lines if x["settles"]]
    hq = next(x for x in lines if not x["store_code"])
    assert hq["issued_fen"] == sum(x["points_issued"] for x in franchise)
    assert hq["redeemed_fen"] == sum(x["points_redeemed"] for x in franchise)
