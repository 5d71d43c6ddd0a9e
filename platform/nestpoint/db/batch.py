"""Several writes, one round trip: data-modifying CTEs on PostgreSQL.

The till's hot path writes to half a dozen tables after it has decided everything. On
PostgreSQL those INSERTs and UPDATEs go out as one statement (``WITH w0 AS (INSERT ...),
w1 AS (UPDATE ...) UPDATE ...``); elsewhere (SQLite) they run one after another, in the
order they were added. Use it only for writes that do not read each other's results: every
part of one PostgreSQL statement sees the same snapshot. Give every column a value
(Python-side ``default``/``onupdate`` callables do not run for the parts inside the CTE).

Rows are bound through named parameters (``<table>_<row>_<column>``), so a batch of the same
shape (the same tables and row counts) compiles once and is served from SQLAlchemy's
statement cache afterwards.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, bindparam, insert, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import UpdateBase


class WriteBatch:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.postgres = session.get_bind().dialect.name == "postgresql"
        self._parts: list[tuple[UpdateBase | Table, list[dict[str, Any]] | None]] = []
        self._rows: dict[Table, list[dict[str, Any]]] = {}

    def insert(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """Rows for ``table``; rows for one table become one multi-row INSERT."""
        if not rows:
            return
        if table not in self._rows:
            self._rows[table] = []
            self._parts.append((table, None))
        self._rows[table].extend(rows)

    def add(self, statement: UpdateBase, many: list[dict[str, Any]] | None = None) -> None:
        """A statement (``many``: run once per parameter set; not on PostgreSQL, where
        callers give a single statement instead)."""
        if many is not None and self.postgres:
            raise ValueError("use a single statement (e.g. UPDATE ... FROM VALUES) on PostgreSQL")
        self._parts.append((statement, many))

    def _insert(self, table: Table, params: dict[str, Any]) -> UpdateBase:
        """``INSERT ... SELECT <row 0> UNION ALL SELECT <row 1> ...`` of bound parameters
        (a multi-row ``VALUES`` list would not be cacheable)."""
        rows = self._rows.pop(table)
        columns = tuple(rows[0])
        for i, row in enumerate(rows):
            for column in columns:
                params[f"{table.name}_{i}_{column}"] = row[column]
        return _insert_statement(table, len(rows), columns)

    async def execute(self) -> None:
        parts, self._parts = self._parts, []
        if not parts:
            return
        if self.postgres:
            params: dict[str, Any] = {}
            statements = [self._insert(p, params) if isinstance(p, Table) else p for p, _ in parts]
            *first, last = statements
            if first:
                last = last.add_cte(*(s.cte(f"write_{i}") for i, s in enumerate(first)))
            await self.session.execute(last, params or None)
            return
        for part, many in parts:
            if isinstance(part, Table):
                params = {}
                await self.session.execute(self._insert(part, params), params)
            elif many is not None:
                await self.session.execute(part, many)
            else:
                await self.session.execute(part)


# Built once per shape (table, row count, columns): building and keying a statement of this
# size costs more than running it, and only the bound values change from call to call.
_INSERTS: dict[tuple[str, int, tuple[str, ...]], UpdateBase] = {}


def _insert_statement(table: Table, count: int, columns: tuple[str, ...]) -> UpdateBase:
    key = (table.name, count, columns)
    statement = _INSERTS.get(key)
    if statement is None:
        selects = [
            select(
                *(
                    bindparam(f"{table.name}_{i}_{column}", type_=table.c[column].type).label(
                        column
                    )
                    for column in columns
                )
            )
            for i in range(count)
        ]
        source = union_all(*selects) if count > 1 else selects[0]
        statement = _INSERTS[key] = insert(table).from_select(
            list(columns), source, include_defaults=False
        )
    return statement
