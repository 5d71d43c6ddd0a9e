"""Dramatiq actors of stored value: bonus past its date taken back, per tenant."""

from __future__ import annotations

import uuid

import dramatiq

from nestpoint.jobs.broker import broker, periodic_actor
from nestpoint.jobs.tenants import active_tenant_ids, run_for_tenant
from nestpoint.wallet import service


@dramatiq.actor(
    broker=broker, actor_name="wallet.expire_bonus", queue_name="default", max_retries=3
)
async def expire_bonus(tenant_id: str) -> None:
    """Take back one chain's due bonus (a chunk of members; again when more is due)."""
    done = await run_for_tenant(uuid.UUID(tenant_id), service.expire_bonus, name="wallet.expire")
    if done >= service.EXPIRY_CHUNK:
        expire_bonus.send(tenant_id)


@periodic_actor("wallet.expire_bonus_all")
async def expire_bonus_all() -> None:
    """Periodic: fan out ``wallet.expire_bonus`` to every active tenant."""
    for tenant_id in await active_tenant_ids():
        expire_bonus.send(str(tenant_id))
