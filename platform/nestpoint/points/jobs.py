"""Periodic points jobs, set-based in SQL: expire lots, release timed-out holds, announce
points about to expire.

Expiry runs through the tenant's members in chunks, one transaction each
(``members.jobs.run_in_chunks``); releasing holds (few rows) and the announcement (one
insert) run in one transaction. Each transaction is serialised per tenant by the job's
advisory lock and first locks the accounts it will touch (accounts before lots, the order
every points change uses), so it never races a redemption. Running a job twice, or two at
once, changes nothing the second time: each statement only picks rows still due
(``remaining > 0``, ``status='held'``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import Uuid, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeEngine

from nestpoint.context import require_tenant
from nestpoint.db import utcnow
from nestpoint.db.base import UTCDateTime
from nestpoint.db.sql import json_object_sql, lock_job, new_uuid_sql, typed_text, uuid_text_sql
from nestpoint.events.service import mark_pending
from nestpoint.loyalty.service import get_program
from nestpoint.members.jobs import MemberRange, run_in_chunks
from nestpoint.points import service as points


@dataclass(frozen=True, slots=True)
class JobResult:
    run_id: str
    rows: int
    points: int


INSERT_ENTRIES = """INSERT INTO point_entries (tenant_id, id, member_id, kind, amount,
                balance_after, lot_id, cause_type, cause_id, line_no, reason, actor,
                idempotency_key, created_at)"""


def _lock_accounts(dialect: str, members_sql: str) -> str:
    """Lock the accounts a job will touch, in member order, before it touches their lots
    (accounts first, as every points change does)."""
    lock = "FOR UPDATE" if dialect == "postgresql" else ""
    return f"""
            SELECT COUNT(*) FROM (
                SELECT a.member_id FROM point_accounts a
                WHERE a.tenant_id = :tenant AND a.member_id IN ({members_sql})
                ORDER BY a.member_id {lock}) locked"""


def expiry_statements(dialect: str) -> dict[str, str]:
    """The statements of one chunk of the expiry job (its members ``:after < id <= :upto``,
    its run id ``:run``); the benchmark runs the same SQL through psql."""
    payload = json_object_sql(
        dialect, {"member_id": uuid_text_sql(dialect, "e.member_id"), "points": "-SUM(e.amount)"}
    )
    due = (
        "l.tenant_id = :tenant AND l.member_id > :after AND l.member_id <= :upto"
        " AND l.remaining > 0 AND l.expires_at <= :now"
    )
    return {
        "lock": _lock_accounts(dialect, f"SELECT l.member_id FROM point_lots l WHERE {due}"),
        # The entries of one run share a moment and the ledger lists by (created_at, id):
        # the running balance follows the new ids, made first (MATERIALIZED: once per row).
        "entries": f"""
            {INSERT_ENTRIES}
            WITH due AS MATERIALIZED (
                SELECT l.tenant_id, l.member_id, l.id AS lot_id, l.remaining,
                       {new_uuid_sql(dialect)} AS entry_id
                FROM point_lots l WHERE {due})
            SELECT d.tenant_id, d.entry_id, d.member_id, 'expire', -d.remaining,
                   a.balance - SUM(d.remaining) OVER (
                       PARTITION BY d.member_id ORDER BY d.entry_id
                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW),
                   d.lot_id, 'expiry', :run, NULL, '', 'system', NULL, :now
            FROM due d JOIN point_accounts a
              ON a.tenant_id = d.tenant_id AND a.member_id = d.member_id""",
        "accounts": f"""
            UPDATE point_accounts SET balance = point_accounts.balance - s.total,
                                      updated_at = :now
            FROM (SELECT l.member_id, SUM(l.remaining) AS total FROM point_lots l
                  WHERE {due} GROUP BY l.member_id) s
            WHERE point_accounts.tenant_id = :tenant AND point_accounts.member_id = s.member_id""",
        "lots": """
            UPDATE point_lots SET remaining = 0
            WHERE tenant_id = :tenant AND member_id > :after AND member_id <= :upto
              AND remaining > 0 AND expires_at <= :now""",
        "events": f"""
            INSERT INTO outbox_events (tenant_id, id, type, store_id, subject_type, subject_id,
                                       payload, occurred_at, published_at, attempts,
                                       next_attempt_at, last_error)
            SELECT e.tenant_id, {new_uuid_sql(dialect)}, 'points.expired', NULL, 'member',
                   {uuid_text_sql(dialect, "e.member_id")}, {payload}, :now, NULL, 0, :now, NULL
            FROM point_entries e
            WHERE e.tenant_id = :tenant AND e.cause_type = 'expiry' AND e.cause_id = :run
            GROUP BY e.tenant_id, e.member_id""",
    }


def release_statements(dialect: str) -> dict[str, str]:
    due = "h.tenant_id = :tenant AND h.status = 'held' AND h.expires_at <= :now"
    return {
        "lock": _lock_accounts(dialect, f"SELECT h.member_id FROM point_holds h WHERE {due}"),
        "entries": f"""
            {INSERT_ENTRIES}
            WITH due AS MATERIALIZED (
                SELECT h.tenant_id, h.member_id, h.id AS hold_id, h.amount,
                       {new_uuid_sql(dialect)} AS entry_id
                FROM point_holds h WHERE {due})
            SELECT d.tenant_id, d.entry_id, d.member_id, 'release', d.amount,
                   a.balance + SUM(d.amount) OVER (
                       PARTITION BY d.member_id ORDER BY d.entry_id
                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW),
                   NULL, 'hold', {uuid_text_sql(dialect, "d.hold_id")}, NULL, 'timeout',
                   'system', NULL, :now
            FROM due d JOIN point_accounts a
              ON a.tenant_id = d.tenant_id AND a.member_id = d.member_id""",
        "lots": f"""
            UPDATE point_lots SET remaining = point_lots.remaining + s.amount
            FROM (SELECT x.lot_id, SUM(x.amount) AS amount
                  FROM point_hold_allocations x JOIN point_holds h
                    ON h.tenant_id = x.tenant_id AND h.id = x.hold_id
                  WHERE {due} GROUP BY x.lot_id) s
            WHERE point_lots.tenant_id = :tenant AND point_lots.id = s.lot_id""",
        "accounts": f"""
            UPDATE point_accounts SET balance = point_accounts.balance + s.total,
                                      held = point_accounts.held - s.total, updated_at = :now
            FROM (SELECT h.member_id, SUM(h.amount) AS total FROM point_holds h
                  WHERE {due} GROUP BY h.member_id) s
            WHERE point_accounts.tenant_id = :tenant AND point_accounts.member_id = s.member_id""",
        "holds": """
            UPDATE point_holds SET status = 'released', resolved_at = :now
            WHERE tenant_id = :tenant AND status = 'held' AND expires_at <= :now""",
    }


def expiring_statements(dialect: str) -> dict[str, str]:
    """The expiring-soon announcement: one ``points.expiring`` event per member whose lots
    expire within the window, with the points and the window's end."""
    payload = json_object_sql(
        dialect,
        {
            "member_id": uuid_text_sql(dialect, "l.member_id"),
            "points": "SUM(l.remaining)",
            "expires_by": "CAST(:expires_by AS TEXT)",
        },
    )
    return {
        "announced": """
            SELECT COUNT(*) FROM outbox_events WHERE tenant_id = :tenant
              AND type = 'points.expiring' AND occurred_at >= :day_start""",
        "events": f"""
            INSERT INTO outbox_events (tenant_id, id, type, store_id, subject_type, subject_id,
                                       payload, occurred_at, published_at, attempts,
                                       next_attempt_at, last_error)
            SELECT l.tenant_id, {new_uuid_sql(dialect)}, 'points.expiring', NULL, 'member',
                   {uuid_text_sql(dialect, "l.member_id")}, {payload}, :now, NULL, 0, :now, NULL
            FROM point_lots l
            WHERE l.tenant_id = :tenant AND l.remaining > 0
              AND l.expires_at >= :window_start AND l.expires_at < :window_end
              AND NOT EXISTS (  -- an erased member's account is closed: nobody to tell
                SELECT 1 FROM point_accounts a
                WHERE a.tenant_id = l.tenant_id AND a.member_id = l.member_id
                  AND a.closed_at IS NOT NULL)
            GROUP BY l.tenant_id, l.member_id""",
    }


async def announce_expiring(session: AsyncSession, now: datetime | None = None) -> JobResult:
    """Announce points about to expire (``points.expiring``), daily, once per member and day.

    The lots announced are those that enter the programme's "expiring soon" horizon today
    (``points.expiring_soon_days``, counted in the tenant's days): each lot is announced
    once, as it crosses the horizon. A second run on the same tenant-local day announces
    nothing (a day already announced is skipped)."""
    tenant_id = require_tenant().tenant_id
    now = now or utcnow()
    await lock_job(session, "points.announce_expiring", tenant_id)
    program = await get_program(session)
    today = now.astimezone(program.zone).date()
    day_start = datetime.combine(today, time(), program.zone)
    horizon = today + timedelta(days=program.points.expiring_soon_days)
    window_start = datetime.combine(horizon, time(), program.zone)
    window_end = window_start + timedelta(days=1)
    params = {
        "tenant": tenant_id,
        "now": now,
        "day_start": day_start,
        "window_start": window_start,
        "window_end": window_end,
        "expires_by": window_end.isoformat(),
    }
    sql = expiring_statements(session.get_bind().dialect.name)
    announced = await session.scalar(typed_text(sql["announced"], PARAMETER_TYPES), params)
    if announced:
        return JobResult(today.isoformat(), 0, 0)
    counts = await _run_all(session, sql, ["events"], params)
    if counts["events"]:
        mark_pending(session)
    return JobResult(today.isoformat(), counts["events"], 0)


JOBS = ("points.expire", "points.release_holds")  # the order every waiter takes their locks


async def wait_for_jobs(session: AsyncSession) -> None:
    """Wait for this tenant's running points jobs, and keep new ones out until commit.

    For a merge: a job locks the accounts that have due lots or holds and then works on
    them; moving those lots or holds into an account the job did not lock would race it."""
    for job in JOBS:
        await lock_job(session, job, require_tenant().tenant_id)


# The types of the points jobs' parameters (the others are typed by their values).
PARAMETER_TYPES: dict[str, TypeEngine[Any]] = {
    "tenant": Uuid(),
    "after": Uuid(),
    "upto": Uuid(),
    "now": UTCDateTime(),
    "day_start": UTCDateTime(),
    "window_start": UTCDateTime(),
    "window_end": UTCDateTime(),
}


async def _run_all(
    session: AsyncSession, sql: dict[str, str], order: list[str], params: dict[str, object]
) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in order:
        result = await session.execute(typed_text(sql[name], PARAMETER_TYPES), params)
        counts[name] = int(result.rowcount or 0)  # type: ignore[attr-defined]
    return counts


EXPIRED_TOTAL = """
            SELECT COALESCE(-SUM(amount), 0) FROM point_entries WHERE tenant_id = :tenant
              AND cause_type = 'expiry' AND cause_id = :run"""


async def expire_points(session: AsyncSession, now: datetime | None = None) -> JobResult:
    """Expire every lot whose time has come (积分清零), once, chunk by chunk (a chunk's
    entries name the chunk's run id, ``<run id>.<chunk>``). Commits after each chunk."""
    tenant_id = require_tenant().tenant_id
    now = now or utcnow()
    run_id = uuid.uuid4().hex
    sql = expiry_statements(session.get_bind().dialect.name)
    totals = {"rows": 0, "points": 0}

    async def expire(chunk: MemberRange) -> None:
        params = {"tenant": tenant_id, "now": now, "run": chunk.run_id(run_id)} | chunk.params
        counts = await _run_all(session, sql, ["lock", "entries"], params)
        if not counts["entries"]:
            return
        expired = await session.scalar(typed_text(EXPIRED_TOTAL, PARAMETER_TYPES), params)
        await _run_all(session, sql, ["accounts", "lots", "events"], params)
        mark_pending(session)
        totals["rows"] += counts["entries"]
        totals["points"] += int(expired or 0)

    await run_in_chunks(session, "points.expire", expire)
    return JobResult(run_id, totals["rows"], totals["points"])


async def release_expired_holds(session: AsyncSession, now: datetime | None = None) -> JobResult:
    """Release holds whose till never captured them (timeout), once. Released points repay
    debt before they can be spent again (see ``settle_debts``)."""
    tenant_id = require_tenant().tenant_id
    now = now or utcnow()
    await lock_job(session, "points.release_holds", tenant_id)
    dialect = session.get_bind().dialect.name
    params = {"tenant": tenant_id, "now": now}
    sql = release_statements(dialect)
    counts = await _run_all(session, sql, ["lock", "entries"], params)
    released = 0
    if counts["entries"]:
        released = int(
            await session.scalar(
                text(
                    "SELECT COALESCE(SUM(amount), 0) FROM point_holds WHERE tenant_id = :tenant"
                    " AND status = 'held' AND expires_at <= :now"
                ).bindparams(
                    bindparam("tenant", type_=Uuid()), bindparam("now", type_=UTCDateTime())
                ),
                params,
            )
            or 0
        )
        await _run_all(session, sql, ["lots", "accounts", "holds"], params)
        await settle_debts(session, now)
    return JobResult("", counts["entries"], released)


async def settle_debts(session: AsyncSession, now: datetime) -> int:
    """Accounts that owe points and have lots with points left (a released hold put them
    back) let those lots pay. Rare, so row by row, through the ledger's own rule; the
    accounts are already locked by the job. Returns the accounts settled."""
    tenant_id = require_tenant().tenant_id
    owing = (
        await session.scalars(
            text(
                "SELECT a.member_id FROM point_accounts a WHERE a.tenant_id = :tenant"
                " AND a.debt > 0 AND EXISTS (SELECT 1 FROM point_lots l WHERE"
                " l.tenant_id = a.tenant_id AND l.member_id = a.member_id AND l.remaining > 0)"
                " ORDER BY a.member_id"
            )
            .bindparams(bindparam("tenant", type_=Uuid()))
            .columns(member_id=Uuid()),
            {"tenant": tenant_id},
        )
    ).all()
    for member_id in owing:
        acct = await points.lock_account(session, member_id)
        await points.settle_debt(session, acct)
        await points.save(session, acct, now)
    return len(owing)
