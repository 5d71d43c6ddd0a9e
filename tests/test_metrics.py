"""``GET /metrics``: HTTP, database pool, queues, outbox, plugins, caches and business
counters, as Prometheus reads them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import dramatiq
import httpx
from prometheus_client.parser import text_string_to_metric_families

from loyalty.helpers import new_phone, order_body
from nestpoint.jobs.broker import broker
from nestpoint.observability import backlog
from nestpoint.plugins.relay import drain_pending, pending_events
from nestpoint.testing import enable_plugin
from served import ServedNestpoint, free_port


async def scrape(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(r.text)
        for sample in family.samples
    }


def value(metrics: dict[Any, float], name: str, **labels: str) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_need_no_key_and_are_not_in_the_openapi(client: Any) -> None:
    r = await client.get("/metrics")
    assert r.status_code == 200
    schema = (await client.get("/schema/openapi.json")).json()
    assert "/metrics" not in schema["paths"]


async def test_http_requests_by_route_template_and_status(client: Any, make_tenant: Any) -> None:
    t = await make_tenant()
    route = "/api/v1/members/{member_id}"
    labels = {"app_name": "nestpoint", "method": "GET", "path": route, "status_code": "404"}
    before = await scrape(client)

    for _ in range(3):  # three members that do not exist: one series, not three
        r = await client.get(f"/api/v1/members/{uuid.uuid4()}", headers=t.hq())
        assert r.status_code == 404

    after = await scrape(client)
    grew = value(after, "nestpoint_http_requests_total", **labels) - value(
        before, "nestpoint_http_requests_total", **labels
    )
    assert grew == 3
    assert value(after, "nestpoint_http_request_duration_seconds_count", **labels) >= 3


async def test_orders_and_points_are_counted_once_per_order(client: Any, make_tenant: Any) -> None:
    t = await make_tenant()
    r = await client.post(
        "/api/v1/members", json={"phone": new_phone(), "name": "王芳"}, headers=t.hq()
    )
    assert r.status_code == 201, r.text
    body = order_body(member={"id": r.json()["id"]})
    before = await scrape(client)

    first = await client.post("/api/v1/orders", json=body, headers=t.hq())
    replay = await client.post("/api/v1/orders", json=body, headers=t.hq())
    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay.json() == first.json()  # the retry replays the answer, records nothing

    after = await scrape(client)
    assert value(after, "nestpoint_orders_total") - value(before, "nestpoint_orders_total") == 1
    earned = first.json()["points_earned"]
    assert earned == 100
    assert (
        value(after, "nestpoint_points_earned_total")
        - value(before, "nestpoint_points_earned_total")
        == earned
    )
    paid = {"type": "order.paid"}
    assert (
        value(after, "nestpoint_events_total", **paid)
        - value(before, "nestpoint_events_total", **paid)
        == 1
    )


async def test_pool_plugins_and_caches_are_exported(client: Any, make_tenant: Any) -> None:
    t = await make_tenant()
    await enable_plugin(client, t, "example", config={"birthday_multiplier": 2})
    hook = {"plugin": "example", "hook": "nestpoint_adjust_earned_points"}
    before = await scrape(client)

    r = await client.post(
        "/api/v1/members", json={"phone": new_phone(), "name": "王芳"}, headers=t.hq()
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        "/api/v1/orders", json=order_body(member={"id": r.json()["id"]}), headers=t.hq()
    )
    assert r.status_code == 201, r.text

    metrics = await scrape(client)
    calls = "nestpoint_plugin_hook_calls_total"
    assert value(metrics, calls, **hook) - value(before, calls, **hook) == 1
    assert ("nestpoint_plugin_hook_failures_total", tuple(sorted(hook.items()))) in metrics
    assert value(metrics, "nestpoint_db_pool_size") >= 1
    names = {name for name, _ in metrics}
    assert {"nestpoint_db_pool_checked_out", "nestpoint_db_pool_overflow"} <= names
    # The API key cache answered this test's requests.
    assert value(metrics, "nestpoint_cache_hits_total", cache="tenancy.api_keys") >= 1
    assert ("nestpoint_cache_entries", (("cache", "tenancy.api_keys"),)) in metrics


async def test_queue_backlog_and_lag(client: Any, database_env: dict[str, str]) -> None:
    an_hour_ago = int((time.time() - 3600) * 1000)
    probe = dramatiq.Message(
        queue_name="default",
        actor_name="metrics.probe",  # no such actor: nothing runs it in this test
        args=(),
        kwargs={},
        options={},
        message_timestamp=an_hour_ago,
    )
    broker.flush("default")
    try:
        broker.enqueue(probe)
        metrics = await scrape(client)
        assert value(metrics, "nestpoint_queue_messages", queue="default") == 1
        assert value(metrics, "nestpoint_queue_lag_seconds", queue="default") >= 3600
        assert ("nestpoint_queue_dead_messages", (("queue", "default"),)) in metrics
    finally:
        broker.flush("default")
    metrics = await scrape(client)
    assert value(metrics, "nestpoint_queue_messages", queue="default") == 0
    assert value(metrics, "nestpoint_queue_lag_seconds", queue="default") == 0


async def test_the_outbox_backlog_as_the_sweep_left_it(client: Any, make_tenant: Any) -> None:
    t = await make_tenant()  # its stores' events wait in the outbox (no worker runs here)
    pending, oldest = await pending_events(t.id)
    assert pending >= 2
    assert oldest is not None

    backlog.publish(pending, oldest.timestamp() - 120)
    metrics = await scrape(client)
    assert value(metrics, "nestpoint_outbox_pending_events") == pending
    assert value(metrics, "nestpoint_outbox_oldest_pending_age_seconds") >= 120
    assert value(metrics, "nestpoint_outbox_swept_age_seconds") < 60

    await drain_pending(t.id)
    assert await pending_events(t.id) == (0, None)


def test_a_scheduler_process_serves_its_metrics(database_env: dict[str, str]) -> None:
    port = free_port()
    env = os.environ | database_env | {"NESTPOINT_METRICS_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "nestpoint.cli", "scheduler"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        text = _scrape_until(f"http://127.0.0.1:{port}/metrics", "nestpoint_scheduler_leader 1.0")
        assert "nestpoint_queue_messages" in text  # the collectors are registered there too
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output


def _scrape_until(url: str, expected: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        try:
            text = httpx.get(url, timeout=2).text
        except httpx.TransportError:
            text = ""
        if expected in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"{expected!r} not served at {url} within {timeout} s:\n{text[:2000]}")


def _until_counted_by(shared: Path, *, processes: int, url: str, timeout: float) -> None:
    """Requests (each on a new connection) until ``processes`` processes have counted."""
    deadline = time.monotonic() + timeout
    while len(list(shared.glob("counter_*.db"))) < processes:
        assert time.monotonic() < deadline, "a server process never answered"
        httpx.get(url)
        time.sleep(0.05)


def test_several_server_processes_count_together(tmp_path: Path, prepared: ServedNestpoint) -> None:
    """With PROMETHEUS_MULTIPROC_DIR, whichever process answers the scrape reports what
    all of them counted."""
    served = prepared.copy(tmp_path / "server")
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = served.env | {"PROMETHEUS_MULTIPROC_DIR": str(shared)}
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", "nestpoint.cli", "serve", "--port", str(served.port)],
        env=env | {"NESTPOINT_WORKERS": "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _scrape_until(f"{served.url}/metrics", "nestpoint_queue_messages", timeout=60)
        # Both servers up and counting: the kernel hands a busy machine's connections to
        # whichever accepts first, so one may not have served anything yet.
        _until_counted_by(shared, processes=3, url=f"{served.url}/healthz", timeout=60)
        headers = {"Authorization": f"Bearer {served.platform_key}"}
        for _ in range(20):
            assert httpx.get(f"{served.url}/api/v1/tenants", headers=headers).status_code == 200
        labels = 'method="GET",path="/api/v1/tenants",status_code="200"'
        text = httpx.get(f"{served.url}/metrics").text
        counted = [
            float(li.rsplit(" ", 1)[1])
            for li in text.splitlines()
            if li.startswith("nestpoint_http_requests_total{") and labels in li
        ]
        assert counted == [20.0], text[:3000]
        # One file per process: the two servers, and the parent with its in-process worker.
        assert len(list(shared.glob("counter_*.db"))) == 3
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.communicate(timeout=30)
