"""The gateway's signatures (documented in ``docs/plugins/sms.md``, "Signatures").

A send request (Aliyun RPC style): every parameter, the authentication ones included, goes
in the form body; the string to sign is::

    METHOD "\\n" PATH "\\n" k1=v1&k2=v2&...

with the parameters (query and body, all but ``Signature``) sorted by name, each name and
value UTF-8 and percent-encoded per RFC 3986 (only ``A-Z a-z 0-9 - _ . ~`` left as they
are; a space is ``%20``). ``Signature`` is ``base64(HMAC-SHA256(access_key_secret,
string_to_sign))``. ``Timestamp`` (UTC, ``2026-05-20T10:00:00Z``) and ``SignatureNonce``
(used once) are among the signed parameters.

A delivery-receipt callback (the gateway to Nestpoint) is signed over its raw body::

    X-Sms-Timestamp "\\n" X-Sms-Nonce "\\n" hex(SHA-256(body))

with the callback secret (or the access key secret), base64, in ``X-Sms-Signature``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import quote

SIGNATURE_METHOD = "HMAC-SHA256"
SIGNATURE_VERSION = "1.0"


def percent_encode(value: str) -> str:
    """RFC 3986 percent-encoding of UTF-8 text (unreserved characters kept)."""
    return quote(value, safe="-_.~")


def string_to_sign(method: str, path: str, params: Mapping[str, str]) -> str:
    """What a send request's signature covers (see the module's docstring)."""
    canonical = "&".join(
        f"{percent_encode(name)}={percent_encode(value)}"
        for name, value in sorted(params.items())
        if name != "Signature"
    )
    return f"{method.upper()}\n{path or '/'}\n{canonical}"


def callback_string_to_sign(timestamp: str, nonce: str, body: bytes) -> str:
    """What a receipt callback's signature covers."""
    return f"{timestamp}\n{nonce}\n{hashlib.sha256(body).hexdigest()}"


def sign(secret: str, text: str) -> str:
    """``base64(HMAC-SHA256(secret, text))``, both UTF-8."""
    digest = hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def same(expected: str, given: str) -> bool:
    """Compare signatures in constant time."""
    return hmac.compare_digest(expected.encode(), given.encode())
