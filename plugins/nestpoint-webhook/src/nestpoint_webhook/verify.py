"""Verify a Nestpoint webhook: copy this file into your receiver (standard library only).

Each request carries ``Nestpoint-Signature: t=<unix seconds>,v1=<hex>``, where ``<hex>`` is
the HMAC-SHA256, keyed with the chain's signing secret, of the timestamp, a dot and the
raw request body: ``f"{t}.".encode() + body``. Verify it on the raw bytes you received
(before any JSON parsing), refuse a timestamp older than your replay window, and
deduplicate on ``Nestpoint-Event-Id`` (a retry carries the same id and a fresh signature)::

    from verify import verify_signature

    def receive(request):                          # any framework
        body = request.body                         # the raw bytes
        if not verify_signature(SECRET, request.headers, body, tolerance=300):
            return 400                              # not from Nestpoint, or replayed
        event = json.loads(body)
        if already_seen(event["id"]):               # at-least-once delivery
            return 200
        handle(event)
        return 200

While the chain rotates its secret, pass both: ``verify_signature([new, old], ...)``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

SIGNATURE_HEADER = "Nestpoint-Signature"
TIMESTAMP_HEADER = "Nestpoint-Timestamp"
SCHEME = "v1"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``b"<timestamp>." + body`` keyed with ``secret`` (UTF-8)."""
    message = f"{timestamp}.".encode("ascii") + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Nestpoint-Signature`` value: ``t=<timestamp>,v1=<signature>``."""
    return f"t={timestamp},{SCHEME}={sign(secret, timestamp, body)}"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header whatever the case of its name (a plain dict or a framework's headers)."""
    for key in (name, name.lower()):
        value = headers.get(key)
        if value is not None:
            return value
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def verify_signature(
    secret: str | Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    tolerance: int = 300,
    now: float | None = None,
) -> bool:
    """Whether ``body`` with these ``headers`` was signed with ``secret`` (or one of
    several, while rotating) less than ``tolerance`` seconds from ``now`` (default: the
    clock), in either direction. ``False`` for a missing or malformed signature header,
    a ``Nestpoint-Timestamp`` that disagrees with it, a stale or future timestamp, or a
    signature that does not match (compared in constant time)."""
    value = _header(headers, SIGNATURE_HEADER)
    if not value:
        return False
    timestamp: str | None = None
    signatures: list[str] = []
    for item in value.split(","):
        key, _, part = item.strip().partition("=")
        if key == "t":
            timestamp = part
        elif key == SCHEME:
            signatures.append(part)
    if not (timestamp and timestamp.isascii() and timestamp.isdigit() and len(timestamp) < 16):
        return False
    if not signatures:
        return False
    sent = _header(headers, TIMESTAMP_HEADER)
    if sent is not None and sent.strip() != timestamp:
        return False
    signed_at = int(timestamp)
    current = time.time() if now is None else now
    if abs(current - signed_at) > tolerance:
        return False
    keys = [secret] if isinstance(secret, str) else list(secret)
    return any(
        hmac.compare_digest(sign(key, signed_at, body).encode(), candidate.encode())
        for key in keys
        for candidate in signatures
    )
