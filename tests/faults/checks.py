"""What the fault scenarios check afterwards, read straight from the database (as the
superuser on PostgreSQL, so row-level security hides nothing) and from the probe's file."""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from nestpoint_example.models import TierCelebration
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from faults.load import Attempt, Load
from faults.stack import PROBE_ID, Database, Stack, probe_calls
from loyalty.invariants import check_ledger
from nestpoint.events.models import OutboxEvent
from nestpoint.orders.models import Order
from nestpoint.plugins.models import PluginDelivery, PluginEnablement
from nestpoint.plugins.relay import CLAIM_LEASE

# (start, end) in time.time() seconds.
Window = tuple[float, float]


def within(moment: float, windows: Sequence[Window]) -> bool:
    return any(start <= moment <= end for start, end in windows)


@dataclass
class Faults:
    """When each fault happened, for the checks that allow something only during one."""

    api_down: list[Window] = field(default_factory=list)  # killed until healthy again
    relay_kills: list[float] = field(default_factory=list)  # a process that relays, killed
    redis_down: list[Window] = field(default_factory=list)
    postgres_down: list[Window] = field(default_factory=list)  # stopped until started

    def relay_cut_short(self, grace: float) -> list[Window]:
        """When a relay may have claimed events and never recorded them: a process that
        relays (a worker, the embedded server) killed, or PostgreSQL going away under it."""
        kills = [(at - grace, at + 1) for at in self.relay_kills]
        return kills + [(s - grace, e + grace) for s, e in self.postgres_down]


# ------------------------------------------------------------------------------- answers


def check_answers(
    attempts: Sequence[Attempt],
    *,
    unavailable_allowed: Sequence[Window],
    no_answer_allowed: Sequence[Window],
) -> None:
    """No 500 ever; a 5xx only as a 503 problem document while PostgreSQL was away (and
    shortly after); no answer at all only while the API process was down; no 4xx."""
    bad = []
    for a in attempts:
        if a.ok:
            continue
        if a.status is None:
            if not within(a.started, no_answer_allowed) and not within(a.ended, no_answer_allowed):
                bad.append(("no answer outside the API's restart", a))
        elif a.status >= 500:
            if not a.content_type.startswith("application/problem+json"):
                bad.append(("a 5xx that is not a problem document", a))
            if a.status != 503:
                bad.append((f"{a.status}: only 503 is allowed", a))
            elif not within(a.started, unavailable_allowed):
                bad.append(("a 503 outside PostgreSQL's restart", a))
        else:
            bad.append((f"{a.status}: refused", a))
    assert not bad, "\n".join(f"{why}: {a}" for why, a in bad[:20]) + f"\n({len(bad)} in all)"


# ------------------------------------------------------------------------------- orders


def committed_orders(db: Database, tenant_id: uuid.UUID, prefix: str) -> dict[str, list[str]]:
    """external id -> the ids of the orders recorded under it (one, if all is well), for
    the receipts of one load (``<prefix>-<number>``)."""
    rows = db.rows(
        select(Order.external_id, Order.id).where(
            Order.tenant_id == tenant_id,
            Order.channel == "pos",
            Order.external_id.startswith(f"{prefix}-", autoescape=True),
        )
    )
    found: dict[str, list[str]] = defaultdict(list)
    for external_id, order_id in rows:
        found[external_id].append(str(order_id))
    return found


def check_orders(db: Database, tenant_id: uuid.UUID, load: Load) -> dict[str, list[str]]:
    """Every order the tills sent is recorded exactly once, nothing else is, and every 2xx
    (first answers and replays) names that one order."""
    found = committed_orders(db, tenant_id, load.prefix)
    doubled = {k: v for k, v in found.items() if len(v) != 1}
    assert not doubled, f"orders recorded more than once: {doubled}"
    assert set(found) == set(load.bodies), (
        f"sent but not recorded: {sorted(set(load.bodies) - set(found))[:20]}; "
        f"recorded but never sent: {sorted(set(found) - set(load.bodies))[:20]}"
    )
    wrong = [a for a in load.attempts if a.ok and a.order_id != found[a.external_id][0]]
    assert not wrong, f"answers naming another order than the one recorded: {wrong[:10]}"
    return found


def check_ledgers(db: Database, member_ids: Sequence[str]) -> None:
    """The points ledger's invariants for every member (tests/loyalty/invariants.py): the
    balance is the sum of the entries and of the lots less debt, each earn entry traces to
    its order line, and so on."""

    async def work(session: AsyncSession) -> None:
        await check_ledger(session, [uuid.UUID(m) for m in member_ids])

    db.run(work)


# ------------------------------------------------------------------------------- the outbox


@dataclass
class Drained:
    seconds: float
    leases_let_lapse: int


def unpublished(db: Database, tenant_id: uuid.UUID) -> list[OutboxEvent]:
    return db.scalars(
        select(OutboxEvent).where(
            OutboxEvent.tenant_id == tenant_id, OutboxEvent.published_at.is_(None)
        )
    )


def drain(
    db: Database,
    tenant_id: uuid.UUID,
    faults: Faults,
    *,
    timeout: float = 90,
    sweep_now: Callable[[], None] | None = None,
) -> Drained:
    """Wait until every event of the tenant is published (the relays and the sweep, every
    30 s, do it); return how long it took.

    A relay that claimed a batch and was cut short (its process killed, PostgreSQL gone
    before it recorded the outcomes) leaves the batch claimed for ``CLAIM_LEASE`` (five
    minutes, docs/architecture.md), which this suite cannot wait for. Once nothing else is
    left, such claims are let lapse by moving their time (as ``nestpoint.testing``'s
    ``make_retries_due`` does with back-off), but only claims that started at a fault: a
    claim taken at any other moment is a failure. ``sweep_now`` then asks for a sweep at
    once (what the scheduler does within 30 s)."""
    started = time.monotonic()
    lapsed = 0
    cut_short = faults.relay_cut_short(grace=15)
    while True:
        waiting = unpublished(db, tenant_id)
        if not waiting:
            return Drained(time.monotonic() - started, lapsed)
        now = datetime.now(UTC)
        # Claimed (a lease, not a back-off) more than 20 s ago: no relay is at them any more.
        claimed = [
            e
            for e in waiting
            if e.next_attempt_at > now + timedelta(seconds=60)
            and e.next_attempt_at - CLAIM_LEASE < now - timedelta(seconds=20)
        ]
        if claimed and len(claimed) == len(waiting):
            stray = [
                e
                for e in claimed
                if not within((e.next_attempt_at - CLAIM_LEASE).timestamp(), cut_short)
            ]
            assert not stray, "events claimed by a relay at no fault, never recorded: " + str(
                [(e.id, e.type, e.next_attempt_at, e.attempts, e.last_error) for e in stray[:10]]
            )
            ids = [e.id for e in claimed]
            db.run(_lapse(tenant_id, ids))
            lapsed += len(ids)
            if sweep_now is not None:
                sweep_now()
        if time.monotonic() - started > timeout:
            raise AssertionError(
                f"{len(waiting)} events still unpublished after {timeout:g} s: "
                + str(
                    [
                        (e.type, e.attempts, e.next_attempt_at.isoformat(), e.last_error)
                        for e in waiting[:10]
                    ]
                )
            )
        time.sleep(0.5)


def _lapse(tenant_id: uuid.UUID, ids: list[uuid.UUID]) -> Callable[[AsyncSession], object]:
    async def work(session: AsyncSession) -> None:
        await session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.tenant_id == tenant_id, OutboxEvent.id.in_(ids))
            .values(next_attempt_at=datetime.now(UTC))
        )

    return work


@dataclass
class Deliveries:
    events: int
    redelivered: int  # events the probe got more than once (each time after a cut-short relay)


def check_deliveries(stack: Stack, tenant_id: uuid.UUID, faults: Faults) -> Deliveries:
    """Every event is published and reached the consumers enabled when it happened; none
    was handed twice to one consumer except after a relay cut short before it could record
    the delivery (at least once, docs/guarantees.md), and the idempotent consumer's effect
    (the example plugin's celebration of a tier change) exists exactly once per event."""
    db = stack.database
    events = db.scalars(select(OutboxEvent).where(OutboxEvent.tenant_id == tenant_id))
    assert events, "no events at all"
    assert all(e.published_at is not None for e in events)
    enabled_at = dict(
        db.rows(
            select(PluginEnablement.plugin_id, PluginEnablement.enabled_at).where(
                PluginEnablement.tenant_id == tenant_id, PluginEnablement.store_id.is_(None)
            )
        )
    )

    # The probe: every event since it was enabled, each call written down.
    expected = {str(e.id) for e in events if e.occurred_at >= enabled_at[PROBE_ID]}
    calls = probe_calls(stack.probe_log)
    per_event: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for call in calls:
        per_event[call.event_id].append((call.at, call.pid))
    lost = expected - set(per_event)
    assert not lost, f"{len(lost)} events never reached the consumer: {sorted(lost)[:10]}"
    strange = set(per_event) - expected
    assert not strange, f"the consumer got events it was not enabled for: {sorted(strange)[:10]}"
    cut_short = faults.relay_cut_short(grace=15)
    unexplained = []
    redelivered = 0
    for event_id, seen in per_event.items():
        if len(seen) < 2:
            continue
        redelivered += 1
        for at, pid in sorted(seen)[:-1]:  # every delivery but the last was not recorded
            killed_at = stack.killed.get(pid)
            if killed_at is not None and at <= killed_at:
                continue  # its process was killed before it could record the delivery
            if within(at, cut_short):
                continue  # PostgreSQL went away before the relay recorded it
            unexplained.append((event_id, seen))
    assert not unexplained, f"events delivered twice to one consumer: {unexplained[:10]}"

    # The idempotent consumer: one celebration per tier change since it was enabled.
    changes = {
        e.id for e in events if e.type == "tier.changed" and e.occurred_at >= enabled_at["example"]
    }
    celebrated = Counter(
        db.scalars(select(TierCelebration.event_id).where(TierCelebration.tenant_id == tenant_id))
    )
    assert changes, "no tier changed: the consumer had nothing to do"
    assert set(celebrated) == changes, (
        f"tier changes without a celebration: {len(changes - set(celebrated))}, "
        f"celebrations of no tier change: {len(set(celebrated) - changes)}"
    )
    assert max(celebrated.values()) == 1, celebrated.most_common(3)

    # Hooks that took an event before a retry: each (event, plugin, hook) once.
    doubled = db.rows(
        select(PluginDelivery.event_id, PluginDelivery.plugin_id, PluginDelivery.hook)
        .where(PluginDelivery.tenant_id == tenant_id)
        .group_by(PluginDelivery.event_id, PluginDelivery.plugin_id, PluginDelivery.hook)
        .having(func.count() > 1)
    )
    assert not doubled, doubled
    return Deliveries(len(expected), redelivered)
