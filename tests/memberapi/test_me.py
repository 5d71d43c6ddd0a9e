"""What a member sees of themselves through /api/v1/me, the card's rotating code the till
scans, and that a token never reaches another member's or another chain's data."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from loyalty.helpers import order_body
from nestpoint.context import tenant_context
from nestpoint.db import scoped_session, utcnow
from nestpoint.memberapi import codes
from nestpoint.messaging.models import Message


async def _till(client: Any, tenant: Any) -> dict[str, str]:
    """A store key with the till's default scopes (members:read, no members:pii)."""
    r = await client.post(
        "/api/v1/api-keys",
        json={"name": "till", "kind": "store", "store_code": "S1"},
        headers=tenant.hq(),
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


async def test_the_card_code_is_scanned_at_the_till(
    client: Any, make_tenant: Any, enrol: Any, member_token: Any
) -> None:
    t, other = await make_tenant(), await make_tenant()
    m = await enrol(t.hq())
    mine = await member_token(t, m["id"])
    r = await client.get("/api/v1/me/card", headers=mine)
    assert r.status_code == 200, r.text
    card = r.json()
    assert r.headers["cache-control"] == "no-store"
    assert card["member_id"] == m["id"]
    assert card["name"] == "王芳"
    assert card["tier_code"] == "bronze"
    assert card["code"].startswith("NPM1")
    assert len(card["code"]) == 52
    assert card["refresh_in"] == 45
    till = await _till(client, t)
    url = "/api/v1/members/lookup-by-code"
    r = await client.post(url, json={"code": card["code"]}, headers=till)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == m["id"]
    assert "****" in r.json()["phone"]  # the till's key is masked, as for any lookup

    def problem(response: Any) -> str:
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "code"
        return str(response.json()["type"]).rsplit("/", 1)[1]

    # Forged (one character changed), another chain's till, garbage: not a code.
    last = card["code"][-1]
    forged = card["code"][:-1] + ("A" if last != "A" else "B")
    assert problem(await client.post(url, json={"code": forged}, headers=till)) == (
        "member-code-invalid"
    )
    assert problem(await client.post(url, json={"code": card["code"]}, headers=other.hq())) == (
        "member-code-invalid"
    )
    assert problem(await client.post(url, json={"code": "hello"}, headers=till)) == (
        "member-code-invalid"
    )
    # Made longer ago than NESTPOINT_MEMBER_CODE_SECONDS: expired.
    with tenant_context(t.id):
        old = codes.make_code(t.id, uuid.UUID(m["id"]), utcnow() - timedelta(seconds=61))
        fresh = codes.make_code(t.id, uuid.UUID(m["id"]), utcnow() - timedelta(seconds=50))
    assert problem(await client.post(url, json={"code": old.code}, headers=till)) == (
        "member-code-expired"
    )
    assert (await client.post(url, json={"code": fresh.code}, headers=till)).status_code == 200
    # A member token does not look members up; an erased member's code finds no one.
    assert (await client.post(url, json={"code": card["code"]}, headers=mine)).status_code == 403
    r = await client.post(
        f"/api/v1/members/{m['id']}/erasure", json={"reason": "PIPL #2"}, headers=t.hq()
    )
    assert r.status_code == 200, r.text
    assert (await client.post(url, json={"code": card["code"]}, headers=till)).status_code == 404


async def test_a_merged_members_card_code_finds_the_member_it_was_merged_into(
    client: Any, make_tenant: Any, enrol: Any
) -> None:
    t = await make_tenant()
    kept, merged = await enrol(t.hq()), await enrol(t.hq())
    with tenant_context(t.id):
        code = codes.make_code(t.id, uuid.UUID(merged["id"]), utcnow()).code
    r = await client.post(
        f"/api/v1/members/{kept['id']}/merge",
        json={"source_member_id": merged["id"]},
        headers=t.hq(),
    )
    assert r.status_code == 200, r.text
    till = await _till(client, t)
    r = await client.post("/api/v1/members/lookup-by-code", json={"code": code}, headers=till)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == kept["id"]


async def test_points_tier_wallet_benefits_membership(
    client: Any, make_tenant: Any, enrol: Any, member_token: Any
) -> None:
    t = await make_tenant()
    m = await enrol(t.hq())
    mine = await member_token(t, m["id"])
    r = await client.post(
        f"/api/v1/members/{m['id']}/points/adjustments",
        json={"amount": 500, "reason": "welcome", "idempotency_key": uuid.uuid4().hex},
        headers=t.hq(),
    )
    assert r.status_code == 201, r.text
    r = await client.post("/api/v1/orders", json=order_body(member={"id": m["id"]}), headers=t.hq())
    assert r.status_code == 201, r.text
    staff = (await client.get(f"/api/v1/members/{m['id']}/points", headers=t.hq())).json()

    r = await client.get("/api/v1/me/points", headers=mine)
    assert r.status_code == 200, r.text
    points = r.json()
    for name in ("balance", "available", "pending", "held", "debt", "lifetime_earned"):
        assert points[name] == staff[name], name
    assert points["balance"] == 600  # 500 granted + 100 earned on 100 yuan
    assert sum(e["points"] for e in points["expiring"]) == 600
    assert points["expiring"] == sorted(points["expiring"], key=lambda e: e["expires_at"])

    r = await client.get("/api/v1/me/points/entries", params={"limit": 1}, headers=mine)
    assert r.status_code == 200, r.text
    first = r.json()
    assert len(first["items"]) == 1
    assert first["items"][0]["amount"] == 500
    r = await client.get(
        "/api/v1/me/points/entries", params={"cursor": first["next_cursor"]}, headers=mine
    )
    assert [e["amount"] for e in r.json()["items"]] == [100]

    r = await client.get("/api/v1/me/tier", headers=mine)
    assert r.status_code == 200, r.text
    tier = r.json()
    assert tier["tier_code"] == "bronze"
    assert tier["growth_value"] == 100
    assert tier["next_tier"]["code"] == "silver"
    assert tier["growth_to_next"] == tier["next_tier"]["threshold"] - 100
    assert tier["progress_percent"] == 100 * 100 // tier["next_tier"]["threshold"]
    assert [s["code"] for s in tier["ladder"]][:2] == ["bronze", "silver"]

    r = await client.get("/api/v1/me/wallet", headers=mine)
    assert r.status_code == 200, r.text
    assert r.json() == {"member_id": m["id"], "principal_fen": 0, "bonus_fen": 0, "balance_fen": 0}

    r = await client.get("/api/v1/me/benefits", headers=mine)
    assert r.status_code == 200, r.text
    assert r.json()["member_id"] == m["id"]
    staff_benefits = await client.get(f"/api/v1/members/{m['id']}/benefits", headers=t.hq())
    assert r.json()["entitlements"] == staff_benefits.json()["entitlements"]
    r = await client.get("/api/v1/me/benefits", params={"store_code": "NOPE"}, headers=mine)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "store_code"

    r = await client.get("/api/v1/me/membership", headers=mine)
    assert r.status_code == 200, r.text
    assert r.json() == []

    r = await client.get("/api/v1/me", headers=mine)
    assert r.status_code == 200, r.text
    me = r.json()
    assert me["points_balance"] == 600
    assert me["wallet_balance_fen"] == 0
    assert me["tier_name"] == tier["tier_name"]
    assert "tags" not in me


async def test_messages_are_the_members_own_sent_ones(
    client: Any, make_tenant: Any, enrol: Any, member_token: Any
) -> None:
    t = await make_tenant()
    m, n = await enrol(t.hq()), await enrol(t.hq())
    with tenant_context(t.id):
        async with scoped_session() as session:
            for member_id, key, status in [
                (m["id"], "a", "sent"),
                (m["id"], "b", "delivered"),
                (m["id"], "c", "failed"),
                (m["id"], "d", "queued"),
                (n["id"], "e", "sent"),
            ]:
                session.add(
                    Message(
                        message_key=key,
                        member_id=uuid.UUID(member_id),
                        purpose="transactional",
                        template="points_earned",
                        params={"points_earned": "42"},
                        status=status,
                        channel="sms",
                    )
                )
    r = await client.get("/api/v1/me/messages", headers=await member_token(t, m["id"]))
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["status"] for i in items] == ["sent", "delivered"]
    assert all("42" in i["body"] for i in items)
    assert all("王芳" in i["body"] for i in items)
    assert r.json()["next_cursor"] is None


async def test_a_token_never_reaches_another_member_or_chain(
    client: Any, make_tenant: Any, enrol: Any, member_token: Any
) -> None:
    t, other = await make_tenant(), await make_tenant()
    m, n = await enrol(t.hq()), await enrol(t.hq())
    theirs = await enrol(other.hq())
    for member in (n, theirs):
        tenant = t if member is n else other
        r = await client.post(
            f"/api/v1/members/{member['id']}/points/adjustments",
            json={"amount": 777, "reason": "canary", "idempotency_key": uuid.uuid4().hex},
            headers=tenant.hq(),
        )
        assert r.status_code == 201, r.text
    mine = await member_token(t, m["id"])
    canaries = {n["id"], theirs["id"], str(other.id), "777"}
    for path in (
        "/api/v1/me",
        "/api/v1/me/card",
        "/api/v1/me/points",
        "/api/v1/me/points/entries",
        "/api/v1/me/tier",
        "/api/v1/me/wallet",
        "/api/v1/me/benefits",
        "/api/v1/me/membership",
        "/api/v1/me/messages",
    ):
        # Another member's id given every way a client could try: ignored, never followed.
        for params in ({}, {"member_id": n["id"]}, {"member_id": theirs["id"]}):
            r = await client.get(path, params=params, headers=mine)
            assert r.status_code == 200, (path, r.text)
            assert not [c for c in canaries if c in r.text], (path, params, r.text)
    # The staff routes naming the other members stay closed to the token.
    for member in (n, theirs):
        r = await client.get(f"/api/v1/members/{member['id']}/points", headers=mine)
        assert r.status_code == 403
