"""Recording audit entries; services call :func:`record` beside the change they make."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.audit.models import AuditEntry
from nestpoint.context import current_actor, request_id
from nestpoint.db.pagination import Page, paginate


def record(
    session: AsyncSession,
    action: str,
    subject_type: str,
    subject_id: object,
    changes: dict[str, Any] | None = None,
) -> AuditEntry:
    actor = current_actor()
    entry = AuditEntry(
        actor_kind=actor.kind,
        actor_id=str(actor.key_id or actor.name),
        action=action,
        subject_type=subject_type,
        subject_id=str(subject_id),
        changes=changes or {},
        request_id=request_id.get() or "",
    )
    session.add(entry)
    return entry


async def list_entries(
    session: AsyncSession, *, cursor: str | None, limit: int
) -> Page[AuditEntry]:
    return await paginate(
        session,
        select(AuditEntry),
        (AuditEntry.occurred_at, AuditEntry.id),
        cursor=cursor,
        limit=limit,
    )
