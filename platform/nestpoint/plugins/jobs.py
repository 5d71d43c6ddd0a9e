"""Plugins' Dramatiq actors and periodic jobs.

Each :class:`PluginJob` becomes an actor ``plugins.<plugin-id>.<name>`` taking a tenant id,
a store id and keyword arguments; it runs the plugin's function in that tenant's context
with its :class:`PluginContext`, and does nothing where the plugin is no longer enabled.

A periodic job is run by the scheduler through ``plugins.periodic`` (one message per job
and interval), which fans out one message per tenant where the plugin is enabled.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import dramatiq

from nestpoint.context import tenant_context
from nestpoint.jobs.broker import broker, periodic_actor
from nestpoint.jobs.tenants import active_tenant_ids
from nestpoint.plugins.manager import PluginHost, get_plugin_host
from nestpoint.plugins.registries import PluginJob
from nestpoint.plugins.types import PluginContext

log = logging.getLogger("nestpoint.plugins.jobs")

_declared: dict[str, dramatiq.Actor[..., Any]] = {}


async def run_plugin_job(
    host: PluginHost,
    job: PluginJob,
    tenant_id: uuid.UUID,
    store_id: uuid.UUID | None,
    kwargs: dict[str, Any],
) -> bool:
    """Run one job for one tenant (and store) if the plugin is enabled there."""
    enabled = await host.enabled_plugins(tenant_id, store_id, anywhere=store_id is None)
    if job.plugin_id not in enabled:
        log.info("plugin job skipped: not enabled", extra={"job": job.actor_name})
        return False
    plugin = PluginContext(job.plugin_id, tenant_id, store_id, enabled[job.plugin_id])
    with tenant_context(tenant_id, store_id):
        await job.function(plugin, **kwargs)
    return True


def _actor_for(job: PluginJob) -> dramatiq.Actor[..., Any]:
    declared = _declared.get(job.actor_name)
    if declared is not None:
        return declared

    async def run(tenant_id: str, store_id: str | None = None, kwargs: Any = None) -> None:
        host = get_plugin_host()
        current = next((j for j in host.jobs() if j.actor_name == job.actor_name), None)
        if current is None:
            log.warning("plugin job no longer installed", extra={"job": job.actor_name})
            return
        await run_plugin_job(
            host,
            current,
            uuid.UUID(tenant_id),
            uuid.UUID(store_id) if store_id else None,
            dict(kwargs or {}),
        )

    run.__name__ = job.actor_name.replace(".", "_")
    actor = dramatiq.actor(
        actor_name=job.actor_name,
        queue_name=job.queue,
        max_retries=job.max_retries,
        broker=broker,
    )(run)
    _declared[job.actor_name] = actor
    return actor


def declare_actors(host: PluginHost | None = None) -> None:
    """Declare every loaded plugin's actors on the broker (workers call this at start)."""
    for job in (host or get_plugin_host()).jobs():
        _actor_for(job)


async def _tenants_enabled(host: PluginHost, plugin_id: str) -> list[uuid.UUID]:
    found: list[uuid.UUID] = []
    for tenant_id in await active_tenant_ids():
        if plugin_id in await host.enabled_plugins(tenant_id, None, anywhere=True):
            found.append(tenant_id)
    return found


@periodic_actor("plugins.periodic")
async def periodic(actor_name: str) -> None:
    """Fan a plugin's periodic job out to every tenant where the plugin is enabled."""
    host = get_plugin_host()
    job = next((j for j in host.jobs() if j.actor_name == actor_name), None)
    if job is None:
        return
    for tenant_id in await _tenants_enabled(host, job.plugin_id):
        _actor_for(job).send(str(tenant_id), None, {})


def periodic_jobs() -> list[tuple[str, str, dict[str, Any], tuple[Any, ...]]]:
    """(scheduler id, trigger, trigger arguments, actor arguments) for the scheduler."""
    return [
        (p.job.actor_name, "interval", {"seconds": p.seconds}, (p.job.actor_name,))
        for p in get_plugin_host().periodic_jobs()
    ]


async def run_periodic_jobs_now(host: PluginHost, tenant_id: uuid.UUID) -> list[str]:
    """Run every periodic job of the plugins enabled for a tenant, now (the test kit)."""
    ran: list[str] = []
    for p in host.periodic_jobs():
        if await run_plugin_job(host, p.job, tenant_id, None, {}):
            ran.append(p.job.actor_name)
    return ran
