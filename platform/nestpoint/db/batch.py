"""Several writes, one round trip: data-modifying CTEs on PostgreSQL.

The till's hot path writes to half a dozen tables after it has decided everything. On
PostgreSQL those INSERTs and UPDATEs go out as one statement (``WITH w0 AS (INSERT ...),
w1 AS (UPDATE ...) UPDATE ...``); elsewhere (SQLite) they run one after another, in the
order they were added. Use it only for writes that do not read each other's results: every
part of one PostgreSQL statement sees the same snapshot. Give every column a value
(Python-side ``default``/``onupdate`` callables do not run for the parts inside the CTE).

Rows are bound through named parameters (``<table>_<row>_<column>``), and a statement added
with ``params`` is one built once with named ``bindparam``s (its caller keeps it), so a batch
of the same shape (the same parts, tables and row counts) is built and compiled once and then
run as a raw statement (``nestpoint.db.raw``), skipping SQLAlchemy's per-execution keying of
a statement this size. A statement added without ``params`` (values inline) makes the batch
go through ``session.execute`` instead. Parameter names are shared by the whole batch: give
each reusable statement its own prefix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Table, bindparam, insert, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import UpdateBase

from nestpoint.db.raw import Statement

Part = tuple[UpdateBase | Table, Mapping[str, Any] | None, list[dict[str, Any]] | None]


class WriteBatch:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.postgres = session.get_bind().dialect.name == "postgresql"
        self._parts: list[Part] = []
        self._rows: dict[Table, list[dict[str, Any]]] = {}

    def insert(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """Rows for ``table``; rows for one table become one multi-row INSERT."""
        if not rows:
            return
        if table not in self._rows:
            self._rows[table] = []
            self._parts.append((table, None, None))
        self._rows[table].extend(rows)

    def add(
        self,
        statement: UpdateBase,
        params: Mapping[str, Any] | None = None,
        *,
        many: list[dict[str, Any]] | None = None,
    ) -> None:
        """A statement and the values of its ``bindparam``s (``many``: run once per parameter
        set; not on PostgreSQL, where callers give a single statement instead)."""
        if many is not None and self.postgres:
            raise ValueError("use a single statement (e.g. UPDATE ... FROM VALUES) on PostgreSQL")
        self._parts.append((statement, params, many))

    def _insert(self, table: Table, params: dict[str, Any]) -> UpdateBase:
        """``INSERT ... SELECT <row 0> UNION ALL SELECT <row 1> ...`` of bound parameters
        (a multi-row ``VALUES`` list would not be cacheable)."""
        rows = self._rows.pop(table)
        columns = tuple(rows[0])
        statement, names = _insert_statement(table, len(rows), columns)
        for row, row_names in zip(rows, names, strict=True):
            for column, name in zip(columns, row_names, strict=True):
                params[name] = row[column]
        return statement

    async def execute(self) -> None:
        parts, self._parts = self._parts, []
        if not parts:
            return
        if self.postgres:
            await self._execute_as_one(parts)
            return
        for part, params, many in parts:
            if isinstance(part, Table):
                values: dict[str, Any] = {}
                await self.session.execute(self._insert(part, values), values)
            elif many is not None:
                await self.session.execute(part, many)
            else:
                await self.session.execute(part, dict(params) if params else None)

    async def _execute_as_one(self, parts: list[Part]) -> None:
        """``WITH write_0 AS (...), write_1 AS (...) <last part>``: one round trip."""
        values: dict[str, Any] = {}
        statements: list[UpdateBase] = []
        cacheable = True
        for part, params, _ in parts:
            if isinstance(part, Table):
                statements.append(self._insert(part, values))
            else:
                statements.append(part)
                cacheable = cacheable and params is not None
                values.update(params or {})
        if not cacheable:  # a statement with values inline: SQLAlchemy keys it each time
            await self.session.execute(_as_one(statements), values or None)
            return
        await _batch_statement(statements).execute(self.session, **values)


def _as_one(statements: list[UpdateBase]) -> UpdateBase:
    *first, last = statements
    if first:
        last = last.add_cte(*(s.cte(f"write_{i}") for i, s in enumerate(first)))
    return last


def _batch_statement(statements: list[UpdateBase]) -> Statement:
    """The batch of these parts, built and compiled once. Keyed by the parts' identities;
    the entry keeps the parts, so a key can never name parts that were freed and whose
    ids were reused."""
    key = tuple(id(s) for s in statements)
    found = _BATCHES.get(key)
    if found is not None and all(a is b for a, b in zip(found[1], statements, strict=True)):
        return found[0]
    if len(_BATCHES) >= MAX_BATCH_SHAPES:
        _BATCHES.clear()
    batch = Statement(_as_one(statements))
    _BATCHES[key] = (batch, tuple(statements))
    return batch


# Batches by shape (the parts' identities, tables and row counts), built and compiled once.
# Shapes are few (an order's line count, whether it redeems or upgrades); the cap only
# guards against a caller that builds a new statement per call.
MAX_BATCH_SHAPES = 1_000
_BATCHES: dict[tuple[int, ...], tuple[Statement, tuple[UpdateBase, ...]]] = {}


# Built once per shape (table, row count, columns): building and keying a statement of this
# size costs more than running it, and only the bound values change from call to call. Each
# entry keeps its parameter names, row by row, column by column.
_INSERTS: dict[
    tuple[str, int, tuple[str, ...]], tuple[UpdateBase, tuple[tuple[str, ...], ...]]
] = {}


def _insert_statement(
    table: Table, count: int, columns: tuple[str, ...]
) -> tuple[UpdateBase, tuple[tuple[str, ...], ...]]:
    key = (table.name, count, columns)
    found = _INSERTS.get(key)
    if found is None:
        names = tuple(
            tuple(f"{table.name}_{i}_{column}" for column in columns) for i in range(count)
        )
        selects = [
            select(
                *(
                    bindparam(name, type_=table.c[column].type).label(column)
                    for column, name in zip(columns, row_names, strict=True)
                )
            )
            for row_names in names
        ]
        source = union_all(*selects) if count > 1 else selects[0]
        statement = insert(table).from_select(list(columns), source, include_defaults=False)
        found = _INSERTS[key] = (statement, names)
    return found
