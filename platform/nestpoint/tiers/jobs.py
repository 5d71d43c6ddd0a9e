"""Periodic tier evaluation, set-based in SQL (no Python loop over members).

One run per tenant, through its members in chunks (``members.jobs.run_in_chunks``), each
chunk in its own transaction under the job's advisory lock; safe to run twice or
concurrently (the second run finds nothing to change). Steps, for each chunk:

1. recompute each member's growth value over the rolling window from ``growth_entries``;
2. record a tier change for each member whose qualifying tier is higher (upgrade) or lower
   and whose protection period is over (downgrade);
3. write a ``tier.changed`` outbox event for each change;
4. move the members to their new tier, with a fresh protection period.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dateutil.relativedelta import relativedelta
from sqlalchemy import BindParameter, Uuid, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeEngine

from nestpoint.context import require_tenant
from nestpoint.db import utcnow
from nestpoint.db.base import UTCDateTime
from nestpoint.db.sql import json_object_sql, lock_job, new_uuid_sql, typed_text, uuid_text_sql
from nestpoint.events.service import mark_pending
from nestpoint.loyalty.rules import Program
from nestpoint.loyalty.schemas import TierSpec
from nestpoint.members.jobs import MemberRange, run_in_chunks


@dataclass(frozen=True, slots=True)
class EvaluationResult:
    run_id: str
    growth_updated: int
    changed: int


def _case(program: Program, column: str, values: list[str]) -> str:
    """``CASE WHEN growth >= :threshold_<i> THEN value ...`` from the highest tier down."""
    whens = " ".join(
        f"WHEN {column} >= :threshold_{i} THEN {value}"
        for i, value in reversed(list(enumerate(values)))
    )
    return f"CASE {whens} ELSE {values[0]} END"


def tier_sql(program: Program) -> tuple[str, str, str]:
    """SQL for the qualifying tier's code and rank from growth, and the current rank. Tier
    codes and thresholds are bound (``:tier_<i>``, ``:threshold_<i>``; see
    :func:`evaluation_params`); only the ranks, positions in the ladder, are written in."""
    codes = [f":tier_{i}" for i in range(len(program.tiers))]
    ranks = [str(i) for i in range(len(program.tiers))]
    target_code = _case(program, "m.growth_value", codes)
    target_rank = _case(program, "m.growth_value", ranks)
    current_rank = (
        "CASE m.tier_code "
        + " ".join(f"WHEN :tier_{i} THEN {i}" for i in range(len(program.tiers)))
        + " ELSE -1 END"
    )
    return target_code, target_rank, current_rank


def evaluation_params(
    program: Program, tenant_id: uuid.UUID, now: datetime, run_id: str
) -> dict[str, Any]:
    """The values of every parameter of :func:`statements` (the job and the benchmark)."""
    params: dict[str, Any] = {
        "tenant": tenant_id,
        "since": now - relativedelta(months=program.points.growth_window_months),
        "now": now,
        "run": run_id,
    }
    for i, tier in enumerate(program.tiers):
        params[f"tier_{i}"] = tier.code
        params[f"threshold_{i}"] = tier.threshold
        params[f"protect_{i}"] = now + timedelta(days=tier.protection_days)
    return params


def events_sql(dialect: str) -> str:
    """A ``tier.changed`` outbox event for each tier change of the run ``:run``."""
    payload = json_object_sql(
        dialect,
        {
            "member_id": uuid_text_sql(dialect, "tc.member_id"),
            "from_tier": "tc.from_tier",
            "to_tier": "tc.to_tier",
            "reason": "tc.reason",
            "growth_value": "tc.growth_value",
        },
    )
    return f"""
            INSERT INTO outbox_events (tenant_id, id, type, store_id, subject_type, subject_id,
                                       payload, occurred_at, published_at, attempts,
                                       next_attempt_at, last_error)
            SELECT tc.tenant_id, {new_uuid_sql(dialect)}, 'tier.changed', NULL, 'member',
                   {uuid_text_sql(dialect, "tc.member_id")}, {payload}, :now, NULL, 0, :now,
                   NULL
            FROM tier_changes tc WHERE tc.tenant_id = :tenant AND tc.run_id = :run"""


def statements(dialect: str, program: Program) -> dict[str, str]:
    """The statements of one chunk of the evaluation (its members ``:after < id <= :upto``,
    its run id ``:run``); the benchmark runs the same SQL through psql."""
    target_code, target_rank, current_rank = tier_sql(program)
    protected = (
        "CASE tc.to_tier "
        + " ".join(f"WHEN :tier_{i} THEN :protect_{i}" for i in range(len(program.tiers)))
        + " END"
    )
    return {
        "growth": """
            UPDATE members SET growth_value = g.total
            FROM (SELECT member_id, SUM(amount) AS total FROM growth_entries
                  WHERE tenant_id = :tenant AND member_id > :after AND member_id <= :upto
                    AND occurred_at > :since GROUP BY member_id) g
            WHERE members.tenant_id = :tenant AND members.id = g.member_id
              AND members.growth_value <> g.total""",
        "growth_zero": """
            UPDATE members SET growth_value = 0
            WHERE tenant_id = :tenant AND id > :after AND id <= :upto
              AND growth_value <> 0 AND NOT EXISTS (
                SELECT 1 FROM growth_entries g WHERE g.tenant_id = :tenant
                  AND g.member_id = members.id AND g.occurred_at > :since)""",
        "changes": f"""
            INSERT INTO tier_changes (tenant_id, id, member_id, from_tier, to_tier, reason,
                                      growth_value, run_id, changed_at)
            SELECT m.tenant_id, {new_uuid_sql(dialect)}, m.id, m.tier_code, {target_code},
                   CASE WHEN {current_rank} = -1 THEN 'tier_removed'
                        WHEN {target_rank} > {current_rank} THEN 'upgrade'
                        ELSE 'evaluation' END,
                   m.growth_value, :run, :now
            FROM members m
            WHERE m.tenant_id = :tenant AND m.id > :after AND m.id <= :upto
              AND m.status = 'active' AND (
                {target_rank} > {current_rank}
                OR ({target_rank} < {current_rank}
                    AND (m.tier_protected_until IS NULL OR m.tier_protected_until <= :now)))""",
        "events": events_sql(dialect),
        "apply": f"""
            UPDATE members SET tier_code = tc.to_tier, tier_since = :now,
                               tier_protected_until = {protected}
            FROM tier_changes tc
            WHERE tc.tenant_id = :tenant AND tc.run_id = :run
              AND members.tenant_id = :tenant AND members.id = tc.member_id""",
    }


def parameter_types(params: dict[str, Any]) -> dict[str, TypeEngine[Any]]:
    types: dict[str, TypeEngine[Any]] = {
        "tenant": Uuid(),
        "since": UTCDateTime(),
        "after": Uuid(),
        "upto": Uuid(),
    }
    return types | {
        name: UTCDateTime() for name in params if name == "now" or name.startswith("protect_")
    }


async def evaluate_tiers(
    session: AsyncSession, program: Program, now: datetime | None = None
) -> EvaluationResult:
    """Evaluate every member's tier, chunk by chunk (a chunk's tier changes carry the
    chunk's run id, ``<run id>.<chunk>``). Commits after each chunk."""
    tenant_id = require_tenant().tenant_id
    now = now or utcnow()
    run_id = uuid.uuid4().hex
    sql = statements(session.get_bind().dialect.name, program)
    totals = {"updated": 0, "changed": 0}

    async def evaluate(chunk: MemberRange) -> None:
        params = evaluation_params(program, tenant_id, now, chunk.run_id(run_id)) | chunk.params
        types = parameter_types(params)

        async def run(name: str) -> int:
            result = await session.execute(typed_text(sql[name], types), params)
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

        totals["updated"] += await run("growth") + await run("growth_zero")
        changed = await run("changes")
        totals["changed"] += changed
        if changed:
            await run("events")
            await run("apply")
            mark_pending(session)

    await run_in_chunks(session, "tiers.evaluate", evaluate)
    return EvaluationResult(run_id, totals["updated"], totals["changed"])


# ------------------------------------------------- a tier removed from the ladder


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
                FROM members m WHERE m.tenant_id = :tenant AND m.tier_code IN ({codes})"""
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
