"""The mini-program connector: a WeChat subscribe message (订阅消息) to a member's openid.

The access token comes from ``POST /cgi-bin/stable_token`` (or ``GET /cgi-bin/token``) and
is shared by every worker (``cached_token``, keyed by the AppID). Outcomes
(``docs/plugins/miniprogram.md``): accepted with WeChat's ``msgid``; a token WeChat calls
invalid or expired (40001, 40014, 42001) is dropped and fetched again, and the send tried
once more in the same call; ``retry`` for what may pass later (-1 system busy, 45011 the
minute's quota, a 5xx, a timeout); not accepted and no retry otherwise, so the pipeline
falls back at once: ``not_subscribed`` (43101: the member has no subscription left for
the template, the consent it implied is used up), ``errcode:<n>`` (40003 invalid openid,
40037 invalid template, 47003 bad data, 45009 the day's quota), ``auth_failed`` (an
AppID or AppSecret WeChat refuses), ``no_template``, ``missing_param:<name>``,
``not_configured``. No detail and no log line ever carries the secret or a token.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import httpx

from nestpoint.plugins.api import (
    DeliveryReceipt,
    OutboundMessage,
    PluginContext,
    cached_token,
    forget_token,
    plugin_secret,
)
from nestpoint_miniprogram.config import MiniProgramConfig, TemplateSpec

log = logging.getLogger("nestpoint_miniprogram")
_SECRET_IN_URL = re.compile(r"((?:access_token|corpsecret|secret)=)[^&\s\"']+")


class RedactSecrets(logging.Filter):
    """httpx logs every request's URL at INFO (``HTTP Request: GET https://…?secret=…``);
    this filter on the ``httpx`` logger masks the secret and the token in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _SECRET_IN_URL.sub(r"\1***", str(arg)) if isinstance(arg, httpx.URL | str) else arg
                for arg in record.args
            )
        return True


if not any(type(f).__name__ == "RedactSecrets" for f in logging.getLogger("httpx").filters):
    logging.getLogger("httpx").addFilter(RedactSecrets())

SECRET = "app_secret"  # noqa: S105 - the plugin secret's name
SEND_PATH = "/cgi-bin/message/subscribe/send"

NOT_SUBSCRIBED = 43101
TOKEN_REFUSED = {40001, 40014, 42001}  # invalid credential / access_token, expired
BUSY = {-1, 45011}  # system busy, the minute's API quota
# The AppID or AppSecret is wrong, or the server's IP is not on the allow list.
CREDENTIALS_REFUSED = {40001, 40013, 40125, 40164, 41002, 41004, 89503}

# What WeChat takes in a data value, by the key's type (characters).
LIMITS = {
    "thing": 20,
    "number": 32,
    "letter": 32,
    "symbol": 5,
    "character_string": 32,
    "phone_number": 17,
    "car_number": 8,
    "name": 10,
    "phrase": 5,
}
_KIND = re.compile(r"^([a-z_]+?)[0-9]+$")


class Refused(Exception):
    """WeChat (or the way to it) refused; ``receipt`` says how."""

    def __init__(self, receipt: DeliveryReceipt) -> None:
        super().__init__(receipt.detail)
        self.receipt = receipt


def _refused(detail: str, *, retry: bool = False) -> DeliveryReceipt:
    return DeliveryReceipt(accepted=False, detail=detail, retry=retry)


def fit(key: str, value: str) -> str:
    """``value`` cut to what WeChat takes for a data key of ``key``'s type (``thing1``:
    20 characters, the last one ``…`` when cut; a ``name`` of Latin letters: 20)."""
    match = _KIND.match(key)
    kind = match.group(1) if match else key
    limit = LIMITS.get(kind)
    if kind == "name" and value.isascii():
        limit = 20
    if limit is None or len(value) <= limit:
        return value
    return value[: limit - 1] + "…" if kind == "thing" else value[:limit]


def data_for(spec: TemplateSpec, params: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """The template's ``data`` from the message's parameters; raises :class:`Refused`
    (``missing_param:<name>``) for a parameter the message lacks or leaves empty."""
    data = {}
    for key, param in spec.fields.items():
        value = str(params.get(param, "")).strip()
        if not value:
            raise Refused(_refused(f"missing_param:{param}"))
        data[key] = {"value": fit(key, value)}
    return data


def _errcode(answer: dict[str, Any]) -> int:
    try:
        return int(answer.get("errcode", 0))
    except (TypeError, ValueError):
        return -1


async def _call(client: httpx.AsyncClient, request: httpx.Request) -> dict[str, Any]:
    """WeChat's JSON answer; transport and HTTP failures become :class:`Refused`."""
    try:
        response = await client.send(request)
    except httpx.HTTPError as exc:  # its message may carry the URL and the token
        raise Refused(_refused(type(exc).__name__, retry=True)) from None
    if response.status_code == 429 or response.status_code >= 500:
        raise Refused(_refused(f"http_{response.status_code}", retry=True))
    if response.status_code >= 400:
        raise Refused(_refused(f"http_{response.status_code}"))
    try:
        answer = response.json()
    except ValueError:
        raise Refused(_refused("bad_response", retry=True)) from None
    if not isinstance(answer, dict):
        raise Refused(_refused("bad_response", retry=True))
    return answer


async def _fetch_token(
    client: httpx.AsyncClient, config: MiniProgramConfig, secret: str
) -> tuple[str, int]:
    credentials = {"grant_type": "client_credential", "appid": config.app_id, "secret": secret}
    if config.token_endpoint == "stable":  # noqa: S105 - an option's value
        request = client.build_request(
            "POST", "/cgi-bin/stable_token", json=credentials | {"force_refresh": False}
        )
    else:
        request = client.build_request("GET", "/cgi-bin/token", params=credentials)
    answer = await _call(client, request)
    errcode = _errcode(answer)
    if errcode == 0 and answer.get("access_token"):
        return str(answer["access_token"]), int(answer.get("expires_in") or 7200)
    log.warning("wechat refused the token request", extra={"errcode": errcode})
    if errcode in BUSY:
        raise Refused(_refused(f"errcode:{errcode}", retry=True))
    if errcode in CREDENTIALS_REFUSED:
        raise Refused(_refused("auth_failed"))
    raise Refused(_refused(f"errcode:{errcode}"))


async def _send(client: httpx.AsyncClient, token: str, body: dict[str, Any]) -> dict[str, Any]:
    request = client.build_request("POST", SEND_PATH, params={"access_token": token}, json=body)
    return await _call(client, request)


def outcome(answer: dict[str, Any]) -> DeliveryReceipt:
    """The receipt for WeChat's answer to a send (a token error is handled before)."""
    errcode = _errcode(answer)
    if errcode == 0:
        return DeliveryReceipt(accepted=True, provider_message_id=str(answer.get("msgid", "")))
    if errcode == NOT_SUBSCRIBED:
        return _refused("not_subscribed")
    if errcode in BUSY or errcode in TOKEN_REFUSED:
        return _refused(f"errcode:{errcode}", retry=True)
    return _refused(f"errcode:{errcode}")


async def send(message: OutboundMessage, plugin: PluginContext) -> DeliveryReceipt:
    """Send one subscribe message to the member's openid (see the module's docstring)."""
    config = MiniProgramConfig.model_validate(plugin.config)
    if not config.app_id:
        return _refused("not_configured")
    spec = config.template_for(message.template, message.purpose)
    if spec is None:
        return _refused("no_template")
    try:
        body: dict[str, Any] = {
            "touser": message.to,
            "template_id": spec.template_id,
            "data": data_for(spec, message.params),
            "miniprogram_state": config.miniprogram_state,
            "lang": config.lang,
        }
        if spec.page or config.page:
            body["page"] = spec.page or config.page
        secret = await plugin_secret(plugin, SECRET)
        if not secret:
            return _refused("not_configured")
        name = config.app_id
        async with httpx.AsyncClient(
            base_url=config.base_url, timeout=config.timeout_seconds
        ) as client:

            async def fetch() -> tuple[str, int]:
                return await _fetch_token(client, config, secret)

            answer = await _send(client, await cached_token(plugin, name, fetch), body)
            if _errcode(answer) in TOKEN_REFUSED:  # expired or invalid: a new one, once
                await forget_token(plugin, name)
                answer = await _send(client, await cached_token(plugin, name, fetch), body)
            receipt = outcome(answer)
    except Refused as refused:
        receipt = refused.receipt
    if not receipt.accepted:
        log.warning(
            "wechat did not take the subscribe message",
            extra={"message_id": message.message_id, "detail": receipt.detail},
        )
    return receipt
