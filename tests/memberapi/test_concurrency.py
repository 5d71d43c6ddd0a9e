"""Two members binding one WeChat account at the same moment: one gets it, the other a 409,
never a 5xx, and the account ends bound to exactly one member (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from wechat_fake import FakeWechatLogin


@pytest.fixture
def client(concurrent_client: httpx.AsyncClient) -> httpx.AsyncClient:
    """Every request of these tests goes through the truly concurrent client."""
    return concurrent_client


async def test_one_wechat_account_is_bound_to_one_member_under_a_race(
    client: Any, make_tenant: Any, enrol: Any, member_token: Any, wechat: FakeWechatLogin
) -> None:
    t = await make_tenant()
    r = await client.put(
        "/api/v1/member-auth/wechat",
        json={"appid": wechat.appid, "secret": wechat.secret},
        headers=t.hq(),
    )
    assert r.status_code == 200, r.text
    for _ in range(3):
        openid = f"o-{uuid.uuid4().hex}"
        racers = [await enrol(t.hq()) for _ in range(4)]
        tokens = [await member_token(t, m["id"]) for m in racers]
        answers = await asyncio.gather(
            *[
                client.post(
                    "/api/v1/me/wechat", json={"code": wechat.login(openid)}, headers=headers
                )
                for headers in tokens
            ]
        )
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200, 409, 409, 409], [a.text for a in answers]
        winner = next(m for m, a in zip(racers, answers, strict=True) if a.status_code == 200)
        r = await client.post(f"/member-auth/{t.slug}/wechat", json={"code": wechat.login(openid)})
        assert r.status_code == 200, r.text
        assert r.json()["member_id"] == winner["id"]
