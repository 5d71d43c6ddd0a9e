"""Files kept in the database as rows of fixed-size chunks (exports' files, imports'
uploads and row reports): cut into pieces, and read back one chunk per transaction, so a
file of any size holds one chunk in memory."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from nestpoint.context import tenant_context
from nestpoint.db.session import Database, scoped_session


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    """``data`` in pieces of ``size`` bytes (the last one shorter)."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read_in_order(
    tenant_id: uuid.UUID,
    chunks: int,
    chunk_at: Callable[[int], Any],
    database: Database | None = None,
) -> AsyncIterator[bytes]:
    """Chunks ``0..chunks-1`` in order, each selected by ``chunk_at(seq)`` (a statement of
    one bytes column) in its own short transaction of the tenant; stops early when one is
    gone (the file was deleted while it was being read)."""
    for seq in range(chunks):
        with tenant_context(tenant_id):
            async with scoped_session(database) as session:
                data = await session.scalar(chunk_at(seq))
        if data is None:
            return
        yield bytes(data)
