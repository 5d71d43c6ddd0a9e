"""Segments: check and compile a rule, preview it, keep named segments, read their members.

The rules of the language are in :mod:`nestpoint.segments.rules`; here a rule meets the
chain (its stores, its time zone and today) and the session. Nothing here commits.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.audit.service import record
from nestpoint.context import require_tenant
from nestpoint.db.base import utcnow
from nestpoint.db.pagination import Page, paginate
from nestpoint.errors import FieldError, Invalid, NotFound
from nestpoint.loyalty.service import get_program
from nestpoint.members.models import Member
from nestpoint.members.service import local_today
from nestpoint.segments import rules
from nestpoint.segments.models import Segment
from nestpoint.segments.schemas import SAMPLE_SIZE, SegmentIn
from nestpoint.tenancy.models import Store

RESERVED_CODES = frozenset({"builtin", "thresholds"})


async def facts(session: AsyncSession) -> rules.Facts:
    """The current chain, its local today and its time zone."""
    program = await get_program(session)
    return rules.Facts(require_tenant().tenant_id, await local_today(session), program.zone)


async def check_rule(session: AsyncSession, raw: Any, path: str = "rule") -> Any:
    """The parsed rule, or a 400 naming the bad node; a store code the chain does not have
    is a 422 naming ``path``."""
    rule = rules.parse_rule(raw, path)
    codes = rules.store_codes(rule)
    if codes:
        known = set((await session.scalars(select(Store.code).where(Store.code.in_(codes)))).all())
        unknown = sorted(codes - known)
        if unknown:
            raise Invalid(
                f"{path}: no store with code {', '.join(unknown)}",
                errors=[FieldError(path, f"no store with code {code!r}") for code in unknown],
            )
    return rule


async def statement(session: AsyncSession, rule: Any) -> Select[Any]:
    """``SELECT members.id`` of the rule, bound to the chain and today."""
    return rules.compile_rule(rule, await facts(session))


async def count(session: AsyncSession, stmt: Select[Any]) -> int:
    return int(await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)


async def preview(session: AsyncSession, raw: Any) -> tuple[int, list[Member]]:
    """How many members the rule holds for now, and the first :data:`SAMPLE_SIZE` by id."""
    stmt = await statement(session, await check_rule(session, raw))
    sample = await session.scalars(
        select(Member).where(Member.id.in_(stmt)).order_by(Member.id).limit(SAMPLE_SIZE)
    )
    return await count(session, stmt), list(sample.all())


async def find_segment(session: AsyncSession, code: str) -> Segment | None:
    return await session.scalar(select(Segment).where(Segment.code == code))


async def get_segment(session: AsyncSession, code: str) -> Segment:
    segment = await find_segment(session, code)
    if segment is None:
        raise NotFound(f"no segment {code!r}")
    return segment


async def list_segments(session: AsyncSession, *, cursor: str | None, limit: int) -> Page[Segment]:
    return await paginate(
        session, select(Segment), (Segment.code, Segment.id), cursor=cursor, limit=limit
    )


async def put_segment(session: AsyncSession, code: str, data: SegmentIn) -> tuple[Segment, bool]:
    """Create the segment or replace its name and rule; returns it and whether it is new.
    Audited (``segments.created`` / ``segments.replaced``) when something changed."""
    if code in RESERVED_CODES:  # paths of their own: /segments/builtin, /segments/thresholds
        raise Invalid.field("code", f"{code!r} is reserved")
    rule = rules.dump_rule(await check_rule(session, data.rule))
    segment = await session.scalar(select(Segment).where(Segment.code == code).with_for_update())
    if segment is None:
        now = utcnow()
        segment = Segment(code=code, name=data.name, rule=rule, created_at=now, updated_at=now)
        session.add(segment)
        await session.flush()
        record(session, "segments.created", "segment", segment.id, {"code": code, "rule": rule})
        return segment, True
    if segment.name != data.name or segment.rule != rule:
        before = {"name": segment.name, "rule": segment.rule}
        segment.name, segment.rule, segment.updated_at = data.name, rule, utcnow()
        await session.flush()
        record(
            session,
            "segments.replaced",
            "segment",
            segment.id,
            {"code": code, "before": before, "after": {"name": data.name, "rule": rule}},
        )
    return segment, False


async def delete_segment(session: AsyncSession, code: str) -> None:
    segment = await get_segment(session, code)
    await session.delete(segment)
    record(session, "segments.deleted", "segment", segment.id, {"code": code})


async def segment_statement(session: AsyncSession, code: str) -> Select[Any]:
    """The members of a saved segment, as it is now."""
    segment = await get_segment(session, code)
    return await statement(session, rules.parse_rule(segment.rule))


async def segment_count(session: AsyncSession, segment: Segment) -> int:
    return await count(session, await statement(session, rules.parse_rule(segment.rule)))


async def segment_members(
    session: AsyncSession, code: str, *, cursor: str | None, limit: int
) -> Page[Member]:
    """The segment's members now, by id, one page after ``cursor``."""
    stmt = await segment_statement(session, code)
    return await paginate(
        session, select(Member).where(Member.id.in_(stmt)), (Member.id,), cursor=cursor, limit=limit
    )
