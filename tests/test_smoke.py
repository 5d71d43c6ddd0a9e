async def test_health(client):
    r = await client.get("/healthz")
    assert r.status_code == 200
    r = await client.get("/readyz")
    assert r.json()["checks"] == {"database": "ok", "broker": "ok"}


async def test_tenant_factory(make_tenant, client):
    t = await make_tenant()
    r = await client.get("/api/v1/stores", headers=t.hq())
    assert [s["code"] for s in r.json()["items"]] == ["S1", "S2"]
