"""Member tokens: issued server to server, accepted only on /api/v1/me, revocable, and dead
for a merged-away or erased member."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import update

from loyalty.helpers import new_phone
from nestpoint.api import middleware
from nestpoint.api.ratelimit import make_member_rate_limit
from nestpoint.context import tenant_context
from nestpoint.db import scoped_session, utcnow
from nestpoint.memberapi.models import MemberToken
from nestpoint.memberapi.tokens import hash_token
from nestpoint.settings import Settings


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_issue_by_id_phone_or_identity_acts_for_that_member(
    client: Any, make_tenant: Any, enrol: Any
) -> None:
    t = await make_tenant()
    phone = new_phone()
    m = await enrol(t.hq(), phone=phone, identities=[{"kind": "pos_card", "value": "C-77"}])
    for body in (
        {"member_id": m["id"]},
        {"phone": phone},
        {"identity_kind": "pos_card", "identity_value": "C-77"},
    ):
        r = await client.post("/api/v1/member-tokens", json=body, headers=t.hq())
        assert r.status_code == 201, r.text
        issued = r.json()
        assert issued["member_id"] == m["id"]
        assert issued["token_type"] == "Bearer"
        assert issued["expires_in"] == 7200
        assert issued["token"].startswith(f"npm_{t.id.hex}_")
        r = await client.get("/api/v1/me", headers=_bearer(issued["token"]))
        assert r.status_code == 200, r.text
        assert r.json()["id"] == m["id"]
        assert r.json()["phone"] == f"+86{phone}"  # their own data: in full
    # Only the hash is stored; the audit names the member, never the token.
    r = await client.get("/api/v1/audit", params={"limit": 200}, headers=t.hq())
    issued_entries = [e for e in r.json()["items"] if e["action"] == "member_token.issued"]
    assert len(issued_entries) == 3
    assert "npm_" not in r.text


async def test_issue_refuses_bad_requests_and_other_callers(
    client: Any, make_tenant: Any, enrol: Any
) -> None:
    t, other = await make_tenant(), await make_tenant()
    m = await enrol(t.hq())
    theirs = await enrol(other.hq())
    url = "/api/v1/member-tokens"
    assert (await client.post(url, json={}, headers=t.hq())).status_code == 422
    both = {"member_id": m["id"], "phone": new_phone()}
    assert (await client.post(url, json=both, headers=t.hq())).status_code == 422
    half = {"identity_kind": "pos_card"}
    assert (await client.post(url, json=half, headers=t.hq())).status_code == 422
    r = await client.post(url, json={"phone": "12"}, headers=t.hq())
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "phone"
    for body in (
        {"member_id": str(uuid.uuid4())},
        {"member_id": theirs["id"]},
        {"phone": new_phone()},
    ):
        r = await client.post(url, json=body, headers=t.hq())
        assert r.status_code == 404, (body, r.text)
    # A store key, and an HQ key without the scope, issue nothing.
    r = await client.post(url, json={"member_id": m["id"]}, headers=t.store("S1"))
    assert r.status_code == 403
    r = await client.post(
        "/api/v1/api-keys", json={"name": "no tokens", "scopes": ["members:read"]}, headers=t.hq()
    )
    narrow = _bearer(r.json()["key"])
    assert (await client.post(url, json={"member_id": m["id"]}, headers=narrow)).status_code == 403


async def test_a_member_token_opens_only_the_member_api(
    client: Any, make_tenant: Any, enrol: Any, member_token: Any
) -> None:
    t = await make_tenant()
    m = await enrol(t.hq())
    mine = await member_token(t, m["id"])
    for method, path in [
        ("GET", f"/api/v1/members/{m['id']}"),
        ("GET", f"/api/v1/members/{m['id']}/points"),
        ("GET", "/api/v1/members"),
        ("POST", "/api/v1/member-tokens"),
        ("GET", "/api/v1/tenant"),
    ]:
        r = await client.request(method, path, headers=mine, json={"member_id": m["id"]})
        assert r.status_code == 403, (method, path, r.text)
    # A path no route serves is the router's 404, before any credential is looked at.
    assert (await client.get("/api/v1/mex", headers=mine)).status_code == 404
    # And the member API takes no API key, and nothing without a credential.
    assert (await client.get("/api/v1/me", headers=t.hq())).status_code == 403
    assert (await client.get("/api/v1/me/points", headers=t.store("S1"))).status_code == 403
    assert (await client.get("/api/v1/me")).status_code == 401
    token = mine["Authorization"].split(" ", 1)[1]
    assert (await client.get("/api/v1/me", headers={"X-API-Key": token})).status_code == 401
    assert (await client.get("/api/v1/me", headers=_bearer("npm_nonsense"))).status_code == 401
    forged = f"npm_{t.id.hex}_{'x' * 43}"
    assert (await client.get("/api/v1/me", headers=_bearer(forged))).status_code == 401


async def test_a_token_moved_to_another_tenant_is_refused(
    client: Any, make_tenant: Any, enrol: Any, member_token: Any
) -> None:
    t, other = await make_tenant(), await make_tenant()
    m = await enrol(t.hq())
    token = (await member_token(t, m["id"]))["Authorization"].split(" ", 1)[1]
    secret = token.split("_", 2)[2]
    moved = f"npm_{other.id.hex}_{secret}"
    assert (await client.get("/api/v1/me", headers=_bearer(moved))).status_code == 401


async def test_revoke_logout_and_expiry(
    client: Any, make_tenant: Any, enrol: Any, member_token: Any
) -> None:
    t = await make_tenant()
    m, n = await enrol(t.hq()), await enrol(t.hq())
    first, second, others = (
        await member_token(t, m["id"]),
        await member_token(t, m["id"]),
        await member_token(t, n["id"]),
    )
    # Log out: only the presented token stops.
    r = await client.delete("/api/v1/me/token", headers=first)
    assert r.status_code == 204
    assert (await client.get("/api/v1/me", headers=first)).status_code == 401
    assert (await client.get("/api/v1/me", headers=second)).status_code == 200
    # HQ revokes the member's tokens: every live one, counted once.
    r = await client.post(
        "/api/v1/member-tokens/revoke", json={"member_id": m["id"]}, headers=t.hq()
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"member_id": m["id"], "revoked": 1}
    assert (await client.get("/api/v1/me", headers=second)).status_code == 401
    assert (await client.get("/api/v1/me", headers=others)).status_code == 200
    r = await client.post(
        "/api/v1/member-tokens/revoke", json={"member_id": m["id"]}, headers=t.hq()
    )
    assert r.json()["revoked"] == 0
    r = await client.post(
        "/api/v1/member-tokens/revoke", json={"member_id": str(uuid.uuid4())}, headers=t.hq()
    )
    assert r.status_code == 404
    # Expired: refused.
    raw = others["Authorization"].split(" ", 1)[1]
    with tenant_context(t.id):
        async with scoped_session() as session:
            await session.execute(
                update(MemberToken)
                .where(MemberToken.token_hash == hash_token(raw))
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
    r = await client.get("/api/v1/me", headers=others)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="nestpoint"'
    assert "member token" in r.json()["detail"]


async def test_merged_away_and_erased_members_tokens_stop(
    client: Any, make_tenant: Any, enrol: Any, member_token: Any
) -> None:
    t = await make_tenant()
    source, target, erased = await enrol(t.hq()), await enrol(t.hq()), await enrol(t.hq())
    source_token = await member_token(t, source["id"])
    target_token = await member_token(t, target["id"])
    erased_token = await member_token(t, erased["id"])
    r = await client.post(
        f"/api/v1/members/{target['id']}/merge",
        json={"source_member_id": source["id"]},
        headers=t.hq(),
    )
    assert r.status_code == 200, r.text
    assert (await client.get("/api/v1/me", headers=source_token)).status_code == 401
    assert (await client.get("/api/v1/me", headers=target_token)).status_code == 200
    # The backend naming the merged member gets a token of the survivor.
    r = await client.post("/api/v1/member-tokens", json={"member_id": source["id"]}, headers=t.hq())
    assert r.status_code == 201
    assert r.json()["member_id"] == target["id"]
    r = await client.post(
        f"/api/v1/members/{erased['id']}/erasure", json={"reason": "PIPL #1"}, headers=t.hq()
    )
    assert r.status_code == 200, r.text
    assert (await client.get("/api/v1/me", headers=erased_token)).status_code == 401
    r = await client.post("/api/v1/member-tokens", json={"member_id": erased["id"]}, headers=t.hq())
    assert r.status_code == 404


async def test_each_member_has_a_limit_of_their_own(
    client: Any, make_tenant: Any, enrol: Any, member_token: Any, monkeypatch: Any
) -> None:
    made = make_member_rate_limit(
        Settings(member_rate_limit="3/minute", rate_limit_storage_url="memory://")
    )
    monkeypatch.setattr(middleware, "member_rate_limit", lambda: made)
    t = await make_tenant()
    m, n = await enrol(t.hq()), await enrol(t.hq())
    first, second = await member_token(t, m["id"]), await member_token(t, m["id"])
    others = await member_token(t, n["id"])
    # Both tokens of one member count together; another member is not slowed by them.
    statuses = [
        (await client.get("/api/v1/me", headers=h)).status_code
        for h in (first, second, first, second)
    ]
    assert statuses == [200, 200, 200, 429]
    r = await client.get("/api/v1/me/tier", headers=first)
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert "this member" in r.json()["detail"]
    assert (await client.get("/api/v1/me", headers=others)).status_code == 200
    # API keys count against their own limit, not the members'.
    assert (await client.get("/api/v1/stores", headers=t.hq())).status_code == 200


async def test_a_deactivated_chains_tokens_stop(
    client: Any, make_tenant: Any, enrol: Any, member_token: Any, platform_headers: Any
) -> None:
    t = await make_tenant()
    m = await enrol(t.hq())
    mine = await member_token(t, m["id"])
    r = await client.patch(
        f"/api/v1/tenants/{t.id}", json={"active": False}, headers=platform_headers
    )
    assert r.status_code == 200, r.text
    assert (await client.get("/api/v1/me", headers=mine)).status_code == 401
    r = await client.patch(
        f"/api/v1/tenants/{t.id}", json={"active": True}, headers=platform_headers
    )
    assert r.status_code == 200, r.text
    assert (await client.get("/api/v1/me", headers=mine)).status_code == 200
