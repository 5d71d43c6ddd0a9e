"""Background jobs end to end, with whichever broker the run configures.

The SQLite run uses the in-process broker; the PostgreSQL run of ``make test`` sets
``NESTPOINT_REDIS_URL`` and gets a Redis broker. Either way a real Dramatiq worker relays the
``store.created`` outbox event an API call wrote. With Redis, ``nestpoint worker`` also runs
as a process of its own, as in production.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from conftest import flush_test_redis
from nestpoint.cli import app as cli_app
from nestpoint.jobs import broker as jobs_broker
from nestpoint.jobs.broker import DeadLetter, broker, dead_letters, periodic_actor

REDIS_URL = os.environ.get("NESTPOINT_REDIS_URL")
RELAY_TIMEOUT_SECONDS = 10.0
# A worker process imports the whole application before it consumes; allow for that.
PROCESS_TIMEOUT_SECONDS = 30.0


def test_broker_follows_settings() -> None:
    assert isinstance(broker, RedisBroker if REDIS_URL else StubBroker)


async def _store_created_event(client: Any, headers: dict[str, str], code: str) -> dict[str, Any]:
    r = await client.get(
        "/api/v1/events", params={"type": "store.created", "limit": 200}, headers=headers
    )
    assert r.status_code == 200, r.text
    matches = [e for e in r.json()["items"] if e["payload"].get("code") == code]
    assert len(matches) == 1, matches
    return matches[0]


async def _create_store_and_wait_for_relay(
    client: Any, make_tenant: Any, wait_seconds: float
) -> dict[str, Any]:
    """Create a store through the API; poll its ``store.created`` event until published."""
    tenant = await make_tenant(store_codes=())
    code = f"JOB-{uuid.uuid4().hex[:8]}"
    r = await client.post(
        "/api/v1/stores", json={"code": code, "name": "Jobs"}, headers=tenant.hq()
    )
    assert r.status_code == 201, r.text

    # The commit wrote the event and enqueued ``events.relay``; a worker publishes it.
    deadline = time.monotonic() + wait_seconds
    event = await _store_created_event(client, tenant.hq(), code)
    while event["published_at"] is None and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        event = await _store_created_event(client, tenant.hq(), code)
    assert event["published_at"] is not None, f"not relayed in {wait_seconds}s: {event}"
    assert event["last_error"] is None
    return event


async def test_worker_relays_outbox_event(
    client: Any, make_tenant: Any, worker: dramatiq.Worker
) -> None:
    event = await _create_store_and_wait_for_relay(client, make_tenant, RELAY_TIMEOUT_SECONDS)
    assert event["attempts"] == 0


@pytest.mark.skipif(REDIS_URL is None, reason="a worker process needs a shared (Redis) broker")
async def test_worker_process_relays_outbox_event(
    client: Any, make_tenant: Any, database_env: dict[str, str]
) -> None:
    flush_test_redis()
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "nestpoint.cli", "worker", "--threads", "1", "--no-scheduler"),
        env={**os.environ, **database_env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    failure: AssertionError | None = None
    try:
        await _create_store_and_wait_for_relay(client, make_tenant, PROCESS_TIMEOUT_SECONDS)
    except AssertionError as exc:
        failure = exc
    finally:
        process.send_signal(signal.SIGTERM)
        raw, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    output = raw.decode(errors="replace")[-4000:]
    assert failure is None, f"{failure}\n--- worker output ---\n{output}"
    assert process.returncode == 0, output
    assert "Failed to process message" not in output, output


async def test_readyz_reports_broker(client: Any) -> None:
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["broker"] == "ok"


# A job that always fails: after its one retry it is dead, kept for the operator.
poison_calls: list[str] = []


@dramatiq.actor(
    actor_name="tests.poison", queue_name="default", max_retries=1, min_backoff=10, max_backoff=20
)
def poison(tag: str) -> None:
    poison_calls.append(tag)
    raise ValueError(f"poison {tag}")


def _dead_with(tag: str, timeout: float = RELAY_TIMEOUT_SECONDS) -> DeadLetter:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [d for d in dead_letters() if d.args == (tag,)]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no dead job for {tag} within {timeout} s")


async def test_a_poison_job_is_dead_lettered_listed_and_requeued(
    client: Any, worker: dramatiq.Worker
) -> None:
    tag = uuid.uuid4().hex
    message = poison.send(tag)

    dead = await asyncio.to_thread(_dead_with, tag)
    assert (dead.queue, dead.actor) == ("default", "tests.poison")
    assert dead.error == f"ValueError: poison {tag}"
    assert poison_calls.count(tag) == 2  # the first run and its one retry

    # The operator sees it: in the metrics and through the CLI.
    metrics = (await client.get("/metrics")).text
    assert 'nestpoint_queue_dead_messages{queue="default"} 1.0' in metrics
    listed = CliRunner().invoke(cli_app, ["jobs", "dead-letters"])
    assert listed.exit_code == 0, listed.output
    assert f"{dead.message_id}\ttests.poison\t" in listed.output
    assert dead.message_id == message.message_id  # the id the worker's log names
    assert f'["{tag}"]' in listed.output

    requeued = CliRunner().invoke(
        cli_app, ["jobs", "dead-letters", "--requeue", "--id", dead.message_id]
    )
    assert requeued.exit_code == 0, requeued.output
    assert "1 dead jobs requeued" in requeued.output
    # Run again with fresh retries (twice more), and dead again.
    again = await asyncio.to_thread(_dead_with, tag)
    assert poison_calls.count(tag) == 4
    assert len([d for d in dead_letters() if d.args == (tag,)]) == 1
    assert again.actor == "tests.poison"


async def test_a_broker_down_leaves_the_api_ready_but_degraded(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down() -> bool:
        raise ConnectionError("broker down")

    monkeypatch.setattr(jobs_broker, "ping", down)
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "status": "degraded",
        "checks": {"database": "ok", "broker": "unavailable"},
    }


periodic_runs: list[str] = []


@periodic_actor("tests.periodic_boom")
async def periodic_boom(tag: str) -> None:
    periodic_runs.append(tag)
    raise RuntimeError(f"boom {tag}")


def test_a_failing_periodic_job_is_counted_not_dead_lettered(worker: dramatiq.Worker) -> None:
    tag = uuid.uuid4().hex
    labels = {"actor": "tests.periodic_boom"}

    def failures() -> float:
        counted = REGISTRY.get_sample_value("nestpoint_periodic_job_failures_total", labels)
        return counted or 0.0

    before = failures()
    periodic_boom.send(tag)
    deadline = time.monotonic() + RELAY_TIMEOUT_SECONDS
    while failures() == before and time.monotonic() < deadline:
        time.sleep(0.05)

    assert failures() == before + 1
    assert periodic_runs.count(tag) == 1  # not retried: the scheduler sends it again
    assert [d for d in dead_letters() if d.args == (tag,)] == []
