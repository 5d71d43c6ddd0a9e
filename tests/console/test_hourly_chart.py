"""The dashboard's sales by hour (the chart's figures, and its table as CSV) are the API's
(GET /api/v1/analytics/hourly-sales), for the chain and for a store's manager."""

from __future__ import annotations

import csv
import io
import json
import re
from decimal import Decimal

from litestar.testing import AsyncTestClient

from .test_dashboard import _order
from .test_users_and_sessions import add_user, sign_in


async def test_sales_by_hour_are_the_apis(app, client, make_tenant) -> None:
    t = await make_tenant(("S1", "S2"))
    for body in (_order("S1", 30000), _order("S2", 5000)):
        r = await client.post("/api/v1/orders", json=body, headers=t.hq())
        assert r.status_code == 201, r.text
    await add_user(client, t, "admin", "hq_admin")
    await add_user(client, t, "boss-s1", "store_manager", "S1")
    for login, query in (("admin", {}), ("boss-s1", {"store": "S1"})):
        api = await client.get("/api/v1/analytics/hourly-sales", params=query, headers=t.hq())
        assert api.status_code == 200, api.text
        figures = api.json()
        async with AsyncTestClient(app=app) as c:
            assert (await sign_in(c, t.slug, login)).status_code == 303
            page = await c.get("/console/dashboard")
            exported = await c.get("/console/dashboard", params={"export": "hourly"})
        assert page.status_code == 200
        found = re.search(r"data-hours='([^']+)'", page.text)
        assert found
        hours = json.loads(found.group(1).replace("&#34;", '"'))
        assert hours["weekdayYuan"] == [h["net_fen"] / 100 for h in figures["weekday"]]
        assert hours["weekendYuan"] == [h["net_fen"] / 100 for h in figures["weekend"]]
        assert sum(hours["weekdayYuan"]) + sum(hours["weekendYuan"]) == (
            350 if login == "admin" else 300
        )
        assert exported.status_code == 200
        rows = list(csv.reader(io.StringIO(exported.text.lstrip("\ufeff"))))[1:]
        assert len(rows) == 24
        shown = sum(int(r[1]) + int(r[3]) for r in rows)
        assert shown == sum(h["orders"] for h in figures["weekday"] + figures["weekend"])
        money = sum(Decimal(re.sub(r"[^0-9.]", "", r[2])) for r in rows)
        assert money == Decimal(sum(h["net_fen"] for h in figures["weekday"])) / 100
