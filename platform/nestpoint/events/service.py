"""The outbox: writing domain events in the change's own transaction.

``emit`` adds the event to the caller's session, so it commits or rolls back with the change
it describes. After a commit that wrote events, the ``events.relay`` job is enqueued for that
tenant *by name* (``RELAY``): this module is the lowest write primitive every service calls,
so it depends only on ``db``, ``context``, ``settings`` and the broker, never on the relay
that consumes the events (``nestpoint.plugins.relay``, which delivers them to plugins).
A periodic sweep (``events.sweep``) catches anything a lost message left behind. Delivery is
at least once: consumers deduplicate on the event id.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from nestpoint.context import require_tenant
from nestpoint.db.base import table_of, utcnow
from nestpoint.db.batch import WriteBatch
from nestpoint.db.pagination import Page, paginate
from nestpoint.db.session import TenantSession, on_commit
from nestpoint.events.models import OutboxEvent
from nestpoint.jobs.broker import JobRef, enqueue_best_effort
from nestpoint.observability.counters import count_committed_events
from nestpoint.settings import get_settings

OUTBOX = table_of(OutboxEvent)
EMITTED_KEY = "nestpoint.outbox_emitted"  # (type, payload) of the events, for the counters
PENDING_TENANTS_KEY = "nestpoint.outbox_tenants"
# The relay's actor (``nestpoint.plugins.actors``), addressed by name so the outbox never
# imports its consumer.
RELAY = JobRef("events.relay", queue_name="events")


@dataclass(frozen=True, slots=True)
class Event:
    """The serialisable form of an event handed to consumers (ids and values only)."""

    id: str
    type: str
    tenant_id: str
    store_id: str | None
    subject_type: str
    subject_id: str
    occurred_at: str
    payload: dict[str, Any]

    @classmethod
    def from_row(cls, row: OutboxEvent) -> Event:
        return cls(
            id=str(row.id),
            type=row.type,
            tenant_id=str(row.tenant_id),
            store_id=str(row.store_id) if row.store_id else None,
            subject_type=row.subject_type,
            subject_id=row.subject_id,
            occurred_at=row.occurred_at.isoformat(),
            payload=row.payload,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def emit(
    session: AsyncSession,
    type: str,
    subject_type: str,
    subject_id: object,
    payload: dict[str, Any],
    *,
    store_id: uuid.UUID | None = None,
    batch: WriteBatch | None = None,
) -> uuid.UUID:
    """Add an event to the outbox in the caller's transaction (in ``batch`` when given,
    so it goes out with the change's other writes); returns the event's id."""
    ctx = require_tenant()
    now = utcnow()
    event_id = uuid.uuid4()
    row = {
        "tenant_id": ctx.tenant_id,
        "id": event_id,
        "type": type,
        "store_id": store_id if store_id is not None else ctx.store_id,
        "subject_type": subject_type,
        "subject_id": str(subject_id),
        "payload": payload,
        "occurred_at": now,
        "published_at": None,
        "attempts": 0,
        "next_attempt_at": now,
        "last_error": None,
    }
    if batch is not None:
        batch.insert(OUTBOX, [row])
    else:
        session.add(OutboxEvent(**row))
    session.info.setdefault(PENDING_TENANTS_KEY, set()).add(ctx.tenant_id)
    session.info.setdefault(EMITTED_KEY, []).append((type, payload))
    return event_id


def mark_pending(session: AsyncSession) -> None:
    """For events written by set-based SQL (jobs): relay them after this commit too."""
    session.info.setdefault(PENDING_TENANTS_KEY, set()).add(require_tenant().tenant_id)


def backoff(attempts: int) -> timedelta:
    """Exponential back-off between delivery attempts, capped by settings."""
    cap = get_settings().outbox_max_backoff_seconds
    return timedelta(seconds=min(cap, 2 ** min(attempts, 20)))


def enqueue_relay_after_commit(session: Session) -> None:
    """Session hook: after a commit that wrote events, ask a worker to relay them.

    Best effort: the events are committed in the outbox, so with the broker down the sweep
    delivers them later; the request that wrote them still succeeds.
    """
    tenants: set[uuid.UUID] = session.info.pop(PENDING_TENANTS_KEY, set())
    for tenant_id in tenants:
        enqueue_best_effort(RELAY, str(tenant_id))


def count_events_after_commit(session: Session) -> None:
    """Session hook: the business counters (orders, points...) of what was committed."""
    count_committed_events(session.info.pop(EMITTED_KEY, ()))


def forget_pending_after_rollback(session: Session) -> None:
    session.info.pop(PENDING_TENANTS_KEY, None)
    session.info.pop(EMITTED_KEY, None)


async def list_events(
    session: AsyncSession, *, cursor: str | None, limit: int, type_: str | None
) -> Page[OutboxEvent]:
    stmt = select(OutboxEvent)
    if type_:
        stmt = stmt.where(OutboxEvent.type == type_)
    return await paginate(
        session, stmt, (OutboxEvent.occurred_at, OutboxEvent.id), cursor=cursor, limit=limit
    )


def install_session_hooks() -> None:
    on_commit(enqueue_relay_after_commit)
    on_commit(count_events_after_commit)
    if not event.contains(TenantSession, "after_rollback", forget_pending_after_rollback):
        event.listen(TenantSession, "after_rollback", forget_pending_after_rollback)
