"""Dramatiq middleware: each job counted and timed by actor (``nestpoint_jobs_total``,
``nestpoint_job_duration_seconds``), in the worker process that ran it; and the enqueuer's
request id and trace context carried into the job (``JobContext``)."""

from __future__ import annotations

import contextvars
import threading
import time
from typing import Any

import dramatiq
from dramatiq import Middleware
from opentelemetry import propagate, trace

from nestpoint.context import request_id
from nestpoint.observability import tracing
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


# Message options that carry the enqueuer's context to the job.
REQUEST_ID_OPTION = "nestpoint_request_id"
TRACE_OPTION = "nestpoint_trace"


class JobContext(Middleware):
    """Carries the request id and the trace context from whoever enqueues a job into the
    job: its log lines carry the request's id, and (tracing on) its span joins the trace.

    ``before_enqueue`` runs where ``send`` is called; ``enqueue_best_effort`` sends from a
    thread of its own, inside a copy of the caller's context (``nestpoint.jobs.broker``),
    so it sees the request's. ``before_process_message`` runs in the worker's thread just
    before the actor; an async actor's coroutine starts from a copy of that thread's
    context, so what is set here reaches it.
    """

    def __init__(self) -> None:
        self._open: dict[str, tuple[Any, Any, contextvars.Token[str | None]]] = {}
        self._lock = threading.Lock()

    def before_enqueue(self, broker: dramatiq.Broker, message: Any, delay: Any) -> None:
        rid = request_id.get()
        if rid and REQUEST_ID_OPTION not in message.options:
            message.options[REQUEST_ID_OPTION] = rid
        if tracing.enabled() and TRACE_OPTION not in message.options:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            if carrier:
                message.options[TRACE_OPTION] = carrier

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        token = request_id.set(message.options.get(REQUEST_ID_OPTION))
        span = scope = None
        if tracing.enabled():
            parent = propagate.extract(message.options.get(TRACE_OPTION) or {})
            span = tracing.tracer().start_span(
                f"job {message.actor_name}",
                context=parent,
                kind=trace.SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "dramatiq",
                    "messaging.destination.name": message.queue_name,
                    "messaging.message.id": message.message_id,
                },
            )
            scope = trace.use_span(span, end_on_exit=False)
            scope.__enter__()
        with self._lock:
            self._open[message.message_id] = (span, scope, token)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self._close(message, exception)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._close(message, None)

    def _close(self, message: Any, exception: BaseException | None) -> None:
        with self._lock:
            span, scope, token = self._open.pop(message.message_id, (None, None, None))
        if span is not None:
            if exception is not None:
                span.record_exception(exception)
                span.set_status(trace.Status(trace.StatusCode.ERROR, type(exception).__name__))
            span.end()
        if scope is not None:
            scope.__exit__(None, None, None)
        if token is not None:
            request_id.reset(token)
