"""Running workers: in-process (embedded default, demo) or as its own process (production)."""

from __future__ import annotations

import logging

import dramatiq
from apscheduler.schedulers.background import BackgroundScheduler
from dramatiq import Worker

from nestpoint.jobs.broker import broker
from nestpoint.jobs.registry import PERIODIC_JOBS, load_actors

log = logging.getLogger("nestpoint.jobs")


def start_worker(threads: int = 2) -> Worker:
    load_actors()
    worker = Worker(broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    log.info("worker started", extra={"threads": threads, "queues": sorted(broker.queues)})
    return worker


def start_scheduler() -> BackgroundScheduler:
    """Enqueue the periodic jobs on their triggers (APScheduler, in a background thread)."""
    load_actors()
    scheduler = BackgroundScheduler(timezone="UTC")
    for actor_name, trigger, trigger_args in PERIODIC_JOBS:
        actor = broker.get_actor(actor_name)
        scheduler.add_job(
            actor.send, trigger, id=actor_name, coalesce=True, max_instances=1, **trigger_args
        )
    from nestpoint.plugins.jobs import periodic_jobs  # the installed plugins' periodic jobs

    plugin_jobs = periodic_jobs()
    fanout = broker.get_actor("plugins.periodic")
    for job_id, trigger, trigger_args, args in plugin_jobs:
        scheduler.add_job(
            fanout.send,
            trigger,
            args=args,
            id=job_id,
            coalesce=True,
            max_instances=1,
            **trigger_args,
        )
    scheduler.start()
    log.info(
        "scheduler started",
        extra={"jobs": [name for name, _, _ in PERIODIC_JOBS] + [j[0] for j in plugin_jobs]},
    )
    return scheduler


def get_actor(name: str) -> dramatiq.Actor[..., object]:
    load_actors()
    return broker.get_actor(name)
