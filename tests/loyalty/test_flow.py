"""The core loop through the API: enrol, order, earn, redeem, refund."""

from __future__ import annotations

from loyalty.helpers import order_body


async def test_order_earns_points_and_replays(client, make_tenant, enrol, till):
    t = await make_tenant()
    member = await enrol(t.hq())
    assert member["tier_code"] == "bronze"
    assert member["phone"].startswith("+86138")  # HQ holds members:pii
    till_key = await till(t)
    r = await client.get(f"/api/v1/members/{member['id']}", headers=till_key)
    assert "****" in r.json()["phone"]
    body = order_body(member={"id": member["id"]})
    r = await client.post("/api/v1/orders", json=body, headers=t.hq())
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["points_earned"] == 100  # 100 yuan x 1 point per yuan
    r = await client.post("/api/v1/orders", json=body, headers=t.hq())
    assert r.status_code == 201  # a retry gets the first answer: status and body
    assert r.headers["idempotent-replayed"] == "true"
    assert r.json() == first
    changed = body | {
        "lines": [body["lines"][0] | {"paid_fen": 9000}],
        "payment": {"cash_fen": 9000, "points_used": 0},
    }
    r = await client.post("/api/v1/orders", json=changed, headers=t.hq())
    assert r.status_code == 409
    assert r.json()["errors"][0]["field"] == "external_id"
    r = await client.get(f"/api/v1/members/{member['id']}/points", headers=t.hq())
    points = r.json()
    assert points["balance"] == 100
    assert points["pending"] == 100
    assert points["available"] == 0
