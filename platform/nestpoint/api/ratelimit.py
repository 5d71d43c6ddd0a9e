"""Rate limits per API key (``NESTPOINT_RATE_LIMIT``), per member on the member API
(``NESTPOINT_MEMBER_RATE_LIMIT``) and, on the public routes plugins
add (``/public/...``, no key), per client address (``NESTPOINT_PUBLIC_RATE_LIMIT``), with
the ``limits`` library.

Fixed windows (one counter per key and window: one Redis round trip per request and
limit), kept where ``rate_limit_storage_url`` says: by default the broker's Redis, so every
API process counts together; in this process's memory when there is no Redis (the
embedded default). Over a limit, the request is answered 429 with ``Retry-After`` (the
seconds until the window that refused it ends) and goes no further. If the counters'
store does not answer, requests pass: a rate limit protects the service, and refusing
every till because Redis blinked would do the opposite.
"""

from __future__ import annotations

import logging
import math
import time
from functools import lru_cache

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from litestar.types import Scope

from nestpoint.context import Actor
from nestpoint.errors import RateLimited
from nestpoint.settings import Settings, get_settings

log = logging.getLogger("nestpoint.access")


# Where the public routes of plugins are mounted: no API key, limited per client address.
PUBLIC_PATH_PREFIX = "/public/"
# Where a member logs in with a WeChat login code (no key): limited per client address too.
MEMBER_AUTH_PATH_PREFIX = "/member-auth/"


class KeyRateLimit:
    """Fixed-window limits on one kind of caller: API keys (``namespace`` ``key``) or
    client addresses on the public routes (``public-ip``)."""

    def __init__(
        self,
        limits: list[RateLimitItem],
        storage: Storage,
        *,
        namespace: str = "key",
        whose: str = "this API key",
    ) -> None:
        self.limits = limits
        self.limiter = FixedWindowRateLimiter(storage)
        self.namespace = namespace
        self.whose = whose

    async def check(self, actor: Actor) -> None:
        """Count one request of the actor's key; raise :class:`RateLimited` when over."""
        if actor.key_id is not None:
            await self.hit(actor.key_id.hex)

    async def check_client(self, scope: Scope) -> None:
        """Count one request of the client's address (the ASGI ``client``: behind a proxy,
        let the server take it from ``X-Forwarded-For``, see docs/operations.md)."""
        client = scope.get("client")
        await self.hit(str(client[0]) if client else "unknown")

    async def hit(self, key: str) -> None:
        """Count one request of ``key``; raise :class:`RateLimited` when over a limit."""
        if not self.limits:
            return
        try:
            for item in self.limits:
                if not await self.limiter.hit(item, self.namespace, key):
                    raise RateLimited(
                        f"over the rate limit of {self.whose} ({item})",
                        retry_after=await self._retry_after(item, key),
                    )
        except RateLimited:
            raise
        except Exception as exc:  # the counters' store is down: let the request through
            log.warning("rate limit not checked", extra={"error": f"{type(exc).__name__}"})

    async def _retry_after(self, item: RateLimitItem, key: str) -> int:
        stats = await self.limiter.get_window_stats(item, self.namespace, key)
        return max(1, math.ceil(stats.reset_time - time.time()))


def storage_for(url: str) -> Storage:
    if url.startswith("memory://"):
        return MemoryStorage()
    # limits names its asynchronous Redis stores "async+redis://"; redis-py is the client.
    return RedisStorage(f"async+{url}", implementation="redispy", key_prefix="nestpoint-rl")


def make_rate_limit(settings: Settings) -> KeyRateLimit:
    spec = settings.rate_limit.strip()
    url = settings.rate_limit_storage_url or settings.redis_url or "memory://"
    return KeyRateLimit(parse_many(spec) if spec else [], storage_for(url))


def make_public_rate_limit(settings: Settings) -> KeyRateLimit:
    spec = settings.public_rate_limit.strip()
    url = settings.rate_limit_storage_url or settings.redis_url or "memory://"
    return KeyRateLimit(
        parse_many(spec) if spec else [],
        storage_for(url),
        namespace="public-ip",
        whose="this client address on the public routes",
    )


def make_member_rate_limit(settings: Settings) -> KeyRateLimit:
    spec = settings.member_rate_limit.strip()
    url = settings.rate_limit_storage_url or settings.redis_url or "memory://"
    return KeyRateLimit(
        parse_many(spec) if spec else [],
        storage_for(url),
        namespace="member",
        whose="this member (NESTPOINT_MEMBER_RATE_LIMIT)",
    )


@lru_cache
def rate_limit() -> KeyRateLimit:
    """This process's rate limit, from the settings (once)."""
    return make_rate_limit(get_settings())


@lru_cache
def public_rate_limit() -> KeyRateLimit:
    """This process's limit per client address on the public routes (once)."""
    return make_public_rate_limit(get_settings())


@lru_cache
def member_rate_limit() -> KeyRateLimit:
    """This process's limit per member on the member API (a member token's actor's
    ``key_id`` is the member's id: every token of one member counts together)."""
    return make_member_rate_limit(get_settings())
