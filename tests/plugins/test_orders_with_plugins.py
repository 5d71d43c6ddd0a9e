"""Orders, points and tiers with plugins enabled: the example plugin's earn rule applies at
its store only, and a plugin raising in every hook changes nothing for the core."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime
from typing import Any

from nestpoint.testing import enable_plugin

from .conftest import Broken, settle

_phones = itertools.count(20_000_000)


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
    today = datetime.now(UTC).date()
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
    # ...and nothing of the core waits for it: the orders and points are there.
    r = await client.get(f"/api/v1/members/{member_id}", headers=t.hq())
    assert r.status_code == 200
