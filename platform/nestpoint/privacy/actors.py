"""Dramatiq actors of members' rights: plugins' erasure, its sweep, the daily retention."""

from __future__ import annotations

import uuid

import dramatiq

from nestpoint.context import Actor, acting_as, tenant_context
from nestpoint.db import scoped_session
from nestpoint.jobs.broker import broker, periodic_actor
from nestpoint.jobs.tenants import active_tenant_ids, run_for_tenant
from nestpoint.plugins.manager import get_plugin_host
from nestpoint.privacy import retention, service


class PluginsNotDone(RuntimeError):
    """A plugin failed to erase: the job raises so that Dramatiq retries it."""


@dramatiq.actor(
    broker=broker,
    actor_name="privacy.erase_in_plugins",
    queue_name="default",
    max_retries=8,
    min_backoff=15_000,
    max_backoff=3_600_000,
)
async def erase_in_plugins(tenant_id: str, member_id: str) -> None:
    """Ask every plugin enabled for the chain or any of its stores to erase what it keeps
    about an erased member; retried until all have answered (each erasure is idempotent)."""
    failed = await ask_plugins_to_erase(uuid.UUID(tenant_id), uuid.UUID(member_id))
    if failed:
        raise PluginsNotDone(f"plugins did not erase member {member_id}: {', '.join(failed)}")


async def ask_plugins_to_erase(tenant_id: uuid.UUID, member_id: uuid.UUID) -> list[str]:
    """One round of the job: ask the plugins, keep their answers on the erasure; returns
    the plugins that failed (asked again on the next round)."""
    results, failed = await get_plugin_host().erase_member_data(tenant_id, member_id)
    with acting_as(Actor("system", name="privacy.erase_in_plugins")), tenant_context(tenant_id):
        async with scoped_session() as session:
            await service.plugins_answered(session, member_id, results, complete=not failed)
    return failed


@periodic_actor("privacy.sweep_all")
async def sweep_all() -> None:
    """Periodic: ask again for the plugins' part of erasures whose message was lost."""
    for tenant_id in await active_tenant_ids():
        pending = await run_for_tenant(
            tenant_id, service.pending_plugin_erasures, name="privacy.sweep"
        )
        for member_id in pending:
            erase_in_plugins.send(str(tenant_id), str(member_id))


@dramatiq.actor(broker=broker, actor_name="privacy.retention", queue_name="default", max_retries=3)
async def daily_retention(tenant_id: str, run_id: str | None = None) -> None:
    """Apply one chain's retention rules (a daily job at its local time, or a run HQ asked
    for: then ``run_id`` is the report row made with the request)."""
    await retention.apply(uuid.UUID(tenant_id), uuid.UUID(run_id) if run_id else None)
