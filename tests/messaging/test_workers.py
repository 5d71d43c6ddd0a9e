"""Messages sent by real Dramatiq workers: never in the request, and never twice when a
worker process is killed in the middle of a send."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from nestpoint_sms.fake import FakeSmsGateway

from conftest import flush_test_redis
from loyalty.helpers import new_phone
from nestpoint.db.base import utcnow
from nestpoint.messaging import pipeline

REDIS_URL = os.environ.get("NESTPOINT_REDIS_URL")


async def _chain_with_sms(
    client: Any, make_tenant: Any, gateway: FakeSmsGateway
) -> tuple[Any, str]:
    tenant = await make_tenant()
    path = "/api/v1/tenant/plugins/sms"
    r = await client.put(
        path, json={"enabled": True, "config": gateway.plugin_config()}, headers=tenant.hq()
    )
    assert r.status_code == 200, r.text
    for name, value in gateway.plugin_secrets().items():
        r = await client.put(f"{path}/secrets/{name}", json={"value": value}, headers=tenant.hq())
        assert r.status_code == 200, r.text
    # Any hour of the test run is a sending hour.
    r = await client.put(
        "/api/v1/messaging/settings", json={"quiet_hours": None}, headers=tenant.hq()
    )
    assert r.status_code == 200, r.text
    body = {
        "phone": new_phone(),
        "consents": [{"channel": "sms", "granted": True, "source": "app"}],
    }
    r = await client.post("/api/v1/members", json=body, headers=tenant.hq())
    assert r.status_code == 201, r.text
    return tenant, str(r.json()["id"])


async def _send(client: Any, tenant: Any, member_id: str) -> dict[str, Any]:
    body = {"message_key": "m1", "template": "points_expiring", "member_ids": [member_id]}
    r = await client.post("/api/v1/messages", json=body, headers=tenant.hq())
    assert r.status_code == 202, r.text
    assert r.json()["items"][0]["status"] == "queued"  # the request sent nothing
    return dict(r.json()["items"][0])


async def _wait_for(
    client: Any, tenant: Any, message: dict[str, Any], statuses: set[str], seconds: float
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        r = await client.get(f"/api/v1/messages/{message['id']}", headers=tenant.hq())
        record = dict(r.json())
        if record["status"] in statuses or time.monotonic() > deadline:
            return record
        await asyncio.sleep(0.1)


async def test_a_worker_sends_the_queued_message_once(client, make_tenant, worker) -> None:  # type: ignore[no-untyped-def]
    with FakeSmsGateway() as gateway:
        tenant, member_id = await _chain_with_sms(client, make_tenant, gateway)
        message = await _send(client, tenant, member_id)
        record = await _wait_for(client, tenant, message, {"sent", "failed", "suppressed"}, 15)
        assert (record["status"], record["channel"]) == ("sent", "sms"), record
        assert len(gateway.sent) == 1
        assert gateway.sent[0].out_id == f"{message['id']}:sms"


@pytest.mark.skipif(REDIS_URL is None, reason="a worker process needs a shared (Redis) broker")
async def test_a_worker_killed_mid_send_never_leads_to_a_second_send(
    client, make_tenant, database_env
) -> None:  # type: ignore[no-untyped-def]
    flush_test_redis()
    # The gateway takes 6 s to answer: the worker is killed while it waits (2.5 s after it
    # marked the message sending, time enough to send even on a busy machine).
    with FakeSmsGateway(delay_seconds=6) as gateway:
        tenant, member_id = await _chain_with_sms(client, make_tenant, gateway)
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "nestpoint.cli", "worker", "--threads", "1", "--no-scheduler"),
            env={**os.environ, **database_env},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            message = await _send(client, tenant, member_id)
            record = await _wait_for(client, tenant, message, {"sending"}, 30)
            assert record["status"] == "sending", record
            await asyncio.sleep(2.5)  # the request is on its way to the gateway
        finally:
            process.send_signal(signal.SIGKILL)
            await process.wait()
        for _ in range(150):  # the gateway took it and answered a connection that is gone
            if gateway.requests:
                break
            await asyncio.sleep(0.1)
        assert len(gateway.requests) == 1
        # Redelivered jobs and the sweep, once the dead worker's lease has run out.
        later = utcnow() + timedelta(minutes=5)
        for _ in range(3):
            assert await pipeline.step(tenant.id, uuid.UUID(message["id"]), later) is None
        record = await _wait_for(client, tenant, message, {"failed"}, 1)
        assert (record["status"], record["reason"]) == ("failed", "interrupted")
        assert [a["outcome"] for a in record["attempt_log"]] == ["interrupted"]
        assert len(gateway.requests) == 1
