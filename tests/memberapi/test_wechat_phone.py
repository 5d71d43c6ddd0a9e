"""The WeChat phone login: a login code and the phone WeChat verified (``getPhoneNumber``)
find the member holding that phone (or enrol one, when the chain allows it), bind the
WeChat account and answer a member token; against the local fake of WeChat, whose access
token is cached and fetched again once when WeChat refuses it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from loyalty.helpers import new_phone
from loyalty.support import all_pages, audit
from wechat_fake import FakeWechatLogin


async def _configure(
    client: Any, tenant: Any, wechat: FakeWechatLogin, *, enrol_by_phone: bool = False
) -> None:
    r = await client.put(
        "/api/v1/member-auth/wechat",
        json={"appid": wechat.appid, "secret": wechat.secret, "enrol_by_phone": enrol_by_phone},
        headers=tenant.hq(),
    )
    assert r.status_code == 200, r.text
    assert r.json()["enrol_by_phone"] is enrol_by_phone


def _slug(problem: Any) -> str:
    return str(problem.json()["type"]).rsplit("/", 1)[1]


def _ids() -> tuple[str, str]:
    return f"o-{uuid.uuid4().hex}", f"u-{uuid.uuid4().hex}"


async def _login(
    client: Any,
    tenant: Any,
    wechat: FakeWechatLogin,
    openid: str,
    phone: str,
    unionid: str | None = None,
) -> Any:
    """The phone login with fresh codes for this WeChat user and phone."""
    body = {
        "code": wechat.login(openid, unionid),
        "phone_code": wechat.phone_code(phone),
    }
    return await client.post(f"/member-auth/{tenant.slug}/wechat/phone", json=body)


async def _identities(client: Any, tenant: Any, member_id: str) -> list[tuple[str, str]]:
    r = await client.get(f"/api/v1/members/{member_id}", headers=tenant.hq())
    assert r.status_code == 200, r.text
    return sorted((i["kind"], i["value"]) for i in r.json()["identities"])


async def test_the_verified_phone_finds_the_member_who_then_logs_in_with_wechat(
    client: Any, make_tenant: Any, enrol: Any, wechat: FakeWechatLogin
) -> None:
    t = await make_tenant()
    await _configure(client, t, wechat)
    phone = new_phone()
    m = await enrol(t.hq(), phone=phone)
    openid, unionid = _ids()
    fetches = wechat.token_fetches
    r = await _login(client, t, wechat, openid, phone, unionid=unionid)
    assert r.status_code == 200, r.text
    assert (r.json()["member_id"], r.json()["expires_in"]) == (m["id"], 7200)
    token = {"Authorization": f"Bearer {r.json()['token']}"}
    assert (await client.get("/api/v1/me", headers=token)).json()["id"] == m["id"]
    assert await _identities(client, t, m["id"]) == [("mp_openid", openid), ("mp_unionid", unionid)]
    # From then on the login code alone finds the member.
    r = await client.post(f"/member-auth/{t.slug}/wechat", json={"code": wechat.login(openid)})
    assert (r.status_code, r.json()["member_id"]) == (200, m["id"])
    # Again with fresh codes: the same member, nothing bound twice; the token was cached.
    r = await _login(client, t, wechat, openid, phone)
    assert (r.status_code, r.json()["member_id"]) == (200, m["id"])
    assert wechat.token_fetches == fetches + 1
    assert len(await _identities(client, t, m["id"])) == 2
    issued = await audit(client, t.hq(), "member_token.issued")
    assert sorted(e["changes"]["via"] for e in issued) == ["wechat", "wechat_phone", "wechat_phone"]
    bound = await audit(client, t.hq(), "identity.added")
    assert sorted(e["changes"]["kind"] for e in bound) == ["mp_openid", "mp_unionid"]
    assert openid not in str(bound)
    assert phone not in str(issued)


async def test_an_unknown_phone_enrols_a_member_only_where_the_chain_allows_it(
    client: Any, make_tenant: Any, wechat: FakeWechatLogin
) -> None:
    t = await make_tenant()
    await _configure(client, t, wechat)
    openid, phone = f"o-{uuid.uuid4().hex}", new_phone()
    r = await _login(client, t, wechat, openid, phone)
    assert r.status_code == 404, r.text
    assert _slug(r) == "wechat-phone-not-member"
    assert r.json()["errors"][0]["field"] == "phone_code"
    assert await all_pages(client, "/api/v1/members", t.hq()) == []
    await _configure(client, t, wechat, enrol_by_phone=True)
    r = await client.get("/api/v1/member-auth/wechat", headers=t.hq())
    assert r.json()["enrol_by_phone"] is True
    entries = await audit(client, t.hq(), "memberapi.wechat_app_set")
    assert sorted(e["changes"]["enrol_by_phone"] for e in entries) == [False, True]
    r = await _login(client, t, wechat, openid, phone)
    assert r.status_code == 200, r.text
    member_id = r.json()["member_id"]
    r = await client.get(f"/api/v1/members/{member_id}", headers=t.hq())
    assert (r.json()["phone"], r.json()["join_channel"]) == (f"+86{phone}", "mini_program")
    assert await _identities(client, t, member_id) == [("mp_openid", openid)]
    assert len(await audit(client, t.hq(), "member.created")) == 1
    # Logging in the same way again finds the member enrolled: no second member.
    r = await _login(client, t, wechat, openid, phone)
    assert (r.status_code, r.json()["member_id"]) == (200, member_id)
    assert len(await all_pages(client, "/api/v1/members", t.hq())) == 1


async def test_what_the_phone_login_refuses(
    client: Any, make_tenant: Any, enrol: Any, wechat: FakeWechatLogin
) -> None:
    t = await make_tenant()
    url = f"/member-auth/{t.slug}/wechat/phone"
    phone = new_phone()
    m = await enrol(t.hq(), phone=phone)
    openid = f"o-{uuid.uuid4().hex}"
    # Not configured; no such chain.
    r = await _login(client, t, wechat, openid, phone)
    assert (r.status_code, _slug(r)) == (404, "wechat-not-configured")
    r = await client.post(
        "/member-auth/no-such-chain/wechat/phone", json={"code": "a", "phone_code": "b"}
    )
    assert (r.status_code, _slug(r)) == (404, "not-found")
    await _configure(client, t, wechat)
    # A malformed body names the field.
    for body, field in (
        ({"code": "a"}, "phone_code"),
        ({"code": "a", "phone_code": "x y"}, "phone_code"),
    ):
        r = await client.post(url, json=body)
        assert r.status_code == 400, r.text
        assert field in [e["field"] for e in r.json()["errors"]]
    # A login code WeChat refuses: the phone code is not spent (WeChat charges for it).
    asked = len(wechat.phone_requests)
    r = await client.post(url, json={"code": "deadbeef", "phone_code": wechat.phone_code(phone)})
    assert (r.status_code, _slug(r)) == (422, "wechat-code-invalid")
    assert r.json()["errors"][0]["field"] == "code"
    assert len(wechat.phone_requests) == asked
    # A phone code WeChat refuses (never issued, or used already): 422 naming phone_code.
    r = await client.post(url, json={"code": wechat.login(openid), "phone_code": "nope"})
    assert (r.status_code, _slug(r)) == (422, "wechat-code-invalid")
    assert r.json()["errors"][0]["field"] == "phone_code"
    assert "40029" in r.text
    used = wechat.phone_code(phone)
    r = await client.post(url, json={"code": wechat.login(openid), "phone_code": used})
    assert r.status_code == 200, r.text
    r = await client.post(url, json={"code": wechat.login(openid), "phone_code": used})
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "phone_code")
    # WeChat's quota (45011) and WeChat busy (-1): 503, retry later.
    for errcode, slug in ((45011, "wechat-rate-limited"), (-1, "wechat-unavailable")):
        wechat.phone_errors.append(errcode)
        r = await _login(client, t, wechat, openid, phone)
        assert (r.status_code, _slug(r)) == (503, slug)
    # The WeChat account is another member's: 409 naming code, nothing bound.
    other_phone = new_phone()
    other = await enrol(t.hq(), phone=other_phone)
    r = await _login(client, t, wechat, openid, other_phone)
    assert (r.status_code, _slug(r)) == (409, "wechat-bound-elsewhere")
    assert r.json()["errors"] == [
        {"field": "code", "message": "the WeChat account is another member's"}
    ]
    assert await _identities(client, t, other["id"]) == []
    assert await _identities(client, t, m["id"]) == [("mp_openid", openid)]


async def test_a_token_wechat_refuses_is_fetched_again_once(
    client: Any, make_tenant: Any, enrol: Any, wechat: FakeWechatLogin
) -> None:
    t = await make_tenant()
    await _configure(client, t, wechat)
    phone = new_phone()
    m = await enrol(t.hq(), phone=phone)
    openid = f"o-{uuid.uuid4().hex}"
    assert (await _login(client, t, wechat, openid, phone)).status_code == 200
    for spoil in (wechat.revoke_tokens, wechat.expire_tokens):  # 40001, then 42001
        spoil()
        fetches, asked = wechat.token_fetches, len(wechat.phone_requests)
        r = await _login(client, t, wechat, openid, phone)
        assert (r.status_code, r.json()["member_id"]) == (200, m["id"])
        assert wechat.token_fetches == fetches + 1
        assert len(wechat.phone_requests) == asked + 2
        first, second = wechat.phone_requests[-2:]
        assert first["access_token"] != second["access_token"]
    # Refused with a fresh token too: the chain's app, not the member's (503).
    wechat.phone_errors.extend([40001, 40001])
    r = await _login(client, t, wechat, openid, phone)
    assert (r.status_code, _slug(r)) == (503, "wechat-unavailable")


async def test_two_phone_logins_at_once_enrol_one_member(
    concurrent_client: httpx.AsyncClient, make_tenant: Any, wechat: FakeWechatLogin
) -> None:
    """The same new phone at once (a double tap): one member, both answered with it, on
    SQLite and PostgreSQL."""
    client = concurrent_client
    t = await make_tenant()
    await _configure(client, t, wechat, enrol_by_phone=True)
    openid, phone = f"o-{uuid.uuid4().hex}", new_phone()
    answers = await asyncio.gather(*(_login(client, t, wechat, openid, phone) for _ in range(4)))
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert len({a.json()["member_id"] for a in answers}) == 1
    members = await all_pages(client, "/api/v1/members", t.hq())
    assert [m["id"] for m in members] == [answers[0].json()["member_id"]]
