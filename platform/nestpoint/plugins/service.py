"""Rules of plugin enablement: who may enable what where, and with which configuration.

No HTTP here; never commits. Every change is audited and marks the tenant so the cached
enablement snapshot is invalidated when the transaction commits.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.audit.service import record
from nestpoint.billing import service as billing
from nestpoint.context import current_actor, require_tenant
from nestpoint.db import utcnow
from nestpoint.db.pagination import Page, paginate
from nestpoint.db.sql import lock_job
from nestpoint.errors import Forbidden, NotFound
from nestpoint.plugins.enablement import load_snapshot, mark_changed
from nestpoint.plugins.manager import PluginHost
from nestpoint.plugins.models import PluginEnablement, PluginFailure
from nestpoint.plugins.schemas import (
    ChainSettingUpdate,
    PluginRead,
    StoreSettingRead,
    StoreSettingUpdate,
)
from nestpoint.tenancy.models import Store

RECENT_FAILURES = timedelta(hours=24)


def _require_installed(host: PluginHost, plugin_id: str) -> None:
    if plugin_id not in host.loaded:
        raise NotFound(f"no installed plugin {plugin_id!r}")


def _who() -> str:
    actor = current_actor()
    return str(actor.key_id or actor.name)[:100]


async def _chain_row(session: AsyncSession, plugin_id: str) -> PluginEnablement | None:
    return await session.scalar(
        select(PluginEnablement).where(
            PluginEnablement.plugin_id == plugin_id, PluginEnablement.store_id.is_(None)
        )
    )


async def _store_row(
    session: AsyncSession, plugin_id: str, store_id: uuid.UUID
) -> PluginEnablement | None:
    return await session.scalar(
        select(PluginEnablement).where(
            PluginEnablement.plugin_id == plugin_id, PluginEnablement.store_id == store_id
        )
    )


async def _store_by_code(session: AsyncSession, code: str) -> Store:
    store = await session.scalar(select(Store).where(Store.code == code))
    if store is None:
        raise NotFound(f"no store with code {code!r}")
    return store


async def _serialise(session: AsyncSession, plugin_id: str) -> None:
    """One change of a plugin's settings at a time per chain: two first saves at once would
    both insert the setting's row (the second one's unique key refused: a 500)."""
    await lock_job(session, f"plugin-settings:{plugin_id}", require_tenant().tenant_id)


def _changed(session: AsyncSession, action: str, plugin_id: str, changes: dict[str, Any]) -> None:
    ctx = require_tenant()
    record(session, action, "plugin", plugin_id, changes)
    mark_changed(session, ctx.tenant_id)


# ---------------------------------------------------------------------------- changes


def _switch(row: PluginEnablement, enabled: bool) -> None:
    """Turn a setting on or off; ``enabled_at`` moves only when it goes from off to on."""
    if enabled and not row.enabled:
        row.enabled_at = utcnow()
    elif not enabled:
        row.enabled_at = None
    row.enabled = enabled


def _set_enabled(row: PluginEnablement, enabled: bool | None, changes: dict[str, Any]) -> None:
    """Apply a requested ``enabled`` (``None``: unchanged), noting the change."""
    if enabled is not None and row.enabled != enabled:
        changes["enabled"] = [row.enabled, enabled]
        _switch(row, enabled)


async def set_chain(
    session: AsyncSession, host: PluginHost, plugin_id: str, data: ChainSettingUpdate
) -> PluginEnablement:
    """HQ: enable, disable or configure a plugin for the whole chain."""
    ctx = require_tenant()
    if ctx.store_id is not None:
        raise Forbidden("only HQ sets a plugin for the whole chain")
    _require_installed(host, plugin_id)
    await _serialise(session, plugin_id)
    row = await _chain_row(session, plugin_id)
    config = (
        host.validate_config(plugin_id, data.config)
        if data.config is not None
        else (dict(row.config) if row else {})
    )
    created = row is None
    if data.enabled and not (row is not None and row.enabled):
        await billing.ensure_plugin_room(session, plugin_id)  # the plan's plugin limit
    if row is None:
        row = PluginEnablement(plugin_id=plugin_id, store_id=None, config={})
        row.enabled, row.allow_store_opt_in = False, False
        session.add(row)
    changes: dict[str, Any] = {"created": True} if created else {}
    _set_enabled(row, data.enabled, changes)
    for name, value in (("allow_store_opt_in", data.allow_store_opt_in), ("config", config)):
        if value is not None and getattr(row, name) != value:
            changes[name] = [getattr(row, name), value]
            setattr(row, name, value)
    row.updated_by = _who()
    await session.flush()
    if changes:
        _changed(session, "plugin.chain_set", plugin_id, changes)
    return row


async def set_store(
    session: AsyncSession,
    host: PluginHost,
    plugin_id: str,
    store_code: str,
    data: StoreSettingUpdate,
) -> PluginEnablement:
    """HQ for any store; a store key for its own store when the chain allows opting in."""
    ctx = require_tenant()
    _require_installed(host, plugin_id)
    store = await _store_by_code(session, store_code)
    await _serialise(session, plugin_id)
    chain = await _chain_row(session, plugin_id)
    if ctx.store_id is not None:
        if store.id != ctx.store_id:
            raise NotFound(f"no store with code {store_code!r}")
        if chain is None or not chain.allow_store_opt_in:
            raise Forbidden(f"the chain does not let stores set plugin {plugin_id!r}")
    row = await _store_row(session, plugin_id, store.id)
    if data.config is not None:
        config = host.validate_config(
            plugin_id, data.config, base=dict(chain.config) if chain else {}
        )
    else:
        config = dict(row.config) if row else {}
    created = row is None
    on_now = row.enabled if row is not None else chain is not None and chain.enabled
    if data.enabled and not on_now:
        await billing.ensure_plugin_room(session, plugin_id)  # the plan's plugin limit
    if row is None:
        # The new row starts as the store was: following the chain (on since the chain's).
        row = PluginEnablement(plugin_id=plugin_id, store_id=store.id, config={})
        row.enabled = chain.enabled if chain is not None else False
        row.enabled_at = chain.enabled_at if chain is not None else None
        row.allow_store_opt_in = False
        session.add(row)
    changes: dict[str, Any] = {"created": True} if created else {}
    _set_enabled(row, data.enabled, changes)
    if row.config != config:
        changes["config"] = [row.config, config]
        row.config = config
    row.updated_by = _who()
    await session.flush()
    if changes:
        _changed(session, "plugin.store_set", plugin_id, {"store": store_code, **changes})
    return row


async def clear_store(
    session: AsyncSession, host: PluginHost, plugin_id: str, store_code: str
) -> None:
    """Remove a store's own setting: the store follows the chain again."""
    ctx = require_tenant()
    _require_installed(host, plugin_id)
    store = await _store_by_code(session, store_code)
    if ctx.store_id is not None and store.id != ctx.store_id:
        raise NotFound(f"no store with code {store_code!r}")
    if ctx.store_id is not None:
        chain = await _chain_row(session, plugin_id)
        if chain is None or not chain.allow_store_opt_in:
            raise Forbidden(f"the chain does not let stores set plugin {plugin_id!r}")
    result = await session.execute(
        delete(PluginEnablement).where(
            PluginEnablement.plugin_id == plugin_id, PluginEnablement.store_id == store.id
        )
    )
    if getattr(result, "rowcount", 0):
        _changed(session, "plugin.store_cleared", plugin_id, {"store": store_code})


async def disable_everywhere(session: AsyncSession, host: PluginHost, plugin_id: str) -> None:
    """HQ: turn a plugin off for the chain and every store (e.g. one that keeps failing).

    Configuration is kept, so enabling it again restores the previous set-up.
    """
    ctx = require_tenant()
    if ctx.store_id is not None:
        raise Forbidden("only HQ disables a plugin for the whole chain")
    if plugin_id not in host.plugins:
        raise NotFound(f"no installed plugin {plugin_id!r}")
    rows = (
        await session.scalars(
            select(PluginEnablement).where(PluginEnablement.plugin_id == plugin_id)
        )
    ).all()
    for row in rows:
        _switch(row, False)
        row.updated_by = _who()
    _changed(session, "plugin.disabled", plugin_id, {"rows": len(rows)})


# ---------------------------------------------------------------------------- reading


async def describe(
    session: AsyncSession, host: PluginHost, plugin_id: str | None = None
) -> list[PluginRead]:
    """Installed plugins with this tenant's settings (a store key sees its store only)."""
    ctx = require_tenant()
    ids = sorted(host.loaded) if plugin_id is None else [plugin_id]
    if plugin_id is not None:
        _require_installed(host, plugin_id)
    rows = (await session.scalars(select(PluginEnablement))).all()
    stores = {s.id: s.code for s in (await session.scalars(select(Store))).all()}
    since = utcnow() - RECENT_FAILURES
    failure_stats = {
        pid: (count, last)
        for pid, count, last in (
            await session.execute(
                select(
                    PluginFailure.plugin_id,
                    func.count(),
                    func.max(PluginFailure.occurred_at),
                )
                .where(PluginFailure.occurred_at >= since)
                .group_by(PluginFailure.plugin_id)
            )
        ).all()
    }
    snapshot = await load_snapshot(session, ctx.tenant_id)
    result: list[PluginRead] = []
    for pid in ids:
        info = host.plugins[pid]
        chain = next((r for r in rows if r.plugin_id == pid and r.store_id is None), None)
        chain_config = dict(chain.config) if chain else {}
        store_settings = [
            StoreSettingRead(
                store_id=r.store_id,
                store_code=stores.get(r.store_id, "?"),
                enabled=r.enabled,
                config=dict(r.config),
                effective_config=host.merge_config(pid, chain_config, r.config),
            )
            for r in rows
            if r.plugin_id == pid
            and r.store_id is not None
            and (ctx.store_id is None or r.store_id == ctx.store_id)
        ]
        schema = host.config_schema(pid)
        count, last = failure_stats.get(pid, (0, None))
        result.append(
            PluginRead(
                id=pid,
                package=info.package,
                version=info.version,
                hooks=info.hooks,
                config_schema=schema.model_json_schema() if schema else None,
                enabled=bool(chain and chain.enabled),
                allow_store_opt_in=bool(chain and chain.allow_store_opt_in),
                config=chain_config,
                effective_config=host.merge_config(pid, chain_config, None),
                stores=sorted(store_settings, key=lambda s: s.store_code),
                enabled_here=(
                    snapshot.is_enabled(pid, ctx.store_id)
                    if ctx.store_id is not None
                    else snapshot.enabled_anywhere(pid)
                ),
                recent_failures=int(count),
                last_failure_at=last,
            )
        )
    return result


async def list_failures(
    session: AsyncSession, *, plugin_id: str | None, cursor: str | None, limit: int
) -> Page[PluginFailure]:
    stmt = select(PluginFailure)
    if plugin_id:
        stmt = stmt.where(PluginFailure.plugin_id == plugin_id)
    ctx = require_tenant()
    if ctx.store_id is not None:
        stmt = stmt.where(PluginFailure.store_id == ctx.store_id)
    return await paginate(
        session, stmt, (PluginFailure.occurred_at, PluginFailure.id), cursor=cursor, limit=limit
    )
