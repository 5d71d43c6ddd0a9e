"""What counts as "the database does not answer" (503), and what is a defect (500)."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from nestpoint.db.outage import database_unavailable


def _caused_by(cause: BaseException) -> RuntimeError:
    try:
        raise RuntimeError("wrapping") from cause
    except RuntimeError as exc:
        return exc


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError("refused"),
        PoolTimeout("pool exhausted"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.InterfaceError("cannot call Connection.execute(): connection is closed"),
        asyncpg.InternalClientError("cannot switch to state 15; another operation is in progress"),
        _caused_by(asyncpg.exceptions.AdminShutdownError("terminating")),
        DBAPIError("SELECT 1", {}, asyncpg.exceptions.CrashShutdownError("crash")),
    ],
    ids=lambda e: type(e).__name__,
)
def test_an_outage_in_any_shape(error: BaseException) -> None:
    assert database_unavailable(error) is True


@pytest.mark.parametrize(
    "error",
    [
        ValueError("a bug"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        IntegrityError("INSERT", {}, asyncpg.exceptions.UniqueViolationError("duplicate")),
        asyncpg.exceptions.UndefinedTableError("relation does not exist"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_defect_is_not_an_outage(error: BaseException) -> None:
    assert database_unavailable(error) is False
