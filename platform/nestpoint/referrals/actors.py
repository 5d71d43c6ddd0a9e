"""Dramatiq actors of referrals: the periodic reward run."""

from __future__ import annotations

from nestpoint.jobs.broker import periodic_actor
from nestpoint.jobs.tenants import active_tenant_ids, run_for_tenant
from nestpoint.referrals import service


@periodic_actor("referrals.reward_all")
async def reward_all() -> None:
    """Periodic: in every chain, reward the referrals whose first purchase qualified."""
    for tenant_id in await active_tenant_ids():
        await run_for_tenant(tenant_id, service.reward_due, name="referrals.reward")
