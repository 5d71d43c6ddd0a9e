"""The webhook relay, end to end: events made through the API, relayed by the outbox, to a
real HTTP receiver on 127.0.0.1 (the only network the suite allows)."""

from __future__ import annotations

import ipaddress
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from nestpoint_webhook import delivery
from nestpoint_webhook.delivery import DeliveryFailed, DestinationRefused, NotConfigured, deliver
from nestpoint_webhook.verify import verify_signature

from nestpoint.plugins.api import Event, PluginContext

PLUGIN = "webhook"
SECRET = "whsec-test-8c1f0b2a9d"  # noqa: S105 - a test value
BASE = "/api/v1/tenant/plugins/webhook"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """An HTTP server in a thread: records every POST, answers the queued statuses first
    (then 200)."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.statuses: list[int] = []
        self.delay = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                time.sleep(receiver.delay)
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                receiver.requests.append(Received(self.path, dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the client gave up (a timeout test)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/nestpoint?source=test"

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture(autouse=True)
def loopback_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's setting in this suite: the receiver on 127.0.0.1 only."""
    monkeypatch.setenv("NESTPOINT_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")


async def _set_up(client, t, enable, url: str, secret: str | None = SECRET, **config):  # type: ignore[no-untyped-def]
    if secret is not None:
        r = await client.put(
            f"{BASE}/secrets/signing_secret", json={"value": secret}, headers=t.hq()
        )
        assert r.status_code == 200, r.text
    await enable(t, PLUGIN, config={"url": url, **config})


async def _member(client, t) -> str:  # type: ignore[no-untyped-def]
    phone = f"139{uuid.uuid4().int % 100_000_000:08d}"
    r = await client.post("/api/v1/members", json={"phone": phone}, headers=t.hq())
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _failures(client, t) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    r = await client.get(f"{BASE}/failures", headers=t.hq())
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def _event(t, type: str = "member.joined") -> Event:  # type: ignore[no-untyped-def]
    return Event(
        id=str(uuid.uuid4()),
        type=type,
        tenant_id=str(t.id),
        store_id=None,
        subject_type="member",
        subject_id=str(uuid.uuid4()),
        occurred_at="2026-11-30T08:00:00+00:00",
        payload={"member_id": "m-1"},
    )


async def test_an_event_made_through_the_api_arrives_once_and_signed(
    receiver, nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin, nestpoint_run_jobs
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin, receiver.url, events=["member.joined"])
    member = await _member(client, t)

    await nestpoint_run_jobs(t)
    await nestpoint_run_jobs(t)  # published: never sent again

    [request] = receiver.requests
    assert request.path == "/hooks/nestpoint?source=test"
    headers = request.headers
    body = json.loads(request.body)
    assert body["type"] == "member.joined"
    assert body["payload"]["member_id"] == member
    assert body["tenant_id"] == str(t.id)
    assert headers["Nestpoint-Event-Id"] == body["id"]
    assert headers["Nestpoint-Event-Type"] == "member.joined"
    assert headers["Content-Type"] == "application/json"
    stamp = int(headers["Nestpoint-Timestamp"])
    assert abs(time.time() - stamp) < 60
    assert headers["Nestpoint-Signature"].startswith(f"t={stamp},v1=")
    assert verify_signature(SECRET, headers, request.body)
    # What a receiver must refuse: another body, an old signature, another secret.
    assert not verify_signature(SECRET, headers, request.body.replace(b"member", b"MEMBER"))
    assert not verify_signature(SECRET, headers, request.body, now=stamp + 301)
    assert verify_signature(SECRET, headers, request.body, tolerance=600, now=stamp + 301)
    assert not verify_signature("another-secret", headers, request.body)
    assert SECRET not in str(headers)
    assert SECRET.encode() not in request.body


async def test_a_receiver_error_is_retried_by_the_outbox(
    receiver, nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin, nestpoint_run_jobs
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin, receiver.url, events=["member.joined"])
    receiver.statuses = [500]
    await _member(client, t)

    await nestpoint_run_jobs(t)
    assert len(receiver.requests) == 1
    [failure] = await _failures(client, t)
    assert failure["hook"] == "nestpoint_on_event"
    assert "500" in failure["error"]
    assert not failure["final"]
    assert "127.0.0.1" not in failure["error"]  # the URL is not quoted

    await nestpoint_run_jobs(t)  # the back-off has not passed: nothing yet
    assert len(receiver.requests) == 1
    await nestpoint_run_jobs(t, skip_backoff=True)
    await nestpoint_run_jobs(t, skip_backoff=True)  # delivered: not again

    first, second = receiver.requests
    assert first.headers["Nestpoint-Event-Id"] == second.headers["Nestpoint-Event-Id"]
    assert first.body == second.body
    assert all(verify_signature(SECRET, r.headers, r.body) for r in receiver.requests)


async def test_a_refusal_is_not_retried_but_raised_as_an_event(
    receiver, nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin, nestpoint_run_jobs
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin, receiver.url, events=[])  # every type
    receiver.statuses = [404] * 20
    await _member(client, t)

    await nestpoint_run_jobs(t, skip_backoff=True)
    sent = len(receiver.requests)
    assert "member.joined" in [e["type"] for e in receiver.events()]
    await nestpoint_run_jobs(t, skip_backoff=True)
    assert len(receiver.requests) == sent  # not retried, and webhook.refused not relayed
    assert await _failures(client, t) == []
    r = await client.get("/api/v1/events", params={"type": "webhook.refused"}, headers=t.hq())
    refused = [e["payload"] for e in r.json()["items"]]
    assert {"event_type": "member.joined", "status": 404}.items() <= next(
        p for p in refused if p["event_type"] == "member.joined"
    ).items()
    assert len(refused) == sent


async def test_the_event_filter(
    receiver, nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin, nestpoint_emit_event
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(
        client, t, nestpoint_enable_plugin, receiver.url, events=["points.*", "tier.changed"]
    )
    for type in ("member.joined", "points.earned", "order.paid", "tier.changed", "points.expired"):
        await nestpoint_emit_event(t, type, {"member_id": "m-1"}, store="S1")
    assert [e["type"] for e in receiver.events()] == [
        "points.earned",
        "tier.changed",
        "points.expired",
    ]
    assert {e["store_id"] for e in receiver.events()} == {str(t.stores["S1"])}

    r = await client.put(
        f"{BASE}", json={"config": {"events": ["points.earned", "Points!"]}}, headers=t.hq()
    )
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["config.events"]


async def test_without_the_secret_nothing_is_sent_until_it_is_set(
    receiver, nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin, nestpoint_emit_event,
    nestpoint_run_jobs,
):  # fmt: skip
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin, receiver.url, secret=None)
    await nestpoint_emit_event(t, "points.earned", {"member_id": "m-1"})
    assert receiver.requests == []
    [failure] = await _failures(client, t)
    assert "signing_secret" in failure["error"]

    r = await client.put(f"{BASE}/secrets/signing_secret", json={"value": SECRET}, headers=t.hq())
    assert r.status_code == 200
    await nestpoint_run_jobs(t, skip_backoff=True)
    [request] = receiver.requests
    assert verify_signature(SECRET, request.headers, request.body)


async def test_the_signing_secret_is_write_only(
    receiver, nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    await _set_up(client, t, nestpoint_enable_plugin, receiver.url)
    for path in (BASE, f"{BASE}/secrets", "/api/v1/tenant/plugins"):
        r = await client.get(path, headers=t.hq())
        assert r.status_code == 200, r.text
        assert SECRET not in r.text, path
    r = await client.get(f"{BASE}/secrets", headers=t.hq())
    assert {s["name"]: s["set"] for s in r.json()["items"]} == {"signing_secret": True}


# ---- destinations


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.1/hooks",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]:8443/hooks",
        "https://[::ffff:10.0.0.1]/hooks",
        "https://167772161/hooks",  # 10.0.0.1 spelled as one number
        "https://0.0.0.0/hooks",
        "https://224.0.0.1/hooks",
        "http://93.184.216.34/in-clear",  # plain http only to the allowed networks
        "https://user:password@hooks.example.com/",
        "ftp://hooks.example.com/",
    ],
)
async def test_refused_destinations_are_refused_when_saved(
    url, nestpoint_tenant, nestpoint_client, monkeypatch
):
    t = nestpoint_tenant
    r = await nestpoint_client.put(
        BASE, json={"enabled": True, "config": {"url": url}}, headers=t.hq()
    )
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["config.url"]
    assert "user:password" not in r.text


async def test_loopback_is_refused_when_the_operator_does_not_allow_it(
    nestpoint_tenant, nestpoint_client, monkeypatch
):
    t = nestpoint_tenant
    monkeypatch.setenv("NESTPOINT_WEBHOOK_ALLOWED_NETWORKS", "192.0.2.0/24")
    for url in ("https://127.0.0.1/hooks", "https://localhost/hooks", "https://[::1]/hooks"):
        r = await nestpoint_client.put(
            BASE, json={"enabled": True, "config": {"url": url}}, headers=t.hq()
        )
        assert r.status_code == 422, (url, r.text)
        assert "loopback" in r.text
    # When sending, a name is resolved and every address checked: localhost is loopback.
    r = await nestpoint_client.put(
        f"{BASE}/secrets/signing_secret", json={"value": SECRET}, headers=t.hq()
    )
    assert r.status_code == 200
    plugin = PluginContext(PLUGIN, t.id, None, {"url": "https://localhost:9/hooks"})
    with pytest.raises(DestinationRefused, match="loopback"):
        await deliver(_event(t), plugin)


async def test_names_are_checked_after_resolution_and_the_checked_address_is_used(
    receiver, nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin, nestpoint_run_jobs,
    monkeypatch,
):  # fmt: skip
    t, client = nestpoint_tenant, nestpoint_client
    answers = {
        "hooks.example.test": ["127.0.0.1"],
        "rebinding.example.test": ["93.184.216.34", "10.0.0.1"],
        "metadata.example.test": ["169.254.169.254"],
        "v6.example.test": ["::1"],
        "public.example.test": ["93.184.216.34"],
    }

    async def resolve(host: str, port: int) -> list[Any]:
        return [ipaddress.ip_address(a) for a in answers.get(host, [host])]

    monkeypatch.setattr(delivery, "resolve", resolve)
    named = f"http://hooks.example.test:{receiver.port}/in"
    await _set_up(client, t, nestpoint_enable_plugin, named, events=["member.joined"])
    await _member(client, t)
    await nestpoint_run_jobs(t)
    [request] = receiver.requests  # connected to 127.0.0.1, the name kept as Host
    assert request.headers["Host"] == f"hooks.example.test:{receiver.port}"
    assert verify_signature(SECRET, request.headers, request.body)

    for host, reason in (
        ("rebinding.example.test", "10.0.0.1 is private"),
        ("metadata.example.test", "169.254.169.254 is link-local"),
        ("v6.example.test", "::1 is loopback"),
    ):
        plugin = PluginContext(PLUGIN, t.id, None, {"url": f"https://{host}/hooks"})
        with pytest.raises(DestinationRefused, match=reason):
            await deliver(_event(t), plugin)
    # A public receiver, but in clear: plain http goes only to the operator's networks.
    for host, reason in (("public.example.test", "plain http"),):
        plugin = PluginContext(PLUGIN, t.id, None, {"url": f"http://{host}/hooks"})
        with pytest.raises(DestinationRefused, match=reason):
            await deliver(_event(t), plugin)
    # An IP literal saved before the operator changed the setting is checked again too.
    plugin = PluginContext(PLUGIN, t.id, None, {"url": "https://10.0.0.1/hooks"})
    with pytest.raises(DestinationRefused, match=r"10\.0\.0\.1 is private"):
        await deliver(_event(t), plugin)

    # Through the outbox, a refused destination is a recorded failure, retried later.
    await _set_up(
        client, t, nestpoint_enable_plugin, "https://rebinding.example.test/h", secret=None
    )
    await _member(client, t)
    await nestpoint_run_jobs(t)
    assert len(receiver.requests) == 1
    assert any("10.0.0.1 is private" in f["error"] for f in await _failures(client, t))


@pytest.mark.parametrize(
    ("status", "retried"), [(408, True), (429, True), (503, True), (410, False)]
)
async def test_statuses_that_are_retried(
    status, retried, receiver, nestpoint_tenant, nestpoint_client
):
    t, client = nestpoint_tenant, nestpoint_client
    r = await client.put(f"{BASE}/secrets/signing_secret", json={"value": SECRET}, headers=t.hq())
    assert r.status_code == 200
    plugin = PluginContext(PLUGIN, t.id, None, {"url": receiver.url})
    receiver.statuses = [status]
    if retried:
        with pytest.raises(DeliveryFailed, match=str(status)):
            await deliver(_event(t), plugin)
    else:
        assert await deliver(_event(t), plugin) == status
    assert len(receiver.requests) == 1


async def test_a_receiver_that_is_down_or_slow_is_retried(
    receiver, nestpoint_tenant, nestpoint_client
):
    t, client = nestpoint_tenant, nestpoint_client
    r = await client.put(f"{BASE}/secrets/signing_secret", json={"value": SECRET}, headers=t.hq())
    assert r.status_code == 200
    down = Receiver()  # bound, never started: its port is closed once released
    port = down.port
    down.server.server_close()
    plugin = PluginContext(PLUGIN, t.id, None, {"url": f"http://127.0.0.1:{port}/"})
    with pytest.raises(DeliveryFailed, match="connect"):
        await deliver(_event(t), plugin)
    unconfigured = PluginContext(PLUGIN, t.id, None, {})
    with pytest.raises(NotConfigured, match="url"):
        await deliver(_event(t), unconfigured)
    receiver.delay = 1.0
    slow = PluginContext(PLUGIN, t.id, None, {"url": receiver.url, "timeout_seconds": 0.2})
    with pytest.raises(DeliveryFailed, match=r"within 0\.2 s"):
        await deliver(_event(t), slow)
