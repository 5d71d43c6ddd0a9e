"""Benefits through the API: the catalog, who holds what, use, reversal and exchange."""

from __future__ import annotations

import uuid

from benefits.support import (
    CATALOG,
    benefits,
    held,
    make_gold,
    newborn,
    set_up_catalog,
    use,
)


async def _events(client, hq, type_: str) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    r = await client.get("/api/v1/events", headers=hq, params={"type": type_, "limit": 200})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


# ------------------------------------------------------------------ the catalog


async def test_catalog_refuses_bad_entries_naming_the_field(client, make_tenant, set_program):
    t = await make_tenant()
    await set_up_catalog(client, t.hq(), set_program)
    cases = [
        ({"name": "x", "type": "core.nothing"}, "type"),
        ({"name": "x", "type": "nestpoint-delivery.home_delivery"}, "type"),
        (
            {"name": "x", "type": "core.member_price", "options": {"discount_percent": 120}},
            "options.discount_percent",
        ),
        ({"name": "x", "type": "core.gift", "options": {"colour": "red"}}, "options.colour"),
        ({"name": "x", "type": "core.gift", "store_codes": ["S1", "NOPE"]}, "store_codes.1"),
        (
            {"name": "x", "type": "core.gift", "tier_quotas": {"platinum": 2}},
            "tier_quotas.platinum",
        ),
    ]
    for body, field in cases:
        r = await client.put("/api/v1/benefits/bad", json=body, headers=t.hq())
        assert r.status_code == 422, (body, r.text)
        assert field in [e["field"] for e in r.json()["errors"]], (body, r.json())
    r = await client.get("/api/v1/benefits/bad", headers=t.hq())
    assert r.status_code == 404
    r = await client.put("/api/v1/benefits/Bad Code", json=CATALOG["consult"], headers=t.hq())
    assert r.status_code == 422
    r = await client.put(
        "/api/v1/benefit-bundles/b2", json={"name": "x", "benefits": ["nope"]}, headers=t.hq()
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "benefits.0"


async def test_catalog_lists_types_and_entries_and_needs_an_hq_key(
    client, make_tenant, set_program
):
    t = await make_tenant()
    await set_up_catalog(client, t.hq(), set_program)
    r = await client.get("/api/v1/benefit-types", headers=t.hq())
    keys = [item["key"] for item in r.json()["items"]]
    assert "core.service" in keys
    assert "core.member_price" in keys
    schema = next(i for i in r.json()["items"] if i["key"] == "core.member_price")
    assert "discount_percent" in schema["options_schema"]["properties"]
    r = await client.get("/api/v1/benefits", headers=t.hq())
    assert sorted(b["code"] for b in r.json()["items"]) == sorted(CATALOG)
    r = await client.put("/api/v1/benefits/x", json=CATALOG["consult"], headers=t.store("S1"))
    assert r.status_code == 403


# ------------------------------------------------------------------ who holds what


async def test_a_gold_member_with_a_newborn_holds_the_pack_and_the_gold_benefits(
    client, make_tenant, enrol, set_program
):
    t = await make_tenant()
    await set_up_catalog(client, t.hq(), set_program)
    member = await enrol(t.hq(), **newborn())
    await make_gold(client, t.hq(), member["id"])
    view = await benefits(client, t.hq(), member["id"], store_code="S1")
    holds = held(view)
    assert set(holds) == {
        ("consult", "tier"),
        ("s1-delivery", "tier"),
        ("massage", "stage"),
        ("newborn-delivery", "bundle"),
        ("consult", "bundle"),
    }
    assert holds[("consult", "tier")]["quota"] == 2  # gold's quota
    assert holds[("consult", "bundle")]["quota"] == 1
    assert holds[("newborn-delivery", "bundle")]["expires_at"] is not None
    assert all(e["usable_here"] for e in view["entitlements"])
    # The pack's 200 points were credited once, however often the member is looked at.
    await benefits(client, t.hq(), member["id"])
    r = await client.get(f"/api/v1/members/{member['id']}/points", headers=t.hq())
    assert r.json()["balance"] == 200
    granted = await _events(client, t.hq(), "benefit.granted")
    assert len(granted) == 5
    assert {e["payload"]["source"] for e in granted} == {"tier", "stage", "bundle"}


async def test_a_benefit_limited_to_a_store_is_not_available_elsewhere(
    client, make_tenant, enrol, set_program, till
):
    t = await make_tenant()
    await set_up_catalog(client, t.hq(), set_program)
    member = await enrol(t.hq())
    await make_gold(client, t.hq(), member["id"])
    s2 = await till(t, "S2")
    view = held(await benefits(client, s2, member["id"]))
    assert view[("s1-delivery", "tier")]["usable_here"] is False
    assert view[("s1-delivery", "tier")]["unusable_reason"] == "not_at_this_store"
    r = await use(client, s2, member["id"], "s1-delivery")
    assert r.status_code == 422, r.text
    assert r.json()["type"].endswith("benefit-unavailable")
    assert r.json()["errors"][0]["field"] == "store_code"
    s1 = await till(t, "S1")
    assert (await use(client, s1, member["id"], "s1-delivery")).status_code == 201


async def test_a_member_without_the_benefit_is_told_so(client, make_tenant, enrol, set_program):
    t = await make_tenant()
    await set_up_catalog(client, t.hq(), set_program)
    member = await enrol(t.hq())  # bronze, no children
    r = await use(client, t.hq(), member["id"], "consult", store_code="S1")
    assert r.status_code == 422
    assert r.json()["type"].endswith("benefit-not-held")
    r = await use(client, t.hq(), member["id"], "nope", store_code="S1")
    assert r.status_code == 404


async def test_removing_a_benefit_from_the_tier_lets_it_run_out_or_revokes_it(
    client, make_tenant, enrol, set_program
):
    t = await make_tenant()
    await set_up_catalog(client, t.hq(), set_program)
    member = await enrol(t.hq())
    await make_gold(client, t.hq(), member["id"])
    await benefits(client, t.hq(), member["id"])
    revoking = CATALOG["s1-delivery"] | {"on_lapse": "revoke"}
    r = await client.put("/api/v1/benefits/s1-delivery", json=revoking, headers=t.hq())
    assert r.status_code == 200
    gold = [tier | {"benefits": []} for tier in set_up_tiers()]
    await set_program(t.hq(), tiers=gold)
    view = held(await benefits(client, t.hq(), member["id"]))
    assert ("s1-delivery", "tier") not in view  # revoked at once
    consult = view[("consult", "tier")]  # runs out at the end of the month
    assert consult["expires_at"] is not None
    assert consult["usable_here"] is True
    expired = await _events(client, t.hq(), "benefit.expired")
    assert [e["payload"]["benefit_code"] for e in expired] == ["s1-delivery"]
    assert expired[0]["payload"]["reason"] == "revoked"
    # Qualifying again restores it, with the period's uses still counted.
    await set_program(t.hq(), tiers=set_up_tiers())
    view = held(await benefits(client, t.hq(), member["id"]))
    assert view[("s1-delivery", "tier")]["usable_here"] is True
    assert view[("consult", "tier")]["expires_at"] is None


def set_up_tiers() -> list[dict]:  # type: ignore[type-arg]
    from benefits.support import GOLD_TIERS

    return [dict(tier) for tier in GOLD_TIERS]


# ------------------------------------------------------------------ use and reversal


async def test_quota_counts_uses_and_a_reversal_gives_one_back_once(
    client, make_tenant, enrol, set_program, till
):
    t = await make_tenant()
    await set_up_catalog(client, t.hq(), set_program)
    member = await enrol(t.hq())
    await make_gold(client, t.hq(), member["id"])
    s1 = await till(t, "S1")
    first = await use(client, s1, member["id"], "consult", reference="booking-1")
    assert first.status_code == 201, first.text
    assert first.json()["remaining"] == 1
    assert (await use(client, s1, member["id"], "consult")).json()["remaining"] == 0
    third = await use(client, s1, member["id"], "consult")
    assert third.status_code == 422
    assert third.json()["type"].endswith("benefit-used-up")
    assert third.json()["errors"][0]["field"] == "quantity"
    use_id = first.json()["id"]
    back = await client.post(
        f"/api/v1/benefit-uses/{use_id}/reverse", json={"reason": "cancelled"}, headers=s1
    )
    assert back.status_code == 200, back.text
    assert back.json()["amount"] == -1
    assert back.json()["reverses_id"] == use_id
    again = await client.post(f"/api/v1/benefit-uses/{use_id}/reverse", json={}, headers=s1)
    assert again.status_code == 200
    assert again.json()["id"] == back.json()["id"]
    view = held(await benefits(client, s1, member["id"]))
    assert view[("consult", "tier")]["used"] == 1
    assert view[("consult", "tier")]["remaining"] == 1
    assert (await use(client, s1, member["id"], "consult")).status_code == 201
    s2 = await till(t, "S2")
    r = await client.post(f"/api/v1/benefit-uses/{use_id}/reverse", json={}, headers=s2)
    assert r.status_code == 404  # another store's use
    assert len(await _events(client, t.hq(), "benefit.used")) == 3
    assert len(await _events(client, t.hq(), "benefit.use_reversed")) == 1


async def test_a_use_is_idempotent_by_key(client, make_tenant, enrol, set_program, till):
    t = await make_tenant()
    await set_up_catalog(client, t.hq(), set_program)
    member = await enrol(t.hq())
    await make_gold(client, t.hq(), member["id"])
    s1 = await till(t, "S1")
    key = uuid.uuid4().hex
    first = await use(client, s1, member["id"], "consult", key)
    replay = await use(client, s1, member["id"], "consult", key)
    assert replay.status_code == 201
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json() == first.json()
    other = await use(client, s1, member["id"], "consult", key, reference="different")
    assert other.status_code == 409
    assert held(await benefits(client, s1, member["id"]))[("consult", "tier")]["used"] == 1


async def test_the_pack_is_used_before_the_tier_and_runs_out_on_its_own(
    client, make_tenant, enrol, set_program
):
    t = await make_tenant()
    await set_up_catalog(client, t.hq(), set_program)
    member = await enrol(t.hq(), **newborn())
    await make_gold(client, t.hq(), member["id"])
    r = await use(client, t.hq(), member["id"], "consult", store_code="S1")
    view = held(await benefits(client, t.hq(), member["id"]))
    assert r.json()["entitlement_id"] == view[("consult", "bundle")]["id"]  # expires first
    assert view[("consult", "bundle")]["remaining"] == 0
    assert view[("consult", "tier")]["remaining"] == 2
    r = await use(client, t.hq(), member["id"], "newborn-delivery", store_code="S2")
    assert r.status_code == 201
    assert r.json()["period_key"] == "grant"
    r = await use(client, t.hq(), member["id"], "newborn-delivery", store_code="S2")
    assert r.status_code == 422  # one delivery for the pack's whole life


# ------------------------------------------------------------------ exchange for points


async def _with_points(client, hq, member_id: str, points: int) -> None:  # type: ignore[no-untyped-def]
    r = await client.post(
        f"/api/v1/members/{member_id}/points/adjustments",
        headers=hq,
        json={"amount": points, "reason": "opening", "idempotency_key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text


async def _exchange(client, headers, member_id: str, code: str = "bottle", key: str | None = None):  # type: ignore[no-untyped-def]
    return await client.post(
        f"/api/v1/members/{member_id}/benefits/{code}/exchanges",
        json={"idempotency_key": key or uuid.uuid4().hex, "store_code": "S1"},
        headers=headers,
    )


async def test_exchange_spends_points_respects_stock_and_limits_and_reverses(
    client, make_tenant, enrol, set_program
):
    t = await make_tenant()
    await set_up_catalog(client, t.hq(), set_program)
    ann, bob, cat = [await enrol(t.hq()) for _ in range(3)]
    for m in (ann, bob, cat):
        await _with_points(client, t.hq(), m["id"], 1200)
    view = await benefits(client, t.hq(), ann["id"], store_code="S1")
    assert view["exchange"] == [
        {"benefit_code": "bottle", "benefit_name": CATALOG["bottle"]["name"], "type": "core.gift",
         "points": 500, "stock_left": 2, "member_limit_left": 1}
    ]  # fmt: skip
    key = uuid.uuid4().hex
    r = await _exchange(client, t.hq(), ann["id"], key=key)
    assert r.status_code == 201, r.text
    assert r.json()["points_spent"] == 500
    assert r.json()["balance"] == 700
    assert (await _exchange(client, t.hq(), ann["id"], key=key)).json() == r.json()  # replay
    limit = await _exchange(client, t.hq(), ann["id"])
    assert limit.status_code == 422
    assert limit.json()["type"].endswith("exchange-refused")
    assert (await _exchange(client, t.hq(), bob["id"])).status_code == 201
    out = await _exchange(client, t.hq(), cat["id"])
    assert out.status_code == 422
    assert "out of stock" in out.json()["detail"]
    # Ann uses hers; undoing the exchange is refused until the use is reversed.
    gift = r.json()["entitlement"]["id"]
    used = await use(client, t.hq(), ann["id"], "bottle", store_code="S1")
    assert used.status_code == 201, used.text
    r = await client.post(f"/api/v1/benefit-exchanges/{gift}/reverse", headers=t.hq())
    assert r.status_code == 409
    await client.post(f"/api/v1/benefit-uses/{used.json()['id']}/reverse", json={}, headers=t.hq())
    r = await client.post(f"/api/v1/benefit-exchanges/{gift}/reverse", headers=t.hq())
    assert r.status_code == 200
    assert r.json()["status"] == "revoked"
    r = await client.post(f"/api/v1/benefit-exchanges/{gift}/reverse", headers=t.hq())
    assert r.status_code == 200  # once: the points came back one time
    r = await client.get(f"/api/v1/members/{ann['id']}/points", headers=t.hq())
    assert r.json()["balance"] == 1200
    assert (await _exchange(client, t.hq(), cat["id"])).status_code == 201  # stock freed


async def test_exchange_without_enough_points_writes_nothing(
    client, make_tenant, enrol, set_program, row_counts
):
    t = await make_tenant()
    await set_up_catalog(client, t.hq(), set_program)
    member = await enrol(t.hq())
    await _with_points(client, t.hq(), member["id"], 499)
    before = await row_counts(t.id)
    r = await _exchange(client, t.hq(), member["id"])
    assert r.status_code == 422
    assert r.json()["type"].endswith("insufficient-points")
    assert await row_counts(t.id) == before
    r = await _exchange(client, t.hq(), member["id"], code="consult")
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "benefit_code"
