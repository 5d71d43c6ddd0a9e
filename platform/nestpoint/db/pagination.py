"""Cursor (keyset) pagination: stable under inserts, cheap on large tables.

A cursor is an opaque, URL-safe token holding the sort key of the last row returned; the
next page starts strictly after it. Listings sort by a unique key (or a key plus ``id``).

Cursors are signed: ``<base64url JSON>.<base64url HMAC>``, the HMAC (keyed by
``NESTPOINT_CURSOR_KEY``) covering the sort key together with the listing it came from (its
SQL without the values, its key columns and the tenant). A cursor from another listing,
another tenant or a client's own making is a 400 naming ``query.cursor``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from nestpoint.context import current_tenant
from nestpoint.settings import get_settings

T = TypeVar("T")

MAX_PAGE_SIZE = 200
_SIGNATURE_BYTES = 16
# The key that signs cursors: NESTPOINT_CURSOR_KEY, else one the app derives at start-up
# from the personal-data hash key every process already shares (``use_signing_key``). The
# fallback below serves only code that never started the app (a script, a unit test).
_DEVELOPMENT_KEY = b"nestpoint development cursor key"
_signing_key: bytes | None = None


def use_signing_key(key: bytes) -> None:
    """Sign cursors with ``key`` in this process (the app calls it at start-up)."""
    global _signing_key
    _signing_key = key


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


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode((text + "=" * (-len(text) % 4)).encode("ascii"))


def _signature(listing: str, payload: str) -> bytes:
    configured = get_settings().cursor_key
    key = configured.encode() if configured else _signing_key or _DEVELOPMENT_KEY
    message = f"{listing}\n{payload}".encode()
    return hmac.new(key, message, hashlib.sha256).digest()[:_SIGNATURE_BYTES]


def listing_id(
    session: AsyncSession, stmt: Select[Any], key: tuple[InstrumentedAttribute[Any], ...]
) -> str:
    """What a cursor is bound to: the tenant, the query's SQL (not its values) and its key."""
    tenant = current_tenant()
    columns = ",".join(f"{c.class_.__name__}.{c.key}" for c in key)
    # The database's own dialect: it compiles whatever the listing's query uses.
    compiled = stmt.compile(dialect=session.get_bind().dialect)
    sql = hashlib.sha256(str(compiled).encode()).hexdigest()
    return f"{tenant.tenant_id if tenant else '-'}|{columns}|{sql}"


def encode_cursor(values: list[Any], listing: str) -> str:
    payload = _b64(json.dumps([_dump(v) for v in values], separators=(",", ":")).encode())
    return f"{payload}.{_b64(_signature(listing, payload))}"


def decode_cursor(
    token: str, columns: tuple[InstrumentedAttribute[Any], ...], listing: str
) -> list[Any]:
    payload, _, signature = token.partition(".")
    try:
        signed = hmac.compare_digest(_unb64(signature), _signature(listing, payload))
    except (ValueError, TypeError) as exc:  # not base64, not ASCII
        raise InvalidCursor("cursor is malformed") from exc
    if not signed:
        raise InvalidCursor("cursor was not issued by this listing")
    try:
        values = json.loads(_unb64(payload))
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
    descending: bool = False,
) -> Page[Any]:
    """Run ``stmt`` ordered by ``key`` (newest first with ``descending``: every key column
    descending), one page after ``cursor``."""
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    listing = listing_id(session, stmt, key) + ("|desc" if descending else "")
    if cursor:
        values = decode_cursor(cursor, key, listing)
        if len(key) == 1:
            stmt = stmt.where(key[0] < values[0] if descending else key[0] > values[0])
        else:
            # Typed binds, so each value is stored-format (UTC, UUID) like its column.
            after = tuple_(*values, types=[c.type for c in key])
            stmt = stmt.where(tuple_(*key) < after if descending else tuple_(*key) > after)
    order = [c.desc() for c in key] if descending else list(key)
    rows = list((await session.scalars(stmt.order_by(*order).limit(limit + 1))).all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor([getattr(last, c.key) for c in key], listing)
    return Page(rows, next_cursor)
