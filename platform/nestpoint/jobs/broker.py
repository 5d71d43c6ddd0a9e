"""The Dramatiq broker, chosen once from settings at import.

``NESTPOINT_REDIS_URL`` set → a Redis broker shared by every API and worker process.
Unset → an in-process stub broker: the embedded default and the tests, where an in-process
worker (``nestpoint.jobs.worker``) consumes the same queues inside the server process.
Actor modules import ``broker`` from here before declaring actors, so they bind to it.

``enqueue_best_effort`` is how work is enqueued after a commit: it never raises and never
holds up the caller on the broker's network, since the database is the source of truth (the
outbox sweep and the periodic jobs find whatever a lost message would have triggered).
"""

from __future__ import annotations

import contextvars
import functools
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name
from dramatiq.middleware.asyncio import AsyncIO

from nestpoint.observability.counters import PERIODIC_FAILURES
from nestpoint.observability.jobs import JobContext, JobMetrics
from nestpoint.settings import get_settings

log = logging.getLogger("nestpoint.jobs")


def make_broker(redis_url: str | None) -> dramatiq.Broker:
    if redis_url:
        from dramatiq.brokers.redis import RedisBroker

        # dramatiq declares no types for its brokers' constructors
        new_broker: dramatiq.Broker = RedisBroker(  # type: ignore[no-untyped-call]
            url=redis_url, namespace="nestpoint"
        )
    else:
        new_broker = StubBroker()
    new_broker.add_middleware(AsyncIO())
    new_broker.add_middleware(JobMetrics())
    new_broker.add_middleware(JobContext())
    for queue_name in QUEUES:  # so a job sent by name finds its queue before its actor is declared
        new_broker.declare_queue(queue_name)
    return new_broker


QUEUES = ("events", "default")


broker = make_broker(get_settings().redis_url)
dramatiq.set_broker(broker)


PeriodicJob = Callable[..., Awaitable[None]]


def periodic_actor(
    actor_name: str, queue_name: str = "default"
) -> Callable[[PeriodicJob], dramatiq.Actor[..., None]]:
    """Declare a periodic job's actor (what the scheduler sends on its triggers).

    It is neither retried nor dead-lettered: the scheduler sends it again at its next tick,
    so a failure (a database restart, say) is logged and counted
    (``nestpoint_periodic_job_failures_total``) and the dead-letter queues keep only the
    jobs that nothing would run again, the ones an operator must look at.
    """

    def declare(job: PeriodicJob) -> dramatiq.Actor[..., None]:
        @functools.wraps(job)
        async def run(*args: Any) -> None:
            try:
                await job(*args)
            except Exception:
                log.exception("periodic job failed; it runs again at its next tick")
                PERIODIC_FAILURES.labels(actor_name).inc()

        declared: dramatiq.Actor[..., None] = dramatiq.actor(
            broker=broker, actor_name=actor_name, queue_name=queue_name, max_retries=0
        )(run)
        return declared

    return declare


class JobRef:
    """An actor addressed by name: a low-level module enqueues a job without importing the
    module that declares (and implements) it, as ``actor.send`` would."""

    def __init__(self, actor_name: str, *, queue_name: str = "default") -> None:
        self.actor_name = actor_name
        self.queue_name = queue_name

    def send(self, *args: Any) -> dramatiq.Message[Any]:
        if self.queue_name not in broker.get_declared_queues():
            broker.declare_queue(self.queue_name)  # as declaring its actor would
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=self.queue_name,
            actor_name=self.actor_name,
            args=args,
            kwargs={},
            options={},
        )
        return broker.enqueue(message)

    def __repr__(self) -> str:
        return f"JobRef({self.actor_name!r}, queue_name={self.queue_name!r})"


def is_in_process() -> bool:
    return isinstance(broker, StubBroker)


def ping() -> bool:
    """Readiness: the broker answers (always true for the in-process broker)."""
    if is_in_process():
        return True
    client = broker.client  # type: ignore[attr-defined]
    return bool(client.ping())


# What ``enqueue_best_effort`` sends: a declared actor, or one addressed by name.
Sendable = dramatiq.Actor[..., Any] | JobRef


def _send_logged(actor: Sendable, args: tuple[Any, ...]) -> None:
    try:
        actor.send(*args)
    except Exception as exc:
        log.warning(
            "could not enqueue a job; the outbox sweep will deliver",
            extra={
                "actor": actor.actor_name,
                "job_args": list(args),
                "error": f"{type(exc).__name__}: {exc}",
            },
        )


COALESCE_SECONDS = 0.02


class _Sender:
    """Sends messages from one daemon thread, so a slow or unreachable broker (a Redis
    that hangs blocks a client without timeouts) never stalls the event loop of a request;
    a message already waiting to be sent is not queued twice."""

    def __init__(self) -> None:
        # Each message with a copy of its sender's context: the request id and the trace
        # travel with it (``JobContext``), though another thread sends it.
        self._queue: queue.SimpleQueue[tuple[Sendable, tuple[Any, ...], contextvars.Context]] = (
            queue.SimpleQueue()
        )
        self._waiting: set[tuple[str, tuple[Any, ...]]] = set()
        self._unsent = 0  # submitted and not sent yet (flush waits for none)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, actor: Sendable, args: tuple[Any, ...]) -> None:
        with self._lock:
            if (actor.actor_name, args) in self._waiting:
                return
            self._waiting.add((actor.actor_name, args))
            self._unsent += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="nestpoint-enqueue", daemon=True
                )
                self._thread.start()
        self._queue.put((actor, args, contextvars.copy_context()))

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            # A busy till commits hundreds of orders a second, each asking for its tenant's
            # relay: waiting a moment lets a burst collapse into one message per tenant
            # (``submit`` drops a message already waiting), at a cost of this much latency.
            time.sleep(COALESCE_SECONDS)
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            with self._lock:
                for actor, args, _ in batch:
                    self._waiting.discard((actor.actor_name, args))
            for actor, args, context in batch:
                context.run(_send_logged, actor, args)
            with self._lock:
                self._unsent -= len(batch)

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until every message submitted so far has been sent (or ``timeout``
        seconds); True when none is left."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._unsent:
                    return True
            time.sleep(0.005)
        return False


_sender = _Sender()


def flush_enqueued(timeout: float = 2.0) -> bool:
    """Wait until the messages ``enqueue_best_effort`` accepted have left for the broker
    (a graceful shutdown, a test that counts them); True when all have."""
    return _sender.flush(timeout)


def enqueue_best_effort(actor: Sendable, *args: Any) -> None:
    """Enqueue ``actor(*args)`` after a commit: never raises (a failure is logged with the
    broker's error), and with Redis never waits for it. Only for work that something else
    catches up on when the message is lost."""
    if is_in_process():
        _send_logged(actor, args)  # in memory: nothing to wait for
    else:
        _sender.submit(actor, args)


@dataclass(frozen=True)
class QueueStats:
    """One queue's backlog, for the metrics: waiting, delayed (a retry's back-off), dead
    (retries exhausted: kept for the operator), and the age of the oldest waiting one."""

    queue: str
    waiting: int
    delayed: int
    dead: int
    oldest_age_seconds: float


def queue_stats() -> list[QueueStats]:
    """Each queue's backlog, read from the broker (Redis, or the in-process queues)."""
    now_ms = time.time() * 1000
    if is_in_process():
        return [_stub_stats(queue_name, now_ms) for queue_name in QUEUES]
    return [_redis_stats(queue_name, now_ms) for queue_name in QUEUES]


def _stub_stats(queue_name: str, now_ms: float) -> QueueStats:
    stub: Any = broker
    waiting = stub.queues[queue_name]
    delayed = stub.queues.get(dq_name(queue_name))
    oldest = waiting.queue[0] if waiting.qsize() else None
    return QueueStats(
        queue_name,
        waiting.qsize(),
        delayed.qsize() if delayed is not None else 0,
        len(stub.dead_letters_by_queue[queue_name]),
        _age(oldest, now_ms),
    )


def _redis_stats(queue_name: str, now_ms: float) -> QueueStats:
    # The Redis broker's layout (dramatiq/brokers/redis/dispatch.lua): a list of waiting
    # message ids, oldest first, and a hash of the messages; ".DQ" delayed, ".XQ" dead.
    client = broker.client  # type: ignore[attr-defined]
    key = f"{broker.namespace}:{queue_name}"  # type: ignore[attr-defined]
    delayed_key = f"{broker.namespace}:{dq_name(queue_name)}"  # type: ignore[attr-defined]
    pipe = client.pipeline()
    pipe.llen(key)
    pipe.llen(delayed_key)
    pipe.zcard(f"{key}.XQ")
    pipe.lindex(key, 0)
    waiting, delayed, dead, oldest_id = pipe.execute()
    oldest = client.hget(f"{key}.msgs", oldest_id) if oldest_id else None
    return QueueStats(queue_name, waiting, delayed, dead, _age(oldest, now_ms))


def _age(encoded: bytes | None, now_ms: float) -> float:
    """Seconds since an encoded message was enqueued (0 for none)."""
    if not encoded:
        return 0.0
    message = dramatiq.Message.decode(encoded)
    return max(0.0, (now_ms - message.message_timestamp) / 1000)


@dataclass(frozen=True)
class DeadLetter:
    """A job that exhausted its retries, kept by the broker for the operator (Redis keeps
    them seven days: Dramatiq's ``dead_message_ttl``)."""

    queue: str
    message_id: str  # Dramatiq's id, as the worker's log lines name it
    actor: str
    died_at: float | None  # Unix time
    args: tuple[Any, ...]
    # The error of the last attempt that was retried (Dramatiq keeps no error for a job
    # that dies at its first failure: then empty; the worker's log has it).
    error: str


def dead_letters() -> list[DeadLetter]:
    """Every dead job, oldest first."""
    return [dead for dead, _ in _dead_entries()]


def _dead_entries() -> list[tuple[DeadLetter, Any]]:
    """Each dead job with the broker's handle on it (its Redis key, or the stub's proxy)."""
    if is_in_process():
        stub: Any = broker
        return [
            (_dead(queue_name, proxy, None), proxy)
            for queue_name in QUEUES
            for proxy in stub.dead_letters_by_queue[queue_name]
        ]
    found = []
    client = broker.client  # type: ignore[attr-defined]
    for queue_name in QUEUES:
        key = f"{broker.namespace}:{queue_name}.XQ"  # type: ignore[attr-defined]
        for raw_id, score in client.zrange(key, 0, -1, withscores=True):
            encoded = client.hget(f"{key}.msgs", raw_id)
            if encoded:
                message = dramatiq.Message.decode(encoded)
                found.append((_dead(queue_name, message, score / 1000), (key, raw_id, message)))
    return found


def _dead(queue_name: str, message: Any, died_at: float | None) -> DeadLetter:
    """From a message, or the in-process broker's proxy of one."""
    lines = str(message.options.get("traceback") or "").strip().splitlines()
    error = lines[-1] if lines else ""
    return DeadLetter(
        queue_name, message.message_id, message.actor_name, died_at, message.args, error
    )


def requeue_dead(message_ids: set[str] | None = None) -> int:
    """Send dead jobs (all, or those named) to their queues again with fresh retries; the
    number requeued."""
    if is_in_process():
        return _requeue_stub(message_ids)
    client = broker.client  # type: ignore[attr-defined]
    requeued = 0
    for dead, (key, raw_id, message) in _dead_entries():
        if message_ids is not None and dead.message_id not in message_ids:
            continue
        broker.enqueue(message.copy(options={"retries": 0, "traceback": None}))
        client.zrem(key, raw_id)
        client.hdel(f"{key}.msgs", raw_id)
        requeued += 1
    return requeued


def _requeue_stub(message_ids: set[str] | None) -> int:
    stub: Any = broker
    requeued = 0
    for queue_name in QUEUES:
        dead = stub.dead_letters_by_queue[queue_name]
        for proxy in list(dead):
            if message_ids is None or proxy.message_id in message_ids:
                dead.remove(proxy)
                broker.enqueue(proxy.copy(options={"retries": 0, "traceback": None}))
                requeued += 1
    return requeued
