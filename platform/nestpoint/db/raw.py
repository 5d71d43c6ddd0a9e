"""The till's statements, run on the driver's connection (asyncpg or aiosqlite).

SQLAlchemy's execution layer costs more Python per statement than the till's statements
cost PostgreSQL: every ``session.execute`` keys the statement (a walk of its whole tree),
looks the compiled form up, builds an execution context and wraps the result. For the hot
path (an order, a lookup by phone) that is most of a request's CPU. A :class:`Statement`
is a Core statement built once and compiled once per dialect, with its positional
parameter order and its types' bind and result processors worked out then; running it
binds the values and calls the driver (asyncpg prepares and caches the statement on each
connection). The SQL is still written with SQLAlchemy Core, so one statement serves
PostgreSQL and SQLite, and rows come back as tuples with named fields and the same Python
values a ``session.execute`` would give.

Two ways to run one:

- inside a session's transaction (``await stmt.rows(session, ...)``): the ORM session keeps
  the transaction, the tenant binding and the after-commit work; only the statement skips
  the execution layer.
- in a :func:`read_transaction`: for read-only requests that need no session at all (a
  lookup at the till). On PostgreSQL it opens the transaction and binds the tenant in one
  round trip (``BEGIN; SELECT set_config(...)`` as one simple query), so row-level
  security sees the request's tenant exactly as in a session.

A raw statement gets none of the session's automatic tenant criteria: each one names
``tenant_id`` itself (``tests/test_raw_statements.py`` checks that every statement on a
tenant-owned table does), and on PostgreSQL row-level security applies as always.
"""

from __future__ import annotations

import uuid
from collections import namedtuple
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from nestpoint.context import TenantContext

Processor = Callable[[Any], Any] | None

# Called with each raw statement's SQL and arguments as they are sent (None for a command
# without arguments): the benchmark's capture of what a request sends (``bench/capture.py``).
statement_observers: list[Callable[[str, Sequence[Any] | None], None]] = []


def observe(sql: str, args: Sequence[Any] | None) -> None:
    for observer in statement_observers:
        observer(sql, args)


_REQUIRED = object()  # a parameter the caller must give


@dataclass(frozen=True, slots=True)
class Compiled:
    """A statement's SQL for one dialect, and how to bind its values and read its rows."""

    sql: str
    # per parameter, in the order the SQL takes them: its name, the value bound inside the
    # statement (a literal; _REQUIRED if none) and its type's bind processor
    binders: tuple[tuple[str, Any, Processor], ...]
    read: tuple[Processor, ...]  # one result processor per column (None: as the driver gives)
    row: Any  # a namedtuple class of the result columns, or None for no rows

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        values = []
        for name, default, processor in self.binders:
            value = params.get(name, default)
            if value is _REQUIRED:
                raise KeyError(f"no value for the parameter {name!r}")
            values.append(value if processor is None else processor(value))
        return values

    def rows(self, raw: Sequence[Sequence[Any]]) -> list[Any]:
        read, make = self.read, self.row._make
        if not any(read):
            return [make(r) for r in raw]
        return [
            make(p(v) if p is not None else v for p, v in zip(read, r, strict=True)) for r in raw
        ]


def compile_for(statement: ClauseElement, dialect: Dialect) -> Compiled:
    compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
    defaults = {
        name: bind.effective_value
        for bind, name in compiled.bind_names.items()
        if not bind.required or bind.callable is not None
    }
    processors: Mapping[str, Any] = compiled._bind_processors  # as SQLAlchemy's execution
    binders = tuple(
        (name, defaults.get(name, _REQUIRED), processors.get(name))
        for name in compiled.positiontup or ()
    )
    columns = compiled._result_columns or []
    read = tuple(
        column.type._cached_result_processor(dialect, None) for column in columns
    )  # fmt: skip
    row = namedtuple("Row", [c.keyname for c in columns], rename=True) if columns else None
    return Compiled(compiled.string, binders, read, row)


class Statement:
    """A Core statement compiled once per dialect; run it with :meth:`rows` and friends."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[str, Compiled] = {}

    def compiled(self, dialect: Dialect) -> Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            found = self._compiled[dialect.name] = compile_for(self.statement, dialect)
        return found

    async def rows(self, runner: AsyncSession | Reader, **params: Any) -> list[Any]:
        reader = runner if isinstance(runner, Reader) else await Reader.of_session(runner)
        return await reader.run(self, params)

    async def one_or_none(self, runner: AsyncSession | Reader, **params: Any) -> Any:
        rows = await self.rows(runner, **params)
        return rows[0] if rows else None

    async def execute(self, runner: AsyncSession | Reader, **params: Any) -> None:
        reader = runner if isinstance(runner, Reader) else await Reader.of_session(runner)
        await reader.run(self, params, fetch=False)


_READER_KEY = "nestpoint.raw.reader"  # session.info: (the transaction, its Reader)


class Reader:
    """The driver connection of an open transaction, and its dialect."""

    def __init__(self, driver: Any, dialect: Dialect) -> None:
        self.driver = driver
        self.dialect = dialect
        self.postgres = dialect.name == "postgresql"

    @classmethod
    async def of_session(cls, session: AsyncSession) -> Reader:
        """The session's connection, its transaction begun (and the tenant bound). Kept for
        the rest of that transaction: the till's order runs three raw statements in one."""
        transaction = session.sync_session.get_transaction()
        kept = session.info.get(_READER_KEY)
        if kept is not None and transaction is not None and kept[0] is transaction:
            reader: Reader = kept[1]
            return reader
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        reader = cls(raw.driver_connection, connection.dialect)
        session.info[_READER_KEY] = (session.sync_session.get_transaction(), reader)
        return reader

    async def run(
        self, statement: Statement, params: Mapping[str, Any], fetch: bool = True
    ) -> list[Any]:
        compiled = statement.compiled(self.dialect)
        args = compiled.args(params)
        if statement_observers:
            observe(compiled.sql, args)
        if self.postgres:
            if compiled.row is None:
                await self.driver.execute(compiled.sql, *args)
                return []
            return compiled.rows(await self.driver.fetch(compiled.sql, *args))
        cursor = await self.driver.execute(compiled.sql, args)
        try:
            raw = await cursor.fetchall() if compiled.row is not None else []
        finally:
            await cursor.close()
        return compiled.rows(raw) if raw else []


def begin_sql(tenant: TenantContext | None, *, read_only: bool = False) -> str:
    """``BEGIN`` and the tenant binding as one simple query (one round trip). The values are
    UUIDs rendered by :class:`uuid.UUID` itself, so nothing else can reach the SQL; no tenant
    binds the empty string, which matches no row."""
    tenant_id = str(uuid.UUID(str(tenant.tenant_id))) if tenant else ""
    store_id = str(uuid.UUID(str(tenant.store_id))) if tenant and tenant.store_id else ""
    mode = " READ ONLY" if read_only else ""
    return (
        f"BEGIN ISOLATION LEVEL READ COMMITTED{mode}; "
        f"SELECT set_config('nestpoint.tenant_id', '{tenant_id}', true), "
        f"set_config('nestpoint.store_id', '{store_id}', true)"
    )


@asynccontextmanager
async def read_transaction(
    engine_connect: Callable[[], AsyncConnection], tenant: TenantContext
) -> AsyncIterator[Reader]:
    """A read-only transaction bound to ``tenant``, on a pooled connection, without a session.

    It ends with COMMIT (or ROLLBACK on an error) before the connection goes back to the
    pool, so the pool's own reset finds no transaction and sends nothing.
    """
    async with engine_connect() as connection:
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        reader = Reader(driver, connection.dialect)
        if reader.postgres:
            begin = begin_sql(tenant, read_only=True)
            observe(begin, None)
            await driver.execute(begin)
        else:
            await (await driver.execute("BEGIN")).close()
        try:
            yield reader
        except BaseException:
            await _end(reader, "ROLLBACK")
            raise
        await _end(reader, "COMMIT")


async def _end(reader: Reader, command: str) -> None:
    observe(command, None)
    if reader.postgres:
        await reader.driver.execute(command)
    else:
        await (await reader.driver.execute(command)).close()


@asynccontextmanager
async def statement_reader(engine_connect: Callable[[], AsyncConnection]) -> AsyncIterator[Reader]:
    """A pooled connection outside any transaction: each statement runs in its own (on
    PostgreSQL, the statement's implicit transaction). Only for a statement that binds its
    tenant itself (a function that sets it first, as ``nestpoint_lookup_member`` does)."""
    async with engine_connect() as connection:
        raw = await connection.get_raw_connection()
        yield Reader(raw.driver_connection, connection.dialect)
