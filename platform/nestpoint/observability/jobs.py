"""Dramatiq middleware: each job counted and timed by actor (``nestpoint_jobs_total``,
``nestpoint_job_duration_seconds``), in the worker process that ran it."""

from __future__ import annotations

import threading
import time
from typing import Any

import dramatiq
from dramatiq import Middleware

from nestpoint.observability.counters import JOB_SECONDS, JOBS


class JobMetrics(Middleware):
    def __init__(self) -> None:
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()  # the worker's threads process messages at once

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        with self._lock:
            self._started[message.message_id] = time.perf_counter()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        with self._lock:
            started = self._started.pop(message.message_id, None)
        if started is not None:
            JOB_SECONDS.labels(message.actor_name).observe(time.perf_counter() - started)
        JOBS.labels(message.actor_name, "failed" if exception is not None else "done").inc()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        with self._lock:
            self._started.pop(message.message_id, None)
        JOBS.labels(message.actor_name, "skipped").inc()
