"""The ``email`` channel connector: one rendered message, one SMTP transaction.

Outcomes (``DeliveryReceipt``), as the messaging pipeline reads them:

- the server took the message (250 after DATA): ``accepted``, ``provider_message_id`` the
  e-mail's ``Message-ID``;
- a temporary refusal (any 4xx reply: greylisting's 451, a full mailbox's 452, a busy
  server's 421), a connection that fails or times out, a dropped connection: ``retry``;
- a permanent refusal (5xx: the recipient does not exist, the sender or the message is
  refused, the login is wrong): not accepted and no retry, the detail naming the SMTP code;
- an address that is not one, or a chain that has not configured the connector: not
  accepted and no retry, nothing is sent.

The detail is built from the SMTP code and fixed words only, never from the server's text
(it may quote the member's address) nor anything holding the password; the log lines carry
the message id, the code and the exception's class, never the address or a credential.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import aiosmtplib
from aiosmtplib.errors import (
    SMTPAuthenticationError,
    SMTPException,
    SMTPNotSupported,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPSenderRefused,
)

from nestpoint.plugins.api import (
    ChannelConnector,
    DeliveryReceipt,
    OutboundMessage,
    PluginContext,
    plugin_secret,
)
from nestpoint_email.address import normalise_address
from nestpoint_email.config import EmailConfig
from nestpoint_email.message import build_email

log = logging.getLogger("nestpoint_email")

PASSWORD = "password"  # noqa: S105 - the secret's name (declared in plugin.py), not its value


def _refused(code: int, what: str) -> DeliveryReceipt:
    """A reply code's receipt: 4xx is temporary (retry), 5xx (or anything else) is not."""
    if 400 <= code < 500:
        return DeliveryReceipt(
            accepted=False, retry=True, detail=f"smtp {code}: {what} (temporary)"
        )
    return DeliveryReceipt(accepted=False, retry=False, detail=f"smtp {code}: {what}")


def _worst(codes: Iterable[int]) -> int:
    """Of several recipients' codes (one recipient here), a permanent one if any."""
    found = sorted(codes, reverse=True)
    return found[0] if found else 550


def outcome_of(exc: BaseException) -> DeliveryReceipt:
    """The receipt for an SMTP failure: never the exception's text, only its code or class."""
    if isinstance(exc, SMTPRecipientsRefused):
        return _refused(_worst(r.code for r in exc.recipients), "recipient refused")
    if isinstance(exc, SMTPAuthenticationError):
        return _refused(exc.code, "authentication failed")
    if isinstance(exc, SMTPSenderRefused):
        return _refused(exc.code, "sender refused")
    if isinstance(exc, SMTPResponseException):  # DATA refused, HELO refused, 421 on connect
        return _refused(exc.code, "message refused")
    if isinstance(exc, SMTPNotSupported) or type(exc) is SMTPException:
        # No STARTTLS, no AUTH (aiosmtplib raises the bare class for those): the
        # configuration's fault, not worth a retry.
        return DeliveryReceipt(
            accepted=False,
            retry=False,
            detail="smtp: the server does not offer the configured security or login",
        )
    # Connection refused or reset, TLS handshake, DNS, timeouts: maybe better later.
    return DeliveryReceipt(accepted=False, retry=True, detail=f"smtp: {type(exc).__name__}")


async def send(message: OutboundMessage, plugin: PluginContext) -> DeliveryReceipt:
    """Send ``message`` to ``message.to`` over the chain's SMTP server."""
    config = EmailConfig.model_validate(plugin.config)
    to = normalise_address(message.to.strip())
    if to is None:
        return DeliveryReceipt(accepted=False, retry=False, detail="not an e-mail address")
    if not config.configured:
        return DeliveryReceipt(
            accepted=False, retry=False, detail="e-mail not configured: host and from_address"
        )
    password: str | None = None
    if config.username:
        password = await plugin_secret(plugin, PASSWORD)
        if not password:
            return DeliveryReceipt(
                accepted=False, retry=False, detail="e-mail not configured: secret password"
            )
    email = build_email(
        message, to=to, from_address=config.from_address, from_name=config.from_name
    )
    message_id = str(email["Message-ID"])
    try:
        await aiosmtplib.send(
            email,
            sender=config.from_address,
            recipients=[to],
            hostname=config.host,
            port=config.effective_port,
            username=config.username or None,
            password=password,
            use_tls=config.security == "tls",
            start_tls=config.security == "starttls",
            timeout=config.timeout,
        )
    except (SMTPException, OSError, TimeoutError) as exc:
        receipt = outcome_of(exc)
        log.warning(
            "e-mail not sent",
            extra={
                "plugin": plugin.plugin_id,
                "message_id": message.message_id,
                "error": type(exc).__name__,
                "code": getattr(exc, "code", None),
                "retry": receipt.retry,
            },
        )
        return receipt
    log.info("e-mail sent", extra={"plugin": plugin.plugin_id, "message_id": message.message_id})
    return DeliveryReceipt(accepted=True, provider_message_id=message_id)


CONNECTOR = ChannelConnector(
    key="email",
    title="电子邮件 E-mail",
    send=send,
    description=(
        "E-mail over the chain's SMTP server: a plain-text and an HTML part, "
        "the password kept as the write-only secret `password`."
    ),
    address="email",
    consent="email",
    # Greylisting answers 451 and expects the same message again after a few minutes:
    # 2, 4 then 8 minutes cover the usual 1-5 minute wait.
    max_attempts=4,
    retry_seconds=120,
    # SMTP servers do not drop a second copy by Message-ID: after a worker died mid-send
    # the core must not send again blindly.
    idempotent=False,
)
