"""The one scheduler: leader election, and daily jobs at each chain's local time."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from typing import Any

import pytest
from sqlalchemy import select

from conftest import BACKEND, _pg_admin
from nestpoint.jobs import daily, scheduler
from nestpoint.jobs.daily import DailyJob, due_runs, enqueue_due
from nestpoint.jobs.leader import AdvisoryLock, FileLock, Leadership, leadership_for
from nestpoint.jobs.models import DailyRun
from nestpoint.settings import get_settings

SHANGHAI = "Asia/Shanghai"  # UTC+8
NEW_YORK = "America/New_York"  # UTC-5 in winter
JOBS = (DailyJob("tiers.evaluate", time(3, 30)), DailyJob("points.announce_expiring", time(9)))


def _runs(tenants: list[tuple[uuid.UUID, str]], now: datetime) -> set[tuple[Any, ...]]:
    return {(r.tenant_id, r.job.actor_name, r.local_date) for r in due_runs(tenants, now, JOBS)}


def test_a_daily_job_is_due_after_its_local_time_in_each_time_zone() -> None:
    shanghai, new_york = uuid.uuid4(), uuid.uuid4()
    tenants = [(shanghai, SHANGHAI), (new_york, NEW_YORK)]
    dec1, dec2 = date(2026, 12, 1), date(2026, 12, 2)
    new_york_dec1 = {
        (new_york, "tiers.evaluate", dec1),
        (new_york, "points.announce_expiring", dec1),
    }
    # 19:29 UTC is 03:29 on 2 December in Shanghai, 14:29 on 1 December in New York.
    assert _runs(tenants, datetime(2026, 12, 1, 19, 29, tzinfo=UTC)) == new_york_dec1
    assert _runs(tenants, datetime(2026, 12, 1, 19, 30, tzinfo=UTC)) == new_york_dec1 | {
        (shanghai, "tiers.evaluate", dec2)
    }
    # 08:31 UTC is 03:31 in New York and 16:31 in Shanghai, both on 2 December.
    assert _runs(tenants, datetime(2026, 12, 2, 8, 31, tzinfo=UTC)) == {
        (shanghai, "tiers.evaluate", dec2),
        (shanghai, "points.announce_expiring", dec2),
        (new_york, "tiers.evaluate", dec2),
    }


def test_a_monthly_job_is_due_only_on_its_day_of_the_month() -> None:
    tenant = uuid.uuid4()
    monthly = (DailyJob("settlement.compute_last_month", time(6), day_of_month=1),)
    # 22:30 UTC on 30 November is 06:30 on 1 December in Shanghai.
    first = due_runs([(tenant, SHANGHAI)], datetime(2026, 11, 30, 22, 30, tzinfo=UTC), monthly)
    assert [(r.job.actor_name, r.local_date) for r in first] == [
        ("settlement.compute_last_month", date(2026, 12, 1))
    ]
    assert due_runs([(tenant, SHANGHAI)], datetime(2026, 11, 30, 21, 59, tzinfo=UTC), monthly) == []
    assert due_runs([(tenant, SHANGHAI)], datetime(2026, 12, 1, 22, 30, tzinfo=UTC), monthly) == []


def test_an_unknown_time_zone_counts_as_utc() -> None:
    tenant = uuid.uuid4()
    runs = due_runs([(tenant, "Mars/Olympus")], datetime(2026, 12, 1, 3, 30, tzinfo=UTC), JOBS)
    assert [(r.job.actor_name, r.local_date) for r in runs] == [
        ("tiers.evaluate", date(2026, 12, 1))
    ]


class Sent:
    """Stands in for the broker: records (actor, tenant id); can fail like a broker."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []
        self.fail = False

    def ref(self, actor_name: str) -> Any:
        sent = self

        class Ref:
            def send(self, tenant_id: str) -> None:
                if sent.fail:
                    raise ConnectionError("broker down")
                sent.messages.append((actor_name, tenant_id))

        return Ref()

    def to(self, tenant_ids: set[uuid.UUID]) -> list[tuple[str, str]]:
        return sorted(m for m in self.messages if uuid.UUID(m[1]) in tenant_ids)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sent]:
    recorder = Sent()
    monkeypatch.setattr(daily, "JobRef", recorder.ref)
    daily._claimed.clear()
    yield recorder
    daily._claimed.clear()


@pytest.fixture
def ours(monkeypatch: pytest.MonkeyPatch) -> set[uuid.UUID]:
    """The tenants this test made (it adds them): the checks claim runs for these only.

    The session's database holds every earlier test's tenants too (hundreds, more as the
    suite grows) and a check makes a transaction per tenant and due job, while a test looks
    only at its own. The real query still picks the active tenants; this keeps the test's.
    """
    mine: set[uuid.UUID] = set()
    active_tenants = daily._active_tenants

    async def only_ours(database: Any) -> list[tuple[uuid.UUID, str]]:
        return [row for row in await active_tenants(database) if row[0] in mine]

    monkeypatch.setattr(daily, "_active_tenants", only_ours)
    return mine


async def _tenant(client: Any, platform_headers: dict[str, str], timezone: str) -> uuid.UUID:
    slug = f"tz-{uuid.uuid4().hex[:12]}"
    r = await client.post(
        "/api/v1/tenants",
        json={"slug": slug, "name": slug, "timezone": timezone},
        headers=platform_headers,
    )
    assert r.status_code == 201, r.text
    return uuid.UUID(r.json()["id"])


async def _claimed_dates(tenant_id: uuid.UUID) -> list[tuple[str, date]]:
    from nestpoint.jobs.tenants import run_for_tenant

    async def read(session: Any) -> list[tuple[str, date]]:
        rows = await session.execute(
            select(DailyRun.job, DailyRun.local_date).order_by(DailyRun.job)
        )  # the tenant's own rows only: the session is scoped to it
        return [(row.job, row.local_date) for row in rows]

    return await run_for_tenant(tenant_id, read, name="test")


async def test_daily_jobs_are_enqueued_once_a_local_day_per_tenant(
    client: Any, platform_headers: dict[str, str], sent: Sent, ours: set[uuid.UUID]
) -> None:
    shanghai = await _tenant(client, platform_headers, SHANGHAI)
    new_york = await _tenant(client, platform_headers, NEW_YORK)
    ours.update({shanghai, new_york})
    # A year ahead, so no other test's claims (same dates) are in the way.
    night = datetime(2027, 12, 1, 19, 35, tzinfo=UTC)  # 03:35 on the 2nd in Shanghai

    await enqueue_due(night)
    assert sent.to(ours) == sorted(
        [
            ("tiers.evaluate", str(shanghai)),
            ("tiers.evaluate", str(new_york)),
            ("campaigns.daily", str(new_york)),
            ("membership.renew_due", str(new_york)),
            ("points.announce_expiring", str(new_york)),
            ("messaging.birthdays", str(new_york)),
            ("privacy.retention", str(new_york)),
            ("segments.recompute", str(shanghai)),
            ("segments.recompute", str(new_york)),
            # Monthly: the 1st is New York's day, not Shanghai's (already the 2nd).
            ("settlement.compute_last_month", str(new_york)),
        ]
    )
    assert await _claimed_dates(shanghai) == [
        ("segments.recompute", date(2027, 12, 2)),
        ("tiers.evaluate", date(2027, 12, 2)),
    ]
    assert await _claimed_dates(new_york) == [
        ("campaigns.daily", date(2027, 12, 1)),
        ("membership.renew_due", date(2027, 12, 1)),
        ("messaging.birthdays", date(2027, 12, 1)),
        ("points.announce_expiring", date(2027, 12, 1)),
        ("privacy.retention", date(2027, 12, 1)),
        ("segments.recompute", date(2027, 12, 1)),
        ("settlement.compute_last_month", date(2027, 12, 1)),
        ("tiers.evaluate", date(2027, 12, 1)),
    ]
    first = sent.to(ours)

    # Checked again and again (and by a process that never saw the first claims): once.
    await enqueue_due(night)
    daily._claimed.clear()
    await enqueue_due(night.replace(minute=50))
    assert sent.to(ours) == first

    # New York's next night comes eight hours after Shanghai's; Shanghai's morning too.
    await enqueue_due(datetime(2027, 12, 2, 8, 40, tzinfo=UTC))
    assert sent.to(ours) == sorted(
        [
            *first,
            ("campaigns.daily", str(shanghai)),
            ("membership.renew_due", str(shanghai)),
            ("points.announce_expiring", str(shanghai)),
            ("messaging.birthdays", str(shanghai)),
            ("privacy.retention", str(shanghai)),
            ("segments.recompute", str(new_york)),
            ("tiers.evaluate", str(new_york)),
        ]
    )
    assert (("tiers.evaluate", date(2027, 12, 2))) in await _claimed_dates(new_york)


async def test_concurrent_checks_enqueue_each_run_once(
    client: Any, platform_headers: dict[str, str], sent: Sent, ours: set[uuid.UUID]
) -> None:
    tenant = await _tenant(client, platform_headers, SHANGHAI)
    ours.add(tenant)
    morning = datetime(2028, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai

    await asyncio.gather(*(enqueue_due(morning) for _ in range(4)))

    assert sent.to({tenant}) == [
        ("campaigns.daily", str(tenant)),
        ("membership.renew_due", str(tenant)),
        ("messaging.birthdays", str(tenant)),
        ("points.announce_expiring", str(tenant)),
        ("privacy.retention", str(tenant)),
        ("segments.recompute", str(tenant)),
        ("settlement.compute_last_month", str(tenant)),
        ("tiers.evaluate", str(tenant)),
    ]


async def test_a_send_that_fails_leaves_the_run_to_the_next_check(
    client: Any, platform_headers: dict[str, str], sent: Sent, ours: set[uuid.UUID]
) -> None:
    tenant = await _tenant(client, platform_headers, SHANGHAI)
    ours.add(tenant)
    morning = datetime(2028, 4, 1, 2, 0, tzinfo=UTC)

    sent.fail = True
    await enqueue_due(morning)
    assert await _claimed_dates(tenant) == []  # the claim rolled back with the send

    sent.fail = False
    await enqueue_due(morning)
    assert sent.to({tenant}) == [
        ("campaigns.daily", str(tenant)),
        ("membership.renew_due", str(tenant)),
        ("messaging.birthdays", str(tenant)),
        ("points.announce_expiring", str(tenant)),
        ("privacy.retention", str(tenant)),
        ("segments.recompute", str(tenant)),
        ("settlement.compute_last_month", str(tenant)),
        ("tiers.evaluate", str(tenant)),
    ]
    assert len(await _claimed_dates(tenant)) == 8


# ---- leader election


@pytest.fixture
def leaderships(database_env: dict[str, str], tmp_path: Any) -> Any:
    """Makes leaderships as the configured backend would: an advisory lock on PostgreSQL,
    a file lock beside the SQLite database (each test gets a lock of its own)."""
    settings = get_settings()
    lock_id = 7_000_000 + uuid.uuid4().int % 1_000_000
    path = tmp_path / "np.scheduler.lock"

    def make() -> Leadership:
        if settings.is_postgres:
            return AdvisoryLock(settings.database_url, lock_id)
        return FileLock(path)

    make.lock_id = lock_id  # type: ignore[attr-defined]
    make.path = path  # type: ignore[attr-defined]
    return make


def test_the_backend_decides_the_kind_of_lock(database_env: dict[str, str]) -> None:
    settings = get_settings()
    kind = AdvisoryLock if settings.is_postgres else FileLock
    assert isinstance(leadership_for(settings), kind)


async def test_one_leader_at_a_time_and_another_takes_over(leaderships: Any) -> None:
    first, second = leaderships(), leaderships()
    try:
        assert await first.hold() is True
        assert await second.hold() is False
        assert await first.hold() is True  # still leads
        await first.release()
        assert await second.hold() is True
        assert await first.hold() is False
    finally:
        await first.release()
        await second.release()


LEADER_SCRIPT = """
import asyncio, sys
from nestpoint.jobs.models import DailyRun
from nestpoint.jobs.leader import AdvisoryLock, FileLock
from pathlib import Path
kind, where, lock_id = sys.argv[1], sys.argv[2], int(sys.argv[3])
lock = AdvisoryLock(where, lock_id) if kind == "pg" else FileLock(Path(where))
async def main():
    assert await lock.hold()
    print("leading", flush=True)
    await asyncio.sleep(300)
asyncio.run(main())
"""


async def test_a_killed_leader_is_replaced(leaderships: Any) -> None:
    settings = get_settings()
    args = (
        ("pg", settings.database_url) if settings.is_postgres else ("file", str(leaderships.path))
    )
    process = subprocess.Popen(  # noqa: ASYNC220, S603 - our own script, started once
        [sys.executable, "-c", LEADER_SCRIPT, *args, str(leaderships.lock_id)],
        stdout=subprocess.PIPE,
        text=True,
    )
    candidate = leaderships()
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 30)
        assert line.strip() == "leading"
        assert await candidate.hold() is False

        os.kill(process.pid, signal.SIGKILL)  # no chance to step down
        await asyncio.to_thread(process.wait, 10)
        for _ in range(50):  # the server notices the connection's end at once or nearly
            if await candidate.hold():
                break
            await asyncio.sleep(0.1)
        assert await candidate.hold() is True
    finally:
        process.kill()
        await candidate.release()


@pytest.mark.skipif(
    BACKEND != "postgresql",
    reason="a server connection to cut exists only on PostgreSQL; the file lock has none",
)
async def test_a_leader_whose_connection_is_cut_steps_down(leaderships: Any) -> None:
    leader, candidate = leaderships(), leaderships()
    try:
        assert await leader.hold() is True
        await _pg_admin(
            "SELECT pg_terminate_backend(pid) FROM pg_locks"
            f" WHERE locktype = 'advisory' AND objid = {leaderships.lock_id}"
        )
        assert await leader.hold() is False  # its check failed: it no longer leads
        assert await candidate.hold() is True
    finally:
        await leader.release()
        await candidate.release()


class Watched:
    """A leadership whose last answer the test can read."""

    def __init__(self, inner: Leadership) -> None:
        self.inner = inner
        self.leads = False

    async def hold(self) -> bool:
        self.leads = await self.inner.hold()
        return self.leads

    async def release(self) -> None:
        self.leads = False
        await self.inner.release()


async def test_of_two_schedulers_only_the_leader_schedules(
    leaderships: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduler, "ELECTION_SECONDS", 0.05)
    caplog.set_level(logging.INFO, logger="nestpoint.scheduler")
    stops = [asyncio.Event(), asyncio.Event()]
    locks = [Watched(leaderships()), Watched(leaderships())]

    def leads() -> int:
        return sum(r.getMessage() == "scheduler leads" for r in caplog.records)

    tasks = [
        asyncio.create_task(scheduler.run_scheduler(stop, lock))
        for stop, lock in zip(stops, locks, strict=True)
    ]
    try:
        await asyncio.sleep(0.5)
        assert leads() == 1
        assert [lock.leads for lock in locks].count(True) == 1
        # The leader stops (a deploy): the other takes over.
        leader = 0 if locks[0].leads else 1
        stops[leader].set()
        for _ in range(40):
            await asyncio.sleep(0.05)
            if leads() == 2:
                break
        assert leads() == 2
        assert locks[1 - leader].leads is True
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*tasks)
