"""Small dialect differences for the set-based jobs, in one place."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import TextClause, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeEngine

# A ``:name`` parameter of a job's SQL (never a ``::cast``), as SQLAlchemy's ``text`` reads it.
PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def parameter_names(sql: str) -> set[str]:
    """The names of the ``:name`` parameters ``sql`` takes."""
    return set(PARAMETER.findall(sql))


def typed_text(sql: str, types: Mapping[str, TypeEngine[Any]]) -> TextClause:
    """``text(sql)`` with the given type for each parameter it takes (the others are typed
    by their values); parameters are bound by name, so a caller may pass a dict with more
    values than one statement takes."""
    names = parameter_names(sql)
    return text(sql).bindparams(*(bindparam(n, type_=t) for n, t in types.items() if n in names))


def new_uuid_sql(dialect: str) -> str:
    """A fresh UUID as SQL, in the form the ``Uuid`` column type stores on each database."""
    if dialect == "postgresql":
        return "gen_random_uuid()"
    return "lower(hex(randomblob(16)))"


def json_object_sql(dialect: str, pairs: dict[str, str]) -> str:
    """A JSON object built in SQL from ``{key: sql expression}``."""
    function = "json_build_object" if dialect == "postgresql" else "json_object"
    args = ", ".join(f"'{key}', {expr}" for key, expr in pairs.items())
    return f"{function}({args})"


def uuid_text_sql(dialect: str, column: str) -> str:
    """A UUID column as text in the canonical form ``str(uuid)`` gives (PostgreSQL casts;
    SQLite stores 32 hex digits, so the dashes are put in), so ids in events and ledger
    causes written by SQL read the same as those written by Python."""
    if dialect == "postgresql":
        return f"{column}::text"
    parts = [
        f"substr({column}, {start}, {length})"
        for start, length in ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
    ]
    return "lower(" + " || '-' || ".join(parts) + ")"


async def lock_job(session: AsyncSession, job: str, tenant_id: object) -> None:
    """Serialise one job per tenant (PostgreSQL advisory lock, released at commit).

    A second run of the same job waits, then finds nothing left to do. SQLite needs no
    lock: its transactions already run one at a time.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"{job}:{tenant_id}"}
    )
