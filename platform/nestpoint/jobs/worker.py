"""Running workers: in-process (embedded default, demo) or as its own process (production).

A worker's threads (Dramatiq's event loop thread for async actors is not a daemon) keep a
process alive until they are stopped: whoever starts a worker stops it with ``stop_worker``
on the way out, or the process never exits.
"""

from __future__ import annotations

import logging

import dramatiq
from dramatiq import Middleware, Worker
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware.asyncio import AsyncIO

from nestpoint.db.session import get_database
from nestpoint.jobs.broker import broker
from nestpoint.jobs.registry import load_actors
from nestpoint.jobs.scheduler import SchedulerThread

log = logging.getLogger("nestpoint.jobs")

# How long a stopping worker lets the jobs in hand finish. Every job is idempotent and the
# periodic ones (and the outbox sweep) run again, so one cut short is done later.
STOP_TIMEOUT_SECONDS = 5


class CloseDatabaseOnShutdown(Middleware):
    """Closes the worker loop's database connections once its jobs are done, before the
    loop stops: they belong to that loop, and nothing could close them cleanly after it."""

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Worker) -> None:
        loop_thread = get_event_loop_thread()
        if loop_thread is None:
            return
        try:
            loop_thread.run_coroutine(get_database().dispose())
        except Exception:
            log.exception("could not close the worker's database connections")


def start_worker(threads: int = 2) -> Worker:
    load_actors()
    if not any(isinstance(m, CloseDatabaseOnShutdown) for m in broker.middleware):
        # Before AsyncIO: its after_worker_shutdown stops the loop the connections belong to.
        broker.add_middleware(CloseDatabaseOnShutdown(), before=AsyncIO)
    worker = Worker(broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    log.info("worker started", extra={"threads": threads, "queues": sorted(broker.queues)})
    return worker


def start_scheduler() -> SchedulerThread:
    """The leader-elected scheduler, in a thread of this process (``jobs.scheduler``)."""
    return SchedulerThread().start()


def stop_worker(worker: Worker, scheduler: SchedulerThread | None = None) -> None:
    """Stop the scheduler (no new periodic jobs), then the worker, within a few seconds."""
    if scheduler is not None:
        scheduler.stop(timeout=STOP_TIMEOUT_SECONDS)
    worker.stop(timeout=STOP_TIMEOUT_SECONDS * 1000)
    log.info("worker stopped")


def get_actor(name: str) -> dramatiq.Actor[..., object]:
    load_actors()
    return broker.get_actor(name)
