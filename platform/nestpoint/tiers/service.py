"""Growth value and tiers: upgrade at once on reaching a threshold; downgrade only at the
periodic evaluation (``tiers.jobs``), and only after the tier's protection period. A tier
HQ removes from the ladder moves its members one rung down at once (``tier_removed``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import BindParameter, Uuid, bindparam, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.context import require_tenant
from nestpoint.db import utcnow
from nestpoint.db.base import UTCDateTime, table_of
from nestpoint.db.batch import WriteBatch
from nestpoint.db.pagination import Page, paginate
from nestpoint.db.sql import lock_job, new_uuid_sql
from nestpoint.events.service import emit, mark_pending
from nestpoint.idempotency import service as idempotency
from nestpoint.idempotency.service import Answer, fingerprint
from nestpoint.loyalty.rules import Program
from nestpoint.loyalty.schemas import TierSpec
from nestpoint.members.models import Member
from nestpoint.points.schemas import GrowthRead
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
    values: dict[str, Any] = {
        "growth_value": members.c.growth_value + delta,
        "updated_at": now,
        **(also_set or {}),
    }
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
        writes.add(
            update(members)
            .where(members.c.tenant_id == tenant_id, members.c.id == member_id)
            .values(**values)
        )
    if own:
        await writes.execute()
    return result


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
    from nestpoint.loyalty.service import get_program
    from nestpoint.points.service import lock_account

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
    from nestpoint.audit.service import record
    from nestpoint.members.service import get_active_member
    from nestpoint.points.service import lock_account

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


def removed_tier_moves(old: Sequence[TierSpec], new: Sequence[TierSpec]) -> dict[str, str]:
    """Where the members of each tier missing from the new ladder go: the nearest tier
    below it (in the old ladder) that remains, else the new entry tier.

    One rung down and no further: the removal is HQ's decision, not the member's doing, so
    it costs them no more than the removed rung. Their protection period carries over, and
    any further downgrade is the evaluation's, after protection, as for everyone.
    """
    remaining = {t.code for t in new}
    moves: dict[str, str] = {}
    for rank, tier in enumerate(old):
        if tier.code in remaining:
            continue
        below = [t.code for t in reversed(old[:rank]) if t.code in remaining]
        moves[tier.code] = below[0] if below else new[0].code
    return moves


async def move_off_removed_tiers(
    session: AsyncSession, moves: dict[str, str], now: datetime
) -> int:
    """Move every member of a removed tier (``removed_tier_moves``), set-based: a history
    entry with reason ``tier_removed`` and a ``tier.changed`` event each, their protection
    left as it was. Returns how many members moved."""
    if not moves:
        return 0
    from nestpoint.tiers.jobs import events_sql  # the evaluation writes events the same way

    tenant_id = require_tenant().tenant_id
    await lock_job(session, "tiers.evaluate", tenant_id)  # not while an evaluation runs
    dialect = session.get_bind().dialect.name
    run_id = uuid.uuid4().hex
    pairs = list(moves.items())
    to_tier = (
        "CASE m.tier_code "
        + " ".join(f"WHEN :from_{i} THEN :to_{i}" for i in range(len(pairs)))
        + " END"
    )
    codes = ", ".join(f":from_{i}" for i in range(len(pairs)))
    params: dict[str, Any] = {"tenant": tenant_id, "now": now, "run": run_id}
    for i, (old, new) in enumerate(pairs):
        params |= {f"from_{i}": old, f"to_{i}": new}
    binds: list[BindParameter[Any]] = [
        bindparam("tenant", type_=Uuid()),
        bindparam("now", type_=UTCDateTime()),
    ]
    # Only placeholders and fixed fragments are formatted in; every value is bound.
    moved = await session.execute(
        text(
            f"""INSERT INTO tier_changes (tenant_id, id, member_id, from_tier, to_tier, reason,
                                          growth_value, run_id, changed_at)
                SELECT m.tenant_id, {new_uuid_sql(dialect)}, m.id, m.tier_code, {to_tier},
                       'tier_removed', m.growth_value, :run, :now
                FROM members m WHERE m.tenant_id = :tenant AND m.tier_code IN ({codes})"""  # noqa: S608
        ).bindparams(*binds),
        params,
    )
    count = int(moved.rowcount or 0)  # type: ignore[attr-defined]
    if not count:
        return 0
    await session.execute(text(events_sql(dialect)).bindparams(*binds), params)
    await session.execute(
        text(
            """UPDATE members SET tier_code = tc.to_tier, tier_since = :now
               FROM tier_changes tc
               WHERE tc.tenant_id = :tenant AND tc.run_id = :run
                 AND members.tenant_id = :tenant AND members.id = tc.member_id"""
        ).bindparams(*binds),
        params,
    )
    mark_pending(session)
    return count
