"""The recomputation of the built-in segments, set-based in SQL (no loop over members).

One run per tenant, through its members in chunks (``members.jobs.run_in_chunks``), each
chunk in its own transaction under the job's advisory lock, in two statements: one upsert
``INSERT ... SELECT`` from ``members`` and an aggregate of ``orders``, one ``DELETE`` of the
rows of members no longer active. Running it twice on the same day gives the same rows.
Windows are compared as timestamps against the UTC instants local days start (as the rule
language does), so a member is in the same group here as in the matching custom rule;
orders count when paid or partly refunded, as there.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Date, Uuid
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeEngine

from nestpoint.context import require_tenant
from nestpoint.db import utcnow
from nestpoint.db.base import UTCDateTime
from nestpoint.db.sql import typed_text
from nestpoint.loyalty.service import get_program
from nestpoint.members.jobs import MemberRange, run_in_chunks
from nestpoint.segments.builtin import JOB, NO_ORDERS, RFM_GROUPS, Thresholds, get_thresholds

COUNTED_SQL = "('paid', 'partially_refunded')"


@dataclass(frozen=True, slots=True)
class RecomputeResult:
    computed_on: date
    members: int  # rows written
    removed: int  # rows of members no longer active
    chunks: int


def _day_starts(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def recompute_params(
    thresholds: Thresholds, tenant_id: uuid.UUID, today: date, zone: ZoneInfo
) -> dict[str, Any]:
    """The values of every parameter of :func:`statements` (the job and the benchmark)."""
    t = thresholds

    def since(days: int) -> datetime:  # the start of the last ``days`` local days
        return _day_starts(today - timedelta(days=days - 1), zone)

    offset = datetime.combine(today, time(12), tzinfo=zone).utcoffset() or timedelta(0)
    return {
        "tenant": tenant_id,
        "today": today,
        "zone": zone.key,
        "offset": f"{int(offset.total_seconds() // 60):+d} minutes",
        "window_since": since(t.window_days),
        "recent_since": since(t.recency_days),
        "potential_since": since(t.potential_days),
        "silent_since": since(t.silent_days),
        "churn_since": since(t.churn_days),
        "welcome_since": since(t.welcome_days),
        "frequency_orders": t.frequency_orders,
        "monetary_fen": t.monetary_fen,
        "core_fen": t.core_fen,
        "potential_orders": t.potential_orders,
        "welcome_max_orders": t.welcome_max_orders,
        "stable_orders": t.stable_orders,
    }


def parameter_types() -> dict[str, TypeEngine[Any]]:
    types: dict[str, TypeEngine[Any]] = {
        "tenant": Uuid(),
        "after": Uuid(),
        "upto": Uuid(),
        "today": Date(),
    }
    for name in ("window", "recent", "potential", "silent", "churn", "welcome"):
        types[f"{name}_since"] = UTCDateTime()
    return types


def _recency_sql(dialect: str) -> str:
    """Days from the local date of the last order to today (None: never ordered). On
    SQLite the chain's UTC offset of today stands in for its time zone."""
    if dialect == "postgresql":
        return "(CAST(:today AS date) - CAST((a.last_paid AT TIME ZONE :zone) AS date))"
    return "CAST(julianday(:today) - julianday(date(a.last_paid, :offset)) AS INTEGER)"


def _rfm_case() -> str:
    whens = " ".join(
        f"WHEN s.r_high = {int(r)} AND s.f_high = {int(f)} AND s.m_high = {int(m)} THEN '{code}'"
        for code, (_, _, (r, f, m)) in RFM_GROUPS.items()
    )
    return f"CASE WHEN s.last_paid IS NULL THEN '{NO_ORDERS[0]}' {whens} END"


def statements(dialect: str) -> dict[str, str]:
    """The statements of one chunk (members ``:after < id <= :upto``); the benchmark runs
    the same SQL through psql. Only fixed fragments are formatted in; values are bound."""
    counted = f"o.status IN {COUNTED_SQL}"
    spend = "o.total_fen - o.refunded_fen"

    def within(since: str, then: str = "1") -> str:
        return f"SUM(CASE WHEN o.paid_at >= :{since} THEN {then} ELSE 0 END)"

    def flag(condition: str) -> str:  # 1 or 0 (SQLite has no booleans)
        return f"CASE WHEN {condition} THEN 1 ELSE 0 END"

    upsert = f"""
            INSERT INTO member_segments (tenant_id, member_id, recency_days, frequency,
                                         monetary_fen, r_score, f_score, m_score, rfm_group,
                                         value_circle, lifecycle, computed_on)
            SELECT :tenant, s.id, s.recency, s.f, s.mon,
                   CASE WHEN s.r_high = 1 THEN 'high' ELSE 'low' END,
                   CASE WHEN s.f_high = 1 THEN 'high' ELSE 'low' END,
                   CASE WHEN s.m_high = 1 THEN 'high' ELSE 'low' END,
                   {_rfm_case()},
                   CASE WHEN s.mon > :core_fen THEN 'core'
                        WHEN s.p >= :potential_orders THEN 'potential'
                        WHEN s.c = 0 AND s.joined_at < :churn_since THEN 'churn_warning'
                        ELSE 'none' END,
                   CASE WHEN s.joined_at >= :welcome_since AND s.f <= :welcome_max_orders
                             THEN 'welcome'
                        WHEN s.q = 0 THEN 'silent'
                        WHEN s.f >= :stable_orders THEN 'stable'
                        ELSE 'growing' END,
                   :today
            FROM (SELECT m.id, m.joined_at, a.last_paid,
                         CASE WHEN {_recency_sql(dialect)} < 0 THEN 0
                              ELSE {_recency_sql(dialect)} END AS recency,
                         COALESCE(a.f, 0) AS f, COALESCE(a.mon, 0) AS mon,
                         COALESCE(a.p, 0) AS p, COALESCE(a.q, 0) AS q, COALESCE(a.c, 0) AS c,
                         {flag("COALESCE(a.r, 0) > 0")} AS r_high,
                         {flag("COALESCE(a.f, 0) >= :frequency_orders")} AS f_high,
                         {flag("COALESCE(a.mon, 0) >= :monetary_fen")} AS m_high
                  FROM members m
                  LEFT JOIN (SELECT o.member_id, MAX(o.paid_at) AS last_paid,
                                    {within("window_since")} AS f,
                                    {within("window_since", spend)} AS mon,
                                    {within("recent_since")} AS r,
                                    {within("potential_since")} AS p,
                                    {within("silent_since")} AS q,
                                    {within("churn_since")} AS c
                             FROM orders o
                             WHERE o.tenant_id = :tenant AND o.member_id > :after
                               AND o.member_id <= :upto AND {counted}
                             GROUP BY o.member_id) a ON a.member_id = m.id
                  WHERE m.tenant_id = :tenant AND m.id > :after AND m.id <= :upto
                    AND m.status = 'active') s
            WHERE 1 = 1
            ON CONFLICT (tenant_id, member_id) DO UPDATE SET
                recency_days = excluded.recency_days, frequency = excluded.frequency,
                monetary_fen = excluded.monetary_fen, r_score = excluded.r_score,
                f_score = excluded.f_score, m_score = excluded.m_score,
                rfm_group = excluded.rfm_group, value_circle = excluded.value_circle,
                lifecycle = excluded.lifecycle, computed_on = excluded.computed_on"""
    stale = """
            DELETE FROM member_segments
            WHERE tenant_id = :tenant AND member_id > :after AND member_id <= :upto
              AND NOT EXISTS (SELECT 1 FROM members m
                              WHERE m.tenant_id = :tenant AND m.id = member_segments.member_id
                                AND m.status = 'active')"""
    return {"upsert": upsert, "stale": stale}


async def recompute(session: AsyncSession, now: datetime | None = None) -> RecomputeResult:
    """Recompute every active member's built-in segments, chunk by chunk (each committed).
    The chunks of a run share its local today and thresholds."""
    tenant_id = require_tenant().tenant_id
    program = await get_program(session)
    thresholds = await get_thresholds(session)
    today = (now or utcnow()).astimezone(program.zone).date()
    base = recompute_params(thresholds, tenant_id, today, program.zone)
    sql = statements(session.get_bind().dialect.name)
    types = parameter_types()
    totals = {"members": 0, "removed": 0}

    async def chunk(members: MemberRange) -> None:
        params = base | members.params
        for name, key in (("upsert", "members"), ("stale", "removed")):
            result = await session.execute(typed_text(sql[name], types), params)
            totals[key] += int(result.rowcount or 0)  # type: ignore[attr-defined]

    chunks = await run_in_chunks(session, JOB, chunk)
    return RecomputeResult(today, totals["members"], totals["removed"], chunks)
