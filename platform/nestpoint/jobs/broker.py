"""The Dramatiq broker, chosen once from settings at import.

``NESTPOINT_REDIS_URL`` set → a Redis broker shared by every API and worker process.
Unset → an in-process stub broker: the embedded default and the tests, where an in-process
worker (``nestpoint.jobs.worker``) consumes the same queues inside the server process.
Actor modules import ``broker`` from here before declaring actors, so they bind to it.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware.asyncio import AsyncIO

from nestpoint.settings import get_settings


def make_broker(redis_url: str | None) -> dramatiq.Broker:
    if redis_url:
        from dramatiq.brokers.redis import RedisBroker

        new_broker: dramatiq.Broker = RedisBroker(url=redis_url, namespace="nestpoint")
    else:
        new_broker = StubBroker()
    new_broker.add_middleware(AsyncIO())
    return new_broker


broker = make_broker(get_settings().redis_url)
dramatiq.set_broker(broker)

QUEUES = ("events", "default")


def is_in_process() -> bool:
    return isinstance(broker, StubBroker)


def ping() -> bool:
    """Readiness: the broker answers (always true for the in-process broker)."""
    if is_in_process():
        return True
    client = broker.client  # type: ignore[attr-defined]
    return bool(client.ping())
