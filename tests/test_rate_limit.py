"""Rate limits per API key: 429 with Retry-After over the limit, each key on its own,
exact under concurrent requests, and no refusal when the counters' store is down."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from nestpoint.api import middleware
from nestpoint.api.ratelimit import KeyRateLimit, make_rate_limit, rate_limit
from nestpoint.settings import Settings

# The PostgreSQL run has Redis: the counters live there, as in production.
REDIS_URL = os.environ.get("NESTPOINT_REDIS_URL")


@pytest.fixture
def limit(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Installs a rate limit for the test (``limit("3/minute")``)."""

    def install(spec: str, storage_url: str | None = None) -> KeyRateLimit:
        settings = Settings(
            rate_limit=spec,
            rate_limit_storage_url=storage_url or REDIS_URL or "memory://",
        )
        made = make_rate_limit(settings)
        monkeypatch.setattr(middleware, "rate_limit", lambda: made)
        return made

    yield install
    rate_limit.cache_clear()


async def test_over_the_limit_is_429_with_retry_after(
    client: Any, make_tenant: Any, limit: Any
) -> None:
    t = await make_tenant()
    limit("3/minute")
    statuses = [(await client.get("/api/v1/stores", headers=t.hq())).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]

    r = await client.get("/api/v1/stores", headers=t.hq())
    assert r.status_code == 429
    assert r.headers["content-type"] == "application/problem+json"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    problem = r.json()
    assert problem["type"].endswith("/rate-limited")
    assert problem["status"] == 429
    assert "3 per 1 minute" in problem["detail"]


async def test_each_key_has_its_own_limit(client: Any, make_tenant: Any, limit: Any) -> None:
    t = await make_tenant()
    limit("2/minute")
    for _ in range(2):
        assert (await client.get("/api/v1/stores", headers=t.hq())).status_code == 200
    assert (await client.get("/api/v1/stores", headers=t.hq())).status_code == 429
    # The store's key and a key-less path are not held back by HQ's.
    assert (await client.get("/api/v1/stores", headers=t.store("S1"))).status_code == 200
    assert (await client.get("/healthz")).status_code == 200


async def test_concurrent_requests_are_counted_exactly(
    concurrent_client: Any, make_tenant: Any, limit: Any
) -> None:
    t = await make_tenant()
    limit("5/minute")
    responses = await asyncio.gather(
        *(concurrent_client.get("/api/v1/stores", headers=t.hq()) for _ in range(12))
    )
    assert sorted(r.status_code for r in responses) == [200] * 5 + [429] * 7


async def test_requests_pass_when_the_counters_store_is_down(
    client: Any, make_tenant: Any, limit: Any
) -> None:
    t = await make_tenant()
    limit("1/minute", storage_url="redis://127.0.0.1:1/0")  # nothing listens on port 1
    for _ in range(3):
        assert (await client.get("/api/v1/stores", headers=t.hq())).status_code == 200


async def test_an_empty_setting_means_no_limit(client: Any, make_tenant: Any, limit: Any) -> None:
    t = await make_tenant()
    made = limit("")
    assert made.limits == []
    for _ in range(5):
        assert (await client.get("/api/v1/stores", headers=t.hq())).status_code == 200


def test_a_key_id_is_what_is_counted() -> None:
    # Work without a key (a job, the system) is never counted against anyone.
    from nestpoint.context import Actor

    made = make_rate_limit(Settings(rate_limit="1/minute", rate_limit_storage_url="memory://"))
    asyncio.run(made.check(Actor("system", name="job")))
    asyncio.run(made.check(Actor("system", name="job")))  # no key: no limit, no error
    key = Actor("tenant", uuid.uuid4())
    asyncio.run(made.check(key))
    with pytest.raises(Exception, match="rate limit"):
        asyncio.run(made.check(key))
