"""The shape of an e-mail address, checked before anything is sent.

Deliberately plain: an ASCII dot-atom local part (no quoted strings, no SMTPUTF8) and a
host name of at least two labels, an internationalised one (例子.中国) encoded with IDNA.
Anything else, and anything with a space, a line break or angle brackets (header
injection), is not an address this connector sends to.
"""

from __future__ import annotations

import re

_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def normalise_address(address: str) -> str | None:
    """The address with its domain in ASCII (IDNA), or ``None`` when it is not one."""
    if len(address) > 254 or address.count("@") != 1:
        return None
    local, domain = address.split("@")
    if not (0 < len(local) <= 64) or not _LOCAL.match(local):
        return None
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or len(ascii_domain) > 253 or labels[-1].isdigit():
        return None
    if not all(_LABEL.match(label) for label in labels):
        return None
    return f"{local}@{ascii_domain}"
