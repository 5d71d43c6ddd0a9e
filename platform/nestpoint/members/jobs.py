"""Set-based jobs over a tenant's members, one chunk of members per transaction.

A job over a million members in one transaction holds the row locks it takes (accounts,
members) until it commits: every till ordering for one of those members waits for the
whole run. Run in chunks, an order waits for one chunk at most. Each chunk is the members
with ``after < id <= upto`` (keyset, in id order), found by the chunk itself, so members
that join during a run are simply in a later chunk or the next run.

The chunks of one run share its moment (``now``) and its parameters; each chunk takes the
job's advisory lock for its own transaction, so two runs at once interleave chunk by chunk
and the second finds nothing left to do in a chunk the first has done. A run stopped
between chunks (a crash, a deploy) leaves every finished chunk committed and the rest for
the next run: each chunk's statements only pick rows still due.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Uuid
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.context import require_tenant
from nestpoint.db.sql import lock_job, typed_text
from nestpoint.settings import get_settings

# The ends of the id range. No member has the nil id (ids are uuid4, version bits set).
FIRST_AFTER = uuid.UUID(int=0)
LAST_UPTO = uuid.UUID(int=(1 << 128) - 1)

# The upper end of the next chunk: the ``:skip + 1``-th member after ``:after``, or the
# end of the range when fewer are left. The benchmark runs the same SQL through psql.
NEXT_UPTO_SQL = """
            SELECT COALESCE((SELECT m.id FROM members m
                             WHERE m.tenant_id = :tenant AND m.id > :after
                             ORDER BY m.id LIMIT 1 OFFSET :skip), :last_upto)"""

CHUNK_TYPES = {"tenant": Uuid(), "after": Uuid(), "last_upto": Uuid()}
NEXT_UPTO = typed_text(NEXT_UPTO_SQL, CHUNK_TYPES)


@dataclass(frozen=True, slots=True)
class MemberRange:
    """One chunk of a job: the members with ``after < id <= upto``, the ``number``-th."""

    number: int
    after: uuid.UUID
    upto: uuid.UUID

    @property
    def params(self) -> dict[str, Any]:
        return {"after": self.after, "upto": self.upto}

    def run_id(self, run: str) -> str:
        """The chunk's own run id (ledger causes, tier changes): the run's, numbered."""
        return f"{run}.{self.number}"


def chunk_params(tenant_id: uuid.UUID, after: uuid.UUID, size: int) -> dict[str, Any]:
    return {"tenant": tenant_id, "after": after, "skip": size - 1, "last_upto": LAST_UPTO}


async def run_in_chunks(
    session: AsyncSession,
    job: str,
    work: Callable[[MemberRange], Awaitable[None]],
    *,
    size: int | None = None,
) -> int:
    """Run ``work`` for each chunk of the tenant's members, each in its own transaction of
    ``session`` (committed after it) under the job's advisory lock; returns how many chunks
    ran. Between chunks it pauses for ``job_chunk_pause_ratio`` of the chunk's time, so
    the tills keep their share of a small machine while a long job runs."""
    settings = get_settings()
    size = size or settings.job_chunk_members
    tenant_id = require_tenant().tenant_id
    after, number = FIRST_AFTER, 0
    while after != LAST_UPTO:
        started = time.perf_counter()
        await lock_job(session, job, tenant_id)
        upto = await session.scalar(NEXT_UPTO, chunk_params(tenant_id, after, size))
        await work(MemberRange(number, after, _as_uuid(upto)))
        await session.commit()
        after, number = _as_uuid(upto), number + 1
        if after != LAST_UPTO:
            await asyncio.sleep((time.perf_counter() - started) * settings.job_chunk_pause_ratio)
    return number


def _as_uuid(value: object) -> uuid.UUID:
    """The bound read back: a UUID on PostgreSQL, its 32 hex digits on SQLite (COALESCE
    of two columns has no column type to convert it)."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
