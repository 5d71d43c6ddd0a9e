"""Periodic work of the benefits context, per tenant; each job is idempotent.

* :func:`expire_entitlements` ends the entitlements whose time is up (an exchanged gift's
  or a bundle's validity, a lapsed tier benefit's run-out period) and raises
  ``benefit.expired`` for each, once (the update is conditional).
* :func:`sync_recent_members` brings the members whose tier or children changed lately up
  to date, so ``benefit.granted`` follows a tier upgrade or a recorded birth within
  minutes even when the member is not looked up (a look-up or use syncs them anyway).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, union
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.benefits import service
from nestpoint.benefits.models import Entitlement
from nestpoint.context import require_tenant
from nestpoint.db import utcnow
from nestpoint.members.models import Child, Member
from nestpoint.tiers.models import TierChange

BATCH = 1000
RECENT = timedelta(minutes=15)  # the sync job runs every 5 minutes: three chances each


@dataclass(frozen=True, slots=True)
class BenefitJobResult:
    rows: int


async def expire_entitlements(
    session: AsyncSession, now: datetime | None = None
) -> BenefitJobResult:
    """End every entitlement of the tenant whose ``expires_at`` has passed."""
    now = now or utcnow()
    catalog = await service.get_catalog(session)
    due = (
        await session.execute(
            select(Entitlement.id, Entitlement.member_id, Entitlement.benefit_id)
            .where(
                Entitlement.tenant_id == require_tenant().tenant_id,
                Entitlement.status == "active",
                Entitlement.expires_at <= now,
            )
            .order_by(Entitlement.expires_at, Entitlement.id)
            .limit(BATCH)
        )
    ).all()
    ended = 0
    for entitlement_id, member_id, benefit_id in due:
        item = catalog.by_id[benefit_id]
        ended += await service.expire_one(session, member_id, item, entitlement_id, now)
    return BenefitJobResult(ended)


async def sync_recent_members(
    session: AsyncSession, now: datetime | None = None
) -> BenefitJobResult:
    """Sync the members whose tier changed or whose children were recorded lately."""
    now = now or utcnow()
    since = now - RECENT
    tenant_id = require_tenant().tenant_id  # explicit: a union's parts are Core selects
    recent = union(
        select(TierChange.member_id).where(
            TierChange.tenant_id == tenant_id, TierChange.changed_at >= since
        ),
        select(Child.member_id).where(Child.tenant_id == tenant_id, Child.updated_at >= since),
    )
    changed = select(recent.subquery().c.member_id)
    # An erased member has nothing to sync (and is not found): left out.
    member_ids = sorted(
        (
            await session.scalars(
                select(Member.id).where(
                    Member.tenant_id == tenant_id, Member.status != "erased", Member.id.in_(changed)
                )
            )
        ).all()
    )
    for member_id in member_ids:
        await service.sync_member(session, member_id, now)
    return BenefitJobResult(len(member_ids))
