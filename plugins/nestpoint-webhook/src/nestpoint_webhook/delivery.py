"""One event, one signed POST: what ``nestpoint_on_event`` does.

Outcomes, and how the outbox's retries are used:

- **2xx**: delivered.
- **408, 429, 5xx, a timeout, a connection that fails**: :class:`DeliveryFailed` is raised;
  the host records the failure (``GET /api/v1/tenant/plugins/webhook/failures``) and the
  outbox hands this event to this plugin again later with exponential back-off (other
  plugins are not called again), up to ``NESTPOINT_PLUGINS_MAX_DELIVERY_ATTEMPTS``, after
  which the failure is recorded as final. Each attempt is signed afresh, with the same
  ``Nestpoint-Event-Id``.
- **Other answers (3xx, 4xx)**: the receiver understood and refused; the same request would
  be refused again, so it is not retried: it is logged and raised as the event
  ``webhook.refused`` (payload ``event_id``, ``event_type``, ``status``) through the outbox,
  listed by ``GET /api/v1/events`` (this plugin never relays its own ``webhook.*`` events).
  Redirects are not followed. A receiver that wants an event again answers 503.
- **Not configured** (no ``url``, or no secret ``signing_secret``) and **destination
  refused** (an address the operator does not allow, see ``destinations``): raised as
  :class:`NotConfigured` / :class:`DestinationRefused`, so the failure is recorded and the
  event retried: once HQ fixes the set-up, the waiting events go out.

No exception's text carries the URL (it may hold a token) or the secret.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import time
from fnmatch import fnmatchcase

import httpx
from pydantic import ValidationError

from nestpoint.plugins.api import Event, PluginContext, emit_event, plugin_secret
from nestpoint_webhook.config import WebhookConfig
from nestpoint_webhook.destinations import (
    IPAddress,
    WebhookSettings,
    current_settings,
    in_allowed_networks,
    literal_address,
    refusal,
)
from nestpoint_webhook.verify import signature_header

log = logging.getLogger("nestpoint_webhook")

SIGNING_SECRET = "signing_secret"  # noqa: S105 - the secret's name, not its value
OWN_EVENTS = "webhook."  # events this plugin raises: never relayed by it
USER_AGENT = "Nestpoint-Webhook/1"
RETRIED_STATUSES = frozenset({408, 429})


class WebhookError(Exception):
    """A delivery that did not happen; raising it makes the outbox retry the event."""


class NotConfigured(WebhookError):
    """The chain has not set the URL or the signing secret."""


class DestinationRefused(WebhookError):
    """The URL leads to an address the operator does not allow."""


class DeliveryFailed(WebhookError):
    """The receiver could not be reached, timed out or answered 408, 429 or 5xx."""


def wanted(event_type: str, patterns: list[str]) -> bool:
    """Whether the configuration's event patterns take ``event_type`` (none: every type);
    the plugin's own ``webhook.*`` events never."""
    if event_type.startswith(OWN_EVENTS):
        return False
    return not patterns or any(fnmatchcase(event_type, p) for p in patterns)


def body_of(event: Event) -> bytes:
    """The request body: the event as JSON (UTF-8, compact), exactly the signed bytes."""
    return json.dumps(
        event.to_dict(), ensure_ascii=False, separators=(",", ":"), default=str
    ).encode("utf-8")


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (IPv4 and IPv6), in the resolver's order."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


async def checked_addresses(url: httpx.URL, settings: WebhookSettings) -> list[IPAddress]:
    """The URL host's addresses, every one of them allowed (else :class:`DestinationRefused`:
    one bad answer among good ones is how DNS rebinding starts)."""
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        addresses = await resolve(url.host, port)
    except OSError as exc:  # socket.gaierror: the name does not resolve (now)
        raise DeliveryFailed(
            f"could not resolve the receiver's host: {type(exc).__name__}"
        ) from None
    if not addresses:
        raise DeliveryFailed("the receiver's host resolves to no address")
    for address in addresses:
        reason = refusal(address, settings)
        if reason is not None:
            raise DestinationRefused(f"destination refused: {reason}")
        if url.scheme == "http" and not in_allowed_networks(address, settings):
            raise DestinationRefused(
                "destination refused: plain http only to the operator's allowed networks"
            )
    return addresses


async def post(
    url: httpx.URL, headers: dict[str, str], body: bytes, addresses: list[IPAddress], seconds: float
) -> int:
    """POST to the first of ``addresses`` that accepts a connection and return the status
    (the answer's body is never read: a receiver cannot make a worker hold gigabytes). The
    URL's host is kept as ``Host`` and for TLS (SNI and the certificate's name), so only
    the connection is pinned to the checked address. No proxy from the environment, no
    redirects."""
    headers = {**headers, "Host": url.netloc.decode("ascii")}
    extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
    last: Exception | None = None
    async with httpx.AsyncClient(
        trust_env=False, follow_redirects=False, timeout=seconds
    ) as client:
        for address in addresses:
            target = url.copy_with(host=str(address))
            try:
                async with client.stream(
                    "POST", target, content=body, headers=headers, extensions=extensions
                ) as response:
                    return response.status_code
            except httpx.ConnectError as exc:  # try the host's next address
                last = exc
    raise DeliveryFailed(f"could not connect to the receiver: {type(last).__name__}")


async def deliver(event: Event, plugin: PluginContext) -> int | None:
    """Send ``event`` to the configured receiver if the configuration wants it; returns the
    receiver's status (``None`` when the event is filtered out). Raises a
    :class:`WebhookError` for what the outbox should retry."""
    try:
        config = WebhookConfig.model_validate(plugin.config, context={"sending": True})
    except ValidationError:  # never quoted: the error would carry the URL
        raise NotConfigured("webhook configuration not valid: save it again") from None
    if not wanted(event.type, list(config.events)):
        return None
    if not config.url:
        raise NotConfigured("webhook not configured: set its url")
    secret = await plugin_secret(plugin, SIGNING_SECRET)
    if not secret:
        raise NotConfigured(
            "webhook not configured: set the secret signing_secret "
            "(PUT /api/v1/tenant/plugins/webhook/secrets/signing_secret)"
        )
    url = httpx.URL(config.url)
    body = body_of(event)
    try:
        async with asyncio.timeout(config.timeout_seconds):
            addresses = await checked_addresses(url, current_settings())
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "Nestpoint-Event-Id": event.id,
                "Nestpoint-Event-Type": event.type,
                "Nestpoint-Timestamp": str(timestamp),
                "Nestpoint-Signature": signature_header(secret, timestamp, body),
            }
            status = await post(url, headers, body, addresses, config.timeout_seconds)
    except (TimeoutError, httpx.TimeoutException):
        raise DeliveryFailed(
            f"the receiver did not answer within {config.timeout_seconds:g} s"
        ) from None
    except httpx.HTTPError as exc:  # a dropped connection, a protocol error, TLS
        raise DeliveryFailed(f"the request failed: {type(exc).__name__}") from None
    context = {"plugin": plugin.plugin_id, "event_id": event.id, "event_type": event.type}
    if 200 <= status < 300:
        log.info("webhook delivered", extra={**context, "status": status})
        return status
    if status >= 500 or status in RETRIED_STATUSES:
        raise DeliveryFailed(f"the receiver answered {status}")
    log.warning("webhook refused by the receiver", extra={**context, "status": status})
    async with plugin.session() as db:
        emit_event(
            db,
            plugin,
            "refused",
            "event",
            event.id,
            {"event_id": event.id, "event_type": event.type, "status": status},
        )
    return status
