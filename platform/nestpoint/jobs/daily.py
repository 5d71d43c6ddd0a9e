"""Daily jobs at each chain's own local time (a chain in Asia/Shanghai evaluates its tiers
after its own night, one in Europe/Berlin after its own).

The scheduler enqueues ``jobs.enqueue_due`` every few minutes; it finds, for every active
tenant, the daily jobs whose local time has passed today and that were not yet enqueued for
that local date, claims each (a ``daily_runs`` row) and enqueues it in the same
transaction. The claim and the message are not atomic: a message sent and then a commit
lost means the job is enqueued again on the next check, which is harmless since every job
is idempotent; a send that fails rolls the claim back, so the next check tries again.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import partial
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cachetools import TTLCache
from sqlalchemy import bindparam, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.db import Database, scoped_session
from nestpoint.db.base import table_of
from nestpoint.jobs.broker import JobRef
from nestpoint.jobs.models import DailyRun
from nestpoint.jobs.tenants import run_for_tenant
from nestpoint.tenancy.models import Tenant

log = logging.getLogger("nestpoint.jobs")


@dataclass(frozen=True)
class DailyJob:
    """An actor taking a tenant id, enqueued once a local day at ``at`` or later (only on
    that day of the month when ``day_of_month`` is set: a monthly job)."""

    actor_name: str
    at: time
    day_of_month: int | None = None


DAILY_JOBS = (
    # After the chain's night: growth that expired at midnight is out of the window.
    DailyJob("tiers.evaluate", time(3, 30)),
    # In the morning, when a member reads a message.
    DailyJob("points.announce_expiring", time(9, 0)),
    # Birthday greetings in the morning too (a member born on 29 February: on 28 February
    # in other years).
    DailyJob("messaging.birthdays", time(9, 30)),
    # The retention rules, in the chain's quiet hours (a no-op for a chain without rules).
    DailyJob("privacy.retention", time(4, 0)),
    # The built-in segments (RFM groups, value circles, lifecycle stages), after the
    # chain's midnight and before the day's campaigns read them.
    DailyJob("segments.recompute", time(2, 30)),
    # Campaigns triggered by a date (birthdays, pregnancy weeks, children's ages), after the
    # segments they may read and before the morning's messages.
    DailyJob("campaigns.daily", time(8, 0)),
    # Paid cards: renewal reminders, renewal payments on a card's last day, retries in
    # grace and lapses, in the chain's morning (a member can fix a refused card that day).
    DailyJob("membership.renew_due", time(10, 0)),
    # Last month's settlement draft, on the 1st after the chain's night (docs/settlement.md).
    DailyJob("settlement.compute_last_month", time(6, 0), day_of_month=1),
)


@dataclass(frozen=True)
class DueRun:
    tenant_id: uuid.UUID
    job: DailyJob
    local_date: date


def local_now(timezone: str, now: datetime) -> datetime:
    """``now`` on the chain's clock (UTC for a time zone this machine does not know)."""
    try:
        return now.astimezone(ZoneInfo(timezone))
    except (ZoneInfoNotFoundError, ValueError):
        return now.astimezone(UTC)


def due_runs(
    tenants: list[tuple[uuid.UUID, str]], now: datetime, jobs: tuple[DailyJob, ...] = DAILY_JOBS
) -> list[DueRun]:
    """The runs whose local time has passed today, for each (tenant id, time zone)."""
    runs = []
    for tenant_id, timezone in tenants:
        local = local_now(timezone, now)
        runs += [
            DueRun(tenant_id, job, local.date())
            for job in jobs
            if local.time() >= job.at and job.day_of_month in (None, local.day)
        ]
    return runs


runs = table_of(DailyRun)
CLAIM = (
    postgresql.insert(runs)
    .values(
        tenant_id=bindparam("tenant_id"),
        job=bindparam("job"),
        local_date=bindparam("local_date"),
        enqueued_at=bindparam("enqueued_at"),
    )
    .on_conflict_do_nothing(index_elements=["tenant_id", "job", "local_date"])
    .returning(runs.c.job)
)

# Runs this process has seen claimed (by itself or another): no transaction for them on
# the next checks of the day. Losing it (a restart) costs one INSERT that does nothing.
_claimed: TTLCache[tuple[uuid.UUID, str, date], bool] = TTLCache(maxsize=100_000, ttl=2 * 86400)


async def enqueue_due(now: datetime | None = None, database: Database | None = None) -> int:
    """Claim and enqueue every due run not enqueued yet; the number enqueued."""
    now = now or datetime.now(UTC)
    enqueued = 0
    for run in due_runs(await _active_tenants(database), now):
        key = (run.tenant_id, run.job.actor_name, run.local_date)
        if key in _claimed:
            continue
        claim = partial(_claim_and_send, run=run, now=now)
        try:
            if await run_for_tenant(
                run.tenant_id, claim, name="jobs.enqueue_due", database=database
            ):
                enqueued += 1
        except Exception as exc:  # the broker or the database: the next check tries again
            log.warning(
                "could not enqueue a daily job",
                extra={
                    "job": run.job.actor_name,
                    "tenant": str(run.tenant_id),
                    "error": f"{type(exc).__name__}: {exc}",
                },
            )
            continue
        _claimed[key] = True
    return enqueued


async def _active_tenants(database: Database | None) -> list[tuple[uuid.UUID, str]]:
    async with scoped_session(database) as session:
        rows = await session.execute(select(Tenant.id, Tenant.timezone).where(Tenant.active))
        return [(row.id, row.timezone) for row in rows]


async def _claim_and_send(session: AsyncSession, run: DueRun, now: datetime) -> bool:
    claimed = await session.scalar(
        CLAIM,
        {
            "tenant_id": run.tenant_id,
            "job": run.job.actor_name,
            "local_date": run.local_date,
            "enqueued_at": now,
        },
    )
    if claimed is None:
        return False
    # Inside the transaction: a failed send rolls the claim back (see the module's note).
    JobRef(run.job.actor_name).send(str(run.tenant_id))
    return True
