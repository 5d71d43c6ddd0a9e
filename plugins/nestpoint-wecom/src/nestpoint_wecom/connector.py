"""The WeCom connector: a message from the chain's WeCom application to a member's userid.

The application's access token is fetched with ``GET /cgi-bin/gettoken`` and shared by
every worker (``cached_token``, keyed by corp id and agent id). Outcomes
(``docs/plugins/wecom.md``): accepted with WeCom's ``msgid``; a token WeCom calls expired
or invalid (42001, 40014) is dropped and fetched again, and the send tried once more in
the same call; ``retry`` for what may pass later (-1 system busy, 45009 and 45033 limits,
a 5xx, a timeout); not accepted and no retry (``errcode:<n>``, e.g. 81013 user not found;
``auth_failed`` for a corp id or secret WeCom refuses; ``not_configured``) otherwise. No
detail and no log line ever carries the secret or a token (an httpx error's message has
the URL with ``access_token=``: only its class name is kept).
"""

from __future__ import annotations

import logging
import re
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
from nestpoint_wecom.config import WeComConfig

log = logging.getLogger("nestpoint_wecom")
_SECRET_IN_URL = re.compile(r"((?:access_token|corpsecret|secret)=)[^&\s\"']+")


class RedactSecrets(logging.Filter):
    """httpx logs every request's URL at INFO (``HTTP Request: GET https://…?corpsecret=…``);
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

SECRET = "corp_secret"  # noqa: S105 - the plugin secret's name
GETTOKEN_PATH = "/cgi-bin/gettoken"
SEND_PATH = "/cgi-bin/message/send"

TOKEN_REFUSED = {40014, 42001}  # invalid access_token, access_token expired
BUSY = {-1, 45009, 45033}  # system busy, API frequency limit, too many concurrent calls
# The corp id or secret is wrong (or the app is disabled): no send can work.
CREDENTIALS_REFUSED = {40001, 40013, 40056, 40082, 40091, 41002, 41004}
TEXT_BYTES = 2048
CARD_TITLE_BYTES = 128
CARD_DESCRIPTION_BYTES = 512


class Refused(Exception):
    """WeCom (or the way to it) refused; ``receipt`` says how."""

    def __init__(self, receipt: DeliveryReceipt) -> None:
        super().__init__(receipt.detail)
        self.receipt = receipt


def _refused(detail: str, *, retry: bool = False) -> DeliveryReceipt:
    return DeliveryReceipt(accepted=False, detail=detail, retry=retry)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` UTF-8 bytes, never inside a character."""
    data = text.encode()
    return text if len(data) <= limit else data[:limit].decode("utf-8", "ignore")


def payload(message: OutboundMessage, config: WeComConfig) -> dict[str, Any]:
    """The body of ``POST /cgi-bin/message/send`` for one member."""
    body: dict[str, Any] = {
        "touser": message.to,
        "agentid": config.agent_id,
        "msgtype": config.msgtype,
        "safe": 0,
    }
    if config.msgtype == "textcard":
        body["textcard"] = {
            "title": clip(message.subject or message.body, CARD_TITLE_BYTES),
            "description": clip(message.body, CARD_DESCRIPTION_BYTES),
            "url": config.card_url,
            "btntxt": config.card_button,
        }
    else:
        text = f"{message.subject}\n{message.body}" if message.subject else message.body
        body["text"] = {"content": clip(text, TEXT_BYTES)}
    return body


def _errcode(answer: dict[str, Any]) -> int:
    try:
        return int(answer.get("errcode", 0))
    except (TypeError, ValueError):
        return -1


async def _call(client: httpx.AsyncClient, request: httpx.Request) -> dict[str, Any]:
    """WeCom's JSON answer; transport and HTTP failures become :class:`Refused`."""
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
    client: httpx.AsyncClient, config: WeComConfig, secret: str
) -> tuple[str, int]:
    request = client.build_request(
        "GET", GETTOKEN_PATH, params={"corpid": config.corp_id, "corpsecret": secret}
    )
    answer = await _call(client, request)
    errcode = _errcode(answer)
    if errcode == 0 and answer.get("access_token"):
        return str(answer["access_token"]), int(answer.get("expires_in") or 7200)
    log.warning("wecom refused the token request", extra={"errcode": errcode})
    if errcode in BUSY:
        raise Refused(_refused(f"errcode:{errcode}", retry=True))
    if errcode in CREDENTIALS_REFUSED:
        raise Refused(_refused("auth_failed"))
    raise Refused(_refused(f"errcode:{errcode}"))


async def _send(client: httpx.AsyncClient, token: str, body: dict[str, Any]) -> dict[str, Any]:
    request = client.build_request("POST", SEND_PATH, params={"access_token": token}, json=body)
    return await _call(client, request)


def outcome(answer: dict[str, Any], message: OutboundMessage) -> DeliveryReceipt:
    """The receipt for WeCom's answer to a send (a token error is handled before)."""
    errcode = _errcode(answer)
    if errcode == 0:
        invalid = str(answer.get("invaliduser") or "").split("|")
        if message.to in invalid:  # WeCom sends to the valid ones and names the others
            return _refused("errcode:81013")
        return DeliveryReceipt(accepted=True, provider_message_id=str(answer.get("msgid", "")))
    if errcode in BUSY or errcode in TOKEN_REFUSED:
        return _refused(f"errcode:{errcode}", retry=True)
    return _refused(f"errcode:{errcode}")


async def send(message: OutboundMessage, plugin: PluginContext) -> DeliveryReceipt:
    """Send one message to the member's WeCom userid (see the module's docstring)."""
    config = WeComConfig.model_validate(plugin.config)
    if not (config.corp_id and config.agent_id):
        return _refused("not_configured")
    secret = await plugin_secret(plugin, SECRET)
    if not secret:
        return _refused("not_configured")
    name = f"{config.corp_id}:{config.agent_id}"
    body = payload(message, config)
    try:
        async with httpx.AsyncClient(
            base_url=config.base_url, timeout=config.timeout_seconds
        ) as client:

            async def fetch() -> tuple[str, int]:
                return await _fetch_token(client, config, secret)

            answer = await _send(client, await cached_token(plugin, name, fetch), body)
            if _errcode(answer) in TOKEN_REFUSED:  # expired or invalid: a new one, once
                await forget_token(plugin, name)
                answer = await _send(client, await cached_token(plugin, name, fetch), body)
            receipt = outcome(answer, message)
    except Refused as refused:
        receipt = refused.receipt
    if not receipt.accepted:
        log.warning(
            "wecom did not take the message",
            extra={"message_id": message.message_id, "detail": receipt.detail},
        )
    return receipt
