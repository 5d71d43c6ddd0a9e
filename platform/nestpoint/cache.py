"""Bounded per-process caches: the one helper for every cache of configuration.

Each cache has a name, a maximum size (the least recently used entry goes first when it is
full) and a time to live, read from the settings on each use (``config_cache_seconds``,
``NESTPOINT_CONFIG_CACHE_SECONDS``, unless the cache names another), so a test or an
operator changing the setting changes the cache. It counts hits and misses; :func:`stats`
lists every cache of the process, and ``GET /cachez`` serves that list.

Invalidation stays with the owner: ``forget(key)`` or ``clear()`` when this process changes
what is cached (a revoked key, a deactivated tenant or store); other processes follow
within the TTL. A cache never holds a failure: callers put only what they found.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cachetools import TTLCache

from nestpoint.settings import get_settings

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


_registry: dict[str, BoundedCache[Any, Any]] = {}


def config_ttl() -> float:
    return get_settings().config_cache_seconds


@dataclass(frozen=True, slots=True)
class CacheStats:
    name: str
    size: int
    max_size: int
    ttl_seconds: float
    hits: int
    misses: int

    @property
    def hit_rate(self) -> float:
        asked = self.hits + self.misses
        return self.hits / asked if asked else 0.0


class BoundedCache(Generic[K, V]):
    """A named LRU cache with a TTL, counting hits and misses (``cachetools.TTLCache``)."""

    def __init__(self, name: str, *, max_size: int, ttl: Callable[[], float] = config_ttl) -> None:
        self.name = name
        self.max_size = max_size
        self._ttl = ttl
        self._entries: TTLCache[K, V] | None = None
        self._entries_ttl = -1.0
        self._lock = threading.Lock()  # a worker's threads share the process's caches
        self.hits = self.misses = 0
        _registry[name] = self

    def _store(self) -> TTLCache[K, V]:
        ttl = self._ttl()
        if self._entries is None or ttl != self._entries_ttl:  # the setting changed
            self._entries, self._entries_ttl = TTLCache(self.max_size, ttl), ttl
        return self._entries

    def get(self, key: K) -> V | None:
        """The fresh entry for ``key`` (a hit), or None (a miss)."""
        with self._lock:
            found = self._store().get(key)
            if found is None:
                self.misses += 1
            else:
                self.hits += 1
            return found

    def put(self, key: K, value: V) -> V:
        with self._lock:
            self._store()[key] = value
        return value

    def forget(self, key: K) -> None:
        with self._lock:
            self._store().pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._store().clear()

    def stats(self) -> CacheStats:
        with self._lock:
            store = self._store()
            store.expire()
            return CacheStats(
                self.name, len(store), self.max_size, self._entries_ttl, self.hits, self.misses
            )


def stats() -> list[CacheStats]:
    """Every cache of this process, by name."""
    return [cache.stats() for _, cache in sorted(_registry.items())]
