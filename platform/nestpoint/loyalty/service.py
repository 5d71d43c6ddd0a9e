"""Reading and changing a tenant's programme. Reads are cached per process (short TTL)."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.audit.service import record
from nestpoint.cache import BoundedCache
from nestpoint.context import require_tenant
from nestpoint.db import utcnow
from nestpoint.events.service import emit
from nestpoint.loyalty.models import LoyaltyProgram, TierDefinition
from nestpoint.loyalty.rules import Program

__all__ = ["Program", "get_program", "load_program", "put_program", "to_spec"]
from nestpoint.loyalty.schemas import EarnRules, PointsPolicy, ProgramSpec, TierSpec
from nestpoint.tenancy.models import Tenant
from nestpoint.tiers.jobs import move_off_removed_tiers, removed_tier_moves

# Each tenant's programme, per process for ``config_cache_seconds``; a change here clears
# it at once (``invalidate``), other processes follow within the TTL.
_programs: BoundedCache[uuid.UUID, Program] = BoundedCache("loyalty.programs", max_size=1_024)


def invalidate(tenant_id: uuid.UUID) -> None:
    _programs.forget(tenant_id)


async def get_program(session: AsyncSession) -> Program:
    """The current tenant's programme (defaults from the seeds until HQ sets one)."""
    tenant_id = require_tenant().tenant_id
    cached = _programs.get(tenant_id)
    if cached is not None:
        return cached
    return _programs.put(tenant_id, await load_program(session))


async def load_program(session: AsyncSession) -> Program:
    tenant_id = require_tenant().tenant_id
    timezone = await session.scalar(select(Tenant.timezone).where(Tenant.id == tenant_id))
    row = await session.scalar(select(LoyaltyProgram))
    tiers = (await session.scalars(select(TierDefinition).order_by(TierDefinition.rank))).all()
    spec = ProgramSpec()
    if row is not None:
        spec = ProgramSpec(
            points=PointsPolicy.model_validate(row.points_policy),
            earn_rules=EarnRules.model_validate(row.earn_rules),
            tiers=[
                TierSpec(
                    code=t.code,
                    name=t.name,
                    threshold=t.threshold,
                    earn_rate_percent=t.earn_rate_percent,
                    redeem_cap_percent=t.redeem_cap_percent,
                    protection_days=t.protection_days,
                    benefits=list(t.benefits),
                )
                for t in tiers
            ]
            or spec.tiers,
        )
    return Program(
        version=row.version if row else 0,
        timezone=timezone or "Asia/Shanghai",
        points=spec.points,
        earn=spec.earn_rules,
        tiers=tuple(spec.tiers),
    )


def to_spec(program: Program) -> ProgramSpec:
    return ProgramSpec(points=program.points, earn_rules=program.earn, tiers=list(program.tiers))


async def put_program(session: AsyncSession, spec: ProgramSpec) -> tuple[Program, bool]:
    """Replace the programme; returns it and whether anything changed (idempotent)."""
    tenant_id = require_tenant().tenant_id
    current = await load_program(session)
    if current.version and to_spec(current) == spec:
        return current, False
    row = await session.scalar(select(LoyaltyProgram))
    policy, rules = spec.points.model_dump(), spec.earn_rules.model_dump()
    if row is None:
        row = LoyaltyProgram(points_policy=policy, earn_rules=rules, version=1)
        session.add(row)
    else:
        row.points_policy, row.earn_rules, row.version = policy, rules, row.version + 1
    moves = removed_tier_moves(current.tiers, spec.tiers)
    await session.execute(delete(TierDefinition))
    session.add_all(
        TierDefinition(
            code=t.code,
            name=t.name,
            rank=rank,
            threshold=t.threshold,
            earn_rate_percent=t.earn_rate_percent,
            redeem_cap_percent=t.redeem_cap_percent,
            protection_days=t.protection_days,
            benefits=list(t.benefits),
        )
        for rank, t in enumerate(spec.tiers)
    )
    await session.flush()
    await move_off_removed_tiers(session, moves, utcnow())
    record(
        session,
        "loyalty.updated",
        "loyalty_program",
        row.id,
        {"version": row.version, "program": spec.model_dump()},
    )
    emit(session, "loyalty.updated", "loyalty_program", row.id, {"version": row.version})
    invalidate(tenant_id)
    return await load_program(session), True
