"""OpenTelemetry tracing: off by default; on, a request's span carries its request id and
holds its SQL statements, and a job it enqueues carries both the trace and the request id."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

import dramatiq
import httpx
import pytest
from dramatiq.brokers.stub import StubBroker
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from nestpoint.api.app import create_app
from nestpoint.context import request_id
from nestpoint.db.session import get_database, reset_database
from nestpoint.jobs.broker import _Sender
from nestpoint.observability import tracing
from nestpoint.observability.jobs import REQUEST_ID_OPTION, TRACE_OPTION, JobContext


def test_tracing_is_off_by_default(database_env: dict[str, str]) -> None:
    assert tracing.configure("api") is None
    assert tracing.enabled() is False


@pytest.fixture
async def spans(database_env: dict[str, str]) -> AsyncIterator[Any]:
    """Tracing on, into memory; the database's engines are made afresh (traced), and
    again after the test (untraced)."""
    exporter = InMemorySpanExporter()
    await get_database().dispose()
    reset_database()
    provider = tracing.configure("test", exporter)
    assert provider is not None

    def finished() -> list[ReadableSpan]:
        provider.force_flush()
        return list(exporter.get_finished_spans())

    try:
        yield finished
    finally:
        await get_database().dispose()
        reset_database()
        tracing.reset()


async def test_a_request_span_holds_its_sql_and_names_its_request_id(
    spans: Any, platform_headers: dict[str, str]
) -> None:
    app = create_app(configure_logs=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        r = await client.get(
            "/api/v1/tenants", headers=platform_headers | {"x-request-id": "trace-test-0001"}
        )
        assert r.status_code == 200, r.text
        assert (await client.get("/healthz")).status_code == 200

    finished = spans()
    servers = [s for s in finished if s.kind == trace.SpanKind.SERVER]
    assert len(servers) == 1  # the probe is not traced
    request = servers[0]
    assert request.attributes is not None
    assert request.attributes["nestpoint.request_id"] == "trace-test-0001"
    assert "/api/v1/tenants" in request.name
    sql = [s for s in finished if s.kind == trace.SpanKind.CLIENT and s.name != "connect"]
    assert sql, [s.name for s in finished]  # the key's look-up, the tenants' listing
    assert all(s.context.trace_id == request.context.trace_id for s in sql)
    statements = [str((s.attributes or {}).get("db.statement", "")) for s in sql]
    assert any("FROM tenants" in text for text in statements), statements


async def test_a_job_joins_the_trace_and_the_request_of_its_sender(spans: Any) -> None:
    broker = StubBroker()
    broker.add_middleware(JobContext())
    seen: dict[str, Any] = {}

    @dramatiq.actor(broker=broker, actor_name="tracing.probe", queue_name="probe")
    def probe() -> None:
        seen["request_id"] = request_id.get()
        seen["trace_id"] = trace.get_current_span().get_span_context().trace_id

    with tracing.tracer().start_as_current_span("a request") as parent:
        token = request_id.set("trace-test-0002")
        try:
            message = probe.send()
        finally:
            request_id.reset(token)
    assert message.options[REQUEST_ID_OPTION] == "trace-test-0002"
    assert "traceparent" in message.options[TRACE_OPTION]

    worker = dramatiq.Worker(broker, worker_threads=1)
    worker.start()
    try:
        broker.join("probe")
        worker.join()
    finally:
        worker.stop()

    assert seen == {
        "request_id": "trace-test-0002",
        "trace_id": parent.get_span_context().trace_id,
    }
    job = next(s for s in spans() if s.name == "job tracing.probe")
    assert job.kind == trace.SpanKind.CONSUMER
    assert job.parent is not None
    assert job.parent.span_id == parent.get_span_context().span_id


def test_a_message_sent_from_the_sender_thread_keeps_its_request_id() -> None:
    sent: list[tuple[str | None, str]] = []
    done = threading.Event()

    class Recorder:
        actor_name = "tracing.recorder"

        def send(self, *args: Any) -> None:
            sent.append((request_id.get(), threading.current_thread().name))
            done.set()

    sender = _Sender()
    token = request_id.set("trace-test-0003")
    try:
        sender.submit(Recorder(), ())  # type: ignore[arg-type]
    finally:
        request_id.reset(token)
    assert done.wait(5)
    assert sent == [("trace-test-0003", "nestpoint-enqueue")]
