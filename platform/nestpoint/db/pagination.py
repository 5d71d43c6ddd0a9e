"""Cursor (keyset) pagination: stable under inserts, cheap on large tables.

A cursor is an opaque, URL-safe token holding the sort key of the last row returned; the
next page starts strictly after it. Listings sort by a unique key (or a key plus ``id``).
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

T = TypeVar("T")

MAX_PAGE_SIZE = 200


class InvalidCursor(ValueError):
    """The ``cursor`` query parameter is not one this API issued."""


@dataclass(slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def _dump(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _python_type(column: InstrumentedAttribute[Any]) -> Any:
    """The column's Python type; a TypeDecorator (``UTCDateTime``) reports its impl's."""
    type_ = column.type
    return getattr(type_, "impl_instance", type_).python_type


def _load(value: Any, column: InstrumentedAttribute[Any]) -> Any:
    python_type = _python_type(column)
    if python_type in (datetime, uuid.UUID) and not isinstance(value, str):
        raise InvalidCursor("cursor does not match this listing")
    if python_type is datetime:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:  # this API only issues timezone-aware cursors
            raise InvalidCursor("cursor does not match this listing")
        return moment
    if python_type is uuid.UUID:
        return uuid.UUID(value)
    if not isinstance(value, python_type):
        raise InvalidCursor("cursor does not match this listing")
    return value


def encode_cursor(values: list[Any]) -> str:
    raw = json.dumps([_dump(v) for v in values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str, columns: tuple[InstrumentedAttribute[Any], ...]) -> list[Any]:
    try:
        padded = token + "=" * (-len(token) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(values, list) or len(values) != len(columns):
            raise InvalidCursor("cursor does not match this listing")
        return [_load(v, c) for v, c in zip(values, columns, strict=True)]
    except (ValueError, TypeError) as exc:
        raise InvalidCursor("cursor is malformed") from exc


async def paginate(
    session: AsyncSession,
    stmt: Select[Any],
    key: tuple[InstrumentedAttribute[Any], ...],
    *,
    cursor: str | None,
    limit: int,
) -> Page[Any]:
    """Run ``stmt`` ordered by ``key``, one page after ``cursor``."""
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    if cursor:
        values = decode_cursor(cursor, key)
        if len(key) == 1:
            stmt = stmt.where(key[0] > values[0])
        else:
            # Typed binds, so each value is stored-format (UTC, UUID) like its column.
            stmt = stmt.where(tuple_(*key) > tuple_(*values, types=[c.type for c in key]))
    rows = list((await session.scalars(stmt.order_by(*key).limit(limit + 1))).all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor([getattr(last, c.key) for c in key])
    return Page(rows, next_cursor)
