"""The one scheduler: enqueues the periodic jobs, only while it leads (``jobs.leader``).

Run it as its own process (``nestpoint scheduler``; the Helm chart's scheduler Deployment)
or inside a worker or the embedded server (``SchedulerThread``). Any number may run: they
elect one leader, and only the leader's APScheduler is running; the others wait, paused,
and one takes over within ``ELECTION_SECONDS`` of the leader's end.

Periodic jobs run on UTC intervals (``PERIODIC_JOBS``); jobs due at a chain's local time
go through ``jobs.enqueue_due`` (``nestpoint.jobs.daily``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from datetime import UTC

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from nestpoint.jobs.leader import Leadership, leadership_for
from nestpoint.jobs.registry import PERIODIC_JOBS, load_actors
from nestpoint.observability.counters import SCHEDULER_LEADER
from nestpoint.plugins.jobs import periodic, periodic_jobs  # the plugins' periodic jobs
from nestpoint.settings import get_settings

log = logging.getLogger("nestpoint.scheduler")

ELECTION_SECONDS = 5.0


def _periodic_scheduler() -> AsyncIOScheduler:
    """An APScheduler (paused until this process leads) with every periodic job."""
    load_actors()
    scheduler = AsyncIOScheduler(timezone=UTC)
    options = {"coalesce": True, "max_instances": 1}
    for actor, trigger, trigger_args in PERIODIC_JOBS:
        scheduler.add_job(actor.send, trigger, id=actor.actor_name, **options, **trigger_args)
    fanout = periodic
    for job_id, trigger, trigger_args, args in periodic_jobs():
        scheduler.add_job(fanout.send, trigger, args=args, id=job_id, **options, **trigger_args)
    return scheduler


async def run_scheduler(stop: asyncio.Event, leadership: Leadership | None = None) -> None:
    """Elect, schedule while leading, until ``stop`` is set; then step down."""
    leadership = leadership or leadership_for(get_settings())
    scheduler = _periodic_scheduler()
    scheduler.start(paused=True)
    leading = False
    try:
        while not stop.is_set():
            now_leading = await leadership.hold()
            SCHEDULER_LEADER.set(1 if now_leading else 0)
            if now_leading and not leading:
                scheduler.resume()
                log.info("scheduler leads", extra={"jobs": [j.id for j in scheduler.get_jobs()]})
            elif leading and not now_leading:
                scheduler.pause()
                log.warning("scheduler no longer leads: paused")
            leading = now_leading
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), ELECTION_SECONDS)
    finally:
        scheduler.shutdown(wait=False)
        await leadership.release()
        SCHEDULER_LEADER.set(0)
        log.info("scheduler stopped")


class SchedulerThread:
    """``run_scheduler`` in a thread of its own (inside a worker or the embedded server)."""

    def __init__(self, leadership: Leadership | None = None) -> None:
        self._leadership = leadership
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="nestpoint-scheduler")

    def start(self) -> SchedulerThread:
        self._thread.start()
        self._started.wait()
        return self

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._started.set()
            await run_scheduler(self._stop, self._leadership)

        try:
            asyncio.run(main())
        finally:
            self._started.set()

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()
