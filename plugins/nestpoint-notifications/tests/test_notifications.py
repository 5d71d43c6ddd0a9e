"""Transactional messages from events, through the core's pipeline to a channel."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import pytest
from nestpoint_notifications.plugin import nestpoint_on_event

from nestpoint.messaging import pipeline
from nestpoint.plugins.api import (
    ChannelConnector,
    ChannelRegistry,
    DeliveryReceipt,
    Event,
    OutboundMessage,
    PluginContext,
    hookimpl,
)
from nestpoint.testing import next_local_time

DAY = next_local_time(10)  # 10:00 in Shanghai (no quiet hours), ahead of the clock


class Outbox:
    """A channel connector that keeps what it is given (the member's SMS, as a list)."""

    sent: list[OutboundMessage] = []

    @hookimpl
    def nestpoint_register_channel_connectors(self, registry: ChannelRegistry) -> None:
        registry.add(ChannelConnector("kept", "Kept", send=self.send, consent="sms"))

    async def send(self, message: OutboundMessage, plugin: PluginContext) -> DeliveryReceipt:
        self.sent.append(message)
        return DeliveryReceipt(True, provider_message_id=f"kept-{len(self.sent)}")


@pytest.fixture(scope="session")
def nestpoint_plugins() -> Mapping[str, object]:
    return {"kept": Outbox()}


async def _setup(client: Any, tenant: Any, enable: Any) -> str:
    await enable(tenant, "notifications")
    await enable(tenant, "kept")
    r = await client.put(
        "/api/v1/messaging/settings", json={"channel_order": ["kept"]}, headers=tenant.hq()
    )
    assert r.status_code == 200, r.text
    phone = f"139{uuid.uuid4().int % 100_000_000:08d}"
    body = {
        "phone": phone,
        "name": "王芳",
        "consents": [{"channel": "sms", "granted": True, "source": "app"}],
    }
    r = await client.post("/api/v1/members", json=body, headers=tenant.hq())
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _messages(client: Any, tenant: Any) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/messages", headers=tenant.hq())
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_points_expiring_reaches_the_member_once_even_when_the_event_comes_twice(
    nestpoint_client, nestpoint_tenant, nestpoint_enable_plugin, nestpoint_emit_event
) -> None:  # type: ignore[no-untyped-def]
    client, tenant = nestpoint_client, nestpoint_tenant
    member_id = await _setup(client, tenant, nestpoint_enable_plugin)
    Outbox.sent.clear()
    payload = {"member_id": member_id, "points": 300, "expires_by": "2026-12-31T16:00:00+00:00"}
    event_id = await nestpoint_emit_event(tenant, "points.expiring", payload)
    # The outbox delivers at least once: the same event again queues nothing new.
    again = Event(event_id, "points.expiring", str(tenant.id), None, "test", "x", "", payload)
    await nestpoint_on_event(again, PluginContext("notifications", tenant.id, None, {}))
    messages = [m for m in await _messages(client, tenant) if m["purpose"] == "points_expiring"]
    assert len(messages) == 1
    for _ in range(2):  # a retried job sends nothing more
        while (await pipeline.step(tenant.id, uuid.UUID(messages[0]["id"]), DAY)) == 0:
            pass
    assert len(Outbox.sent) == 1
    assert "300" in Outbox.sent[0].body
    assert "2027-01-01" in Outbox.sent[0].body
    assert Outbox.sent[0].params["points_expiring_on"] == "2027-01-01"  # the chain's date


async def test_a_switched_off_purpose_queues_nothing_and_a_downgrade_sends_nothing(
    nestpoint_client, nestpoint_tenant, nestpoint_enable_plugin, nestpoint_emit_event
) -> None:  # type: ignore[no-untyped-def]
    client, tenant = nestpoint_client, nestpoint_tenant
    member_id = await _setup(client, tenant, nestpoint_enable_plugin)
    before = len(await _messages(client, tenant))
    # points_earned is off by default; a move down the ladder is no news to send.
    await nestpoint_emit_event(tenant, "points.earned", {"member_id": member_id, "points": 5})
    await nestpoint_emit_event(
        tenant,
        "tier.changed",
        {"member_id": member_id, "to_tier": "bronze", "reason": "evaluation"},
    )
    assert len(await _messages(client, tenant)) == before
    await nestpoint_emit_event(
        tenant, "tier.changed", {"member_id": member_id, "to_tier": "gold", "reason": "upgrade"}
    )
    after = await _messages(client, tenant)
    assert [m["purpose"] for m in after[before:]] == ["tier_up"]
