"""Rate limits per API key (``NESTPOINT_RATE_LIMIT``), with the ``limits`` library.

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

from nestpoint.context import Actor
from nestpoint.errors import RateLimited
from nestpoint.settings import Settings, get_settings

log = logging.getLogger("nestpoint.access")


class KeyRateLimit:
    def __init__(self, limits: list[RateLimitItem], storage: Storage) -> None:
        self.limits = limits
        self.limiter = FixedWindowRateLimiter(storage)

    async def check(self, actor: Actor) -> None:
        """Count one request of the actor's key; raise :class:`RateLimited` when over."""
        if not self.limits or actor.key_id is None:
            return
        key = actor.key_id.hex
        try:
            for item in self.limits:
                if not await self.limiter.hit(item, "key", key):
                    raise RateLimited(
                        f"over the rate limit of this API key ({item})",
                        retry_after=await self._retry_after(item, key),
                    )
        except RateLimited:
            raise
        except Exception as exc:  # the counters' store is down: let the request through
            log.warning("rate limit not checked", extra={"error": f"{type(exc).__name__}"})

    async def _retry_after(self, item: RateLimitItem, key: str) -> int:
        stats = await self.limiter.get_window_stats(item, "key", key)
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


@lru_cache
def rate_limit() -> KeyRateLimit:
    """This process's rate limit, from the settings (once)."""
    return make_rate_limit(get_settings())
