"""Set-based jobs run through a tenant's members in chunks, one transaction each
(members/jobs.py; the tests run with ``NESTPOINT_JOB_CHUNK_MEMBERS=2``)."""

from __future__ import annotations

import itertools
import sqlite3
import uuid
from contextlib import closing
from datetime import UTC, datetime
from typing import Any

import pytest
from dateutil.relativedelta import relativedelta
from sqlalchemy import make_url, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty.helpers import order_body
from loyalty.support import assert_running_balance, balances, entries, post_order, run_job
from nestpoint.db import scoped_session
from nestpoint.members.jobs import FIRST_AFTER, LAST_UPTO, MemberRange, run_in_chunks
from nestpoint.members.models import Member
from nestpoint.points import jobs as points_jobs
from nestpoint.points.jobs import expire_points
from nestpoint.settings import get_settings


async def _member_ids(session: AsyncSession, chunk: MemberRange) -> list[uuid.UUID]:
    rows = await session.scalars(
        select(Member.id).where(Member.id > chunk.after, Member.id <= chunk.upto)
    )
    return list(rows)


async def test_chunks_cover_each_member_once_in_id_order(make_tenant, enrol):
    t = await make_tenant()
    members = {uuid.UUID((await enrol(t.hq()))["id"]) for _ in range(5)}
    seen: list[tuple[MemberRange, list[uuid.UUID]]] = []

    async def job(session: AsyncSession) -> int:
        async def record(chunk: MemberRange) -> None:
            seen.append((chunk, await _member_ids(session, chunk)))

        return await run_in_chunks(session, "tests.chunks", record)

    assert await run_job(t.id, job) == 3  # 2 + 2 + 1 members
    assert [len(ids) for _, ids in seen] == [2, 2, 1]
    assert {m for _, ids in seen for m in ids} == members
    ranges = [chunk for chunk, _ in seen]
    assert ranges[0].after == FIRST_AFTER
    assert ranges[-1].upto == LAST_UPTO
    assert all(a.upto == b.after for a, b in itertools.pairwise(ranges))
    assert [chunk.number for chunk in ranges] == [0, 1, 2]


async def test_each_chunk_commits_before_the_next_begins(make_tenant, enrol):
    """A row a finished chunk wrote is committed (another connection reads it) and, on
    PostgreSQL, no longer locked (another transaction locks it without waiting)."""
    t = await make_tenant()
    for _ in range(4):
        await enrol(t.hq())
    seen_from_outside: list[list[int]] = []

    async def job(session: AsyncSession) -> int:
        done: list[uuid.UUID] = []

        async def bump(chunk: MemberRange) -> None:
            if done:
                seen_from_outside.append(await _growth_from_outside(done))
            ids = await _member_ids(session, chunk)
            await session.execute(update(Member).where(Member.id.in_(ids)).values(growth_value=7))
            done.extend(ids)

        return await run_in_chunks(session, "tests.chunks", bump)

    assert await run_job(t.id, job) == 3  # 2 + 2 + an empty last chunk
    assert seen_from_outside == [[7, 7], [7, 7, 7, 7]]


async def _growth_from_outside(member_ids: list[uuid.UUID]) -> list[int]:
    """The members' growth as another connection sees it, not waiting for any lock."""
    url = make_url(get_settings().database_url)
    if url.get_backend_name() == "sqlite":  # WAL: a reader never waits for the writer
        marks = ", ".join("?" for _ in member_ids)
        with closing(sqlite3.connect(str(url.database))) as other:
            rows = other.execute(
                f"SELECT growth_value FROM members WHERE id IN ({marks})",
                [member_id.hex for member_id in member_ids],
            )
            return [int(row[0]) for row in rows]
    async with scoped_session() as session:
        locked = select(Member.id).where(Member.id.in_(member_ids)).with_for_update(nowait=True)
        await session.execute(locked)  # raises if the job still held a row
        rows = await session.scalars(select(Member.growth_value).where(Member.id.in_(member_ids)))
        return list(rows)


def _line(sku: str, paid_fen: int) -> dict[str, Any]:
    return {
        "sku": sku,
        "name": sku,
        "category": "care",
        "quantity": 1,
        "unit_price_fen": paid_fen,
        "paid_fen": paid_fen,
    }


async def test_an_expiry_stopped_between_chunks_finishes_on_the_next_run(
    client, make_tenant, enrol, set_program, monkeypatch
):
    """Chunks already done stay done; the next run expires the rest, each lot once."""
    t = await make_tenant()
    await set_program(t.hq(), points={"expiry": "rolling", "expiry_months": 12, "pending_days": 0})
    members = [(await enrol(t.hq()))["id"] for _ in range(5)]
    for member_id in members:
        body = order_body(member={"id": member_id}, lines=[_line("A", 5_000)])
        assert (await post_order(client, t.hq(), body))["points_earned"] == 50
    later = datetime.now(UTC) + relativedelta(months=13)

    calls = {"n": 0}
    real_mark_pending = points_jobs.mark_pending

    def crash_in_the_second_chunk(session: AsyncSession) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker lost")
        real_mark_pending(session)

    monkeypatch.setattr(points_jobs, "mark_pending", crash_in_the_second_chunk)
    with pytest.raises(RuntimeError, match="worker lost"):
        await run_job(t.id, lambda s: expire_points(s, later), "points.expire")
    monkeypatch.setattr(points_jobs, "mark_pending", real_mark_pending)
    assert sorted([await _balance(client, t, m) for m in members]) == [0, 0, 50, 50, 50]

    result = await run_job(t.id, lambda s: expire_points(s, later), "points.expire")
    assert (result.rows, result.points) == (3, 150)
    for member_id in members:
        assert await _balance(client, t, member_id) == 0
        ledger = await entries(client, t.hq(), member_id)
        assert [e["amount"] for e in ledger if e["kind"] == "expire"] == [-50]
        assert_running_balance(ledger)
    assert (await run_job(t.id, lambda s: expire_points(s, later), "points.expire")).rows == 0
    causes = [
        e["cause_id"]
        for member_id in members
        for e in await entries(client, t.hq(), member_id)
        if e["kind"] == "expire"
    ]
    # A chunk's entries name it: <run id>.<chunk number>; two runs wrote them.
    assert len({cause.split(".")[0] for cause in causes}) == 2
    assert all(cause.split(".")[1].isdigit() for cause in causes)


async def _balance(client: Any, t: Any, member_id: str) -> int:
    return int((await balances(client, t.hq(), member_id))["balance"])
