"""Free-text constraints shared by every context's schemas.

PostgreSQL text cannot hold NUL, so free text refuses it (a 400 naming the field instead of
a 500 at insert). Required text must hold a character that is not a space: it is trimmed,
then must not be empty, and the pattern says so in the OpenAPI schema too. Use them as
``Annotated[str, required(100)]`` or ``Annotated[str, optional(500)]``.
"""

from __future__ import annotations

from typing import Any, get_args

from pydantic import StringConstraints

NO_NUL = r"^[^\x00]*$"
# What trimming removes (Unicode White_Space), spelled out: ``\s`` differs between the
# validators (Python, Rust: U+0085 is a space) and JSON Schema's ECMA regex (it is not), so
# a client checking the OpenAPI pattern would send a "non-blank" name that trims to nothing.
WHITESPACE = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK = rf"^[^\x00]*[^\x00{WHITESPACE}][^\x00]*$"


def optional(max_length: int) -> StringConstraints:
    """May be empty; no NUL; trimmed."""
    return StringConstraints(strip_whitespace=True, max_length=max_length, pattern=NO_NUL)


def required(max_length: int) -> StringConstraints:
    """At least one character that is not a space; no NUL; trimmed."""
    return StringConstraints(
        strip_whitespace=True, min_length=1, max_length=max_length, pattern=NOT_BLANK
    )


def literal_pattern(choices: Any) -> str:
    """A regular expression matching exactly the values of a ``Literal[...]`` type, for a path
    or query parameter that takes a schema's choices (derived, so the two never drift)."""
    return f"^({'|'.join(_escaped(str(v)) for v in get_args(choices))})$"


def _escaped(value: str) -> str:
    # not re.escape: it escapes "-", which JSON Schema's (ECMA) patterns refuse in unicode mode
    return "".join("\\" + c if c in _REGEX_SPECIALS else c for c in value)


_REGEX_SPECIALS = frozenset(".^$*+?()[]{}|\\/")
