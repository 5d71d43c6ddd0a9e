"""The dashboard's figures are the API's (GET /api/v1/analytics/summary), for the chain at
HQ and for the store of its manager."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from litestar.testing import AsyncTestClient

from .test_users_and_sessions import add_user, sign_in


def _order(store: str, total: int, member: str | None = None) -> dict:  # type: ignore[type-arg]
    body = {
        "channel": "pos",
        "external_id": uuid.uuid4().hex,
        "store_code": store,
        "lines": [{"sku": "MILK", "category": "feeding", "quantity": 1,
                   "unit_price_fen": total, "paid_fen": total}],
        "paid_at": datetime.now(UTC).isoformat(),
        "payment": {"cash_fen": total},
    }  # fmt: skip
    if member:
        body["member"] = {"id": member}
    return body


def _shown(html: str, testid: str) -> str:
    found = re.search(rf'data-testid="{testid}">([^<]*)<', html)
    assert found, html
    return found.group(1)


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


async def test_dashboard_figures_equal_the_apis(app, client, make_tenant) -> None:
    t = await make_tenant(("S1", "S2"))
    r = await client.post("/api/v1/members", json={"phone": "13912345678"}, headers=t.hq())
    member = r.json()["id"]
    for body in (
        _order("S1", 30000, member),
        _order("S1", 10000),
        _order("S2", 5000, member),
        _order("S2", 20000),
    ):
        r = await client.post("/api/v1/orders", json=body, headers=t.hq())
        assert r.status_code == 201, r.text
    await add_user(client, t, "admin", "hq_admin")
    await add_user(client, t, "boss-s1", "store_manager", "S1")
    for login, query in (("admin", {}), ("boss-s1", {"store": "S1"})):
        api = await client.get("/api/v1/analytics/summary", params=query, headers=t.hq())
        assert api.status_code == 200, api.text
        figures = api.json()
        async with AsyncTestClient(app=app) as c:
            assert (await sign_in(c, t.slug, login)).status_code == 303
            page = (await c.get("/console/dashboard")).text
        assert _shown(page, "member-share") == _percent(figures["member_share"]["rate"])
        assert _shown(page, "repurchase") == _percent(figures["repurchase"]["rate"])
        assert _shown(page, "new-members") == str(figures["new_members"])
        period = figures["period"]
        assert f"{period['start']} – {period['end']}" in _shown(page, "period")
    assert figures["member_share"]["rate"] == 0.75  # S1: 300 of 400 yuan by the member
