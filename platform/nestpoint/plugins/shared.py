"""State plugins share across worker processes: provider tokens and per-key counters.

Both live in the broker's Redis when there is one (``redis_url``), so every worker sees the
same token and counts together; in this process's memory otherwise (the embedded default,
one process). A provider's access token (WeCom's, WeChat's) is sealed with the core's keys
before it is stored, so Redis never holds a usable credential in the clear.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import lru_cache

import redis.asyncio as aioredis
from limits import parse
from limits.aio.strategies import FixedWindowRateLimiter

from nestpoint.api.ratelimit import storage_for
from nestpoint.members import pii
from nestpoint.settings import get_settings

Fetch = Callable[[], Awaitable[tuple[str, int]]]
_local: dict[str, tuple[str, float]] = {}
_locks: dict[str, asyncio.Lock] = {}


def _redis() -> aioredis.Redis | None:
    return _redis_for(asyncio.get_running_loop())


# One client per event loop: an asyncio connection belongs to the loop that opened it (a
# worker runs its jobs on one loop, the API on another; the tests use several).
@lru_cache(maxsize=8)
def _redis_for(loop: asyncio.AbstractEventLoop) -> aioredis.Redis | None:
    url = get_settings().redis_url
    return aioredis.Redis.from_url(url) if url else None


def _context(key: str) -> bytes:
    return b"plugin-credential:" + key.encode()


async def cached_credential(key: str, fetch: Fetch, *, margin: int = 300) -> str:
    """The value cached under ``key``, or ``fetch()``'s (value, lifetime in seconds) stored
    until ``margin`` seconds before it expires. One fetch at a time per process and key."""
    found = await _get(key)
    if found is not None:
        return found
    lock = _locks.setdefault(key, asyncio.Lock())
    async with lock:
        found = await _get(key)
        if found is not None:
            return found
        value, lifetime = await fetch()
        await _put(key, value, max(1, lifetime - margin))
        return value


async def forget_credential(key: str) -> None:
    """Drop a cached value the provider no longer accepts (an expired token)."""
    _local.pop(key, None)
    client = _redis()
    if client is not None:
        await client.delete(f"nestpoint-cred:{key}")


async def _get(key: str) -> str | None:
    client = _redis()
    if client is None:
        value, until = _local.get(key, ("", 0.0))
        return value if until > time.monotonic() else None
    sealed = await client.get(f"nestpoint-cred:{key}")
    if sealed is None:
        return None
    text = sealed.decode() if isinstance(sealed, bytes) else str(sealed)
    return pii.keyring().decrypt(text, context=_context(key))


async def _put(key: str, value: str, seconds: int) -> None:
    client = _redis()
    if client is None:
        _local[key] = (value, time.monotonic() + seconds)
        return
    sealed = pii.keyring().encrypt(value, context=_context(key))
    await client.set(f"nestpoint-cred:{key}", sealed, ex=seconds)


def _limiter() -> FixedWindowRateLimiter:
    return _limiter_for(asyncio.get_running_loop())


@lru_cache(maxsize=8)
def _limiter_for(loop: asyncio.AbstractEventLoop) -> FixedWindowRateLimiter:
    settings = get_settings()
    url = settings.rate_limit_storage_url or settings.redis_url or "memory://"
    return FixedWindowRateLimiter(storage_for(url))


async def within_limits(namespace: str, key: str, spec: str) -> bool:
    """Count one hit of ``key`` against every limit of ``spec`` (``"1/minute;5/hour"``);
    ``False`` (and nothing counted past the refusing limit) when one is exhausted."""
    limiter = _limiter()
    for item in spec.split(";"):
        if item.strip() and not await limiter.hit(parse(item.strip()), namespace, key):
            return False
    return True
