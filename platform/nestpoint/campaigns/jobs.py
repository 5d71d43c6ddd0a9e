"""Running campaigns: scheduled runs (one-off and recurring), the daily date triggers and the
event triggers read from the outbox. Every path ends in ``service.grant`` (exactly once per
member and trigger); every path takes ``now``, so tests run it on a controlled clock.

* **Scheduled** (:func:`run_due`, from the periodic ``campaigns.tick``): a one-off campaign
  runs once at its time (trigger ``once``); a recurring one once per period at its local
  time (``run:2026-11-30``, ``run:2026-W49``, ``run:2026-11``). A run goes through the
  audience in chunks of members (``members.jobs.run_in_chunks``), each chunk committed
  with its grants; ``last_run_key`` is written once every chunk is done, so a run stopped
  midway is run again and grants only what it had not.
* **Dates** (:func:`run_date_triggers`, the daily ``campaigns.daily`` at the chain's local
  08:00): set-based statements find who meets each date condition today: a birthday, the
  birthday month, the ``weeks``-th week of a pregnancy, a child ``days`` days or ``months``
  months old. A late day (a missed run) is caught up within :data:`GRACE_DAYS`.
* **Events** (:func:`consume_events`, from ``campaigns.tick``): the outbox's ``member.joined``,
  ``tier.changed`` and ``order.paid`` rows past the tenant's cursor (``campaign_event_cursors``;
  the core has no event consumer of its own and the outbox never imports this module).
  Events are read only once :data:`SETTLE` old, so a transaction that emitted an event
  earlier than another but committed later is not passed over.
"""

from __future__ import annotations

import calendar
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from dateutil.relativedelta import relativedelta
from sqlalchemy import and_, exists, extract, func, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from nestpoint.audit.service import record
from nestpoint.campaigns import service
from nestpoint.campaigns.models import Campaign, CampaignEventCursor, CampaignGrant
from nestpoint.campaigns.schemas import DATE_TRIGGERS, EVENT_TRIGGERS
from nestpoint.campaigns.service import Counts
from nestpoint.context import require_tenant
from nestpoint.db.base import table_of, utcnow
from nestpoint.events.models import OutboxEvent
from nestpoint.members.jobs import MemberRange, run_in_chunks
from nestpoint.members.models import Child, Member
from nestpoint.orders.models import Order
from nestpoint.segments import rules
from nestpoint.settings import get_settings

GRANT_JOB = "campaigns.grant"  # the advisory lock of one campaign's chunks: + ":<id>"
DAILY_JOB = "campaigns.daily"
TICK_JOB = "campaigns.tick"
GRACE_DAYS = 6  # a date condition met up to this many days ago still grants
SETTLE = timedelta(seconds=60)
EVENT_BATCH = 500
MAX_CHUNK = 500  # members per chunk of a run (each granted under its account's lock)
NO_EVENT = uuid.UUID(int=0)
GESTATION_DAYS = 280  # a due date is 40 weeks after the pregnancy's start
cursors = table_of(CampaignEventCursor)
EVENT_TYPES = {
    "member_joined": "member.joined",
    "tier_changed": "tier.changed",
    "first_purchase": "order.paid",
}


def chunk_size() -> int:
    """Members per chunk: a chunk holds its members' points accounts until it commits, so
    a till serving one of them waits for at most one chunk's grants."""
    return min(get_settings().job_chunk_members, MAX_CHUNK)


@dataclass(frozen=True, slots=True)
class RunResult:
    campaign_code: str
    trigger_key: str
    counts: Counts


# ---------------------------------------------------------------------------- scheduled


def period_key(schedule: dict[str, Any], local: datetime) -> str | None:
    """The trigger key of the run due at ``local`` (the chain's clock), or None: a one-off
    is due from its time on; a recurring one on its day once its time has passed."""
    if schedule["kind"] == "one_off":
        return "once" if local >= datetime.fromisoformat(schedule["at"]) else None
    if schedule["kind"] != "recurring":
        return None
    if local.time() < time.fromisoformat(schedule["at"]):
        return None
    today = local.date()
    if schedule["every"] == "daily":
        return f"run:{today.isoformat()}"
    if schedule["every"] == "weekly":
        if today.isoweekday() != schedule["weekday"]:
            return None
        year, week, _ = today.isocalendar()
        return f"run:{year}-W{week:02d}"
    last = calendar.monthrange(today.year, today.month)[1]
    if today.day != min(schedule["day_of_month"], last):
        return None
    return f"run:{today.year}-{today.month:02d}"


def current_key(schedule: dict[str, Any], local: datetime) -> str | None:
    """The trigger key of the current period, whatever the time and day (a run asked for
    by hand: ``nestpoint campaigns run``); None for a triggered campaign."""
    if schedule["kind"] == "one_off":
        return "once"
    if schedule["kind"] != "recurring":
        return None
    today = local.date()
    if schedule["every"] == "daily":
        return f"run:{today.isoformat()}"
    if schedule["every"] == "weekly":
        year, week, _ = today.isocalendar()
        return f"run:{year}-W{week:02d}"
    return f"run:{today.year}-{today.month:02d}"


async def run_by_hand(session: AsyncSession, code: str, now: datetime) -> list[RunResult]:
    """Run one campaign now: a scheduled one for its current period (once per member and
    period, as its schedule would), a triggered one's date condition and new events."""
    found = await service.get_campaign(session, code)
    facts = await service.facts_at(session, now)
    key = current_key(found.schedule, now.astimezone(facts.zone))
    if key is not None:
        return [await run_campaign(session, found.id, key, now)]
    await consume_events(session, now)
    return [r for r in await run_date_triggers(session, now) if r.campaign_code == code]


async def run_campaign(
    session: AsyncSession, campaign_id: uuid.UUID, trigger_key: str, now: datetime
) -> RunResult:
    """Grant the campaign to its whole audience for ``trigger_key``, chunk by chunk (each
    committed). Members already granted for the key are skipped."""
    campaign = await session.scalar(select(Campaign).where(Campaign.id == campaign_id))
    if campaign is None:
        raise ValueError(f"no campaign {campaign_id}")
    code, totals = campaign.code, Counts()
    facts = await service.facts_at(session, now)
    audience = await service.audience_statement(session, campaign, facts)
    if audience is None or not service.live(campaign, now):
        return RunResult(code, trigger_key, totals)
    done = exists().where(
        CampaignGrant.tenant_id == facts.tenant_id,
        CampaignGrant.campaign_id == campaign_id,
        CampaignGrant.member_id == Member.id,
        CampaignGrant.trigger_key == trigger_key,
    )

    async def chunk(members: MemberRange) -> None:
        ids = await session.scalars(
            audience.where(Member.id > members.after, Member.id <= members.upto, ~done)
        )
        pairs = [(member_id, trigger_key) for member_id in ids.all()]
        totals.add(await service.grant(session, campaign_id, pairs, now))

    await run_in_chunks(session, f"{GRANT_JOB}:{campaign_id}", chunk, size=chunk_size())
    return RunResult(code, trigger_key, totals)


async def due_runs(session: AsyncSession, now: datetime) -> list[tuple[uuid.UUID, str]]:
    """(campaign id, trigger key) of each scheduled run due at ``now`` not made yet."""
    facts = await service.facts_at(session, now)
    local = now.astimezone(facts.zone)
    found = await session.scalars(select(Campaign).where(Campaign.status.in_(service.LIVE)))
    due = []
    for campaign in found.all():
        if not service.live(campaign, now):
            continue
        key = period_key(campaign.schedule, local)
        if key is not None and key != campaign.last_run_key:
            due.append((campaign.id, key))
    return sorted(due)


async def run_due(session: AsyncSession, now: datetime) -> list[RunResult]:
    """Make every due scheduled run; each is recorded (``last_run_key``) and audited
    (``campaigns.ran``) once all its chunks are done."""
    results = []
    for campaign_id, key in await due_runs(session, now):
        result = await run_campaign(session, campaign_id, key, now)
        await session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id)
            .values(last_run_key=key, updated_at=utcnow())
        )
        record(
            session,
            "campaigns.ran",
            "campaign",
            campaign_id,
            {
                "code": result.campaign_code,
                "trigger_key": key,
                "granted": result.counts.granted,
                "holdout": result.counts.holdout,
                "refused": result.counts.refused,
            },
        )
        await session.commit()
        results.append(result)
    return results


async def end_due(session: AsyncSession, now: datetime) -> int:
    """Campaigns past their end (and one-off campaigns without an end, once run) end."""
    ended = await session.execute(
        update(Campaign)
        .where(
            Campaign.status.in_(service.LIVE),
            or_(
                and_(Campaign.ends_at.is_not(None), Campaign.ends_at <= now),
                and_(Campaign.ends_at.is_(None), Campaign.last_run_key == "once"),
            ),
        )
        .values(status="ended", updated_at=now)
    )
    return int(ended.rowcount or 0)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------- dates


def date_pairs_statement(
    campaign: Campaign, schedule: dict[str, Any], audience: Any, facts: rules.Facts
) -> tuple[Any, Callable[[Any], str]]:
    """The statement of (member id, detail) meeting the campaign's date condition today,
    within ``audience``, and how a row becomes its trigger key."""
    on, today, tenant = schedule["on"], facts.today, facts.tenant_id
    in_audience = Member.id.in_(audience)
    if on in ("birthday", "birthday_month"):
        days = [today.day]
        if (today.month, today.day) == (2, 28) and not calendar.isleap(today.year):
            days.append(29)
        same = [Member.birthday.is_not(None), extract("month", Member.birthday) == today.month]
        if on == "birthday":
            same.append(extract("day", Member.birthday).in_(days))
        stmt = select(Member.id, Member.id).where(
            Member.tenant_id == tenant, Member.status == "active", in_audience, *same
        )
        return stmt, lambda _: f"{on}:{today.year}"
    child = [Child.tenant_id == tenant, Child.member_id.in_(audience)]
    if on == "pregnancy_week":
        weeks = int(schedule["weeks"])
        # From the first day of the ``weeks``-th week of the pregnancy (7 x (weeks - 1)
        # days in: due within 280 - 7 x (weeks - 1) days), not born, due from
        # today - grace on.
        child += [
            Child.birth_date.is_(None),
            Child.due_date >= today - timedelta(days=GRACE_DAYS),
            Child.due_date <= today + timedelta(days=GESTATION_DAYS - 7 * (weeks - 1)),
        ]
        label = f"pregnancy_week:{weeks}"
    else:
        if on == "child_age_days":
            age: Any = timedelta(days=int(schedule["days"]))
            label = f"child_days:{schedule['days']}"
        else:
            age = relativedelta(months=int(schedule["months"]))
            label = f"child_months:{schedule['months']}"
        reached = today - age
        child += [
            Child.birth_date.is_not(None),
            Child.birth_date <= reached,
            Child.birth_date >= reached - timedelta(days=GRACE_DAYS),
        ]
    stmt = select(Child.member_id, Child.id).where(*child)
    return stmt, lambda child_id: f"{label}:{child_id}"


async def run_date_triggers(session: AsyncSession, now: datetime) -> list[RunResult]:
    """Grant every live campaign triggered by a date condition to who meets it today,
    set-based, chunk by chunk of members (each chunk committed)."""
    facts = await service.facts_at(session, now)
    found = await session.scalars(select(Campaign).where(Campaign.status.in_(service.LIVE)))
    campaigns = [
        c
        for c in found.all()
        if c.schedule.get("kind") == "triggered"
        and c.schedule.get("on") in DATE_TRIGGERS
        and service.live(c, now)
    ]
    results = []
    for campaign in sorted(campaigns, key=lambda c: c.code):
        audience = await service.audience_statement(session, campaign, facts)
        totals = Counts()
        if audience is not None:
            await _dates_of(session, campaign, audience, facts, now, totals)
        results.append(RunResult(campaign.code, campaign.schedule["on"], totals))
    return results


async def _dates_of(
    session: AsyncSession,
    campaign: Campaign,
    audience: Any,
    facts: rules.Facts,
    now: datetime,
    totals: Counts,
) -> None:
    campaign_id, schedule = campaign.id, dict(campaign.schedule)

    async def chunk(members: MemberRange) -> None:
        ranged = audience.where(Member.id > members.after, Member.id <= members.upto)
        stmt, key_of = date_pairs_statement(campaign, schedule, ranged, facts)
        rows = (await session.execute(stmt)).all()
        pairs = [(row[0], key_of(row[1])) for row in rows]
        totals.add(await service.grant(session, campaign_id, pairs, now))

    await run_in_chunks(session, f"{GRANT_JOB}:{campaign_id}", chunk, size=chunk_size())


# ---------------------------------------------------------------------------- events


async def consume_events(session: AsyncSession, now: datetime) -> int:
    """Read the outbox past the tenant's cursor (events at least :data:`SETTLE` old), in
    batches, granting the live event-triggered campaigns (each campaign's grants committed
    on their own), then moving the cursor past the batch. A run stopped midway reads the
    batch again: its grants are exactly once. Returns the events read."""
    tenant_id = require_tenant().tenant_id
    read = 0
    while True:
        cursor = await _cursor(session, tenant_id, now)
        stmt = select(OutboxEvent).where(
            OutboxEvent.type.in_(tuple(EVENT_TYPES.values())),
            OutboxEvent.occurred_at <= now - SETTLE,
            tuple_(OutboxEvent.occurred_at, OutboxEvent.id)
            > tuple_(cursor.occurred_at, cursor.event_id),
        )
        batch = list(
            (
                await session.scalars(
                    stmt.order_by(OutboxEvent.occurred_at, OutboxEvent.id).limit(EVENT_BATCH)
                )
            ).all()
        )
        if not batch:
            return read
        await _grant_events(session, batch, now)
        last = batch[-1]
        cursor = await _cursor(session, tenant_id, now)  # locked again: the grants committed
        if (last.occurred_at, last.id) > (cursor.occurred_at, cursor.event_id):
            cursor.occurred_at, cursor.event_id = last.occurred_at, last.id
            cursor.updated_at = now
        await session.commit()
        read += len(batch)
        if len(batch) < EVENT_BATCH:
            return read


async def _cursor(
    session: AsyncSession, tenant_id: uuid.UUID, now: datetime
) -> CampaignEventCursor:
    """The chain's cursor, locked; made on the first read at the first campaign's creation
    (events before any campaign existed trigger nothing, and the outbox's history is not
    read), or :data:`SETTLE` ago when there is none. Two first reads at once make one."""
    first = await session.scalar(select(func.min(Campaign.created_at)))
    start = now - SETTLE if first is None else min(first, now - SETTLE)
    await session.execute(
        postgresql.insert(cursors)
        .values(tenant_id=tenant_id, occurred_at=start, event_id=NO_EVENT, updated_at=now)
        .on_conflict_do_nothing(index_elements=["tenant_id"])
    )
    cursor = await session.get(
        CampaignEventCursor, tenant_id, populate_existing=True, with_for_update=True
    )
    assert cursor is not None
    return cursor


async def _grant_events(session: AsyncSession, batch: list[OutboxEvent], now: datetime) -> None:
    found = await session.scalars(select(Campaign).where(Campaign.status.in_(service.LIVE)))
    campaigns = [
        c
        for c in found.all()
        if c.schedule.get("kind") == "triggered"
        and c.schedule.get("on") in EVENT_TRIGGERS
        and service.live(c, now)
    ]
    if not campaigns:
        return
    facts = await service.facts_at(session, now)
    first_buyers = await _first_purchases(session, batch)
    for campaign in sorted(campaigns, key=lambda c: c.code):
        candidates = _candidates(campaign, batch, first_buyers)
        if not candidates:
            continue
        audience = await service.audience_statement(session, campaign, facts)
        if audience is None:
            continue
        members = sorted({member_id for member_id, _ in candidates})
        inside = set((await session.scalars(service.audience_in(audience, members))).all())
        pairs = [(m, key) for m, key in candidates if m in inside]
        await service.grant(session, campaign.id, pairs, now)
        # Each campaign's grants commit on their own: a transaction never holds one
        # campaign's accounts while it waits for another campaign's row (the lock order).
        await session.commit()


def _candidates(
    campaign: Campaign, batch: list[OutboxEvent], first_buyers: dict[uuid.UUID, uuid.UUID]
) -> list[tuple[uuid.UUID, str]]:
    """(member, trigger key) of the events that trigger the campaign (those that happened
    within its window)."""
    schedule = campaign.schedule
    on, tiers = schedule["on"], set(schedule.get("tiers") or ())
    wanted = EVENT_TYPES[on]
    pairs = []
    for event in batch:
        if event.type != wanted:
            continue
        if campaign.starts_at is not None and event.occurred_at < campaign.starts_at:
            continue
        if campaign.ends_at is not None and event.occurred_at >= campaign.ends_at:
            continue
        if on == "member_joined":
            pairs.append((uuid.UUID(event.subject_id), "joined"))
        elif on == "tier_changed":
            to_tier = event.payload.get("to_tier")
            if to_tier and (not tiers or to_tier in tiers):
                pairs.append((uuid.UUID(event.payload["member_id"]), f"tier:{to_tier}"))
        else:
            member_id = first_buyers.get(uuid.UUID(event.subject_id))
            if member_id is not None:
                pairs.append((member_id, "first_purchase"))
    return pairs


async def _first_purchases(
    session: AsyncSession, batch: list[OutboxEvent]
) -> dict[uuid.UUID, uuid.UUID]:
    """{order id: member id} of the batch's paid orders that are their member's first
    (no earlier order of the member, whatever became of it)."""
    order_ids = [uuid.UUID(e.subject_id) for e in batch if e.type == "order.paid"]
    if not order_ids:
        return {}
    tenant_id = require_tenant().tenant_id
    earlier = aliased(Order)
    rows = await session.execute(
        select(Order.id, Order.member_id).where(
            Order.tenant_id == tenant_id,
            Order.id.in_(order_ids),
            Order.member_id.is_not(None),
            ~exists().where(
                earlier.tenant_id == tenant_id,
                earlier.member_id == Order.member_id,
                or_(
                    earlier.paid_at < Order.paid_at,
                    and_(earlier.paid_at == Order.paid_at, earlier.id < Order.id),
                ),
            ),
        )
    )
    return {row.id: row.member_id for row in rows if row.member_id is not None}


# ---------------------------------------------------------------------------- the jobs


async def tick(session: AsyncSession, now: datetime | None = None) -> None:
    """The periodic work of one chain: end what is over, make the due scheduled runs, read
    new events."""
    now = now or utcnow()
    await end_due(session, now)
    await session.commit()
    await run_due(session, now)
    await consume_events(session, now)
    await end_due(session, now)


async def daily(session: AsyncSession, now: datetime | None = None) -> list[RunResult]:
    return await run_date_triggers(session, now or utcnow())
