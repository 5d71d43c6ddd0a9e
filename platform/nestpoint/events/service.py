"""Writing domain events to the outbox, and relaying them to their consumers.

``emit`` adds the event to the caller's session, so it commits or rolls back with the change
it describes. After a commit that wrote events, the ``events.relay`` actor is enqueued for
that tenant; a periodic sweep (``events.sweep``) catches anything a lost message left behind.
Delivery is at least once: consumers deduplicate on the event id.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from nestpoint.context import require_tenant, tenant_context
from nestpoint.db import Database, scoped_session, utcnow
from nestpoint.db.base import table_of
from nestpoint.db.batch import WriteBatch
from nestpoint.db.pagination import Page, paginate
from nestpoint.events.models import OutboxEvent
from nestpoint.settings import get_settings

OUTBOX = table_of(OutboxEvent)
PENDING_TENANTS_KEY = "nestpoint.outbox_tenants"


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
    return event_id


def mark_pending(session: AsyncSession) -> None:
    """For events written by set-based SQL (jobs): relay them after this commit too."""
    session.info.setdefault(PENDING_TENANTS_KEY, set()).add(require_tenant().tenant_id)


def backoff(attempts: int) -> timedelta:
    """Exponential back-off between delivery attempts, capped by settings."""
    cap = get_settings().outbox_max_backoff_seconds
    return timedelta(seconds=min(cap, 2 ** min(attempts, 20)))


# How long a relay holds the events it claimed before another relay may take them.
CLAIM_LEASE = timedelta(minutes=5)


async def relay_pending(tenant_id: uuid.UUID, database: Database | None = None) -> int:
    """Deliver one batch of due events of one tenant; returns how many were published.

    1. Claim: in one short transaction, lock the due rows (``SKIP LOCKED`` on PostgreSQL),
       push their ``next_attempt_at`` a lease ahead so no other relay takes them, read the
       tenant's plugin enablement afresh, and publish at once every event no plugin wants.
    2. Deliver each claimed event to the plugins enabled for its tenant and store, outside
       any transaction (a plugin may open sessions of its own).
    3. Record each outcome in a transaction of its own: published, or retried with back-off
       for the plugins that failed only (see ``nestpoint.plugins.delivery``).
    """
    from nestpoint.plugins.delivery import delivered_hooks, record_outcome
    from nestpoint.plugins.manager import get_plugin_host  # the relay is a plugin caller

    host = get_plugin_host()
    published = 0
    with tenant_context(tenant_id):
        async with scoped_session(database) as session:
            now = utcnow()
            rows = (
                await session.scalars(
                    select(OutboxEvent)
                    .where(OutboxEvent.published_at.is_(None), OutboxEvent.next_attempt_at <= now)
                    .order_by(OutboxEvent.occurred_at, OutboxEvent.id)
                    .limit(get_settings().outbox_batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            snapshot = await host.snapshot(tenant_id, session)
            claimed: list[tuple[Event, int, dict[str, Any]]] = []
            for row in rows:
                enabled = snapshot.enabled_for(row.store_id, host.loaded, host.merge_config)
                if not enabled:
                    row.published_at = now
                    row.last_error = None
                    published += 1
                    continue
                row.next_attempt_at = now + CLAIM_LEASE
                claimed.append((Event.from_row(row), row.attempts, enabled))
            done = await delivered_hooks(
                session, [uuid.UUID(e.id) for e, attempts, _ in claimed if attempts > 0]
            )
        for event, _, enabled in claimed:
            outcome = await host.deliver_event(
                event, enabled=enabled, skip=done.get(uuid.UUID(event.id), frozenset())
            )
            async with scoped_session(database) as session:
                if await record_outcome(session, event, outcome):
                    published += 1
    return published


async def tenants_with_pending_events(database: Database | None = None) -> list[uuid.UUID]:
    """Every active tenant's id; the sweep relays for each (RLS hides other tenants' rows)."""
    from nestpoint.tenancy.models import Tenant

    async with scoped_session(database) as session:
        return list((await session.scalars(select(Tenant.id).where(Tenant.active))).all())


async def relay_all(database: Database | None = None) -> int:
    total = 0
    for tenant_id in await tenants_with_pending_events(database):
        total += await relay_pending(tenant_id, database)
    return total


def enqueue_relay_after_commit(session: Session) -> None:
    """Session hook: after a commit that wrote events, ask a worker to relay them.

    Best effort: the events are committed in the outbox, so with the broker down the sweep
    delivers them later; the request that wrote them still succeeds.
    """
    tenants: set[uuid.UUID] = session.info.pop(PENDING_TENANTS_KEY, set())
    if not tenants:
        return
    from nestpoint.events.actors import relay  # actors import the broker; keep that lazy
    from nestpoint.jobs.broker import enqueue_best_effort

    for tenant_id in tenants:
        enqueue_best_effort(relay, str(tenant_id))


def forget_pending_after_rollback(session: Session) -> None:
    session.info.pop(PENDING_TENANTS_KEY, None)


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
    from sqlalchemy import event

    from nestpoint.db.session import TenantSession, on_commit

    on_commit(enqueue_relay_after_commit)
    if not event.contains(TenantSession, "after_rollback", forget_pending_after_rollback):
        event.listen(TenantSession, "after_rollback", forget_pending_after_rollback)
