"""The e-mail a rendered :class:`OutboundMessage` becomes (no I/O here).

``multipart/alternative``: the plain-text part (``message.body``) first, the HTML part
(``message.html``, or the text escaped into a minimal page) last, as readers prefer the last
part they can show. The standard library's ``email`` package (policy ``SMTP``: CRLF line
ends) encodes what needs it: a Chinese subject or sender name as RFC 2047 encoded words,
UTF-8 bodies in base64 (so no server needs 8BITMIME).
"""

from __future__ import annotations

import hashlib
import html
import re
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from nestpoint.plugins.api import OutboundMessage

# What may stand in a Message-ID's left-hand side as it is (RFC 5322 dot-atom, a subset).
_ATOM = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")
# What may stand in a header's value as it is: printable ASCII, no line break.
_PRINTABLE = re.compile(r"^[\x21-\x7e]{1,200}$")


def _digest(message_id: str) -> str:
    return "sha256-" + hashlib.sha256(message_id.encode("utf-8")).hexdigest()[:40]


def header_id(message_id: str) -> str:
    """``X-Nestpoint-Message``: the core's ``message_id`` itself (``<uuid>:email``), or a
    digest of it when it is not printable ASCII."""
    return message_id if _PRINTABLE.match(message_id) else _digest(message_id)


def message_id_header(message_id: str, from_address: str) -> str:
    """The ``Message-ID`` of a message: derived from the core's ``message_id`` only, so a
    retry of the same message has the same Message-ID and a mailbox (or the member's mail
    client) can recognise the duplicate. ``:`` becomes ``.`` (not allowed there); anything
    else unusual, a digest. The right-hand side is the sender's domain. (A long one is
    folded onto a second line, as RFC 5322 allows: readers unfold it.)"""
    left = message_id.replace(":", ".")
    if not _ATOM.match(left) or ".." in left or left.startswith(".") or left.endswith("."):
        left = _digest(message_id)
    domain = from_address.rsplit("@", 1)[-1]
    return f"<{left}@{domain}>"


def html_page(message: OutboundMessage) -> str:
    """The text escaped into a minimal HTML page (for a template with no HTML part):
    paragraphs at blank lines, line breaks kept."""
    paragraphs = [p for p in re.split(r"\n\s*\n", message.body.replace("\r\n", "\n")) if p]
    body = "\n".join("<p>" + html.escape(p).replace("\n", "<br>\n") + "</p>" for p in paragraphs)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="{html.escape(message.locale or "zh-CN", quote=True)}">\n'
        '<head><meta charset="utf-8">'
        f"<title>{html.escape(message.subject)}</title></head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def build_email(
    message: OutboundMessage,
    *,
    to: str,
    from_address: str,
    from_name: str = "",
    now: datetime | None = None,
) -> EmailMessage:
    """The e-mail for ``message``, addressed to ``to`` (already checked and normalised)."""
    email = EmailMessage(policy=SMTP)
    email["Subject"] = re.sub(r"[\r\n]+\s*", " ", message.subject).strip()  # one line
    local, domain = from_address.rsplit("@", 1)
    email["From"] = Address(display_name=from_name, username=local, domain=domain)
    email["To"] = to
    email["Date"] = format_datetime(now or datetime.now(UTC))
    email["Message-ID"] = message_id_header(message.message_id, from_address)
    email["X-Nestpoint-Message"] = header_id(message.message_id)
    email.set_content(message.body, subtype="plain", charset="utf-8", cte=_cte(message.body))
    page = message.html or html_page(message)
    email.add_alternative(page, subtype="html", charset="utf-8", cte=_cte(page))
    for part in email.iter_parts():
        del part["MIME-Version"]  # the top-level header is the one that counts
    return email


def _cte(text: str) -> str | None:
    """base64 for anything non-ASCII (7-bit safe for every server, compact for Chinese);
    ASCII is left to the policy (7bit, or quoted-printable for long lines)."""
    return None if text.isascii() else "base64"
