"""A chain's credentials for its plugins: set and cleared by HQ, read only by the plugin.

The value is sealed with the core's keys (``nestpoint.members.pii``), bound to the tenant,
the plugin and the name, so a sealed value copied to another row or tenant does not open.
Every change is audited with the secret's name, never its value.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.audit.service import record
from nestpoint.context import current_actor, require_tenant
from nestpoint.db.base import utcnow
from nestpoint.db.sql import lock_job
from nestpoint.errors import FieldError, NotFound
from nestpoint.members import pii
from nestpoint.plugins.manager import PluginHost
from nestpoint.plugins.models import PluginSecret
from nestpoint.plugins.schemas import SecretRead


def _declared(host: PluginHost, plugin_id: str) -> dict[str, str]:
    contributions = host.contributions.get(plugin_id)
    if contributions is None:
        raise NotFound(f"no installed plugin {plugin_id!r}")
    return contributions.secrets


def _context(tenant_id: uuid.UUID, plugin_id: str, name: str) -> bytes:
    return pii.row_context(tenant_id, "plugin_secrets", f"{plugin_id}/{name}")


async def _row(session: AsyncSession, plugin_id: str, name: str) -> PluginSecret | None:
    return await session.scalar(
        select(PluginSecret).where(PluginSecret.plugin_id == plugin_id, PluginSecret.name == name)
    )


async def describe(session: AsyncSession, host: PluginHost, plugin_id: str) -> list[SecretRead]:
    """The plugin's declared secrets, each saying whether (and when) the chain set it."""
    declared = _declared(host, plugin_id)
    rows = {
        row.name: row
        for row in await session.scalars(
            select(PluginSecret).where(PluginSecret.plugin_id == plugin_id)
        )
    }
    return [
        SecretRead(
            name=name,
            description=description,
            set=name in rows,
            updated_at=rows[name].updated_at if name in rows else None,
            updated_by=rows[name].updated_by if name in rows else None,
        )
        for name, description in sorted(declared.items())
    ]


def _check_name(host: PluginHost, plugin_id: str, name: str) -> None:
    if name not in _declared(host, plugin_id):
        raise NotFound(
            f"plugin {plugin_id!r} declares no secret {name!r}",
            errors=[FieldError("name", "not a secret of this plugin")],
        )


async def put(
    session: AsyncSession, host: PluginHost, plugin_id: str, name: str, value: str
) -> None:
    """Set (or replace) a secret; audited as ``plugin.secret_set`` without the value."""
    _check_name(host, plugin_id, name)
    tenant_id = require_tenant().tenant_id
    sealed = pii.keyring().encrypt(value, context=_context(tenant_id, plugin_id, name))
    # One save of a secret at a time: two first saves would both insert its row.
    await lock_job(session, f"plugin-secret:{plugin_id}/{name}", tenant_id)
    row = await _row(session, plugin_id, name)
    who = str(current_actor().key_id or current_actor().name)
    if row is None:
        session.add(PluginSecret(plugin_id=plugin_id, name=name, value_enc=sealed, updated_by=who))
    else:
        row.value_enc, row.updated_by, row.updated_at = sealed, who, utcnow()
    record(session, "plugin.secret_set", "plugin", plugin_id, {"secret": name})


async def clear(session: AsyncSession, host: PluginHost, plugin_id: str, name: str) -> None:
    """Remove a secret (the plugin then works as if it was never set); audited."""
    _check_name(host, plugin_id, name)
    row = await _row(session, plugin_id, name)
    if row is not None:
        await session.delete(row)
        record(session, "plugin.secret_cleared", "plugin", plugin_id, {"secret": name})


async def reveal(session: AsyncSession, plugin_id: str, name: str) -> str | None:
    """The secret's value for the plugin itself (``None`` when the chain has not set it)."""
    row = await _row(session, plugin_id, name)
    if row is None:
        return None
    tenant_id = require_tenant().tenant_id
    return pii.keyring().decrypt(row.value_enc, context=_context(tenant_id, plugin_id, name))
