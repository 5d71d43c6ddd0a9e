"""Growth value and tiers: upgrade at once on reaching a threshold; downgrade only at the
periodic evaluation (``tiers.jobs``), and only after the tier's protection period. A tier
HQ removes from the ladder moves its members one rung down at once (``tier_removed``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Uuid, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import UpdateBase

from nestpoint.audit.service import record
from nestpoint.context import require_tenant
from nestpoint.db import utcnow
from nestpoint.db.base import table_of
from nestpoint.db.batch import WriteBatch
from nestpoint.db.pagination import Page, paginate
from nestpoint.events.service import emit
from nestpoint.idempotency import service as idempotency
from nestpoint.idempotency.service import Answer, fingerprint
from nestpoint.loyalty.rules import Program
from nestpoint.loyalty.service import get_program
from nestpoint.members.models import Member
from nestpoint.members.service import get_active_member
from nestpoint.points.schemas import GrowthRead
from nestpoint.points.service import lock_account
from nestpoint.tiers.models import GrowthEntry, TierChange

members = table_of(Member)
growth_entries = table_of(GrowthEntry)
tier_changes = table_of(TierChange)


# What earned (or took back) growth value: ``cause_id`` names the order, refund, merged
# member or activity key.
GrowthSource = Literal["order", "refund", "merge", "activity"]


@dataclass(frozen=True, slots=True)
class GrowthResult:
    growth_value: int
    tier_code: str | None
    upgraded_from: str | None  # set when this change upgraded the member


@dataclass(frozen=True, slots=True)
class Growth:
    """A change of a member's growth value, from the tier state read under their lock."""

    member_id: uuid.UUID
    tier_code: str | None  # before the change
    growth_value: int  # before the change
    delta: int  # may be negative (a refund)
    source: GrowthSource
    cause_id: str
    store_id: uuid.UUID | None = None  # where it happened, for the tier.changed event


def growth_outcome(program: Program, tier_code: str | None, growth_value: int) -> GrowthResult:
    """The tier a member holds at ``growth_value``: an upgrade at once when a higher
    threshold is reached; never a downgrade (that is the evaluation's, after protection)."""
    target = program.tier_for_growth(growth_value)
    if program.tiers.index(target) > program.rank(tier_code):
        return GrowthResult(growth_value, target.code, tier_code)
    return GrowthResult(growth_value, tier_code, None)


async def apply_growth(
    session: AsyncSession,
    program: Program,
    change: Growth,
    now: datetime,
    *,
    also_set: dict[str, Any] | None = None,
    batch: WriteBatch | None = None,
) -> GrowthResult:
    """Record growth (may be negative, e.g. a refund) and upgrade at once if a threshold is
    reached. The caller holds the member's points-account lock, so this is serial per member.
    ``also_set`` adds other member columns to the same UPDATE (one round trip, not two);
    with ``batch`` the writes join the caller's batch.
    """
    tenant_id = require_tenant().tenant_id
    own = batch is None
    writes = batch or WriteBatch(session)
    member_id, delta = change.member_id, change.delta
    if delta:
        writes.insert(
            growth_entries,
            [
                {
                    "tenant_id": tenant_id,
                    "id": uuid.uuid4(),
                    "member_id": member_id,
                    "amount": delta,
                    "source": change.source,
                    "cause_id": change.cause_id,
                    "occurred_at": now,
                }
            ],
        )
    result = growth_outcome(program, change.tier_code, change.growth_value + delta)
    # updated_at explicitly: Python-side onupdate defaults do not run inside a batch's CTE.
    values: dict[str, Any] = {"updated_at": now, **(also_set or {})}
    upgraded = result.tier_code != change.tier_code
    if upgraded:
        target = program.tier(result.tier_code)
        values |= {
            "tier_code": target.code,
            "tier_since": now,
            "tier_protected_until": now + timedelta(days=target.protection_days),
        }
        record_change(
            session,
            member_id,
            change.tier_code,
            target.code,
            "upgrade",
            result.growth_value,
            now,
            store_id=change.store_id,
            batch=writes,
        )
    if delta or upgraded or also_set:
        params = {f"member_set_{name}": value for name, value in values.items()}
        params |= {"member_tenant_id": tenant_id, "member_row_id": member_id, "growth_delta": delta}
        writes.add(_member_update(tuple(sorted(values))), params)
    if own:
        await writes.execute()
    return result


_MEMBER_UPDATES: dict[tuple[str, ...], UpdateBase] = {}


def _member_update(columns: tuple[str, ...]) -> UpdateBase:
    """``UPDATE members SET growth_value = growth_value + :growth_delta, <columns>`` for one
    member, built once per set of columns (a batch reuses it; see ``nestpoint.db.batch``)."""
    statement = _MEMBER_UPDATES.get(columns)
    if statement is None:
        statement = _MEMBER_UPDATES[columns] = (
            update(members)
            .where(
                members.c.tenant_id == bindparam("member_tenant_id", type_=Uuid()),
                members.c.id == bindparam("member_row_id", type_=Uuid()),
            )
            .values(
                growth_value=members.c.growth_value
                + bindparam("growth_delta", type_=members.c.growth_value.type),
                **{
                    name: bindparam(f"member_set_{name}", type_=members.c[name].type)
                    for name in columns
                },
            )
        )
    return statement


def record_change(
    session: AsyncSession,
    member_id: uuid.UUID,
    from_tier: str | None,
    to_tier: str,
    reason: str,
    growth_value: int,
    now: datetime,
    *,
    store_id: uuid.UUID | None,
    batch: WriteBatch,
) -> None:
    """A tier change in the history, and its ``tier.changed`` event, into ``batch``."""
    batch.insert(
        tier_changes,
        [
            {
                "tenant_id": require_tenant().tenant_id,
                "id": uuid.uuid4(),
                "member_id": member_id,
                "from_tier": from_tier,
                "to_tier": to_tier,
                "reason": reason,
                "growth_value": growth_value,
                "run_id": "",
                "changed_at": now,
            }
        ],
    )
    emit(
        session,
        "tier.changed",
        "member",
        member_id,
        {
            "member_id": str(member_id),
            "from_tier": from_tier,
            "to_tier": to_tier,
            "reason": reason,
            "growth_value": growth_value,
        },
        store_id=store_id,
        batch=batch,
    )


async def add_growth(
    session: AsyncSession, member: Member, delta: int, source: GrowthSource, cause_id: str
) -> GrowthResult:
    """Growth for a member already loaded (merges, bonus growth from activities)."""
    await lock_account(session, member.id)
    await session.refresh(member)  # read the tier state under the lock
    program = await get_program(session)
    result = await apply_growth(
        session,
        program,
        Growth(member.id, member.tier_code, member.growth_value, delta, source, cause_id),
        utcnow(),
    )
    await session.refresh(member)
    return result


async def bonus_growth(
    session: AsyncSession, member_id: uuid.UUID, amount: int, *, reason: str, key: str
) -> Answer[GrowthRead]:
    """Bonus growth from an activity (a class attended, a survey answered), by HQ.

    Idempotent by ``key`` (``nestpoint.idempotency``), checked under the member's account
    lock: a retry gets the first answer; the same key with another request is a conflict.
    """
    member = await get_active_member(session, member_id)
    acct = await lock_account(session, member.id)
    request = fingerprint(
        {"kind": "growth", "member": member_id, "amount": amount, "reason": reason}
    )
    earlier = await idempotency.replay(
        session, idempotency.REQUEST, key, request, field="idempotency_key"
    )
    if earlier is not None:
        return earlier
    if acct.member_id != member.id:  # merged away while this waited: the target grows
        member = await get_active_member(session, acct.member_id)
    result = await add_growth(session, member, amount, "activity", key)
    record(session, "growth.added", "member", member.id, {"amount": amount, "reason": reason})
    body = GrowthRead(
        member_id=member.id,
        growth_value=result.growth_value,
        tier_code=result.tier_code,
        upgraded_from=result.upgraded_from,
    )
    answer = idempotency.created(body)
    return await idempotency.record(
        session, idempotency.REQUEST, key, request, answer, field="idempotency_key"
    )


async def history(
    session: AsyncSession, member_id: uuid.UUID, *, cursor: str | None, limit: int
) -> Page[TierChange]:
    stmt = select(TierChange).where(TierChange.member_id == member_id)
    return await paginate(
        session, stmt, (TierChange.changed_at, TierChange.id), cursor=cursor, limit=limit
    )


# ------------------------------------------------------------------ ladder changes
