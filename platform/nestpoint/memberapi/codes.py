"""The member card's rotating code: what the member's QR code holds and the till scans.

A code is ``NPM1`` and 48 characters of base32 (upper-case letters and digits, so a QR code
holds it in its compact alphanumeric mode) over 30 bytes: the member's id (16), the second
it was made (4, Unix time) and an HMAC-SHA256 of the three, cut to 10 bytes (80 bits). The
HMAC key is derived for each chain from the personal-data hash key (``pii.derived_key``),
which every process of a database shares: a code works on every instance, only in its own
chain, and cannot be made without the server's key. Nothing is stored.

It is accepted for ``NESTPOINT_MEMBER_CODE_SECONDS`` (60 s) after it was made: a screenshot
stops working within a minute. Within that minute a code can be scanned more than once
(like a TOTP code): it identifies the member, it pays nothing by itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from nestpoint.errors import Invalid
from nestpoint.members import pii
from nestpoint.settings import get_settings

CODE_PREFIX = "NPM1"
CODE_PATTERN = r"^NPM1[A-Z2-7]{48}$"
_CODE_RE = re.compile(CODE_PATTERN)
_MAC_BYTES = 10
# A code made this far in the future (another instance's clock) is still accepted.
_SKEW = timedelta(seconds=30)


class CodeInvalid(Invalid):
    """Not a code this chain's server made (mistyped, forged, another chain's)."""

    slug = "member-code-invalid"


class CodeExpired(Invalid):
    """A real code, made longer ago than the codes' lifetime: the member refreshes it."""

    slug = "member-code-expired"


@dataclass(frozen=True, slots=True)
class MemberCode:
    code: str
    issued_at: datetime
    expires_at: datetime


def _key(tenant_id: uuid.UUID) -> bytes:
    return hmac.new(pii.derived_key(b"nestpoint member codes"), tenant_id.bytes, "sha256").digest()


def _mac(tenant_id: uuid.UUID, body: bytes) -> bytes:
    return hmac.new(_key(tenant_id), body, hashlib.sha256).digest()[:_MAC_BYTES]


def lifetime() -> timedelta:
    return timedelta(seconds=get_settings().member_code_seconds)


def make_code(tenant_id: uuid.UUID, member_id: uuid.UUID, now: datetime) -> MemberCode:
    issued = int(now.timestamp())
    body = member_id.bytes + struct.pack(">I", issued)
    raw = body + _mac(tenant_id, body)
    issued_at = datetime.fromtimestamp(issued, UTC)
    return MemberCode(
        CODE_PREFIX + base64.b32encode(raw).decode(), issued_at, issued_at + lifetime()
    )


def read_code(tenant_id: uuid.UUID, code: str, now: datetime, field: str = "code") -> uuid.UUID:
    """The member a code names, if this chain's server made it less than the lifetime ago.
    :class:`CodeInvalid` or :class:`CodeExpired` (422, naming ``field``) otherwise."""
    if not _CODE_RE.match(code):
        raise CodeInvalid.field(field, "not a member code")
    try:
        raw = base64.b32decode(code[len(CODE_PREFIX) :])
    except (binascii.Error, ValueError):
        raise CodeInvalid.field(field, "not a member code") from None
    body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(tenant_id, body)):
        raise CodeInvalid.field(field, "not a member code of this chain")
    (issued,) = struct.unpack(">I", body[16:])
    issued_at = datetime.fromtimestamp(issued, UTC)
    if issued_at > now + _SKEW:
        raise CodeInvalid.field(field, "not a member code of this chain")
    if now - issued_at > lifetime():
        raise CodeExpired.field(
            field, "the code has expired: ask the member to show the card again"
        )
    return uuid.UUID(bytes=body[:16])
