"""Engines, sessions and the two layers of tenant isolation.

1. In the application: every ORM statement that touches a ``TenantScoped`` model gets a
   ``tenant_id = <context tenant>`` criterion (``with_loader_criteria``); with no tenant in
   context such a statement raises :class:`TenantContextMissing` (fail closed). New rows
   take the context's tenant, and a row for another tenant is refused at flush.
2. In PostgreSQL: every transaction starts with
   ``BEGIN; SELECT set_config('nestpoint.tenant_id', <tenant or ''>, true)`` (one round
   trip; see ``_pg_begin``). The setting is local to the
   transaction, so a pooled connection never carries one tenant into the next request, and
   the RLS policies (see the migrations) compare each row's ``tenant_id`` with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import msgspec
import sqlalchemy.ext.asyncio
from sqlalchemy import Join, Table, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria
from sqlalchemy.pool import StaticPool
from sqlalchemy.util import await_only

from nestpoint.context import TenantContext, TenantContextMissing, current_tenant
from nestpoint.db.base import Base, TenantScoped, tenant_owned_tables
from nestpoint.db.raw import Reader, begin_sql, observe, read_transaction, statement_reader
from nestpoint.settings import Settings, get_settings

log = logging.getLogger("nestpoint.db")

SET_TENANT_SQL = text(
    "SELECT set_config('nestpoint.tenant_id', :tenant_id, true),"
    " set_config('nestpoint.store_id', :store_id, true)"
)


class TenantSession(Session):
    """The sync session behind every ``AsyncSession``; its events do the scoping."""


# On PostgreSQL the application opens and ends its transactions itself, so that BEGIN and
# the tenant binding go out as one simple query: one round trip, not two, on every request.
# asyncpg runs in autocommit mode (the driver sends no BEGIN of its own) and SQLAlchemy's
# transaction events of each connection send ``BEGIN ...; SELECT set_config(...)`` (the
# tenant in context when the transaction begins), COMMIT and ROLLBACK. The pool's reset
# rolls back a connection handed back inside a transaction. Sessions, ``engine.connect()``
# and ``engine.begin()`` all go through these events, so every transaction is bound.


def _driver(connection: Connection) -> Any:
    return connection.connection.driver_connection


def _pg_begin(connection: Connection) -> None:
    sql = begin_sql(current_tenant())
    observe(sql, None)
    await_only(_driver(connection).execute(sql))


def _pg_commit(connection: Connection) -> None:
    observe("COMMIT", None)
    status = await_only(_driver(connection).execute("COMMIT"))
    if status == "ROLLBACK":  # PostgreSQL ends an aborted transaction this way, silently
        raise RuntimeError("the transaction was aborted; COMMIT rolled it back")


def _pg_rollback(connection: Connection) -> None:
    _rollback_if_open(_driver(connection))


def _pg_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """A connection the server dropped (a restart, a failover) is never handed out again:
    the pool discards it and opens a new one. Only SQLAlchemy's own statements would
    notice otherwise; the hooks above and ``nestpoint.db.raw`` talk to asyncpg directly,
    so a dead connection went back to the pool and failed every request after a restart."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the connection was closed by the server")


def _pg_reset(dbapi_connection: Any, record: Any, reset_state: Any) -> None:
    _rollback_if_open(dbapi_connection.driver_connection)


def _rollback_if_open(driver: Any) -> None:
    if driver is not None and not driver.is_closed() and driver.is_in_transaction():
        observe("ROLLBACK", None)
        await_only(driver.execute("ROLLBACK"))


# Work to run after each commit (enqueue the outbox relay, invalidate caches). By then the
# transaction is committed: a failure is logged, never raised, as raising would answer an
# error for a change that was made (and a till would ring it again).
_after_commit_work: list[Callable[[Session], None]] = []


def on_commit(work: Callable[[Session], None]) -> None:
    """Run ``work(session)`` after every commit of a tenant session, isolated from the
    others and from the caller (idempotent: registering twice runs it once)."""
    if work not in _after_commit_work:
        _after_commit_work.append(work)


@event.listens_for(TenantSession, "after_commit")
def _run_after_commit_work(session: Session) -> None:
    for work in _after_commit_work:
        try:
            work(session)
        except Exception:
            log.exception(
                "after-commit work failed; the transaction stays committed",
                extra={"work": work.__qualname__},
            )


@event.listens_for(TenantSession, "do_orm_execute")
def _scope_to_tenant(state: ORMExecuteState) -> None:
    if not (state.is_select or state.is_update or state.is_delete):
        return
    if state.execution_options.get("include_all_tenants"):
        return
    statement: Any = state.statement
    tenant_froms = _tenant_froms(statement)
    touches_tenant_rows = bool(tenant_froms) or any(
        issubclass(m.class_, TenantScoped) for m in state.all_mappers
    )
    if not touches_tenant_rows:
        return
    ctx = current_tenant()
    if ctx is None:
        raise TenantContextMissing("query on tenant-owned rows with no tenant in context")
    tenant_id = ctx.tenant_id
    # Entities anywhere in the statement (joins, subqueries, aliases) get the criterion
    # (ORM statements only: a Core statement has no entities for it to reach)...
    if state.is_orm_statement:
        statement = statement.options(
            with_loader_criteria(
                TenantScoped,
                lambda cls: cls.tenant_id == tenant_id,
                include_aliases=True,
            )
        )
    # ...and so does every tenant table in the FROM list explicitly, which also covers
    # statements the ORM does not treat as entity queries (``select(func.count())
    # .select_from(Model)``, Core ``select(table.c.x)``, ``update(table)``).
    if tenant_froms:
        statement = statement.where(*[f.c.tenant_id == tenant_id for f in tenant_froms])
    state.statement = statement


_tenant_table_cache: tuple[int, frozenset[str]] = (-1, frozenset())


def _tenant_tables() -> frozenset[str]:
    """Names of the tenant-owned tables (recomputed only when tables are added, e.g. by a
    plugin's models at start-up)."""
    global _tenant_table_cache

    count = len(Base.metadata.tables)
    if _tenant_table_cache[0] != count:
        _tenant_table_cache = (count, frozenset(tenant_owned_tables()))
    return _tenant_table_cache[1]


def _tenant_froms(statement: Any) -> list[Any]:
    """The tenant-owned tables (or aliases of them) a statement reads or writes directly.

    Looks at what the statement names (its columns' tables, ``select_from`` and ``join``
    targets; an UPDATE's or DELETE's table) rather than ``get_final_froms()``, which costs
    about a millisecond per statement and would sit on every query of the hot path.
    """
    tables = _tenant_tables()
    if getattr(statement, "is_select", False) and hasattr(statement, "columns_clause_froms"):
        candidates: list[Any] = [
            *statement.columns_clause_froms,
            *statement._from_obj,
            *(join[0] for join in statement._setup_joins),
        ]
        if not candidates:  # ``select(func.count()).where(Model.x == ...)``: FROM from WHERE
            candidates = list(statement.get_final_froms())
    elif getattr(statement, "table", None) is not None:  # UPDATE / DELETE
        candidates = [statement.table]
    else:
        return []
    found: list[Any] = []
    seen: set[int] = set()
    while candidates:
        item = candidates.pop()
        if isinstance(item, Join):
            candidates += [item.left, item.right]
            continue
        base = getattr(item, "element", item)  # an Alias wraps its table
        if (
            isinstance(base, Table)
            and base.name in tables
            and id(item) not in seen
            and "tenant_id" in item.c
        ):
            seen.add(id(item))
            found.append(item)
    return found


@event.listens_for(TenantSession, "before_flush")
def _stamp_tenant_on_new_rows(session: Session, flush_context: Any, instances: Any) -> None:
    ctx = current_tenant()
    for obj in list(session.new) + list(session.dirty):
        if not isinstance(obj, TenantScoped):
            continue
        if ctx is None:
            raise TenantContextMissing("write of tenant-owned rows with no tenant in context")
        if obj.tenant_id is None:
            obj.tenant_id = ctx.tenant_id
        elif obj.tenant_id != ctx.tenant_id:
            raise TenantContextMissing("write of another tenant's row refused")


class Database:
    """One engine per event loop (asyncpg connections belong to the loop that made them).

    The API server and an in-process Dramatiq worker run different loops in one process, so
    each gets its own pool from the same settings.
    """

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = url
        self.pool_size = pool_size
        self.echo = echo
        self._engines: dict[int, tuple[AsyncEngine, async_sessionmaker[AsyncSession]]] = {}

    @property
    def is_postgres(self) -> bool:
        return self.url.startswith("postgresql")

    def _create_engine(self) -> AsyncEngine:
        # JSON columns (order answers, event payloads) are written with msgspec, several
        # times faster than the standard library for the same JSON values.
        kwargs: dict[str, Any] = {"echo": self.echo, "json_serializer": _json_text}
        if self.is_postgres:
            kwargs |= {
                "pool_size": self.pool_size,
                "max_overflow": self.pool_size // 2,
                # Batched writes vary with the number of order lines: keep their prepared
                # statements (asyncpg's default cache of 100 would churn).
                "connect_args": {"prepared_statement_cache_size": 500},
            }
        elif ":memory:" in self.url:
            kwargs |= {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
        else:
            kwargs |= {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}}
        if self.is_postgres:
            kwargs["isolation_level"] = "AUTOCOMMIT"  # the events below open transactions
        # Looked up at each call: tracing (``nestpoint.observability.tracing``) wraps it.
        engine = sqlalchemy.ext.asyncio.create_async_engine(self.url, **kwargs)
        if engine.dialect.name == "postgresql":
            event.listen(engine.sync_engine, "begin", _pg_begin)
            event.listen(engine.sync_engine, "commit", _pg_commit)
            event.listen(engine.sync_engine, "rollback", _pg_rollback)
            event.listen(engine.sync_engine.pool, "reset", _pg_reset)
            event.listen(engine.sync_engine.pool, "checkout", _pg_checkout)
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            if ":memory:" not in self.url:
                event.listen(engine.sync_engine, "connect", _sqlite_driver_leaves_begin_to_us)
                event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)
        return engine

    def _entry(self) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession]]:
        loop_id = id(asyncio.get_running_loop())
        entry = self._engines.get(loop_id)
        if entry is None:
            engine = self._create_engine()
            maker = async_sessionmaker(
                engine, expire_on_commit=False, sync_session_class=TenantSession
            )
            entry = self._engines[loop_id] = (engine, maker)
        return entry

    @property
    def engine(self) -> AsyncEngine:
        return self._entry()[0]

    def session(self) -> AsyncSession:
        return self._entry()[1]()

    def read_transaction(self, tenant: TenantContext) -> AbstractAsyncContextManager[Reader]:
        """A read-only transaction bound to ``tenant`` for raw statements (no session)."""
        return read_transaction(self.engine.connect, tenant)

    def statement_reader(self) -> AbstractAsyncContextManager[Reader]:
        """Raw statements outside a transaction, each binding its tenant itself."""
        return statement_reader(self.engine.connect)

    def pool_usage(self) -> list[tuple[int, int, int]]:
        """(size, checked out, overflow) of each event loop's pool, for the metrics."""
        usage = []
        for engine, _ in list(self._engines.values()):
            pool: Any = engine.sync_engine.pool
            if hasattr(pool, "checkedout"):  # a queue pool (not SQLite's in-memory static one)
                usage.append((pool.size(), pool.checkedout(), max(0, pool.overflow())))
        return usage

    async def dispose(self) -> None:
        loop_id = id(asyncio.get_running_loop())
        entry = self._engines.pop(loop_id, None)
        if entry is not None:
            await entry[0].dispose()


def _json_text(value: Any) -> str:
    return msgspec.json.encode(value).decode()


# How long a SQLite transaction waits at BEGIN for the one holding the write lock to finish
# ("database is locked" after that).
SQLITE_BUSY_TIMEOUT_SECONDS = 30


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # Deleted rows are overwritten with zeros, not left in free pages: an erased member's
    # data must not stay readable in the file (docs/privacy.md).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
    cursor.close()


# SQLite has no row locks (``SELECT ... FOR UPDATE`` compiles to a plain SELECT), and the
# sqlite3 driver's legacy transaction handling runs SELECTs outside any transaction: two
# requests could both read a balance of 350 and both spend 300 of it. So every transaction
# on a file database starts with ``BEGIN IMMEDIATE``, which takes the database's write lock
# up front: writers run one at a time, across connections, event loops and processes, each
# seeing everything the one before it committed; the others wait at BEGIN (busy timeout).
# Reads are serialised too (a transaction cannot know up front that it will only read), which
# the embedded default can afford. This is SQLAlchemy's documented recipe for the
# sqlite3/aiosqlite drivers ("Enabling Non-Legacy SQLite Transactional Modes"), with
# IMMEDIATE in place of a deferred BEGIN (a deferred one would fail, not wait, when it
# upgrades to writing after another writer committed). An in-memory database has one shared
# connection (StaticPool) and keeps the driver's handling: it is for one-off scripts only.


def _sqlite_driver_leaves_begin_to_us(dbapi_connection: Any, connection_record: Any) -> None:
    dbapi_connection.isolation_level = None  # the driver emits no BEGIN of its own


def _sqlite_begin_immediate(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


_database: Database | None = None


def get_database(settings: Settings | None = None) -> Database:
    """The process-wide database for the current settings."""
    global _database
    settings = settings or get_settings()
    if _database is None or _database.url != settings.database_url:
        _database = Database(
            settings.database_url,
            pool_size=settings.database_pool_size,
            echo=settings.database_echo,
        )
    return _database


def current_database() -> Database | None:
    """The process-wide database if one was made (the metrics never make one)."""
    return _database


def reset_database() -> None:
    """Forget the process-wide database (tests switch settings between runs)."""
    global _database
    _database = None


@asynccontextmanager
async def scoped_session(database: Database | None = None) -> AsyncIterator[AsyncSession]:
    """A session that commits when the block succeeds and rolls back when it raises.

    Jobs and the CLI use this; HTTP requests get the same through a Litestar dependency.
    """
    async with (database or get_database()).session() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        # Outside the try: a commit that fails has nothing to roll back (closing the session
        # discards it), and one that succeeded must never be followed by a rollback.
        await session.commit()


async def rebind_tenant(session: AsyncSession) -> None:
    """Re-apply the context's tenant to the session's open transaction.

    Needed only when one transaction switches tenant, as a platform operation does when it
    creates a tenant and then writes that tenant's first rows.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    ctx = current_tenant()
    await session.execute(
        SET_TENANT_SQL,
        {
            "tenant_id": str(ctx.tenant_id) if ctx else "",
            "store_id": str(ctx.store_id) if ctx and ctx.store_id else "",
        },
    )
