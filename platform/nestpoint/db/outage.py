"""Telling "the database does not answer" from a defect.

A restart or failover of PostgreSQL reaches the application in many shapes: a refused
connection (``OSError``), SQLAlchemy's invalidated connection, or, from the statements that
talk to asyncpg directly (``nestpoint.db.raw``, the transaction hooks of
``nestpoint.db.session``), asyncpg's own errors: the server shutting down or starting up
(SQLSTATE 57P01-57P03), a connection exception (class 08), a closed connection, a protocol
left mid-operation by a dropped connection. Each is an outage: the API answers 503 with
``Retry-After`` (a till retries with the same key), never 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import asyncpg
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout

OUTAGE_SQLSTATES = ("57P01", "57P02", "57P03")  # admin or crash shutdown, cannot connect now


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) says the database does not answer."""
    return any(_outage(error) for error in _chain(exc))


def _outage(error: BaseException) -> bool:
    if isinstance(error, PoolTimeout | OSError | DisconnectionError):
        return True
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, asyncpg.InternalClientError):  # a protocol cut mid-operation
        return True
    if isinstance(error, asyncpg.InterfaceError):
        return "connection is closed" in str(error)
    sqlstate: Any = getattr(error, "sqlstate", None)
    return isinstance(sqlstate, str) and (sqlstate.startswith("08") or sqlstate in OUTAGE_SQLSTATES)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The error, what SQLAlchemy wrapped (``orig``) and the causes, each once."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        pending += [getattr(error, "orig", None), error.__cause__, error.__context__]
