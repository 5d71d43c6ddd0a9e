"""Plugins in tenant manifests (``[[plugins]]``): checked at load, planned, applied.

The manifest is authoritative for each plugin it lists: the chain setting and the store
settings listed are made to match, and store settings it does not list are removed (those
stores follow the chain). Plugins it does not list are left as they are, so enablement
made through the API survives an apply of a manifest that does not mention the plugin.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.errors import FieldError, Invalid
from nestpoint.plugins import service
from nestpoint.plugins.manager import PluginHost, get_plugin_host
from nestpoint.plugins.models import PluginEnablement
from nestpoint.plugins.schemas import ChainSettingUpdate, PluginManifest, StoreSettingUpdate
from nestpoint.tenancy.changes import Change
from nestpoint.tenancy.models import Store


def check(
    plugins: list[PluginManifest], store_codes: set[str], host: PluginHost | None = None
) -> list[FieldError]:
    """Every problem of the ``plugins`` section, each naming its field."""
    host = host or get_plugin_host()
    errors: list[FieldError] = []
    seen: set[str] = set()
    for i, spec in enumerate(plugins):
        where = f"plugins.{i}"
        if spec.id in seen:
            errors.append(FieldError(f"{where}.id", f"plugin {spec.id!r} is listed twice"))
        seen.add(spec.id)
        if spec.id not in host.loaded:
            reason = host.plugins[spec.id].reason if spec.id in host.plugins else "not installed"
            errors.append(FieldError(f"{where}.id", f"plugin {spec.id!r} is {reason}"))
            continue
        try:
            host.validate_config(spec.id, spec.config, field_prefix=f"{where}.config")
        except Invalid as exc:
            errors += exc.errors
        codes: set[str] = set()
        for j, store in enumerate(spec.stores):
            at = f"{where}.stores.{j}"
            if store.code not in store_codes:
                errors.append(FieldError(f"{at}.code", f"no store {store.code!r} in the manifest"))
            if store.code in codes:
                errors.append(FieldError(f"{at}.code", f"store {store.code!r} is listed twice"))
            codes.add(store.code)
            try:
                host.validate_config(
                    spec.id, store.config, base=spec.config, field_prefix=f"{at}.config"
                )
            except Invalid as exc:
                errors += exc.errors
    return errors


def _desired(host: PluginHost, spec: PluginManifest) -> dict[str | None, dict[str, Any]]:
    """``{None: chain setting, store code: store setting}`` as they would be stored."""
    chain_config = host.validate_config(spec.id, spec.config)
    desired: dict[str | None, dict[str, Any]] = {
        None: {
            "enabled": spec.enabled,
            "allow_store_opt_in": spec.allow_store_opt_in,
            "config": chain_config,
        }
    }
    for store in spec.stores:
        desired[store.code] = {
            "enabled": store.enabled,
            "config": host.validate_config(spec.id, store.config, base=chain_config),
        }
    return desired


async def _current(session: AsyncSession, plugin_id: str) -> dict[str | None, PluginEnablement]:
    codes = {s.id: s.code for s in (await session.scalars(select(Store))).all()}
    rows = (
        await session.scalars(
            select(PluginEnablement).where(PluginEnablement.plugin_id == plugin_id)
        )
    ).all()
    return {(codes.get(r.store_id) if r.store_id else None): r for r in rows}


def _subject(plugin_id: str, code: str | None) -> str:
    return f"plugin {plugin_id}" + (f" store {code}" if code else "")


async def plan(
    session: AsyncSession | None, plugins: list[PluginManifest], host: PluginHost | None = None
) -> list[Change]:
    """The plugin changes an apply would make; ``session`` is ``None`` for a new tenant
    (otherwise it must be bound to the tenant)."""
    host = host or get_plugin_host()
    changes: list[Change] = []
    for spec in plugins:
        desired = _desired(host, spec)
        current = await _current(session, spec.id) if session is not None else {}
        for code, values in desired.items():
            row = current.pop(code, None)
            if row is None:
                changes.append(Change("create", _subject(spec.id, code), {}))
                continue
            diff = {k: [getattr(row, k), v] for k, v in values.items() if getattr(row, k) != v}
            if diff:
                changes.append(Change("update", _subject(spec.id, code), diff))
        changes += [
            Change("deactivate", _subject(spec.id, code) + " (follows the chain)")
            for code in sorted(c for c in current if c is not None)
        ]
    return changes


async def apply(
    session: AsyncSession, plugins: list[PluginManifest], host: PluginHost | None = None
) -> None:
    """Make the tenant's plugin settings match (the session is bound to the tenant)."""
    host = host or get_plugin_host()
    for spec in plugins:
        desired = _desired(host, spec)
        chain = desired.pop(None)
        await service.set_chain(session, host, spec.id, ChainSettingUpdate(**chain))
        current = await _current(session, spec.id)
        for code, values in desired.items():
            assert code is not None
            await service.set_store(session, host, spec.id, code, StoreSettingUpdate(**values))
        for code in current:
            if code is not None and code not in desired:
                await service.clear_store(session, host, spec.id, code)
