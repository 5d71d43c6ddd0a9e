"""The console's analytics and settlement pages (in process, PostgreSQL and SQLite).

Analytics: every figure, chart and table is the API's (GET /api/v1/analytics/*) for the
same period and store; a store manager always sees their own store; the analyst sees the
figures (aggregates); the clerk is refused. Settlement: HQ sees the months and each store's
lines with the sum check; HQ's admin computes and closes (CSRF, a confirmation step,
idempotent, audited, one outbox event); a store manager sees their own store's lines only.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from litestar.testing import AsyncTestClient

from nestpoint.console.web import percent, yuan
from nestpoint.settlement import service as settlement

from .conftest import PASSWORD
from .conftest import sign_in as browser_sign_in
from .test_users_and_sessions import add_user, login_token, sign_in

ANALYTICS = "/console/analytics"
SETTLEMENT = "/console/settlement"


def order(store: str, total: int, member: str | None = None, category: str = "feeding") -> dict:  # type: ignore[type-arg]
    body: dict[str, Any] = {
        "channel": "pos",
        "external_id": uuid.uuid4().hex,
        "store_code": store,
        "lines": [{"sku": "SKU-1", "category": category, "quantity": 1,
                   "unit_price_fen": total, "paid_fen": total}],
        "paid_at": datetime.now(UTC).isoformat(),
        "payment": {"cash_fen": total},
    }  # fmt: skip
    if member:
        body["member"] = {"id": member}
    return body


def shown(page: str, testid: str) -> str:
    found = re.search(rf'data-testid="{testid}">([^<]*)<', page)
    assert found, testid
    return html.unescape(found.group(1))


def chart(page: str, name: str) -> dict[str, Any]:
    found = re.search(rf"data-testid=\"chart-{name}\"[^>]*data-chart='([^']+)'", page)
    assert found, name
    return dict(json.loads(html.unescape(found.group(1))))


def data(spec: dict[str, Any], i: int = 0) -> list[Any]:
    return list(spec["datasets"][i]["data"])


def pct(rate: float | None) -> float | None:
    return None if rate is None else round(rate * 100, 2)


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))[1:]


async def seeded(client: Any, make_tenant: Any) -> Any:
    """A chain with members buying at S1 and S2 (feeding twice, toys once; walk-ins)."""
    t = await make_tenant(("S1", "S2"))
    ids = []
    for phone in ("13912345601", "13912345602"):
        r = await client.post("/api/v1/members", json={"phone": phone}, headers=t.hq())
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    for body in (
        order("S1", 30000, ids[0]),
        order("S1", 12000, ids[0]),
        order("S1", 8000, ids[0], "toys"),
        order("S1", 10000),
        order("S2", 5000, ids[1], "toys"),
        order("S2", 20000),
    ):
        r = await client.post("/api/v1/orders", json=body, headers=t.hq())
        assert r.status_code == 201, r.text
    return t


async def api(client: Any, t: Any, route: str, query: dict[str, str]) -> dict[str, Any]:
    r = await client.get(f"/api/v1/analytics/{route}", params=query, headers=t.hq())
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_every_figure_chart_and_table_is_the_apis(app, client, make_tenant) -> None:
    t = await seeded(client, make_tenant)
    await add_user(client, t, "admin", "hq_admin")
    await add_user(client, t, "boss-s1", "store_manager", "S1")
    period = (await api(client, t, "summary", {}))["period"]
    days = {"from": period["start"], "to": period["end"]}
    # HQ for the chain and for one store; the manager (who cannot choose another store).
    for login, asked, store in (
        ("admin", {}, None),
        ("admin", {"store": "S2"}, "S2"),
        ("boss-s1", {"store": "S2"}, "S1"),
    ):
        query = days | ({"store": store} if store else {})
        summary = await api(client, t, "summary", query)
        hourly = await api(client, t, "hourly-sales", query)
        categories = (await api(client, t, "repurchase-by-category", query))["categories"]
        tiers = (await api(client, t, "tier-mix", query))["tiers"]
        funnel = await api(client, t, "funnel", query)
        async with AsyncTestClient(app=app) as c:
            assert (await sign_in(c, t.slug, login)).status_code == 303
            r = await c.get(ANALYTICS, params=days | asked)
            assert r.status_code == 200, r.text
            page = r.text
            exported = {
                name: await c.get(ANALYTICS, params=days | asked | {"export": name})
                for name in ("figures", "categories", "hourly", "tiers", "funnel", "churn")
            }

        assert f"{period['start']} – {period['end']}" in shown(page, "period")
        assert shown(page, "member-share") == percent(summary["member_share"]["rate"])
        assert shown(page, "repurchase") == percent(summary["repurchase"]["rate"])
        assert shown(page, "redemption") == percent(summary["points_redemption"]["rate"])
        assert shown(page, "churn") == percent(summary["churn"]["churn_rate"])
        assert shown(page, "reactivation") == percent(summary["churn"]["reactivation_rate"])
        assert shown(page, "net-sales") == yuan(summary["sales"]["net_fen"])
        assert shown(page, "member-aov") == yuan(summary["average_order"]["member_fen"])
        assert shown(page, "new-members") == str(summary["new_members"])
        rates = chart(page, "figures")
        assert data(rates) == [
            pct(summary["member_share"]["rate"]),
            pct(summary["repurchase"]["rate"]),
            pct(summary["points_redemption"]["rate"]),
            pct(summary["churn"]["churn_rate"]),
            pct(summary["churn"]["reactivation_rate"]),
        ]
        assert data(rates, 1) == [70.0, None, 25.0, 15.0, None]  # the targets
        average = summary["average_order"]
        assert data(chart(page, "average")) == [
            None if average[k] is None else average[k] / 100
            for k in ("member_fen", "non_member_fen")
        ]
        churn = summary["churn"]
        assert data(chart(page, "churn")) == [churn["previous_active"], churn["lapsed"]]
        assert data(chart(page, "churn"), 1) == [churn["churned"], churn["reactivated"]]
        spec = chart(page, "categories")
        assert spec["labels"] == [c["category"] for c in categories]
        assert data(spec) == [pct(c["rate"]) for c in categories]
        assert data(chart(page, "hourly")) == [h["net_fen"] / 100 for h in hourly["weekday"]]
        assert data(chart(page, "hourly"), 1) == [h["net_fen"] / 100 for h in hourly["weekend"]]
        spec = chart(page, "tiers")
        assert (spec["type"], spec["labels"]) == ("doughnut", [x["name"] for x in tiers])
        assert data(spec) == [x["members"] for x in tiers]
        steps = [funnel[k] for k in ("enrolled", "purchased", "repeated", "active")]
        assert data(chart(page, "funnel")) == steps

        # Each table as CSV: the same figures.
        assert all(e.status_code == 200 for e in exported.values())
        assert exported["tiers"].headers["content-type"].startswith("text/csv")
        assert rows(exported["tiers"].text) == [
            [x["name"], x["code"], str(x["members"]), percent(x["share"])] for x in tiers
        ]
        assert [int(r[1]) for r in rows(exported["funnel"].text)] == steps
        assert [[r[0], r[1], r[2]] for r in rows(exported["categories"].text)] == [
            [c["category"], str(c["buyers"]), str(c["repeat_buyers"])] for c in categories
        ]
        hours = rows(exported["hourly"].text)
        assert [int(r[1]) for r in hours] == [h["orders"] for h in hourly["weekday"]]
        assert [int(r[3]) for r in hours] == [h["orders"] for h in hourly["weekend"]]
        figures = rows(exported["figures"].text)  # in the chain's language: by position
        assert figures[1][1:3] == [percent(summary["member_share"]["rate"]), "70.0%"]
        assert figures[-1][1] == str(summary["new_members"])
        assert rows(exported["churn"].text)[0][1] == str(churn["previous_active"])

    # What the seeded chain bought, as a check on the comparison itself.
    chain = await api(client, t, "repurchase-by-category", days)
    assert {c["category"]: c["repeat_buyers"] for c in chain["categories"]} == {
        "feeding": 1,
        "toys": 0,
    }


async def test_who_sees_the_figures(app, client, make_tenant) -> None:
    t = await seeded(client, make_tenant)
    for login, role, store in (
        ("analyst", "hq_analyst", None),
        ("boss-s1", "store_manager", "S1"),
        ("clerk-s1", "store_clerk", "S1"),
    ):
        await add_user(client, t, login, role, store)
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "analyst")).status_code == 303
        page = await c.get(ANALYTICS)
        assert page.status_code == 200
        assert 'data-nav="analytics"' in page.text
        assert "13912345601" not in page.text  # aggregates only
        assert 'name="store"' in page.text  # HQ chooses the store
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "boss-s1")).status_code == 303
        page = await c.get(ANALYTICS)
        assert page.status_code == 200
        assert 'name="store"' not in page.text  # their own store, always
        assert "· S1" in page.text
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "clerk-s1")).status_code == 303
        page = await c.get(ANALYTICS)
        assert page.status_code == 403
        assert (await c.get(ANALYTICS, params={"export": "figures"})).status_code == 403
        assert 'data-nav="analytics"' not in (await c.get("/console/till")).text


async def test_the_filters_are_checked(app, client, make_tenant) -> None:
    t = await seeded(client, make_tenant)
    await add_user(client, t, "admin", "hq_admin")
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "admin")).status_code == 303
        for query, field in (
            ({"from": "2026-13-01"}, "from"),
            ({"to": "yesterday"}, "to"),
            ({"from": "2026-11-30", "to": "2026-11-01"}, "to"),
            ({"from": "2024-01-01", "to": "2026-01-01"}, "to"),  # more than 366 days
            ({"from": "0001-01-01", "to": "0001-01-02"}, "from"),
            ({"store": "NOPE"}, "store"),
        ):
            r = await c.get(ANALYTICS, params=query)
            assert r.status_code == 422, query
            assert f'data-testid="error-{field}"' in r.text, query
            assert "data-chart" not in r.text
        # From alone: the 30 days from it, as the API does.
        r = await c.get(ANALYTICS, params={"from": "2026-11-01"})
        assert r.status_code == 200
        assert "2026-11-01 – 2026-11-30" in shown(r.text, "period")


async def test_the_page_speaks_chinese(app, client, make_tenant) -> None:
    t = await seeded(client, make_tenant)
    await add_user(client, t, "li.na", "hq_analyst", locale="zh-CN")
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "li.na")).status_code == 303
        page = (await c.get(ANALYTICS)).text
        months = (await c.get(SETTLEMENT)).text
    for words in ("会员消费占比", "生命周期漏斗", "按品类复购", "等级分布"):
        assert words in page
    assert "加盟结算" in months


# ------------------------------------------------------------------ settlement


@pytest.fixture
def settlement_now(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Moves the settlement service's clock (the ledgers keep the real one)."""

    def at(moment: datetime) -> None:
        monkeypatch.setattr(settlement, "utcnow", lambda: moment)

    return at


async def franchise_chain(client: Any, make_tenant: Any) -> tuple[Any, str, ZoneInfo]:
    """Franchise stores A and B, a member who earns at A and spends at B; this month."""
    t = await make_tenant(("A", "B"))
    for code in ("A", "B"):
        r = await client.patch(f"/api/v1/stores/{code}", json={"kind": "franchise"}, headers=t.hq())
        assert r.status_code == 200, r.text
    program = (await client.get("/api/v1/loyalty/program", headers=t.hq())).json()
    program.pop("version")
    program["points"]["pending_days"] = 0
    r = await client.put("/api/v1/loyalty/program", json=program, headers=t.hq())
    assert r.status_code == 200, r.text
    r = await client.post("/api/v1/members", json={"phone": "13912345699"}, headers=t.hq())
    member = r.json()["id"]
    r = await client.post("/api/v1/orders", json=order("A", 50000, member), headers=t.hq())
    assert r.status_code == 201, r.text
    spend = order("B", 20000, member) | {"payment": {"cash_fen": 19700, "points_used": 300}}
    r = await client.post("/api/v1/orders", json=spend, headers=t.hq())
    assert r.status_code == 201, r.text
    zone = ZoneInfo((await client.get("/api/v1/tenant", headers=t.hq())).json()["timezone"])
    return t, f"{datetime.now(zone):%Y-%m}", zone


def line_rows(text: str) -> dict[str, list[str]]:
    return {r[0]: r for r in rows(text)}


async def events(client: Any, t: Any) -> list[dict[str, Any]]:
    r = await client.get(
        "/api/v1/events", params={"type": "settlement.period_closed"}, headers=t.hq()
    )
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def audits(client: Any, t: Any, action: str) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/audit", params={"limit": 200}, headers=t.hq())
    assert r.status_code == 200, r.text
    return [e for e in r.json()["items"] if e["action"] == action]


async def test_hq_admin_computes_checks_and_closes_a_month(
    app, client, make_tenant, settlement_now
) -> None:
    t, month, zone = await franchise_chain(client, make_tenant)
    user = await add_user(client, t, "admin", "hq_admin", locale="en")
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "admin")).status_code == 303
        page = await c.get(SETTLEMENT)
        assert page.status_code == 200
        assert 'data-testid="no-periods"' in page.text
        csrf = login_token(page.text)
        # No CSRF token: refused before anything runs.
        r = await c.post(f"{SETTLEMENT}/compute", data={"month": month})
        assert r.status_code == 403
        r = await c.post(f"{SETTLEMENT}/compute", data={"csrf_token": csrf, "month": "2026-13"})
        assert (r.status_code, 'data-testid="error-month"' in r.text) == (422, True)
        r = await c.post(f"{SETTLEMENT}/compute", data={"csrf_token": csrf, "month": "2999-01"})
        assert (r.status_code, 'data-testid="error-month"' in r.text) == (422, True)

        r = await c.post(f"{SETTLEMENT}/compute", data={"csrf_token": csrf, "month": month})
        assert r.status_code == 200, r.text
        assert shown(r.text, "status") == "Draft"
        check = re.search(r'data-testid="sum-check" class="(\w+)"', r.text)
        assert check
        assert check.group(1) == "notice"  # the nets add up to zero
        again = await c.post(f"{SETTLEMENT}/compute", data={"csrf_token": csrf, "month": month})
        assert again.status_code == 200
        exported = await c.get(f"{SETTLEMENT}/{month}", params={"export": "lines"})
        listed = await c.get(SETTLEMENT, params={"export": "periods"})

        # The lines are the API's; the nets add up to zero.
        api = (await client.get(f"/api/v1/settlements/{month}", headers=t.hq())).json()
        lines = line_rows(exported.text)
        assert set(lines) == {"A", "B", "HQ"}
        for x in api["lines"]:
            got = lines[x["store_code"] or "HQ"]
            assert [int(v) for v in got[3:7]] == [
                x["points_issued"],
                x["points_redeemed"],
                x["points_expired"],
                x["benefit_uses"],
            ]
            assert got[11] == yuan(x["net_fen"])
        assert lines["B"][4] == "300"
        assert sum(x["net_fen"] for x in api["lines"]) == 0
        assert rows(listed.text)[0][:2] == [month, "Draft"]
        assert len(await audits(client, t, "settlement.computed")) == 1  # the same draft twice

        # Closing: the confirmation step first; a month not over is refused.
        confirm = await c.get(f"{SETTLEMENT}/{month}/close")
        assert confirm.status_code == 200
        assert 'data-testid="close-form"' in confirm.text
        reference = re.search(r'name="reference" value="([^"]+)"', confirm.text)
        assert reference
        form = {"csrf_token": csrf, "reference": reference.group(1), "confirm": "yes"}
        r = await c.post(f"{SETTLEMENT}/{month}/close", data=form)
        assert r.status_code == 422
        settlement_now(settlement.window(month, zone)[1] + timedelta(days=1))
        r = await c.post(f"{SETTLEMENT}/{month}/close", data=form | {"confirm": ""})
        assert r.status_code == 422  # not confirmed
        assert await events(client, t) == []

        closed = await c.post(f"{SETTLEMENT}/{month}/close", data=form)
        assert closed.status_code == 200, closed.text
        assert shown(closed.text, "status") == "Closed"
        assert "Closed. Its figures are final." in closed.text
        twice = await c.post(f"{SETTLEMENT}/{month}/close", data=form)  # the same form again
        assert twice.status_code == 200
        assert "Already closed." in twice.text
        other = await c.post(f"{SETTLEMENT}/{month}/close", data=form | {"reference": "x" * 20})
        assert other.status_code == 200
        assert 'data-testid="close-link"' not in other.text  # closed: nothing to do
        assert 'data-testid="close-form"' not in (await c.get(f"{SETTLEMENT}/{month}/close")).text

    shown_api = (await client.get(f"/api/v1/settlements/{month}", headers=t.hq())).json()
    assert shown_api["period"]["status"] == "closed"
    assert shown_api["period"]["closed_by"] == "user:admin"
    closes = await audits(client, t, "settlement.closed")
    assert len(closes) == 1
    assert closes[0]["actor_id"] == user["id"]
    assert len(await events(client, t)) == 1


async def test_who_sees_and_changes_settlement(app, client, make_tenant) -> None:
    t, month, _zone = await franchise_chain(client, make_tenant)
    r = await client.post(f"/api/v1/settlements/{month}/compute", headers=t.hq())
    assert r.status_code == 200, r.text
    for login, role, store in (
        ("analyst", "hq_analyst", None),
        ("boss-a", "store_manager", "A"),
        ("clerk-a", "store_clerk", "A"),
    ):
        await add_user(client, t, login, role, store)

    async with AsyncTestClient(app=app) as c:  # the analyst reads, and only reads
        assert (await sign_in(c, t.slug, "analyst")).status_code == 303
        page = await c.get(SETTLEMENT)
        assert page.status_code == 200
        assert 'data-testid="compute-form"' not in page.text
        month_page = await c.get(f"{SETTLEMENT}/{month}")
        assert month_page.status_code == 200
        assert 'data-testid="sum-check"' in month_page.text
        assert 'data-testid="close-link"' not in month_page.text
        csrf = login_token(page.text)
        r = await c.post(f"{SETTLEMENT}/compute", data={"csrf_token": csrf, "month": month})
        assert r.status_code == 403
        assert (await c.get(f"{SETTLEMENT}/{month}/close")).status_code == 403
        form = {"csrf_token": csrf, "reference": "analyst-0001", "confirm": "yes"}
        assert (await c.post(f"{SETTLEMENT}/{month}/close", data=form)).status_code == 403
        assert (await c.get(f"{SETTLEMENT}/2026-13")).status_code == 404
        assert (await c.get(f"{SETTLEMENT}/2001-01")).status_code == 404  # not computed

    async with AsyncTestClient(app=app) as c:  # a manager: their own store's lines
        assert (await sign_in(c, t.slug, "boss-a")).status_code == 303
        page = await c.get(f"{SETTLEMENT}/{month}")
        assert page.status_code == 200
        assert 'data-testid="sum-check"' not in page.text
        exported = await c.get(f"{SETTLEMENT}/{month}", params={"export": "lines"})
        assert list(line_rows(exported.text)) == ["A"]
        csrf = login_token(page.text)
        r = await c.post(f"{SETTLEMENT}/compute", data={"csrf_token": csrf, "month": month})
        assert r.status_code == 403

    async with AsyncTestClient(app=app) as c:  # the clerk: the till only
        assert (await sign_in(c, t.slug, "clerk-a")).status_code == 303
        assert (await c.get(SETTLEMENT)).status_code == 403
        assert (await c.get(f"{SETTLEMENT}/{month}")).status_code == 403
        assert 'data-nav="settlement"' not in (await c.get("/console/till")).text


# ------------------------------------------------------------------ in a real browser


async def test_the_charts_draw_and_a_month_closes_in_a_browser(
    new_page, client, make_tenant, tmp_path
) -> None:
    """Chart.js draws every chart of the analytics page; HQ's admin computes and closes
    last month through the forms (the confirmation step included). With
    ``NESTPOINT_SCREENSHOTS`` set, the pages' screenshots go there (docs/console)."""
    t = await seeded(client, make_tenant)
    for store in ("S1", "S2"):
        r = await client.patch(
            f"/api/v1/stores/{store}", json={"kind": "franchise"}, headers=t.hq()
        )
        assert r.status_code == 200, r.text
    await add_user(client, t, "admin", "hq_admin", locale="en")
    await add_user(client, t, "li.na", "hq_analyst", locale="zh-CN")
    folder = Path(os.environ.get("NESTPOINT_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (a test's folder, once)

    page = await new_page()
    await browser_sign_in(page, t.slug, "admin", PASSWORD)
    await page.goto(ANALYTICS)
    await page.wait_for_selector("[data-testid=chart-funnel][data-drawn=true]", state="attached")
    drawn = await page.locator("canvas[data-chart][data-drawn=true]").count()
    assert drawn == await page.locator("canvas[data-chart]").count() == 7
    await page.screenshot(path=str(folder / "analytics.en.png"), full_page=True)

    await page.goto(SETTLEMENT)
    await page.click("[data-testid=compute]")  # last month, suggested
    await page.wait_for_selector("[data-testid=sum-check].notice")
    await page.click("[data-testid=close-link]")
    await page.wait_for_selector("[data-testid=warning]")
    await page.click("[data-testid=close]")
    await page.wait_for_selector("[data-testid=notice]")
    assert await page.inner_text("[data-testid=status]") == "Closed"

    zh = await new_page("zh-CN")
    await browser_sign_in(zh, t.slug, "li.na", PASSWORD)
    await zh.goto(ANALYTICS)
    await zh.wait_for_selector("[data-testid=chart-tiers][data-drawn=true]", state="attached")
    await zh.screenshot(path=str(folder / "analytics.zh_CN.png"), full_page=True)
    await zh.goto(SETTLEMENT)
    await zh.click("[data-month] a")
    await zh.wait_for_selector("[data-testid=lines]")
    assert await zh.inner_text("[data-testid=status]") == "已关闭"
    # This month's draft, with figures, for the docs' picture.
    zone = ZoneInfo((await client.get("/api/v1/tenant", headers=t.hq())).json()["timezone"])
    month = f"{datetime.now(zone):%Y-%m}"
    assert (await client.post(f"/api/v1/settlements/{month}/compute", headers=t.hq())).is_success
    await zh.goto(f"{SETTLEMENT}/{month}")
    assert await zh.inner_text("[data-testid=status]") == "草稿"
    await zh.screenshot(path=str(folder / "settlement.zh_CN.png"), full_page=True)
