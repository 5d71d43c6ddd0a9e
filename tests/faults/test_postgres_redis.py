"""Fault tolerance on PostgreSQL and Redis, with real processes on throwaway services.

One stack for the module (``stack.postgres_stack``): a PostgreSQL 15 cluster and a Redis of
its own, ``nestpoint serve`` (Redis broker, no worker inside), ``nestpoint worker
--no-scheduler`` processes and ``nestpoint scheduler`` (``events.sweep`` every 30 s). A
tenant with two stores, the example plugin (an idempotent consumer: one celebration per
tier change) and the probe plugin (``probe_plugin.py``: writes down every delivery) enabled
for the chain, and members made through the API.

1. Tills post orders all along while a worker is SIGKILLed with jobs in hand and the API
   is SIGKILLed with requests in flight; the tills send again, with the same body, what got
   no 2xx; then Redis stops for seconds (orders still answer 201, their events wait in the
   outbox) and the tills stop before it is back: no commit asks for a relay any more, and
   the periodic sweep (or a relay a worker still held) delivers those events.
2. A points expiry run is sent twice at once and every worker is SIGKILLed halfway through;
   new workers get it twice again: each lot expires once.
3. A message that always fails ends in the dead-letter queue, which the operator sees in
   ``/metrics`` and ``nestpoint jobs dead-letters`` (and requeues from there).
4. PostgreSQL is stopped (fast: every connection cut) and started again under load:
   requests meanwhile may answer 503, never 500, and the API serves again at once. Last,
   since it stops what every process shares.

After each: every order recorded exactly once, each member's ledger consistent
(``tests/loyalty/invariants.py``), the outbox drained, every event delivered to each
consumer, and to the probe twice only after a relay cut short (``checks.py``).

Only the PostgreSQL run (``NESTPOINT_TEST_DATABASE=postgresql``) runs them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import httpx
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from conftest import BACKEND
from faults.checks import (
    Faults,
    check_answers,
    check_deliveries,
    check_ledgers,
    check_orders,
    drain,
    unpublished,
)
from faults.load import Load, Till
from faults.stack import (
    PROBE_ID,
    Proc,
    Stack,
    Tenant,
    enable_plugins,
    enrol,
    make_tenant,
    missing_services,
    nestpoint_cli,
    postgres_stack,
    wait_until,
)
from loyalty.helpers import order_body
from nestpoint.events.models import OutboxEvent
from nestpoint.points.models import PointEntry, PointLot

pytestmark = pytest.mark.skipif(
    BACKEND != "postgresql",
    reason="needs PostgreSQL and Redis (run with NESTPOINT_TEST_DATABASE=postgresql); the "
    "SQLite run covers the embedded server in test_embedded.py",
)

NAMESPACE = "nestpoint"  # the broker's Redis namespace (nestpoint.jobs.broker)
# Orders answered between two faults: the system is serving again before the next one.
BETWEEN_FAULTS = 15
POSTGRES_DOWN_SECONDS = 3.0
REDIS_DOWN_SECONDS = 4.0
# How long after PostgreSQL is back a 503 is still allowed (pooled connections to the old
# server fail once, then the pool is renewed).
POSTGRES_GRACE_SECONDS = 20.0


@dataclass
class PgScenario:
    stack: Stack
    tenant: Tenant
    members: list[str]
    api: Proc
    workers: list[Proc]
    faults: Faults = field(default_factory=Faults)

    @property
    def redis_url(self) -> str:
        assert self.stack.redis is not None
        return self.stack.redis.url

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, socket_timeout=5)

    def start_workers(self, *names: str) -> None:
        """Start worker processes (at once: each imports the application for seconds)."""
        started = [
            self.stack.proc(name, "worker", "--threads", "2", "--no-scheduler").start()
            for name in names
        ]
        for worker in started:
            worker.wait_for("worker started")
        self.workers += started

    def live_workers(self) -> list[Proc]:
        return [w for w in self.workers if w.alive]

    def send(self, actor: str, *args: Any, queue: str, **options: Any) -> dramatiq.Message[Any]:
        """Enqueue a job by name, as the scheduler or a commit does."""
        broker = RedisBroker(url=self.redis_url, namespace=NAMESPACE)  # type: ignore[no-untyped-call]
        try:
            broker.declare_queue(queue)
            message: dramatiq.Message[Any] = dramatiq.Message(
                queue_name=queue, actor_name=actor, args=args, kwargs={}, options=options
            )
            return broker.enqueue(message)
        finally:
            broker.close()

    def sweep_now(self) -> None:
        self.send("events.sweep", queue="events")

    def _api_serves(self) -> bool:
        if not self.api.alive:
            return False
        try:
            wait_until(
                lambda: (
                    httpx.get(
                        f"{self.stack.url}/api/v1/stores", headers=self.tenant.hq(), timeout=5
                    ).status_code
                    == 200
                ),
                20,
                "the API serving",
                every=0.5,
            )
        except AssertionError:
            return False
        return True

    def restore(self) -> None:
        """After a failure: every service up again, for the next scenario."""
        stack = self.stack
        assert stack.cluster is not None
        assert stack.redis is not None
        if not stack.cluster.running():
            stack.cluster.start()
        if stack.redis.process is None or stack.redis.process.poll() is not None:
            stack.redis.start()
        if not self._api_serves():  # dead, or alive and failing every request
            self.api.stop()
            self.api = stack.serve()
            stack.wait_healthy(self.api)
        if len(self.live_workers()) < 2:
            self.start_workers(f"worker-{len(self.workers)}")


@pytest.fixture(scope="module")
def pg() -> Iterator[PgScenario]:
    reason = missing_services()
    if reason:
        pytest.fail(f"the PostgreSQL run needs its own throwaway services: {reason}")
    stack = postgres_stack()
    try:
        with stack.explained():
            scheduler = stack.proc("scheduler", "scheduler").start()
            api = stack.serve()
            stack.wait_healthy(api)
            scheduler.wait_for("scheduler leads")
            tenant = make_tenant(stack.url, stack.platform_key, ("S1", "S2"))
            enable_plugins(stack.url, tenant, PROBE_ID, "example")
            members = enrol(stack.url, tenant, 30)
            scenario = PgScenario(stack, tenant, members, api, [])
            # One worker until the first fault: the one killed is the one holding the jobs.
            scenario.start_workers("worker-a")
        yield scenario
    finally:
        stack.close()


def _tills(tenant: Tenant) -> list[Till]:
    return [Till(code, tenant.store(code)) for code in ("S1", "S2")]


def _held_jobs(client: redis.Redis) -> int:
    """Messages fetched and not yet acknowledged by any worker (with one worker: its own)."""
    return sum(int(client.scard(key)) for key in client.keys(f"{NAMESPACE}:__acks__.*"))


def test_orders_and_events_survive_a_killed_worker_a_killed_api_and_redis_going_away(
    pg: PgScenario,
) -> None:
    stack, faults = pg.stack, pg.faults
    assert stack.redis is not None
    load = Load(lambda: stack.url, _tills(pg.tenant), pg.members)
    timeline: dict[str, Any] = {}
    try:
        with stack.explained():
            load.start()
            load.wait_answered(BETWEEN_FAULTS, since=0)

            # 1. A worker SIGKILLed while it holds jobs (fetched, not acknowledged).
            client = pg.redis()
            try:
                held = wait_until(
                    lambda: _held_jobs(client), 60, "the worker holding a job", every=0.002
                )
            finally:
                client.close()
            [worker] = pg.live_workers()
            stack.kill(worker)
            faults.relay_kills.append(time.time())
            timeline["jobs the killed worker held"] = held
            pg.start_workers("worker-a2", "worker-b")
            load.wait_answered(BETWEEN_FAULTS, since=time.time())

            # 2. The API SIGKILLed with requests in flight, then started again.
            wait_until(lambda: load.in_flight >= 2, 30, "requests in flight", every=0.001)
            killed_at = time.time()
            stack.kill(pg.api)
            pg.api = stack.serve()
            stack.wait_healthy(pg.api)
            faults.api_down.append((killed_at, time.time()))
            cut = [a for a in load.attempts if a.status is None and a.started < killed_at]
            timeline["requests cut by the API's death"] = len(cut)
            assert cut, "no request was in flight when the API was killed"
            load.wait_answered(BETWEEN_FAULTS, since=time.time())

            # The tills ring again what got no 2xx, with the same body (the load goes on).
            retried = load.retry_unanswered()
            timeline["orders sent again"] = len({a.external_id for a in retried})

            # 3. Redis stopped: orders still answer 201, their events wait in the outbox.
            redis_stopped = time.time()
            stack.redis.stop()
            load.wait_answered(BETWEEN_FAULTS, since=redis_stopped)
            wait_until(lambda: time.time() - redis_stopped > REDIS_DOWN_SECONDS, 30, "outage")
            load.stop()  # the tills stop while Redis is away: no commit asks for a relay after
            stack.redis.start()
            faults.redis_down.append((redis_stopped, time.time()))
            timeline["events waiting when Redis came back"] = len(
                unpublished(stack.database, pg.tenant.id)
            )
            assert load.unanswered() == [], "orders unanswered during the Redis outage"
            during = [a for a in load.attempts if a.started >= redis_stopped]
            assert len(during) >= BETWEEN_FAULTS, during
            assert all(a.status == 201 for a in during), [a for a in during if a.status != 201]

            _check_orders(pg, load, timeline)
            _check_outbox(pg, timeline, since=faults.redis_down[-1][1])
            print("timeline:", json.dumps(timeline, indent=1))
    finally:
        if not load.stopped:
            load.stop()
        pg.restore()


def _check_orders(pg: PgScenario, load: Load, timeline: dict[str, Any]) -> None:
    """No 500; a 503 problem only while PostgreSQL was away; every order recorded once;
    none committed and answered 5xx; every member's ledger consistent."""
    faults = pg.faults
    check_answers(
        load.attempts,
        unavailable_allowed=[(s - 1, e + POSTGRES_GRACE_SECONDS) for s, e in faults.postgres_down],
        no_answer_allowed=[(s - 1, e + 1) for s, e in faults.api_down],
    )
    found = check_orders(pg.stack.database, pg.tenant.id, load)
    failed_first = {a.external_id for a in load.attempts if not a.ok}
    committed_anyway = {
        a.external_id for a in load.attempts if a.replayed and a.external_id in failed_first
    }
    answered_5xx = {a.external_id for a in load.attempts if (a.status or 0) >= 500}
    assert not answered_5xx & committed_anyway, "committed orders answered 5xx: " + str(
        [a for a in load.attempts if a.external_id in answered_5xx & committed_anyway]
    )
    check_ledgers(pg.stack.database, pg.members)
    statuses = Counter(str(a.status or "no answer") for a in load.attempts)
    timeline |= {
        "orders": len(found),
        "answers": dict(statuses),
        "orders without a 2xx at first": len(failed_first),
        "of which committed (replayed when sent again)": len(committed_anyway),
    }


def _check_outbox(pg: PgScenario, timeline: dict[str, Any], since: float) -> None:
    """The outbox drains; every event reached each consumer once (see check_deliveries)."""
    drained = drain(pg.stack.database, pg.tenant.id, pg.faults, sweep_now=pg.sweep_now)
    timeline["outbox drained, seconds after the last fault"] = round(time.time() - since, 1)
    timeline["claims of cut-short relays let lapse"] = drained.leases_let_lapse
    deliveries = check_deliveries(pg.stack, pg.tenant.id, pg.faults)
    timeline["events delivered"] = deliveries.events
    timeline["events delivered again after a cut-short relay"] = deliveries.redelivered


# ------------------------------------------------------------------------------- expiry


def _default_queue_idle(pg: PgScenario) -> bool:
    """Nothing waits in the default queue and no live worker holds one of its jobs (the
    jobs a killed worker held stay in its acknowledgement set until Dramatiq gives them to
    another worker, a minute after its last heartbeat)."""
    client = pg.redis()
    try:
        now_ms = time.time() * 1000
        beats = client.zrange(f"{NAMESPACE}:__heartbeats__", 0, -1, withscores=True)
        live = [worker.decode() for worker, at in beats if now_ms - at < 5000]
        held = sum(int(client.scard(f"{NAMESPACE}:__acks__.{w}.default")) for w in live)
        return client.llen(f"{NAMESPACE}:default") == 0 and held == 0
    finally:
        client.close()


def test_an_expiry_run_sent_twice_and_killed_halfway_expires_each_lot_once(
    pg: PgScenario,
) -> None:
    stack, tenant, faults = pg.stack, pg.tenant, pg.faults
    try:
        with stack.explained():
            members = enrol(stack.url, tenant, 16)
            with httpx.Client(base_url=stack.url, timeout=60) as client:
                for n, member in enumerate(members * 2):
                    body = order_body(member={"id": member}, store_code="S1")
                    r = client.post("/api/v1/orders", json=body, headers=tenant.store("S1"))
                    assert r.status_code == 201, (n, r.text)
            ids = [uuid.UUID(m) for m in members]

            # Their lots' expiry date has passed (as if a year had gone by since).
            async def backdate(session: AsyncSession) -> None:
                await session.execute(
                    update(PointLot)
                    .where(PointLot.tenant_id == tenant.id, PointLot.member_id.in_(ids))
                    .values(expires_at=datetime.now(UTC) - timedelta(days=1))
                )

            stack.database.run(backdate)
            lots = stack.database.scalars(
                select(PointLot).where(PointLot.tenant_id == tenant.id, PointLot.member_id.in_(ids))
            )
            assert len(lots) == 32
            assert all(lot.remaining > 0 for lot in lots)

            def expired() -> list[PointEntry]:
                return stack.database.scalars(
                    select(PointEntry).where(
                        PointEntry.tenant_id == tenant.id,
                        PointEntry.member_id.in_(ids),
                        PointEntry.kind == "expire",
                    )
                )

            # Twice at once (the hourly run and a retry, two replicas), killed halfway.
            for _ in range(2):
                pg.send("points.expire", str(tenant.id), queue="default")
            wait_until(lambda: expired(), 60, "the expiry run starting", every=0.005)
            for worker in pg.live_workers():
                stack.kill(worker)
            faults.relay_kills.append(time.time())
            halfway = len(expired())
            assert 0 < halfway < len(lots), f"not killed halfway: {halfway} of {len(lots)}"

            # New workers; the run is sent twice again (the next hour's, and a retry).
            pg.start_workers("worker-c", "worker-d")
            for _ in range(2):
                pg.send("points.expire", str(tenant.id), queue="default")
            wait_until(lambda: len(expired()) >= len(lots), 90, "every lot expired", every=0.2)
            wait_until(lambda: _default_queue_idle(pg), 60, "the expiry runs done", every=0.2)

            entries = expired()
            per_lot: dict[uuid.UUID | None, list[int]] = {}
            for entry in entries:
                per_lot.setdefault(entry.lot_id, []).append(entry.amount)
            assert {lot.id: [-lot.amount] for lot in lots} == per_lot
            after = stack.database.scalars(
                select(PointLot.remaining).where(PointLot.id.in_([lot.id for lot in lots]))
            )
            assert after == [0] * len(lots)
            check_ledgers(stack.database, members)
            # Each member told once (a chunk is one member here), of all its lots' points.
            events = stack.database.scalars(
                select(OutboxEvent).where(
                    OutboxEvent.tenant_id == tenant.id, OutboxEvent.type == "points.expired"
                )
            )
            told = Counter(str(event.payload["member_id"]) for event in events)
            assert set(told.values()) == {1}, told
            announced: dict[str, int] = {}
            for event in events:
                member = str(event.payload["member_id"])
                announced[member] = announced.get(member, 0) + int(event.payload["points"])
            expected: dict[str, int] = {}
            for lot in lots:
                expected[str(lot.member_id)] = expected.get(str(lot.member_id), 0) + lot.amount
            assert announced == expected
            runs = {e.cause_id.split(".")[0] for e in entries}
            assert len(runs) >= 2, runs  # the killed run's chunks stayed done

            drained = drain(stack.database, tenant.id, faults, sweep_now=pg.sweep_now)
            check_deliveries(stack, tenant.id, faults)
            print(
                f"expiry: {halfway} of {len(lots)} lots expired when the workers were killed;"
                f" {len(runs)} runs expired lots; outbox drained in {drained.seconds:.1f} s"
                f" ({drained.leases_let_lapse} claims let lapse)"
            )
    finally:
        pg.restore()


# ------------------------------------------------------------------------------- dead letters


def _dead_metric(url: str) -> float:
    r = httpx.get(f"{url}/metrics", timeout=30)
    assert r.status_code == 200, r.text
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            if sample.name == "nestpoint_queue_dead_messages" and sample.labels == {
                "queue": "events"
            }:
                return float(sample.value)
    raise AssertionError("no nestpoint_queue_dead_messages{queue='events'} in /metrics")


def _dead_letter(client: redis.Redis, message_id: str) -> tuple[str, float] | None:
    """The Redis id (the broker's own, new at each retry) and the time of death of a dead
    message, found by its Dramatiq message id (what the operator's command shows and takes,
    as the worker's log lines name it)."""
    key = f"{NAMESPACE}:events.XQ"
    for raw_id, score in client.zrange(key, 0, -1, withscores=True):
        encoded = client.hget(f"{key}.msgs", raw_id)
        if encoded and dramatiq.Message.decode(encoded).message_id == message_id:
            return raw_id.decode(), float(score)
    return None


def test_a_poison_message_ends_in_the_dead_letters_the_operator_sees_and_requeues(
    pg: PgScenario,
) -> None:
    stack = pg.stack
    dead_key = f"{NAMESPACE}:events.XQ"
    client = pg.redis()
    try:
        with stack.explained():
            before = int(client.zcard(dead_key))
            sent_at = time.time()
            # A relay for a tenant id that is no id: it fails every time. One retry, soon.
            message = pg.send(
                "events.relay",
                "not-a-tenant",
                queue="events",
                max_retries=1,
                min_backoff=100,
                max_backoff=200,
            )
            died_id, died = wait_until(
                lambda: _dead_letter(client, message.message_id), 60, "the message dead"
            )
            assert int(client.zcard(dead_key)) == before + 1
            stored = dramatiq.Message.decode(client.hget(f"{dead_key}.msgs", died_id))
            assert (stored.actor_name, stored.args) == ("events.relay", ("not-a-tenant",))

            # What the operator sees: the metric (the API's /metrics) and the command.
            assert _dead_metric(stack.url) == before + 1

            listed = nestpoint_cli(stack.env, "jobs", "dead-letters")
            [line] = [row for row in listed.splitlines() if message.message_id in row]
            queue, message_id, actor, when, args, error = line.split("\t")
            assert (queue, message_id, actor) == ("events", message.message_id, "events.relay")
            assert json.loads(args) == ["not-a-tenant"]
            assert sent_at - 5 <= datetime.fromisoformat(when).timestamp() <= time.time() + 5
            assert "ValueError" in error, error

            # Requeued by the operator: it runs again (and, still poison, dies again).
            out = nestpoint_cli(
                stack.env, "jobs", "dead-letters", "--requeue", "--id", message.message_id
            )
            assert out.strip() == "1 dead jobs requeued", out
            wait_until(
                lambda: (_dead_letter(client, message.message_id) or ("", 0.0))[1] > died,
                60,
                "the requeued message run and dead again",
            )
            assert _dead_metric(stack.url) == before + 1
    finally:
        client.close()


# ------------------------------------------------------------------------------- PostgreSQL


def test_orders_survive_postgresql_restarting_under_load(pg: PgScenario) -> None:
    """Last in this module: it stops the database every process shares."""
    stack, faults = pg.stack, pg.faults
    assert stack.cluster is not None
    load = Load(lambda: stack.url, _tills(pg.tenant), pg.members)
    timeline: dict[str, Any] = {}
    try:
        with stack.explained():
            load.start()
            load.wait_answered(BETWEEN_FAULTS, since=time.time())
            # Stopped fast (every connection cut, transactions in flight aborted), started
            # again: requests meanwhile may answer 503, and the API serves again after.
            stopped_at = time.time()
            stack.cluster.stop("fast")
            time.sleep(POSTGRES_DOWN_SECONDS)  # the outage itself, not a wait for something
            stack.cluster.start()
            back_at = time.time()
            faults.postgres_down.append((stopped_at, back_at))
            load.wait_answered(BETWEEN_FAULTS, since=back_at, timeout=60)
            load.stop()
            load.retry_unanswered()
            timeline["last 503 after PostgreSQL was back (s)"] = max(
                [round(a.started - back_at, 2) for a in load.attempts if a.status == 503],
                default=None,
            )
            _check_orders(pg, load, timeline)
            _check_outbox(pg, timeline, since=back_at)
            print("timeline:", json.dumps(timeline, indent=1))
    finally:
        if not load.stopped:
            load.stop()
        pg.restore()
