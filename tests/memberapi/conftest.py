"""Fixtures of the member API's tests: members through the API, member tokens, and the
local WeChat fake (``tests/wechat_fake.py``) the login-code exchange talks to."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from loyalty.helpers import new_phone
from nestpoint.settings import get_settings
from wechat_fake import FakeWechatLogin


@pytest.fixture
def enrol(client):  # type: ignore[no-untyped-def]
    async def make(headers: dict[str, str], **extra: Any) -> dict[str, Any]:
        body = {"phone": new_phone(), "name": "王芳"} | extra
        r = await client.post("/api/v1/members", json=body, headers=headers)
        assert r.status_code == 201, r.text
        return dict(r.json())

    return make


@pytest.fixture
def member_token(client):  # type: ignore[no-untyped-def]
    """Factory: a member token issued server to server; answers the headers to send."""

    async def make(tenant: Any, member_id: str) -> dict[str, str]:
        r = await client.post(
            "/api/v1/member-tokens", json={"member_id": member_id}, headers=tenant.hq()
        )
        assert r.status_code == 201, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}

    return make


@pytest.fixture(scope="session")
def wechat(database_env: dict[str, str]) -> Iterator[FakeWechatLogin]:
    """The WeChat fake for the whole run; the connector's calls go to it."""
    fake = FakeWechatLogin().start()
    saved = os.environ.get("NESTPOINT_WECHAT_API_BASE")
    os.environ["NESTPOINT_WECHAT_API_BASE"] = fake.url
    get_settings.cache_clear()
    yield fake
    fake.stop()
    if saved is None:
        os.environ.pop("NESTPOINT_WECHAT_API_BASE", None)
    else:
        os.environ["NESTPOINT_WECHAT_API_BASE"] = saved
    get_settings.cache_clear()
