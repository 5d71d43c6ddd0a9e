"""Benefits under concurrent requests, on PostgreSQL and on SQLite (none skipped).

Each request runs in its own transaction on its own connection (the concurrent client), as
on a real server: tills using the last free consultation, members exchanging the last gift,
and first look-ups racing to grant the same entitlements and the same bundle.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import httpx
import pytest

from benefits.support import benefits, held, make_gold, newborn, set_up_catalog, use


@pytest.fixture
def client(concurrent_client: httpx.AsyncClient) -> httpx.AsyncClient:
    return concurrent_client


async def test_32_tills_using_a_quota_of_2_use_it_exactly_twice(
    client, make_tenant, enrol, set_program
):
    t = await make_tenant()
    await set_up_catalog(client, t.hq(), set_program)
    member = await enrol(t.hq())
    await make_gold(client, t.hq(), member["id"])
    responses = await asyncio.gather(
        *[use(client, t.hq(), member["id"], "consult", store_code="S1") for _ in range(32)]
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 2, 422: 30}, statuses
    assert sorted(r.json()["remaining"] for r in responses if r.status_code == 201) == [0, 1]
    view = held(await benefits(client, t.hq(), member["id"]))
    assert view[("consult", "tier")]["used"] == 2


async def test_32_retries_of_one_use_record_it_once(client, make_tenant, enrol, set_program):
    t = await make_tenant()
    await set_up_catalog(client, t.hq(), set_program)
    member = await enrol(t.hq())
    await make_gold(client, t.hq(), member["id"])
    key = uuid.uuid4().hex
    responses = await asyncio.gather(
        *[use(client, t.hq(), member["id"], "consult", key, store_code="S1") for _ in range(32)]
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    view = held(await benefits(client, t.hq(), member["id"]))
    assert view[("consult", "tier")]["used"] == 1


async def test_concurrent_reversals_and_uses_give_each_use_back_once(
    client, make_tenant, enrol, set_program
):
    t = await make_tenant()
    await set_up_catalog(client, t.hq(), set_program)
    member = await enrol(t.hq())
    await make_gold(client, t.hq(), member["id"])
    first = await use(client, t.hq(), member["id"], "consult", store_code="S1")
    second = await use(client, t.hq(), member["id"], "consult", store_code="S1")
    reversals = [
        client.post(f"/api/v1/benefit-uses/{r.json()['id']}/reverse", json={}, headers=t.hq())
        for r in (first, second)
        for _ in range(8)
    ]
    uses = [use(client, t.hq(), member["id"], "consult", store_code="S1") for _ in range(8)]
    responses = await asyncio.gather(*reversals, *uses)
    back = responses[:16]
    assert {r.status_code for r in back} == {200}
    assert len({r.json()["id"] for r in back}) == 2  # one reversal per use
    used_now = Counter(r.status_code for r in responses[16:])
    assert used_now[201] <= 2
    assert used_now[201] + used_now[422] == 8
    view = held(await benefits(client, t.hq(), member["id"]))
    assert view[("consult", "tier")]["used"] == used_now[201]  # the ledger's sum agrees


async def test_concurrent_exchanges_never_sell_more_than_the_stock(
    client, make_tenant, enrol, set_program
):
    t = await make_tenant()
    await set_up_catalog(client, t.hq(), set_program)
    members = [await enrol(t.hq()) for _ in range(6)]
    for m in members:
        r = await client.post(
            f"/api/v1/members/{m['id']}/points/adjustments",
            headers=t.hq(),
            json={"amount": 2000, "reason": "opening", "idempotency_key": uuid.uuid4().hex},
        )
        assert r.status_code == 201
    responses = await asyncio.gather(
        *[
            client.post(
                f"/api/v1/members/{m['id']}/benefits/bottle/exchanges",
                json={"idempotency_key": uuid.uuid4().hex, "store_code": "S1"},
                headers=t.hq(),
            )
            for m in members
            for _ in range(3)
        ]
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 2, 422: 16}, statuses  # stock 2, one per member
    buyers = {r.json()["entitlement"]["id"] for r in responses if r.status_code == 201}
    assert len(buyers) == 2
    balances = []
    for m in members:
        r = await client.get(f"/api/v1/members/{m['id']}/points", headers=t.hq())
        balances.append(r.json()["balance"])
    assert sorted(balances) == [1500, 1500, 2000, 2000, 2000, 2000]


async def test_racing_first_look_ups_grant_each_entitlement_and_the_pack_once(
    client, make_tenant, enrol, set_program
):
    t = await make_tenant()
    await set_up_catalog(client, t.hq(), set_program)
    member = await enrol(t.hq(), **newborn())
    await make_gold(client, t.hq(), member["id"])
    views = await asyncio.gather(
        *[client.get(f"/api/v1/members/{member['id']}/benefits", headers=t.hq()) for _ in range(16)]
    )
    assert {r.status_code for r in views} == {200}
    assert {len(r.json()["entitlements"]) for r in views} == {5}
    r = await client.get(
        "/api/v1/events", headers=t.hq(), params={"type": "benefit.granted", "limit": 100}
    )
    assert len(r.json()["items"]) == 5
    r = await client.get(f"/api/v1/members/{member['id']}/points", headers=t.hq())
    assert r.json()["balance"] == 200  # the pack's points, once
