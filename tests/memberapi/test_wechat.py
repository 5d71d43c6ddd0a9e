"""The WeChat login: the chain's mini-program set through the API (secret sealed), a login
code exchanged with a local fake of WeChat (tests/wechat_fake.py) for a member token."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from nestpoint.context import tenant_context
from nestpoint.db import scoped_session
from nestpoint.memberapi.models import WechatApp
from nestpoint.settings import get_settings
from served import free_port
from wechat_fake import FakeWechatLogin


async def _configure(client: Any, tenant: Any, wechat: FakeWechatLogin) -> None:
    r = await client.put(
        "/api/v1/member-auth/wechat",
        json={"appid": wechat.appid, "secret": wechat.secret},
        headers=tenant.hq(),
    )
    assert r.status_code == 200, r.text


def _slug(problem: Any) -> str:
    return str(problem.json()["type"]).rsplit("/", 1)[1]


async def test_the_app_is_set_sealed_and_never_answered(
    client: Any, make_tenant: Any, wechat: FakeWechatLogin
) -> None:
    t = await make_tenant()
    url = "/api/v1/member-auth/wechat"
    r = await client.get(url, headers=t.hq())
    assert r.status_code == 200
    assert r.json()["configured"] is False
    body = {"appid": wechat.appid, "secret": wechat.secret}
    assert (await client.put(url, json=body, headers=t.store("S1"))).status_code == 403
    bad = {"appid": "not-an-appid", "secret": wechat.secret}
    assert (await client.put(url, json=bad, headers=t.hq())).status_code == 400
    r = await client.put(url, json=body, headers=t.hq())
    assert r.status_code == 200, r.text
    assert r.json()["configured"] is True
    assert r.json()["appid"] == wechat.appid
    assert wechat.secret not in r.text
    r = await client.get(url, headers=t.hq())
    assert wechat.secret not in r.text
    r = await client.get("/api/v1/audit", params={"limit": 200}, headers=t.hq())
    assert "memberapi.wechat_app_set" in r.text
    assert wechat.secret not in r.text
    with tenant_context(t.id):
        async with scoped_session() as session:
            row = await session.scalar(select(WechatApp))
    assert row is not None
    assert wechat.secret not in row.secret_enc


async def test_a_login_code_becomes_a_member_token(
    client: Any, make_tenant: Any, enrol: Any, wechat: FakeWechatLogin
) -> None:
    t = await make_tenant()
    await _configure(client, t, wechat)
    openid, unionid = f"o-{uuid.uuid4().hex}", f"u-{uuid.uuid4().hex}"
    by_openid = await enrol(t.hq(), identities=[{"kind": "mp_openid", "value": openid}])
    by_unionid = await enrol(t.hq(), identities=[{"kind": "mp_unionid", "value": unionid}])
    url = f"/member-auth/{t.slug}/wechat"
    r = await client.post(url, json={"code": wechat.login(openid)})
    assert r.status_code == 200, r.text
    assert r.json()["member_id"] == by_openid["id"]
    assert wechat.requests[-1]["appid"] == wechat.appid
    assert wechat.requests[-1]["grant_type"] == "authorization_code"
    token = {"Authorization": f"Bearer {r.json()['token']}"}
    assert (await client.get("/api/v1/me", headers=token)).json()["id"] == by_openid["id"]
    # No member holds this openid, but one holds the unionid of the same WeChat user.
    r = await client.post(url, json={"code": wechat.login(f"o-{uuid.uuid4().hex}", unionid)})
    assert r.status_code == 200, r.text
    assert r.json()["member_id"] == by_unionid["id"]
    r = await client.get("/api/v1/audit", params={"limit": 200}, headers=t.hq())
    vias = [e for e in r.json()["items"] if e["action"] == "member_token.issued"]
    assert len(vias) == 2


async def test_login_failures_are_problems_the_mini_program_can_act_on(
    client: Any, make_tenant: Any, enrol: Any, wechat: FakeWechatLogin
) -> None:
    t = await make_tenant()
    url = f"/member-auth/{t.slug}/wechat"
    # The chain has not set its mini-program yet.
    r = await client.post(url, json={"code": wechat.login("o-1")})
    assert r.status_code == 404
    assert _slug(r) == "wechat-not-configured"
    await _configure(client, t, wechat)
    # An openid no member holds: bind first.
    r = await client.post(url, json={"code": wechat.login(f"o-{uuid.uuid4().hex}")})
    assert r.status_code == 404
    assert _slug(r) == "wechat-not-bound"
    # A code WeChat never issued (40029), and one already used (40163).
    r = await client.post(url, json={"code": "deadbeef"})
    assert r.status_code == 422
    assert _slug(r) == "wechat-code-invalid"
    assert r.json()["errors"][0]["field"] == "code"
    assert "40029" in r.text
    openid = f"o-{uuid.uuid4().hex}"
    await enrol(t.hq(), identities=[{"kind": "mp_openid", "value": openid}])
    code = wechat.login(openid)
    assert (await client.post(url, json={"code": code})).status_code == 200
    r = await client.post(url, json={"code": code})
    assert r.status_code == 422
    assert "40163" in r.text
    # WeChat's rate limit for the app (45011): 503, retry later; then it works again.
    wechat.rate_limit_next = 1
    r = await client.post(url, json={"code": wechat.login(openid)})
    assert r.status_code == 503
    assert _slug(r) == "wechat-rate-limited"
    assert (await client.post(url, json={"code": wechat.login(openid)})).status_code == 200
    # A malformed body, an unknown chain.
    assert (await client.post(url, json={"code": "x y"})).status_code == 400
    assert (await client.post(url, json={})).status_code == 400
    r = await client.post("/member-auth/no-such-chain/wechat", json={"code": "abc"})
    assert r.status_code == 404
    # The chain's secret is wrong (WeChat 40125): the chain's problem, not the member's.
    r = await client.put(
        "/api/v1/member-auth/wechat",
        json={"appid": wechat.appid, "secret": "f" * 32},
        headers=t.hq(),
    )
    assert r.status_code == 200
    r = await client.post(url, json={"code": wechat.login(openid)})
    assert r.status_code == 503
    assert _slug(r) == "wechat-unavailable"


async def test_wechat_unreachable_is_503(
    client: Any,
    make_tenant: Any,
    wechat: FakeWechatLogin,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t = await make_tenant()
    await _configure(client, t, wechat)
    monkeypatch.setenv("NESTPOINT_WECHAT_API_BASE", f"http://127.0.0.1:{free_port()}")
    get_settings.cache_clear()
    try:
        r = await client.post(f"/member-auth/{t.slug}/wechat", json={"code": "abc"})
    finally:
        monkeypatch.setenv("NESTPOINT_WECHAT_API_BASE", wechat.url)
        get_settings.cache_clear()
    assert r.status_code == 503
    assert _slug(r) == "wechat-unavailable"


async def test_a_member_binds_their_wechat_account_then_logs_in_with_it(
    client: Any, make_tenant: Any, enrol: Any, member_token: Any, wechat: FakeWechatLogin
) -> None:
    t = await make_tenant()
    m, other = await enrol(t.hq()), await enrol(t.hq())
    mine = await member_token(t, m["id"])
    login = f"/member-auth/{t.slug}/wechat"
    openid, unionid = f"o-{uuid.uuid4().hex}", f"u-{uuid.uuid4().hex}"
    # Not configured yet; then unknown to the chain.
    r = await client.post("/api/v1/me/wechat", json={"code": wechat.login(openid)}, headers=mine)
    assert r.status_code == 404
    assert _slug(r) == "wechat-not-configured"
    await _configure(client, t, wechat)
    r = await client.post(login, json={"code": wechat.login(openid, unionid)})
    assert r.status_code == 404
    assert _slug(r) == "wechat-not-bound"
    # The member (a token from the chain's backend, which checked the phone) binds it.
    code = wechat.login(openid, unionid)
    r = await client.post("/api/v1/me/wechat", json={"code": code}, headers=mine)
    assert r.status_code == 200, r.text
    assert r.json() == {"member_id": m["id"], "kinds": ["mp_openid", "mp_unionid"]}
    r = await client.get(f"/api/v1/members/{m['id']}", headers=t.hq())
    assert {"kind": "mp_openid", "value": openid} in [
        {"kind": i["kind"], "value": i["value"]} for i in r.json()["identities"]
    ]
    r = await client.post(login, json={"code": wechat.login(openid)})
    assert r.status_code == 200, r.text
    assert r.json()["member_id"] == m["id"]
    # Again: a no-op. Another member binding the same WeChat account: 409 naming code.
    r = await client.post(
        "/api/v1/me/wechat", json={"code": wechat.login(openid, unionid)}, headers=mine
    )
    assert r.status_code == 200, r.text
    theirs = await member_token(t, other["id"])
    r = await client.post("/api/v1/me/wechat", json={"code": wechat.login(openid)}, headers=theirs)
    assert r.status_code == 409
    assert _slug(r) == "wechat-bound-elsewhere"
    assert r.json()["errors"] == [
        {"field": "code", "message": "the WeChat account is another member's"}
    ]
    # The same unionid under a new openid (another app of the same open platform): refused
    # too, and nothing of it is written.
    r = await client.post(
        "/api/v1/me/wechat", json={"code": wechat.login("o-new", unionid)}, headers=theirs
    )
    assert r.status_code == 409
    r = await client.get(f"/api/v1/members/{other['id']}", headers=t.hq())
    assert r.json()["identities"] == []
    # A bad code; an API key.
    r = await client.post("/api/v1/me/wechat", json={"code": "nope"}, headers=mine)
    assert r.status_code == 422
    assert _slug(r) == "wechat-code-invalid"
    r = await client.post("/api/v1/me/wechat", json={"code": "nope"}, headers=t.hq())
    assert r.status_code == 403
