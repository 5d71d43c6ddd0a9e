"""The SMS connector: a signed send to the gateway, and its delivery receipts.

Outcomes (``docs/plugins/sms.md``): accepted with the gateway's ``BizId``; ``retry`` for
what may pass later (a timeout, a 5xx or 429, ``Throttling*`` and ``isp.*`` codes); not
accepted and no retry, so the pipeline falls back to the next channel at once, for what
will not (``auth_failed``, ``rate_limited``, ``not_configured``, ``no_template``, and the
gateway's ``isv.*`` codes such as ``isv.MOBILE_NUMBER_ILLEGAL``). No detail and no log
line ever carries the secret, a signature or the phone number.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from nestpoint.plugins.api import (
    CallbackRequest,
    DeliveryReceipt,
    DeliveryReport,
    OutboundMessage,
    PluginContext,
    plugin_secret,
    within_rate_limit,
)
from nestpoint_sms.config import SmsConfig
from nestpoint_sms.signing import (
    SIGNATURE_METHOD,
    SIGNATURE_VERSION,
    callback_string_to_sign,
    same,
    sign,
    string_to_sign,
)

log = logging.getLogger("nestpoint_sms")

SEND_PATH = "/sms/send"
# The names of the plugin secrets (not their values).
SECRET = "access_key_secret"  # noqa: S105
CALLBACK_SECRET = "callback_secret"  # noqa: S105

# The gateway's codes that mean "the gateway refused this caller": no retry.
_AUTH_CODES = {
    "InvalidAccessKeyId.NotFound",
    "InvalidAccessKeyId.Inactive",
    "SignatureDoesNotMatch",
    "InvalidTimeStamp.Expired",
    "SignatureNonceUsed",
}
# The gateway's own per-number frequency control (its 1/minute;5/hour;10/day).
_NUMBER_LIMIT_CODES = {"isv.BUSINESS_LIMIT_CONTROL", "isv.DAY_LIMIT_CONTROL"}
_CODE = re.compile(r"[^A-Za-z0-9._:-]")
_ID = re.compile(r"[^A-Za-z0-9._:^@=+/-]")


def _code(value: object) -> str:
    """A provider's code, kept to a safe alphabet and length for the delivery record."""
    return _CODE.sub("", str(value))[:64] or "unknown"


def _id(value: object) -> str:
    """A provider's message id (Aliyun's BizId looks like ``123456789^0``)."""
    return _ID.sub("", str(value))[:128]


def _refused(detail: str, *, retry: bool = False) -> DeliveryReceipt:
    return DeliveryReceipt(accepted=False, detail=detail, retry=retry)


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def signed_params(
    config: SmsConfig, secret: str, message: OutboundMessage, template_code: str
) -> dict[str, str]:
    """The send request's form parameters, ``Signature`` included."""
    params = {
        "AccessKeyId": config.access_key_id,
        "PhoneNumbers": message.to,
        "SignName": config.sign_name,
        "TemplateCode": template_code,
        "TemplateParam": json.dumps(
            dict(message.params), ensure_ascii=False, sort_keys=True, separators=(",", ":")
        ),
        "OutId": message.message_id,
        "SignatureMethod": SIGNATURE_METHOD,
        "SignatureVersion": SIGNATURE_VERSION,
        "SignatureNonce": uuid.uuid4().hex,
        "Timestamp": _timestamp(),
    }
    path = httpx.URL(config.base_url + SEND_PATH).path
    params["Signature"] = sign(secret, string_to_sign("POST", path, params))
    return params


async def _within_limits(
    plugin: PluginContext, config: SmsConfig, message: OutboundMessage
) -> bool:
    """Count the message against the number's limits once: a retry of the same message
    (same ``message_id``, after a timeout or a 5xx) is not counted again. The counter is
    keyed by a digest of the number, so Redis never holds the number itself."""
    if not config.rate_limits:
        return True
    if not await within_rate_limit(plugin, f"message:{message.message_id}", "1/day"):
        return True  # counted at its first attempt
    number = hashlib.sha256(message.to.encode()).hexdigest()[:32]
    return await within_rate_limit(plugin, f"phone:{number}", config.rate_limits)


async def send(message: OutboundMessage, plugin: PluginContext) -> DeliveryReceipt:
    """Send one templated SMS through the gateway (see the module's docstring)."""
    config = SmsConfig.model_validate(plugin.config)
    if not (config.base_url and config.access_key_id and config.sign_name):
        return _refused("not_configured")
    template_code = config.template_code(message.template, message.purpose)
    if template_code is None:
        return _refused("no_template")
    secret = await plugin_secret(plugin, SECRET)
    if not secret:
        return _refused("not_configured")
    if not await _within_limits(plugin, config, message):
        log.info("sms rate limited", extra={"message_id": message.message_id})
        return _refused("rate_limited")
    params = signed_params(config, secret, message, template_code)
    try:
        async with httpx.AsyncClient(timeout=config.timeout_seconds) as client:
            response = await client.post(config.base_url + SEND_PATH, data=params)
    except httpx.HTTPError as exc:  # the message may carry the URL: keep only the class
        log.warning(
            "sms gateway unreachable",
            extra={"message_id": message.message_id, "error": type(exc).__name__},
        )
        return _refused(type(exc).__name__, retry=True)
    receipt = outcome(response)
    if not receipt.accepted:
        log.warning(
            "sms gateway refused the message",
            extra={"message_id": message.message_id, "detail": receipt.detail},
        )
    return receipt


def outcome(response: httpx.Response) -> DeliveryReceipt:
    """The receipt for the gateway's answer to a send."""
    status = response.status_code
    if status in (401, 403):
        return _refused("auth_failed")
    if status == 429:
        return _refused("throttled", retry=True)
    if status >= 500:
        return _refused(f"http_{status}", retry=True)
    try:
        body: Any = response.json()
    except ValueError:
        return _refused("bad_response", retry=status < 400)
    code = body.get("Code") if isinstance(body, dict) else None
    if code is None:
        return _refused("bad_response" if status < 400 else f"http_{status}", retry=status < 400)
    code = _code(code)
    if code == "OK" and status < 300:
        return DeliveryReceipt(accepted=True, provider_message_id=_id(body.get("BizId", "")))
    if code in _AUTH_CODES:
        return _refused("auth_failed")
    if code in _NUMBER_LIMIT_CODES:
        return _refused("rate_limited")
    if code.startswith(("Throttling", "isp.", "ServiceUnavailable")):
        return _refused(code, retry=True)
    return _refused(code)  # isv.MOBILE_NUMBER_ILLEGAL, isv.SMS_TEMPLATE_ILLEGAL...


async def receipts(request: CallbackRequest, plugin: PluginContext) -> list[DeliveryReport] | None:
    """The gateway's delivery receipts, or ``None`` when the request is not genuine (no or
    a wrong signature, a timestamp outside ``callback_max_age_seconds``)."""
    config = SmsConfig.model_validate(plugin.config)
    secret = await plugin_secret(plugin, CALLBACK_SECRET) or await plugin_secret(plugin, SECRET)
    timestamp = request.headers.get("x-sms-timestamp", "")
    nonce = request.headers.get("x-sms-nonce", "")
    signature = request.headers.get("x-sms-signature", "")
    if not (secret and timestamp.isdigit() and nonce and signature):
        return None
    if abs(time.time() - int(timestamp)) > config.callback_max_age_seconds:
        return None
    expected = sign(secret, callback_string_to_sign(timestamp, nonce, request.body))
    if not same(expected, signature):
        return None
    return parse_reports(request.body)


def parse_reports(body: bytes) -> list[DeliveryReport]:
    """A verified callback's reports: a JSON array of the gateway's receipts
    (``biz_id``, ``success``, ``err_code``...); items without a ``biz_id`` are skipped."""
    try:
        items = json.loads(body)
    except ValueError:
        log.warning("sms receipt callback is not JSON")
        return []
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        return []
    reports = []
    for item in items:
        if not isinstance(item, dict) or not item.get("biz_id"):
            continue
        success = item.get("success")
        delivered = success is True or str(success).lower() == "true"
        reports.append(
            DeliveryReport(
                provider_message_id=_id(item["biz_id"]),
                delivered=delivered,
                detail=_code(item["err_code"]) if item.get("err_code") else "",
            )
        )
    return reports
