"""Several writes, one round trip: data-modifying CTEs on PostgreSQL.

The till's hot path writes to half a dozen tables after it has decided everything. On
PostgreSQL those INSERTs and UPDATEs go out as one statement (``WITH w0 AS (INSERT ...),
w1 AS (UPDATE ...) UPDATE ...``); elsewhere (SQLite) they run one after another, in the
order they were added. Use it only for writes that do not read each other's results: every
part of one PostgreSQL statement sees the same snapshot. Give every column a value
(Python-side ``default``/``onupdate`` callables do not run for the parts inside the CTE).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import UpdateBase


class WriteBatch:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.postgres = session.get_bind().dialect.name == "postgresql"
        self._parts: list[tuple[UpdateBase, list[dict[str, Any]] | None]] = []
        self._rows: dict[Table, list[dict[str, Any]]] = {}

    def insert(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """Rows for ``table``; rows for one table become one multi-row INSERT."""
        if not rows:
            return
        if table not in self._rows:
            self._rows[table] = []
            self._parts.append((insert(table), None))  # placeholder, filled at execute
        self._rows[table].extend(rows)

    def add(self, statement: UpdateBase, many: list[dict[str, Any]] | None = None) -> None:
        """A statement (``many``: run once per parameter set; not on PostgreSQL, where
        callers give a single statement instead)."""
        if many is not None and self.postgres:
            raise ValueError("use a single statement (e.g. UPDATE ... FROM VALUES) on PostgreSQL")
        self._parts.append((statement, many))

    def _statements(self) -> list[tuple[UpdateBase, list[dict[str, Any]] | None]]:
        filled = []
        for statement, many in self._parts:
            table = getattr(statement, "table", None)
            if many is None and table in self._rows and statement.is_insert:
                statement = insert(table).values(self._rows.pop(table))
            filled.append((statement, many))
        return filled

    async def execute(self) -> None:
        parts = self._statements()
        self._parts, self._rows = [], {}
        if not parts:
            return
        if self.postgres and len(parts) > 1:
            *first, (last, _) = parts
            combined = last.add_cte(*(s.cte(f"write_{i}") for i, (s, _) in enumerate(first)))
            await self.session.execute(combined)
            return
        for statement, many in parts:
            if many is not None:
                await self.session.execute(statement, many)
            else:
                await self.session.execute(statement)
