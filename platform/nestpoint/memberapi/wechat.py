"""The WeChat connector of the member API: a mini-program login code (``wx.login()``)
exchanged for the member's openid (and unionid) with ``GET /sns/jscode2session``, and a
phone code (the mini-program's ``getPhoneNumber`` button) exchanged for the phone WeChat
verified with ``POST /wxa/business/getuserphonenumber``.

``NESTPOINT_WECHAT_API_BASE`` names WeChat's API (tests point it at a local fake,
``tests/wechat_fake.py``); the chain's appid and AppSecret come from ``wechat_apps``. The
``session_key`` WeChat answers is never kept: the member API needs only who the member is.

WeChat answers errors with HTTP 200 and an ``errcode``: 40029 (invalid code), 40163 (code
already used) and 40226 (a user WeChat blocked) are the member's, answered 422 naming the
code; 45011 (the app's rate limit) and everything else (-1 busy, a wrong appid or secret
40013/40125, no answer at all) are WeChat's or the chain's, answered 503.

**The access token** the phone exchange needs comes from ``POST /cgi-bin/stable_token``
(``force_refresh`` false): unlike ``GET /cgi-bin/token`` it does not end the token other
systems of the same AppID hold (the ``miniprogram`` plugin's, the chain's own backend). It
is cached until 5 minutes before it expires, per chain and appid: in the broker's Redis when
there is one (sealed with the core's keys, so Redis never holds a usable credential; every
process shares it), in this process's memory otherwise. A token WeChat calls invalid or
expired (40001, 40014, 42001) is dropped and fetched again, once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import httpx
import redis.asyncio as aioredis
from cryptography.exceptions import InvalidTag
from redis.exceptions import RedisError

from nestpoint.errors import Invalid, NestpointError
from nestpoint.members import pii
from nestpoint.settings import get_settings

log = logging.getLogger("nestpoint.memberapi")

JSCODE2SESSION = "/sns/jscode2session"
STABLE_TOKEN = "/cgi-bin/stable_token"  # noqa: S105 - a path
PHONE_NUMBER = "/wxa/business/getuserphonenumber"
# The member's own errors: the code is not (or no longer) good.
CODE_ERRORS = {40029: "invalid code", 40163: "code already used", 40226: "user blocked"}
RATE_LIMITED = 45011
TOKEN_REFUSED = {40001, 40014, 42001}  # invalid credential or access token, expired token
TOKEN_MARGIN = 300  # seconds before its expiry a cached token is fetched again


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


@dataclass(frozen=True, slots=True)
class WechatApp:
    """The chain's mini-program, as the exchanges need it."""

    tenant_id: uuid.UUID
    appid: str
    secret: str


async def _call(
    method: str,
    path: str,
    *,
    params: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """WeChat's JSON answer; no answer, another HTTP status or no JSON object is 503."""
    settings = get_settings()
    try:
        async with httpx.AsyncClient(
            base_url=settings.wechat_api_base, timeout=settings.wechat_timeout_seconds
        ) as client:
            response = await client.request(method, path, params=params, json=body)
    except httpx.HTTPError as exc:  # its text may carry the URL with a secret or token
        raise WechatUnavailable(f"WeChat did not answer ({type(exc).__name__})") from None
    if response.status_code != 200:
        raise WechatUnavailable(f"WeChat answered HTTP {response.status_code}")
    try:  # WeChat sends JSON, sometimes labelled text/plain
        answer = json.loads(response.content)
    except ValueError:
        raise WechatUnavailable("WeChat's answer is not JSON") from None
    if not isinstance(answer, dict):
        raise WechatUnavailable("WeChat's answer is not an object")
    return answer


def _errcode(answer: dict[str, Any]) -> int:
    try:
        return int(answer.get("errcode") or 0)
    except (TypeError, ValueError):
        return -1


def _refuse(errcode: int, field: str, what: str) -> None:
    """Raise the problem for WeChat's ``errcode`` about a code named ``field`` (0: none)."""
    if errcode in CODE_ERRORS:
        raise WechatCodeRefused.field(
            field, f"WeChat refused the {what} ({errcode}: {CODE_ERRORS[errcode]})"
        )
    if errcode == RATE_LIMITED:
        raise WechatRateLimited("WeChat's rate limit for the chain's app (45011): retry later")
    if errcode:
        raise WechatUnavailable(f"WeChat refused the exchange (errcode {errcode})")


async def code_to_session(appid: str, secret: str, code: str) -> WechatSession:
    """Exchange a login code; raises :class:`WechatCodeRefused` (422 naming ``code``) or
    :class:`WechatUnavailable` (503)."""
    params = {
        "appid": appid,
        "secret": secret,
        "js_code": code,
        "grant_type": "authorization_code",
    }
    body = await _call("GET", JSCODE2SESSION, params=params)
    _refuse(_errcode(body), "code", "login code")
    openid = body.get("openid")
    if not isinstance(openid, str) or not openid:
        raise WechatUnavailable("WeChat's answer has no openid")
    unionid = body.get("unionid")
    return WechatSession(openid, unionid if isinstance(unionid, str) and unionid else None)


async def verified_phone(app: WechatApp, phone_code: str) -> str:
    """The phone WeChat verified for a phone code (``+<country code><number>``); raises
    :class:`WechatCodeRefused` (422 naming ``phone_code``) or :class:`WechatUnavailable`."""
    body = await _phone_answer(app, phone_code)
    _refuse(_errcode(body), "phone_code", "phone code")
    info = body.get("phone_info")
    if not isinstance(info, dict):
        raise WechatUnavailable("WeChat's answer has no phone_info")
    watermark = info.get("watermark")
    if isinstance(watermark, dict) and watermark.get("appid") not in (None, app.appid):
        raise WechatUnavailable("WeChat's answer is for another mini-program")
    number, country = info.get("purePhoneNumber"), info.get("countryCode") or "86"
    if not isinstance(number, str) or not number.isdigit() or not str(country).isdigit():
        raise WechatUnavailable("WeChat's answer has no phone number")
    return f"+{country}{number}"


async def _phone_answer(app: WechatApp, phone_code: str) -> dict[str, Any]:
    """WeChat's answer to the phone exchange, with a token fetched again once when WeChat
    calls the cached one invalid or expired."""
    body: dict[str, Any] = {}
    for _ in range(2):
        token = await access_token(app)
        body = await _call(
            "POST", PHONE_NUMBER, params={"access_token": token}, body={"code": phone_code}
        )
        if _errcode(body) not in TOKEN_REFUSED:
            return body
        await forget_token(app)
    return body  # refused twice: the chain's app (503)


# ---------------------------------------------------------------- the access token

_local_tokens: dict[str, tuple[str, float]] = {}
_token_locks: dict[str, asyncio.Lock] = {}


def _token_key(app: WechatApp) -> str:
    return f"nestpoint-wechat-token:{app.tenant_id}:{app.appid}"


def _seal_context(key: str) -> bytes:
    return b"wechat-access-token:" + key.encode()


# One client per event loop: an asyncio connection belongs to the loop that opened it.
@lru_cache(maxsize=8)
def _redis_for(loop: asyncio.AbstractEventLoop) -> aioredis.Redis | None:
    url = get_settings().redis_url
    return aioredis.Redis.from_url(url) if url else None


def _redis() -> aioredis.Redis | None:
    return _redis_for(asyncio.get_running_loop())


async def access_token(app: WechatApp) -> str:
    """The chain's cached access token, or a new one (one fetch at a time per process)."""
    key = _token_key(app)
    found = await _cached(key)
    if found is not None:
        return found
    async with _token_locks.setdefault(key, asyncio.Lock()):
        found = await _cached(key)
        if found is not None:
            return found
        token, lifetime = await _fetch_token(app)
        await _keep(key, token, max(1, lifetime - TOKEN_MARGIN))
        return token


async def forget_token(app: WechatApp) -> None:
    """Drop a token WeChat no longer accepts."""
    key = _token_key(app)
    _local_tokens.pop(key, None)
    client = _redis()
    if client is not None:
        try:
            await client.delete(key)
        except RedisError:
            log.warning("redis did not answer: the WeChat token was not dropped there")


async def _fetch_token(app: WechatApp) -> tuple[str, int]:
    body = await _call(
        "POST",
        STABLE_TOKEN,
        body={
            "grant_type": "client_credential",
            "appid": app.appid,
            "secret": app.secret,
            "force_refresh": False,
        },
    )
    errcode = _errcode(body)
    if errcode == RATE_LIMITED:
        raise WechatRateLimited("WeChat's rate limit for the chain's app (45011): retry later")
    if errcode:
        raise WechatUnavailable(
            f"WeChat refused the chain's app credentials (errcode {errcode}): HQ checks "
            "the appid and AppSecret (PUT /api/v1/member-auth/wechat)"
        )
    token, lifetime = body.get("access_token"), body.get("expires_in")
    if not isinstance(token, str) or not token:
        raise WechatUnavailable("WeChat's answer has no access_token")
    return token, lifetime if isinstance(lifetime, int) and lifetime > 0 else 7200


async def _cached(key: str) -> str | None:
    client = _redis()
    if client is None:
        token, until = _local_tokens.get(key, ("", 0.0))
        return token if until > time.monotonic() else None
    try:
        sealed = await client.get(key)
    except RedisError:  # fetch one: a login should not fail because Redis blinked
        log.warning("redis did not answer: the WeChat token is fetched afresh")
        return None
    if sealed is None:
        return None
    text = sealed.decode() if isinstance(sealed, bytes) else str(sealed)
    try:
        return pii.keyring().decrypt(text, context=_seal_context(key))
    except (KeyError, ValueError, InvalidTag):  # sealed under a key retired since
        return None


async def _keep(key: str, token: str, seconds: int) -> None:
    client = _redis()
    if client is None:
        _local_tokens[key] = (token, time.monotonic() + seconds)
        return
    try:
        sealed = pii.keyring().encrypt(token, context=_seal_context(key))
        await client.set(key, sealed, ex=seconds)
    except RedisError:
        log.warning("redis did not answer: the WeChat token is not cached")
