"""Stage 2: scheduled runs (one-off, recurring) on a controlled clock, date triggers (the
daily job: birthdays, a pregnancy's 34th week, a newborn, 100 days, 6 months), and event
triggers read from the outbox past the chain's cursor (member joined, first purchase, tier
changed): the right members, exactly once, however often the jobs run."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta
from sqlalchemy import select

from campaigns.helpers import body, campaign, grants, ledger, make
from nestpoint.campaigns import jobs
from nestpoint.campaigns.jobs import period_key
from nestpoint.campaigns.models import CampaignEventCursor
from nestpoint.events.service import emit
from nestpoint.jobs.tenants import run_for_tenant
from segments.helpers import CONSENT, enrol, line, local_today, order

ZONE = ZoneInfo("Asia/Shanghai")


def local(day: Any, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=ZONE).astimezone(UTC)


async def tick(tenant_id: uuid.UUID, now: datetime) -> None:
    async def go(session: Any) -> None:
        await jobs.tick(session, now)

    await run_for_tenant(tenant_id, go, name="test")


async def daily(tenant_id: uuid.UUID, now: datetime) -> None:
    async def go(session: Any) -> None:
        await jobs.run_date_triggers(session, now)

    await run_for_tenant(tenant_id, go, name="test")


def test_period_keys() -> None:
    monday = datetime(2026, 11, 30, 9, 5, tzinfo=ZONE)
    daily_at_nine = {"kind": "recurring", "every": "daily", "at": "09:00"}
    assert period_key(daily_at_nine, monday) == "run:2026-11-30"
    assert period_key(daily_at_nine, monday.replace(hour=8, minute=59)) is None
    weekly = {"kind": "recurring", "every": "weekly", "at": "09:00", "weekday": 1}
    assert period_key(weekly, monday) == "run:2026-W49"
    assert period_key(weekly, monday + timedelta(days=1)) is None
    monthly = {"kind": "recurring", "every": "monthly", "at": "09:00", "day_of_month": 31}
    assert period_key(monthly, monday) == "run:2026-11"  # 30 November: the month's last day
    assert period_key(monthly, monday - timedelta(days=1)) is None
    once = {"kind": "one_off", "at": monday.isoformat()}
    assert period_key(once, monday) == "once"
    assert period_key(once, monday - timedelta(seconds=1)) is None
    assert period_key({"kind": "triggered", "on": "birthday"}, monday) is None


async def test_a_one_off_runs_once_at_its_time_then_ends(client: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    member = await enrol(client, tenant)
    at = datetime.now(UTC) + timedelta(days=2)
    cid = await make(tenant.id, body("oneoff", schedule={"kind": "one_off", "at": at.isoformat()}))

    await tick(tenant.id, at - timedelta(minutes=1))
    assert await grants(tenant.id, cid) == []
    assert (await campaign(tenant.id, cid)).status == "scheduled"

    await tick(tenant.id, at + timedelta(minutes=1))
    await tick(tenant.id, at + timedelta(minutes=2))

    assert [(str(g.member_id), g.trigger_key) for g in await grants(tenant.id, cid)] == [
        (member, "once")
    ]
    after = await campaign(tenant.id, cid)
    assert (after.status, after.last_run_key) == ("ended", "once")
    assert await ledger(tenant.id, cid) == {member: 100}


async def test_a_recurring_campaign_grants_once_per_period(client: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    member = await enrol(client, tenant)
    day = local_today() + timedelta(days=10)
    schedule = {"kind": "recurring", "every": "daily", "at": "09:00"}
    ends = local(day + timedelta(days=2), 0)
    cid = await make(tenant.id, body("daily", schedule=schedule, ends_at=ends.isoformat()))

    await tick(tenant.id, local(day, 8, 59))
    assert await grants(tenant.id, cid) == []
    for minute in (1, 2, 30):
        await tick(tenant.id, local(day, 9, minute))
    await tick(tenant.id, local(day + timedelta(days=1), 9, 1))
    await tick(tenant.id, local(day + timedelta(days=2), 9, 1))  # past the end

    keys = sorted(g.trigger_key for g in await grants(tenant.id, cid))
    assert keys == [f"run:{day.isoformat()}", f"run:{(day + timedelta(days=1)).isoformat()}"]
    assert await ledger(tenant.id, cid) == {member: 200}
    assert (await campaign(tenant.id, cid)).status == "ended"


async def test_date_triggers_grant_who_meets_them_once(client: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    today = local_today()
    now = local(today, 8, 0)
    birthday = await enrol(client, tenant, birthday=today.replace(year=1990).isoformat())
    other_day = today.replace(year=1990) + timedelta(days=40)
    not_today = await enrol(client, tenant, birthday=other_day.isoformat())
    week_34 = await enrol(
        client,
        tenant,
        guardian_consent=CONSENT,
        children=[{"due_date": (today + timedelta(days=40)).isoformat()}],
    )
    # The first day of the 34th week (33 weeks + 0 days in): due in 49 days; a day earlier
    # (due in 50 days) is still the 33rd week.
    first_day_34 = await enrol(
        client,
        tenant,
        guardian_consent=CONSENT,
        children=[{"due_date": (today + timedelta(days=49)).isoformat()}],
    )
    week_33 = await enrol(
        client,
        tenant,
        guardian_consent=CONSENT,
        children=[{"due_date": (today + timedelta(days=50)).isoformat()}],
    )
    week_20 = await enrol(
        client,
        tenant,
        guardian_consent=CONSENT,
        children=[{"due_date": (today + timedelta(weeks=20)).isoformat()}],
    )
    hundred_days = await enrol(
        client,
        tenant,
        guardian_consent=CONSENT,
        children=[{"birth_date": (today - timedelta(days=101)).isoformat()}],
    )
    six_months = await enrol(
        client,
        tenant,
        guardian_consent=CONSENT,
        children=[{"birth_date": (today - relativedelta(months=6)).isoformat()}],
    )
    newborn = await enrol(
        client,
        tenant,
        guardian_consent=CONSENT,
        children=[{"birth_date": (today - timedelta(days=2)).isoformat()}],
    )
    triggers = {
        "bday": {"on": "birthday"},
        "bag": {"on": "pregnancy_week", "weeks": 34},
        "d100": {"on": "child_age_days", "days": 100},
        "m6": {"on": "child_age_months", "months": 6},
        "welcome": {"on": "child_age_days", "days": 0},
    }
    ids = {
        code: await make(tenant.id, body(code, schedule={"kind": "triggered", **trigger}))
        for code, trigger in triggers.items()
    }

    await daily(tenant.id, now)
    await daily(tenant.id, now + timedelta(hours=3))

    got = {
        code: sorted(
            (str(g.member_id), g.trigger_key.split(":")[0]) for g in await grants(tenant.id, cid)
        )
        for code, cid in ids.items()
    }
    assert got == {
        "bday": [(birthday, "birthday")],
        "bag": sorted([(week_34, "pregnancy_week"), (first_day_34, "pregnancy_week")]),
        "d100": [(hundred_days, "child_days")],
        "m6": [(six_months, "child_months")],
        "welcome": [(newborn, "child_days")],
    }
    assert not_today not in {m for pairs in got.values() for m, _ in pairs}
    assert week_20 not in {m for pairs in got.values() for m, _ in pairs}
    assert week_33 not in {m for pairs in got.values() for m, _ in pairs}
    assert await ledger(tenant.id, ids["bag"]) == {week_34: 100, first_day_34: 100}


async def test_events_past_the_cursor_trigger_once(client: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    earlier = await enrol(client, tenant)
    start = datetime.now(UTC)
    joined = await make(
        tenant.id,
        body(
            "joined",
            schedule={"kind": "triggered", "on": "member_joined"},
            starts_at=start.isoformat(),
        ),
    )
    first = await make(
        tenant.id, body("first", schedule={"kind": "triggered", "on": "first_purchase"})
    )
    gold = await make(
        tenant.id,
        body("gold", schedule={"kind": "triggered", "on": "tier_changed", "tiers": ["gold"]}),
    )
    newcomer = await enrol(client, tenant)
    await order(client, tenant, newcomer, [line("feeding", 10000)])
    await order(client, tenant, newcomer, [line("feeding", 20000)])
    await order(client, tenant, earlier, [line("toys", 5000)])

    async def tier_events(session: Any) -> None:
        for member, tier in ((earlier, "gold"), (newcomer, "silver")):
            emit(
                session,
                "tier.changed",
                "member",
                member,
                {"member_id": member, "from_tier": None, "to_tier": tier},
            )

    await run_for_tenant(tenant.id, tier_events, name="test")
    later = datetime.now(UTC) + timedelta(minutes=2)

    # Not settled yet: nothing read.
    await tick(tenant.id, datetime.now(UTC))
    assert await grants(tenant.id, joined) == []

    await tick(tenant.id, later)
    await tick(tenant.id, later + timedelta(minutes=1))

    def pairs(rows: list[Any]) -> list[tuple[str, str]]:
        return sorted((str(g.member_id), g.trigger_key) for g in rows)

    assert pairs(await grants(tenant.id, joined)) == [(newcomer, "joined")]
    assert pairs(await grants(tenant.id, first)) == sorted(
        [(newcomer, "first_purchase"), (earlier, "first_purchase")]
    )
    assert pairs(await grants(tenant.id, gold)) == [(earlier, "tier:gold")]
    assert await ledger(tenant.id, first) == {newcomer: 100, earlier: 100}

    async def cursor(session: Any) -> CampaignEventCursor | None:
        return await session.scalar(select(CampaignEventCursor))

    assert (await run_for_tenant(tenant.id, cursor, name="test")) is not None


async def test_two_ticks_at_once_read_each_event_once(client: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    cid = await make(
        tenant.id, body("joined2", schedule={"kind": "triggered", "on": "member_joined"})
    )
    members = [await enrol(client, tenant) for _ in range(4)]
    later = datetime.now(UTC) + timedelta(minutes=2)

    await asyncio.gather(tick(tenant.id, later), tick(tenant.id, later), daily(tenant.id, later))

    rows = await grants(tenant.id, cid)
    assert sorted((str(g.member_id), g.trigger_key) for g in rows) == sorted(
        (m, "joined") for m in members
    )
    assert await ledger(tenant.id, cid) == dict.fromkeys(members, 100)
