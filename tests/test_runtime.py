"""Operations: the server as a real process, with a real Redis that goes away, and signals.

These tests start ``nestpoint serve`` (SQLite in a temporary directory, a free port) and,
where they need one, their own ``redis-server`` on a free port, and stop both themselves.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session

from loyalty.helpers import new_phone, order_body
from nestpoint import testing as kit
from nestpoint.db.session import _after_commit_work, on_commit
from nestpoint.jobs import broker as jobs_broker
from served import RedisServer, ServedNestpoint


def _log_lines(output: str) -> list[dict[str, object]]:
    lines = []
    for line in output.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return [line for line in lines if isinstance(line, dict)]


async def test_an_order_committed_while_redis_is_down_answers_201_and_waits_in_the_outbox(
    tmp_path: Path, prepared: ServedNestpoint
) -> None:
    redis = RedisServer().start()
    served = prepared.copy(tmp_path, redis_url=redis.url)
    output = ""
    try:
        served.start()
        async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
            t = await kit.make_tenant(client, served.platform_key, ("S1",))
            r = await client.post(
                "/api/v1/members", json={"phone": new_phone(), "name": "王芳"}, headers=t.hq()
            )
            assert r.status_code == 201, r.text
            member_id = r.json()["id"]
            redis.stop()

            body = order_body(member={"id": member_id})
            r = await client.post("/api/v1/orders", json=body, headers=t.hq())
            assert r.status_code == 201, r.text
            order = r.json()
            # The till's retry finds the committed order: a replay, not a second credit.
            again = await client.post("/api/v1/orders", json=body, headers=t.hq())
            assert again.status_code == 201, again.text
            assert again.headers["idempotent-replayed"] == "true"
            assert again.json() == order
            r = await client.get(f"/api/v1/members/{member_id}/points", headers=t.hq())
            assert r.json()["balance"] == order["points_earned"] > 0

            paid = await _events(client, t.hq(), "order.paid")
            assert [e["published_at"] for e in paid] == [None]  # waiting in the outbox

            # What the periodic sweep does (events.sweep) delivers it later.
            served.python(
                "import asyncio; from nestpoint.plugins.relay import relay_all;"
                " asyncio.run(relay_all())"
            )
            paid = await _events(client, t.hq(), "order.paid")
            assert paid[0]["published_at"] is not None
    finally:
        redis.stop()
        if served.process is not None:
            output = served.stop(signal.SIGTERM, timeout=20)
    failures = [
        line
        for line in _log_lines(output)
        if line.get("event") == "could not enqueue a job; the outbox sweep will deliver"
    ]
    assert failures, output[-3000:]
    # The broker's own words: refused on a new connection; closed or reset on a pooled one
    # (which depends on whether the pool still held a connection when Redis stopped, and on
    # how far the server got in closing it).
    error = str(failures[0]["error"])
    assert error.startswith("ConnectionError"), failures[0]
    assert any(
        words in error
        for words in (
            "Connection refused",
            "Connection closed by server",
            "Connection reset by peer",
        )
    ), failures[0]


async def _events(client: httpx.AsyncClient, headers: dict[str, str], type_: str) -> list[dict]:  # type: ignore[type-arg]
    r = await client.get("/api/v1/events", params={"type": type_}, headers=headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


@pytest.mark.parametrize(
    ("sig", "ignore_sigint"),
    [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["SIGINT", "SIGTERM", "SIGINT-ignored-at-start"],
)
def test_serve_with_its_in_process_worker_stops_on_a_signal(
    tmp_path: Path, prepared: ServedNestpoint, sig: signal.Signals, ignore_sigint: bool
) -> None:
    served = prepared.copy(tmp_path).start(ignore_sigint=ignore_sigint)
    _let_the_worker_run_a_job(served)
    started = time.monotonic()
    output = served.stop(sig, timeout=10)
    assert time.monotonic() - started < 10
    assert served.process is not None
    assert served.process.returncode == 0, output[-3000:]
    assert any(line.get("event") == "worker stopped" for line in _log_lines(output)), output


def _let_the_worker_run_a_job(served: ServedNestpoint) -> None:
    """Create a tenant and wait until the in-process worker relayed its first event, so the
    worker's loop holds database connections of its own when the signal comes."""
    platform = {"Authorization": f"Bearer {served.platform_key}"}
    with httpx.Client(base_url=served.url, timeout=30) as client:
        r = client.post("/api/v1/tenants", json={"slug": "t-signal", "name": "C"}, headers=platform)
        assert r.status_code == 201, r.text
        tenant_id = r.json()["id"]
        r = client.post(
            f"/api/v1/tenants/{tenant_id}/api-keys", json={"name": "HQ"}, headers=platform
        )
        assert r.status_code == 201, r.text
        hq = {"Authorization": f"Bearer {r.json()['key']}"}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            items = client.get("/api/v1/events", headers=hq).json()["items"]
            if items and all(e["published_at"] for e in items):
                return
            time.sleep(0.1)
    raise AssertionError("the in-process worker relayed nothing within 20 s")


async def test_failing_after_commit_work_never_turns_a_committed_request_into_an_error(
    client: Any, make_tenant: Any, caplog: pytest.LogCaptureFixture
) -> None:
    t = await make_tenant()

    def explode(session: Session) -> None:
        raise RuntimeError("the broker is on fire")

    on_commit(explode)
    try:
        r = await client.post(
            "/api/v1/members", json={"phone": new_phone(), "name": "王芳"}, headers=t.hq()
        )
    finally:
        _after_commit_work.remove(explode)
    assert r.status_code == 201, r.text
    assert (
        await client.get(f"/api/v1/members/{r.json()['id']}", headers=t.hq())
    ).status_code == 200
    assert any(
        rec.getMessage() == "after-commit work failed; the transaction stays committed"
        and rec.exc_info
        and "on fire" in str(rec.exc_info[1])
        for rec in caplog.records
    )


def test_enqueue_with_redis_never_waits_for_the_broker_and_queues_a_message_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jobs_broker, "is_in_process", lambda: False)
    in_send, release = threading.Event(), threading.Event()
    sent: list[tuple[str, ...]] = []

    class HangingBroker:  # as an actor on a Redis that accepts the connection, then hangs
        actor_name = "tests.hanging"

        def send(self, *args: str) -> None:
            in_send.set()
            release.wait(10)
            sent.append(args)

    actor: Any = HangingBroker()
    started = time.monotonic()
    jobs_broker.enqueue_best_effort(actor, "t1")
    assert in_send.wait(5)
    for _ in range(3):  # while the first send hangs: queued once, not three times
        jobs_broker.enqueue_best_effort(actor, "t1")
    assert time.monotonic() - started < 1  # the caller never waited for the broker
    release.set()
    deadline = time.monotonic() + 5
    while len(sent) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert sent == [("t1",), ("t1",)]
