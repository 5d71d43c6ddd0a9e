"""Orders, points and tiers with plugins enabled: the example plugin's earn rule applies at
its store only, and a plugin raising in every hook changes nothing for the core."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from nestpoint.plugins.api import EarnAdjustment, EarnContext, EarnLine, hookimpl
from nestpoint.tenancy.keys import DEFAULT_SCOPES
from nestpoint.testing import STORE_KEY_SCOPES, adjust_points, enable_plugin

from .conftest import Broken, settle

_phones = itertools.count(20_000_000)
SHANGHAI = ZoneInfo("Asia/Shanghai")  # the test chains' time zone


def _order(store: str, member_id: str) -> dict[str, Any]:
    return {
        "channel": "pos",
        "external_id": uuid.uuid4().hex,
        "store_code": store,
        "member": {"id": member_id},
        "lines": [
            {
                "sku": "MILK-1",
                "name": "Formula",
                "category": "feeding",
                "quantity": 1,
                "unit_price_fen": 10000,
                "paid_fen": 10000,
            }
        ],
        "paid_at": datetime.now(UTC).isoformat(),
        "payment": {"cash_fen": 10000, "points_used": 0},
    }


async def test_orders_earn_with_plugins_and_survive_a_broken_one(
    client, make_tenant, register_plugin
):
    broken = register_plugin(Broken(), "broken")
    t = await make_tenant()
    today = datetime.now(SHANGHAI).date()  # the plugin sees the chain's month
    born = date(today.year - 1, today.month, min(today.day, 28))
    r = await client.post(
        "/api/v1/members",
        json={
            "phone": f"139{next(_phones) % 100_000_000:08d}",
            "name": "王芳",
            "children": [{"nickname": "豆豆", "birth_date": born.isoformat()}],
            "guardian_consent": {"granted": True, "source": "pos"},
        },
        headers=t.hq(),
    )
    assert r.status_code == 201, r.text
    member_id = r.json()["id"]
    await enable_plugin(client, t, "broken")  # chain-wide, raises in every hook
    await enable_plugin(client, t, "example", store="S1")

    r = await client.post("/api/v1/orders", json=_order("S1", member_id), headers=t.hq())
    assert r.status_code == 201, r.text
    assert r.json()["points_earned"] == 200  # x2 in the child's birthday month, at S1
    r = await client.post("/api/v1/orders", json=_order("S2", member_id), headers=t.hq())
    assert r.status_code == 201, r.text
    assert r.json()["points_earned"] == 100  # the example plugin is not enabled at S2
    r = await client.get(f"/api/v1/members/{member_id}/points", headers=t.hq())
    assert r.status_code == 200
    assert r.json()["balance"] == 300

    await settle(t)  # the events reach the broken plugin, which fails...
    assert broken.calls >= 4
    r = await client.get("/api/v1/tenant/plugins/broken/failures", headers=t.hq())
    hooks = {f["hook"] for f in r.json()["items"]}
    assert "nestpoint_adjust_earned_points" in hooks
    assert "nestpoint_on_event" in hooks
    # An earn rule is asked once per order: its failure is final, never retried.
    earn = [f for f in r.json()["items"] if f["hook"] == "nestpoint_adjust_earned_points"]
    assert [f["final"] for f in earn] == [True, True]  # both orders asked it
    # ...and nothing of the core waits for it: the orders and points are there.
    r = await client.get(f"/api/v1/members/{member_id}", headers=t.hq())
    assert r.status_code == 200


async def test_plugins_see_the_payment_time_in_the_chains_time_zone(client, make_tenant):
    """A till in UTC pays at 20:00 on 31 May: in Shanghai (the chain's zone) it is already
    1 June, the month the child was born, so the example plugin doubles the points."""
    t = await make_tenant()
    r = await client.post(
        "/api/v1/members",
        json={
            "phone": f"139{next(_phones) % 100_000_000:08d}",
            "name": "王芳",
            "children": [{"nickname": "豆豆", "birth_date": "2025-06-10"}],
            "guardian_consent": {"granted": True, "source": "pos"},
        },
        headers=t.hq(),
    )
    assert r.status_code == 201, r.text
    member_id = r.json()["id"]
    await enable_plugin(client, t, "example", store="S1")
    earned = {}
    for paid_at in ("2026-05-31T20:00:00+00:00", "2026-05-31T11:00:00+00:00"):
        body = _order("S1", member_id) | {"paid_at": paid_at}
        r = await client.post("/api/v1/orders", json=body, headers=t.hq())
        assert r.status_code == 201, r.text
        earned[paid_at] = r.json()["points_earned"]
    # 04:00 on 1 June in Shanghai: June; 19:00 on 31 May there: still May.
    assert earned == {"2026-05-31T20:00:00+00:00": 200, "2026-05-31T11:00:00+00:00": 100}


class FormulaBonus:
    """50 extra points on each formula (feeding) line: an adjustment that names its lines."""

    @hookimpl
    def nestpoint_adjust_earned_points(self, context: EarnContext) -> EarnAdjustment | None:
        feeding = tuple(n for n, ln in enumerate(context.lines, 1) if ln.category == "feeding")
        return (
            EarnAdjustment(50 * len(feeding), "formula bonus", lines=feeding) if feeding else None
        )


async def test_an_adjustment_for_a_line_stays_with_that_line_through_a_refund(
    client, make_tenant, register_plugin
):
    register_plugin(FormulaBonus(), "formula-bonus")
    t = await make_tenant()
    r = await client.post(
        "/api/v1/members",
        json={"phone": f"139{next(_phones) % 100_000_000:08d}", "name": "王芳"},
        headers=t.hq(),
    )
    assert r.status_code == 201, r.text
    member_id = r.json()["id"]
    await enable_plugin(client, t, "formula-bonus")
    body = _order("S1", member_id)
    toys = body["lines"][0] | {"sku": "TOY-1", "name": "Blocks", "category": "toys"}
    formula = body["lines"][0] | {"unit_price_fen": 5000, "paid_fen": 5000}
    body |= {"lines": [toys, formula], "payment": {"cash_fen": 15000, "points_used": 0}}
    r = await client.post("/api/v1/orders", json=body, headers=t.hq())
    assert r.status_code == 201, r.text
    # The toys line earned most (100), but the bonus is the formula line's: 50 + 50.
    assert [ln["points_earned"] for ln in r.json()["lines"]] == [100, 100]
    entries = await _earn_entries(client, t, member_id)
    assert entries == [(100, ""), (100, "formula-bonus: formula bonus")]

    url = f"/api/v1/orders/pos/{body['external_id']}/refunds"
    refund = {"external_id": uuid.uuid4().hex, "lines": [{"line_no": 2, "quantity": 1}]}
    r = await client.post(url, json=refund, headers=t.hq())
    assert r.status_code == 201, r.text
    r = await client.get(f"/api/v1/members/{member_id}/points", headers=t.hq())
    assert r.json()["balance"] == 100  # the formula line's points went back, its bonus too


async def _earn_entries(client: Any, t: Any, member_id: str) -> list[tuple[int, str]]:
    r = await client.get(f"/api/v1/members/{member_id}/points/entries", headers=t.hq())
    assert r.status_code == 200, r.text
    earned = [e for e in r.json()["items"] if e["kind"] == "earn"]
    return sorted((e["amount"], e["reason"]) for e in earned)


def test_the_kits_store_keys_can_do_what_a_tills_can() -> None:
    assert sorted(DEFAULT_SCOPES["store"] | {"plugins:read", "plugins:write"}) == STORE_KEY_SCOPES


async def test_the_kit_asks_about_an_order_of_several_lines(
    client, make_tenant, host, register_plugin
):
    register_plugin(FormulaBonus(), "formula-bonus")
    t = await make_tenant()
    await enable_plugin(client, t, "formula-bonus")
    lines = [EarnLine("TOY-1", "toys", 1, 10_000, 100), EarnLine("MILK-1", "feeding", 2, 5_000, 50)]
    adjusted = await adjust_points(host, t, "S1", lines=lines)
    assert adjusted == [("formula-bonus", EarnAdjustment(50, "formula bonus", lines=(2,)))]
