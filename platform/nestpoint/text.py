"""Free-text constraints shared by every context's schemas.

PostgreSQL text cannot hold NUL, so free text refuses it (a 400 naming the field instead of
a 500 at insert). Required text must hold a character that is not a space: it is trimmed,
then must not be empty, and the pattern says so in the OpenAPI schema too. Use them as
``Annotated[str, required(100)]`` or ``Annotated[str, optional(500)]``.
"""

from __future__ import annotations

from pydantic import StringConstraints

NO_NUL = r"^[^\x00]*$"
NOT_BLANK = r"^[^\x00]*[^\s\x00][^\x00]*$"


def optional(max_length: int) -> StringConstraints:
    """May be empty; no NUL; trimmed."""
    return StringConstraints(strip_whitespace=True, max_length=max_length, pattern=NO_NUL)


def required(max_length: int) -> StringConstraints:
    """At least one character that is not a space; no NUL; trimmed."""
    return StringConstraints(
        strip_whitespace=True, min_length=1, max_length=max_length, pattern=NOT_BLANK
    )
