"""A deactivated store does no new business (orders, holds, enrolments, previews) and stays
readable: its own key gets 403, any other key naming it 422, both naming the store field."""

from __future__ import annotations

from typing import Any

from loyalty.helpers import new_phone, order_body
from loyalty.support import adjust, post_order, refund

TABLES = ("orders", "members", "point_holds", "point_entries")


async def set_active(client: Any, t: Any, code: str, active: bool) -> None:
    r = await client.patch(f"/api/v1/stores/{code}", json={"active": active}, headers=t.hq())
    assert r.status_code == 200, r.text
    assert r.json()["active"] is active


def named(r: Any, status: int, field: str) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in r.json()["errors"]] == [field]
    message = str(r.json()["errors"][0]["message"])
    assert "inactive" in message
    return message


async def new_business(
    client: Any, key: dict[str, str], member_id: str, store_code: str | None
) -> list[Any]:
    """An order, a preview, an enrolment and (a till's) a hold, each as ``key`` sends it.
    A hold names no store: it is made at the store of a store key, and HQ holds have none."""
    order = order_body(store_code=store_code)
    preview = {"lines": order["lines"]} | ({"store_code": store_code} if store_code else {})
    enrolment = {"phone": new_phone()} | ({"home_store_code": store_code} if store_code else {})
    answers = [
        await client.post("/api/v1/orders", json=order, headers=key),
        await client.post("/api/v1/orders/preview", json=preview, headers=key),
        await client.post("/api/v1/members", json=enrolment, headers=key),
    ]
    if store_code is None:
        hold = {"member_id": member_id, "points": 10}
        answers.append(await client.post("/api/v1/points/holds", json=hold, headers=key))
    return answers


async def test_an_inactive_store_does_no_new_business(
    client, make_tenant, enrol, till, row_counts
) -> None:
    t = await make_tenant(("S1", "S2"))
    key = await till(t, "S1")
    m = await enrol(t.hq())
    assert (await adjust(client, t.hq(), m["id"], 1_000)).status_code == 201
    sold = await post_order(client, key, order_body(store_code=None))  # warms every cache
    await set_active(client, t, "S1", False)
    before = await row_counts(t.id)

    # The store's own key: 403, naming the store.
    order, preview, enrolment, held = await new_business(client, key, m["id"], None)
    assert "'S1'" in named(order, 403, "store_code")
    named(preview, 403, "store_code")
    named(enrolment, 403, "store_code")
    named(held, 403, "store_code")
    # HQ naming the store: 422, naming the field that chose it.
    order, preview, enrolment = await new_business(client, t.hq(), m["id"], "S1")
    named(order, 422, "store_code")
    named(preview, 422, "store_code")
    named(enrolment, 422, "home_store_code")
    assert await row_counts(t.id) == before

    # Reads stay allowed, for the store's key and for HQ.
    for headers in (key, t.hq()):
        r = await client.get("/api/v1/stores/S1", headers=headers)
        assert r.status_code == 200
        assert r.json()["active"] is False
        r = await client.get(f"/api/v1/members/{m['id']}", headers=headers)
        assert r.status_code == 200, r.text
    # A past sale can still be refunded (a return is not new business).
    r = await refund(client, t.hq(), sold, {"external_id": "return-1"})
    assert r.status_code == 201, r.text
    # Other stores trade on.
    await post_order(client, t.hq(), order_body(store_code="S2"))

    # Reactivated, it trades again at once.
    await set_active(client, t, "S1", True)
    for r in await new_business(client, key, m["id"], None):
        assert r.status_code in (200, 201), r.text


async def test_a_store_created_inactive_never_trades(client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    await post_order(client, t.hq(), order_body(store_code="S1"))  # the stores are cached
    r = await client.post(
        "/api/v1/stores", json={"code": "S3", "name": "not yet", "active": False}, headers=t.hq()
    )
    assert r.status_code == 201, r.text
    r = await client.post("/api/v1/orders", json=order_body(store_code="S3"), headers=t.hq())
    named(r, 422, "store_code")
    r = await client.post(
        "/api/v1/members", json={"phone": new_phone(), "home_store_code": "S3"}, headers=t.hq()
    )
    named(r, 422, "home_store_code")
