"""The one bounded cache helper (``nestpoint.cache``) and what it shows at ``/cachez``."""

from __future__ import annotations

from typing import Any

from nestpoint.cache import BoundedCache, stats

CORE_CACHES = {
    "loyalty.programs",
    "tenancy.store_codes",
    "tenancy.api_keys",
    "tenancy.store_sharing",
    "tenancy.trading_stores",
}


def counters(name: str) -> tuple[int, int]:
    found = next(c for c in stats() if c.name == name)
    return found.hits, found.misses


def test_the_least_recently_used_entry_goes_first_when_full() -> None:
    cache: BoundedCache[str, int] = BoundedCache("test.lru", max_size=2, ttl=lambda: 60)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    found = cache.stats()
    assert (found.size, found.max_size, found.hits, found.misses) == (2, 2, 3, 1)
    assert found.hit_rate == 0.75


def test_the_ttl_follows_the_setting_and_zero_caches_nothing() -> None:
    ttl = {"seconds": 60.0}
    cache: BoundedCache[str, int] = BoundedCache("test.ttl", max_size=8, ttl=lambda: ttl["seconds"])
    cache.put("a", 1)
    assert cache.get("a") == 1
    ttl["seconds"] = 0.0  # a changed setting starts a new store
    assert cache.get("a") is None
    cache.put("a", 1)
    assert cache.get("a") is None  # expired at once
    assert cache.stats().ttl_seconds == 0.0


def test_forget_and_clear() -> None:
    cache: BoundedCache[str, int] = BoundedCache("test.forget", max_size=8, ttl=lambda: 60)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.forget("a")
    assert (cache.get("a"), cache.get("b")) == (None, 2)
    cache.clear()
    assert cache.get("b") is None


async def test_cachez_lists_each_cache_with_its_counters(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant(("S1",))
    for _ in range(2):
        r = await client.get("/api/v1/stores", headers=t.hq())
        assert r.status_code == 200
    r = await client.get("/cachez")
    assert r.status_code == 200
    listed: dict[str, Any] = {c["name"]: c for c in r.json()}
    assert set(listed) >= CORE_CACHES
    keys = listed["tenancy.api_keys"]
    assert keys["max_size"] == 10_000
    assert keys["hits"] >= 1
    assert 0 <= keys["hit_rate"] <= 1


async def test_a_revoked_key_leaves_this_process_cache_at_once(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant(("S1",))
    r = await client.post("/api/v1/api-keys", json={"name": "spare"}, headers=t.hq())
    assert r.status_code == 201
    created = r.json()
    key = {"Authorization": f"Bearer {created['key']}"}
    assert (await client.get("/api/v1/stores", headers=key)).status_code == 200
    hits, misses = counters("tenancy.api_keys")
    assert (await client.get("/api/v1/stores", headers=key)).status_code == 200
    assert counters("tenancy.api_keys")[0] == hits + 1  # answered from the cache

    r = await client.delete(f"/api/v1/api-keys/{created['id']}", headers=t.hq())
    assert r.status_code == 200
    _, misses = counters("tenancy.api_keys")
    assert (await client.get("/api/v1/stores", headers=key)).status_code == 401
    assert counters("tenancy.api_keys")[1] == misses + 1  # looked up again, not cached
