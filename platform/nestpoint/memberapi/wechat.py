"""The WeChat connector of the member login: a mini-program login code (``wx.login()``)
exchanged for the member's openid (and unionid) with ``GET /sns/jscode2session``.

``NESTPOINT_WECHAT_API_BASE`` names WeChat's API (tests point it at a local fake,
``tests/wechat_fake.py``); the chain's appid and AppSecret come from ``wechat_apps``. The
``session_key`` WeChat answers is never kept: the member API needs only who the member is.

WeChat answers errors with HTTP 200 and an ``errcode``: 40029 (invalid code), 40163 (code
already used) and 40226 (a user WeChat blocked) are the member's, answered 422; 45011 (the
app's rate limit) and everything else (-1 busy, a wrong appid or secret 40013/40125, no
answer at all) are WeChat's or the chain's, answered 503.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx

from nestpoint.errors import Invalid, NestpointError
from nestpoint.settings import get_settings

JSCODE2SESSION = "/sns/jscode2session"
# The member's own errors: the code is not (or no longer) good.
CODE_ERRORS = {40029: "invalid code", 40163: "code already used", 40226: "user blocked"}
RATE_LIMITED = 45011


class WechatCodeRefused(Invalid):
    """WeChat refused the login code (invalid, used, expired): call ``wx.login()`` again."""

    slug = "wechat-code-invalid"


class WechatUnavailable(NestpointError):
    """WeChat did not give an answer the login can use: retry later (or fix the app's keys)."""

    status = 503
    title = "WeChat unavailable"
    slug = "wechat-unavailable"


class WechatRateLimited(WechatUnavailable):
    slug = "wechat-rate-limited"


@dataclass(frozen=True, slots=True)
class WechatSession:
    openid: str
    unionid: str | None


async def code_to_session(appid: str, secret: str, code: str) -> WechatSession:
    """Exchange a login code; raises :class:`WechatCodeRefused` (422) or
    :class:`WechatUnavailable` (503)."""
    settings = get_settings()
    params = {
        "appid": appid,
        "secret": secret,
        "js_code": code,
        "grant_type": "authorization_code",
    }
    try:
        async with httpx.AsyncClient(
            base_url=settings.wechat_api_base, timeout=settings.wechat_timeout_seconds
        ) as client:
            response = await client.get(JSCODE2SESSION, params=params)
    except httpx.HTTPError as exc:
        raise WechatUnavailable(f"WeChat did not answer ({type(exc).__name__})") from None
    if response.status_code != 200:
        raise WechatUnavailable(f"WeChat answered HTTP {response.status_code}")
    try:  # WeChat sends JSON, sometimes labelled text/plain
        body = json.loads(response.content)
    except ValueError:
        raise WechatUnavailable("WeChat's answer is not JSON") from None
    if not isinstance(body, dict):
        raise WechatUnavailable("WeChat's answer is not an object")
    errcode = body.get("errcode") or 0
    if errcode in CODE_ERRORS:
        raise WechatCodeRefused.field(
            "code", f"WeChat refused the login code ({errcode}: {CODE_ERRORS[errcode]})"
        )
    if errcode == RATE_LIMITED:
        raise WechatRateLimited("WeChat's rate limit for the chain's app (45011): retry later")
    if errcode:
        raise WechatUnavailable(f"WeChat refused the exchange (errcode {errcode})")
    openid = body.get("openid")
    if not isinstance(openid, str) or not openid:
        raise WechatUnavailable("WeChat's answer has no openid")
    unionid = body.get("unionid")
    return WechatSession(openid, unionid if isinstance(unionid, str) and unionid else None)
