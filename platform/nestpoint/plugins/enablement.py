"""Which plugins are enabled where: a per-tenant snapshot of the enablement rows, cached.

Reading: one query loads every row of a tenant (a handful) into a :class:`TenantPlugins`
snapshot; :meth:`TenantPlugins.enabled_for` answers "which plugins, with which merged
config, for this store" and memoises the answer, so on the order's hot path a hook call
costs no query while the snapshot is fresh.

Invalidation (the choice, documented in ``docs/plugins/reference.md``):

* in the process that made a change, at once: services mark the tenant in the session and
  an ``after_commit`` listener bumps the tenant's generation, which makes every cached
  snapshot of that tenant stale;
* in other processes (more API replicas, workers), within ``plugins_cache_ttl_seconds``
  (5 s by default): each snapshot is also dropped after that long. A version counter read
  from the database would be exact but costs a query per hook call on the hot path; a
  short TTL costs nothing and bounds the delay.
* The outbox relay never uses a cached snapshot: it loads the rows in its own transaction
  for each batch, so an event is never delivered to a plugin disabled before the batch;
  and it delivers an event only to the plugins that were already on when it happened
  (:meth:`TenantPlugins.enabled_when`, from each row's ``enabled_at``), so enabling a
  plugin never hands it a backlog of earlier events.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from nestpoint.cache import BoundedCache
from nestpoint.context import tenant_context
from nestpoint.db import scoped_session
from nestpoint.db.session import TenantSession, on_commit
from nestpoint.plugins.models import PluginEnablement

CHANGED_TENANTS_KEY = "nestpoint.plugins_changed"

# Bumped after a commit that changed a tenant's enablement rows (in this process). Not a
# cache (``nestpoint.cache``): dropping a tenant's counter could make a snapshot loaded
# before the change look current again. One int per tenant changed in this process.
_generation: dict[uuid.UUID, int] = {}


def generation(tenant_id: uuid.UUID) -> int:
    return _generation.get(tenant_id, 0)


def invalidate(tenant_id: uuid.UUID) -> None:
    _generation[tenant_id] = _generation.get(tenant_id, 0) + 1


def mark_changed(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Services call this beside a change; the snapshot is invalidated after commit."""
    session.info.setdefault(CHANGED_TENANTS_KEY, set()).add(tenant_id)


def _after_commit(session: Session) -> None:
    for tenant_id in session.info.pop(CHANGED_TENANTS_KEY, set()):
        invalidate(tenant_id)


def _after_rollback(session: Session) -> None:
    # A snapshot read inside the rolled-back transaction may have seen the change.
    for tenant_id in session.info.pop(CHANGED_TENANTS_KEY, set()):
        invalidate(tenant_id)


def install_session_hooks() -> None:
    on_commit(_after_commit)
    if not event.contains(TenantSession, "after_rollback", _after_rollback):
        event.listen(TenantSession, "after_rollback", _after_rollback)


@dataclass(frozen=True, slots=True)
class Setting:
    enabled: bool
    config: Mapping[str, Any]
    allow_store_opt_in: bool = False
    enabled_at: datetime | None = None  # on without a break since then (None: off)


# (plugin id, chain config, store config or None) -> merged, validated config
ConfigMerger = Callable[[str, Mapping[str, Any], Mapping[str, Any] | None], dict[str, Any]]


@dataclass
class TenantPlugins:
    """A snapshot of one tenant's enablement rows."""

    tenant_id: uuid.UUID
    chain: dict[str, Setting] = field(default_factory=dict)
    stores: dict[tuple[str, uuid.UUID], Setting] = field(default_factory=dict)
    generation: int = 0
    _memo: dict[tuple[uuid.UUID | None, str], dict[str, dict[str, Any]]] = field(
        default_factory=dict
    )

    @classmethod
    def from_rows(
        cls, tenant_id: uuid.UUID, rows: list[PluginEnablement], gen: int
    ) -> TenantPlugins:
        snapshot = cls(tenant_id, generation=gen)
        for row in rows:
            setting = Setting(
                row.enabled, dict(row.config or {}), row.allow_store_opt_in, row.enabled_at
            )
            if row.store_id is None:
                snapshot.chain[row.plugin_id] = setting
            else:
                snapshot.stores[(row.plugin_id, row.store_id)] = setting
        return snapshot

    def is_enabled(self, plugin_id: str, store_id: uuid.UUID | None) -> bool:
        """Enabled for a store (its own row wins, else the chain's), or chain-wide."""
        if store_id is not None:
            own = self.stores.get((plugin_id, store_id))
            if own is not None:
                return own.enabled
        chain = self.chain.get(plugin_id)
        return chain is not None and chain.enabled

    def enabled_since(self, plugin_id: str, store_id: uuid.UUID | None) -> datetime | None:
        """Since when the plugin has been on for a store (or chain-wide), by the row that
        decides (see :meth:`is_enabled`); ``None`` when off, or on since before records."""
        own = self.stores.get((plugin_id, store_id)) if store_id is not None else None
        setting = own if own is not None else self.chain.get(plugin_id)
        return setting.enabled_at if setting is not None and setting.enabled else None

    def enabled_when(
        self, enabled: Mapping[str, dict[str, Any]], store_id: uuid.UUID | None, moment: datetime
    ) -> dict[str, dict[str, Any]]:
        """Of ``enabled`` (``enabled_for`` the store), the plugins already on at ``moment``:
        an event goes only to the plugins that were enabled when it happened."""
        return {
            plugin_id: config
            for plugin_id, config in enabled.items()
            if (since := self.enabled_since(plugin_id, store_id)) is None or since <= moment
        }

    def enabled_anywhere(self, plugin_id: str) -> bool:
        chain = self.chain.get(plugin_id)
        if chain is not None and chain.enabled:
            return True
        return any(s.enabled for (pid, _), s in self.stores.items() if pid == plugin_id)

    def store_ids(self, plugin_id: str) -> list[uuid.UUID]:
        return [sid for (pid, sid), s in self.stores.items() if pid == plugin_id and s.enabled]

    def enabled_for(
        self,
        store_id: uuid.UUID | None,
        installed: frozenset[str],
        merge: ConfigMerger,
        *,
        anywhere: bool = False,
    ) -> dict[str, dict[str, Any]]:
        """``{plugin id: merged config}`` of the installed plugins enabled for a store (or
        chain-wide for ``None``; with ``anywhere``, enabled for the chain or any store)."""
        key = (store_id, "anywhere" if anywhere else "here")
        memo = self._memo.get(key)
        if memo is not None:
            return memo
        result: dict[str, dict[str, Any]] = {}
        plugin_ids = set(self.chain) | {pid for pid, _ in self.stores}
        for plugin_id in sorted(plugin_ids & installed):
            on = (
                self.enabled_anywhere(plugin_id)
                if anywhere
                else self.is_enabled(plugin_id, store_id)
            )
            if not on:
                continue
            chain = self.chain.get(plugin_id)
            own = self.stores.get((plugin_id, store_id)) if store_id is not None else None
            result[plugin_id] = merge(
                plugin_id, chain.config if chain else {}, own.config if own else None
            )
        self._memo[key] = result
        return result


async def load_snapshot(session: AsyncSession, tenant_id: uuid.UUID) -> TenantPlugins:
    """Read a tenant's rows (the session must be bound to that tenant)."""
    gen = generation(tenant_id)
    rows = list(
        (
            await session.scalars(
                select(PluginEnablement).where(PluginEnablement.tenant_id == tenant_id)
            )
        ).all()
    )
    return TenantPlugins.from_rows(tenant_id, rows, gen)


class EnablementCache:
    """Snapshots per tenant (a bounded cache, ``plugins.enablement``), dropped on a local
    change (the generation moved on) or after the TTL."""

    MAX_TENANTS = 1_024

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._snapshots: BoundedCache[uuid.UUID, TenantPlugins] = BoundedCache(
            "plugins.enablement", max_size=self.MAX_TENANTS, ttl=lambda: self.ttl
        )

    def cached(self, tenant_id: uuid.UUID) -> TenantPlugins | None:
        snapshot = self._snapshots.get(tenant_id)
        if snapshot is not None and snapshot.generation != generation(tenant_id):
            return None  # changed in this process since it was loaded
        return snapshot

    def put(self, snapshot: TenantPlugins) -> TenantPlugins:
        return self._snapshots.put(snapshot.tenant_id, snapshot)

    async def get(self, tenant_id: uuid.UUID, session: AsyncSession | None = None) -> TenantPlugins:
        """The tenant's snapshot; when stale it is loaded through ``session`` if the caller
        holds one (a request in the middle of a transaction must not wait for a second
        pooled connection: under load every connection would be held by a request waiting
        for another), else in a short session of its own."""
        snapshot = self.cached(tenant_id)
        if snapshot is not None:
            return snapshot
        if session is not None:
            return self.put(await load_snapshot(session, tenant_id))
        with tenant_context(tenant_id):
            async with scoped_session() as own:
                snapshot = await load_snapshot(own, tenant_id)
        return self.put(snapshot)

    def clear(self) -> None:
        self._snapshots.clear()
