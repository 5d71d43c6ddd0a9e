"""Rules of members' rights: erasure and retention. No HTTP here; never commits.

Erasure (PIPL art. 47) takes a member's personal data away and keeps the books: the member
row stays, pseudonymous (its id is what orders, ledger entries and benefits refer to), with
its data key shredded, phone hash, phone, name, birthday, tags and family cleared;
children, identities and consents are deleted; messages lose their parameters (queued ones
are not sent); stored export files that may hold the member unmasked are deleted. Members
merged into it go the same way (the same person). Points stay in the ledger and expire on
their lots' dates like anyone's, so the liability report stays true to the rules.
Plugins erase what they keep through ``nestpoint_erase_member_data``, asked by a job after
the commit (``privacy.erase_in_plugins``, retried; a sweep sends it again when lost).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from dateutil.relativedelta import relativedelta
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from nestpoint.audit.service import record
from nestpoint.context import current_actor, require_tenant
from nestpoint.db.base import utcnow
from nestpoint.db.pagination import Page, paginate
from nestpoint.db.session import on_commit
from nestpoint.errors import Conflict, FieldError, NotFound
from nestpoint.events.service import emit
from nestpoint.exports.models import Export, ExportChunk
from nestpoint.jobs.broker import JobRef, enqueue_best_effort
from nestpoint.members import service as members
from nestpoint.members.models import (
    Child,
    Member,
    MemberConsent,
    MemberIdentity,
    MemberPhoneChange,
)
from nestpoint.messaging.models import Message
from nestpoint.points import service as points
from nestpoint.points.models import PointAccount, PointHold
from nestpoint.privacy.models import MemberErasure, PrivacyPolicy, RetentionRun
from nestpoint.privacy.schemas import PolicyIn
from nestpoint.referrals.models import AssistHelper, Referral

ERASE_IN_PLUGINS = JobRef("privacy.erase_in_plugins", queue_name="default")
RETENTION = JobRef("privacy.retention", queue_name="default")
_NEW_KEY = "nestpoint.privacy.new"
_RUN_KEY = "nestpoint.privacy.runs"
# Export kinds whose unmasked files hold members' personal data.
PERSONAL_EXPORTS = ("members", "children")
MAX_MERGE_HOPS = 32  # a chain of merges longer than this is not followed


def erased_phone_hash(member_id: uuid.UUID) -> str:
    """What stands in for an erased member's phone hash: unique, and no phone's hash."""
    return f"erased:{member_id.hex}"


# ------------------------------------------------------------------ erasure


async def erase_member(
    session: AsyncSession, member_id: uuid.UUID, *, reason: str, source: str = "request"
) -> MemberErasure:
    """Erase the member's personal data (see the module); a second request answers with
    the first one's record. 404 for no such member, 409 while an order holds its points."""
    earlier = await _erasure_covering(session, member_id)
    if earlier is not None:
        return earlier
    member = await members.get_active_member(session, member_id)
    ids = await _merged_into(session, member.id)
    # The one lock order (docs/guarantees.md): the accounts, then the member rows. A sale
    # locks the account first too, so it runs wholly before the erasure or sees it closed.
    await points.lock_accounts(session, ids, follow_merge=False)
    await members.get_member(session, member.id, for_update=True)
    earlier = await _erasure_of(session, member.id)  # another request got here first
    if earlier is not None:
        return earlier
    await _refuse_open_holds(session, ids)
    await session.execute(
        update(PointAccount).where(PointAccount.member_id.in_(ids)).values(closed_at=utcnow())
    )
    summary = {
        "merged_members": len(ids) - 1,
        **await _erase_rows(session, ids),
        "messages": await _forget_messages(session, ids),
        "exports_deleted": await _delete_exports(session, ids),
        "devices_forgotten": await _forget_devices(session, ids),
    }
    erasure = MemberErasure(
        member_id=member.id,
        source=source,
        reason=reason,
        requested_by=_requested_by(),
        summary=summary,
        erased_at=utcnow(),
        plugins={},
    )
    session.add(erasure)
    record(
        session,
        "member.erased",
        "member",
        member.id,
        {"source": source, "reason": reason, **summary},
    )
    emit(
        session,
        "member.erased",
        "member",
        member.id,
        {"member_id": str(member.id), "source": source},
    )
    session.info.setdefault(_NEW_KEY, []).append((require_tenant().tenant_id, member.id))
    return erasure


async def _erasure_of(session: AsyncSession, member_id: uuid.UUID) -> MemberErasure | None:
    return await session.scalar(select(MemberErasure).where(MemberErasure.member_id == member_id))


async def _erasure_covering(session: AsyncSession, member_id: uuid.UUID) -> MemberErasure | None:
    """The erasure of the member, or of the member it was merged into (erased with it)."""
    for _ in range(MAX_MERGE_HOPS):
        erasure = await _erasure_of(session, member_id)
        if erasure is not None:
            return erasure
        survivor = await session.scalar(select(Member.merged_into_id).where(Member.id == member_id))
        if survivor is None:
            return None
        member_id = survivor
    return None


def _requested_by() -> str:
    actor = current_actor()
    return str(actor.key_id or actor.name)[:100]


async def _merged_into(session: AsyncSession, member_id: uuid.UUID) -> list[uuid.UUID]:
    """The member and every member merged into it, directly or through another."""
    found, frontier = [member_id], [member_id]
    while frontier:
        frontier = list(
            (
                await session.scalars(select(Member.id).where(Member.merged_into_id.in_(frontier)))
            ).all()
        )
        found += frontier
    return found


async def _refuse_open_holds(session: AsyncSession, ids: list[uuid.UUID]) -> None:
    held = await session.scalar(
        select(func.count())
        .select_from(PointHold)
        .where(PointHold.member_id.in_(ids), PointHold.status == "held")
    )
    if held:
        raise Conflict(
            "an open order holds this member's points: capture or release it first",
            errors=[FieldError("member_id", "points held by an open order")],
        )


async def _erase_rows(session: AsyncSession, ids: list[uuid.UUID]) -> dict[str, int]:
    """Shred the key and clear the member rows; delete children, identities, consents."""
    rows = (await session.scalars(select(Member).where(Member.id.in_(ids)))).all()
    for row in rows:
        row.data_key = None  # the key is gone: whatever it sealed, anywhere, is noise
        row.phone_hash, row.phone_enc, row.name_enc = erased_phone_hash(row.id), "", None
        row.birthday, row.gender, row.tags, row.family_id = None, "unknown", [], None
        row.child_data_consent_at = row.child_data_consent_source = None
        row.status = "erased"
    counts = {}
    for name, model in (
        ("children", Child),
        ("identities", MemberIdentity),
        ("consents", MemberConsent),
    ):
        result = await session.execute(delete(model).where(model.member_id.in_(ids)))
        counts[name] = int(getattr(result, "rowcount", 0) or 0)
    # A phone change's new phone (its keyed hash; the sealed number is noise already).
    await session.execute(delete(MemberPhoneChange).where(MemberPhoneChange.member_id.in_(ids)))
    return counts


async def _forget_messages(session: AsyncSession, ids: list[uuid.UUID]) -> int:
    """Messages keep their facts (when, which channel) but not their parameters; queued
    ones are settled unsent."""
    await session.execute(
        update(Message)
        .where(Message.member_id.in_(ids), Message.status == "queued")
        .values(status="suppressed", reason="member_erased", lease_until=None)
    )
    result = await session.execute(
        update(Message).where(Message.member_id.in_(ids)).values(params={}, sealed=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def _forget_devices(session: AsyncSession, ids: list[uuid.UUID]) -> int:
    """The (hashed) device ids the member's referral binds and assist help recorded."""
    bound = await session.execute(
        update(Referral).where(Referral.invitee_id.in_(ids)).values(device_hash=None)
    )
    helped = await session.execute(
        update(AssistHelper).where(AssistHelper.helper_id.in_(ids)).values(device_hash=None)
    )
    return sum(int(getattr(r, "rowcount", 0) or 0) for r in (bound, helped))


async def _delete_exports(session: AsyncSession, ids: list[uuid.UUID]) -> int:
    """Stored files that may hold the member unmasked: their data exports, and unmasked
    member and child exports made before now (HQ makes them again without the member)."""
    stale = (
        await session.scalars(
            select(Export.id).where(
                or_(
                    Export.member_id.in_(ids),
                    Export.kind.in_(PERSONAL_EXPORTS) & ~Export.masked,
                ),
                Export.status != "running",
            )
        )
    ).all()
    if stale:
        await session.execute(delete(ExportChunk).where(ExportChunk.export_id.in_(stale)))
        await session.execute(delete(Export).where(Export.id.in_(stale)))
    return len(stale)


def enqueue_new_after_commit(session: Session) -> None:
    """Session hook: ask the plugins to erase, once the erasure is committed (best effort:
    the sweep sends again what a lost message missed)."""
    for tenant_id, member_id in session.info.pop(_NEW_KEY, []):
        enqueue_best_effort(ERASE_IN_PLUGINS, str(tenant_id), str(member_id))
    for tenant_id, run_id in session.info.pop(_RUN_KEY, []):
        enqueue_best_effort(RETENTION, str(tenant_id), str(run_id))


def run_after_commit(session: AsyncSession, tenant_id: uuid.UUID, run_id: uuid.UUID) -> None:
    """Hand a requested retention run to the workers once its report row is committed."""
    session.info.setdefault(_RUN_KEY, []).append((tenant_id, run_id))


on_commit(enqueue_new_after_commit)


async def pending_plugin_erasures(
    session: AsyncSession, older_than: timedelta = timedelta(minutes=2)
) -> list[uuid.UUID]:
    """Erasures whose plugins have not all answered yet, for the sweep."""
    rows = await session.scalars(
        select(MemberErasure.member_id).where(
            MemberErasure.plugins_erased_at.is_(None),
            MemberErasure.erased_at < utcnow() - older_than,
        )
    )
    return list(rows.all())


async def plugins_answered(
    session: AsyncSession, member_id: uuid.UUID, results: dict[str, Any], complete: bool
) -> None:
    """Keep what the plugins erased; ``complete`` when every one of them answered."""
    erasure = await _erasure_of(session, member_id)
    if erasure is None:
        raise NotFound(f"no erasure of member {member_id}")
    erasure.plugins = {**erasure.plugins, **results}
    if complete:
        erasure.plugins_erased_at = utcnow()
        record(
            session,
            "member.erased_in_plugins",
            "member",
            member_id,
            {"plugins": sorted(erasure.plugins)},
        )


async def get_erasure(session: AsyncSession, member_id: uuid.UUID) -> MemberErasure:
    erasure = await _erasure_covering(session, member_id)
    if erasure is None:
        raise NotFound("this member was not erased")
    return erasure


async def list_erasures(
    session: AsyncSession, *, cursor: str | None, limit: int
) -> Page[MemberErasure]:
    stmt = select(MemberErasure)
    keys = (MemberErasure.erased_at, MemberErasure.member_id)
    return await paginate(session, stmt, keys, cursor=cursor, limit=limit)


# ------------------------------------------------------------------ retention


async def get_policy(session: AsyncSession) -> PrivacyPolicy:
    """The chain's retention rules (none set: nothing is erased by age)."""
    policy = await session.scalar(select(PrivacyPolicy))
    return policy or PrivacyPolicy(inactive_member_years=None, child_data_age_years=None)


async def set_policy(session: AsyncSession, data: PolicyIn) -> PrivacyPolicy:
    policy = await session.scalar(select(PrivacyPolicy).with_for_update())
    before = _policy_facts(policy)
    if policy is None:
        policy = PrivacyPolicy()
        session.add(policy)
    policy.inactive_member_years = data.inactive_member_years
    policy.child_data_age_years = data.child_data_age_years
    policy.updated_at = utcnow()
    after = _policy_facts(policy)
    if before != after:
        record(
            session,
            "privacy.policy_changed",
            "tenant",
            require_tenant().tenant_id,
            {"before": before, "after": after},
        )
    return policy


def _policy_facts(policy: PrivacyPolicy | None) -> dict[str, int | None]:
    return {
        "inactive_member_years": policy.inactive_member_years if policy else None,
        "child_data_age_years": policy.child_data_age_years if policy else None,
    }


@dataclass(frozen=True)
class Due:
    """What the rules erase on a local date."""

    member_ids: list[uuid.UUID]
    child_ids: list[uuid.UUID]


async def due_for_retention(session: AsyncSession, policy: PrivacyPolicy, today: date) -> Due:
    """Active members inactive (no order, not enrolled) since before the cut-off, and
    children past the age limit, by the chain's local date."""
    member_ids: list[uuid.UUID] = []
    child_ids: list[uuid.UUID] = []
    if policy.inactive_member_years:
        cutoff = _local_midnight(today - relativedelta(years=policy.inactive_member_years))
        last_seen = func.coalesce(Member.last_order_at, Member.joined_at)
        member_ids = list(
            (
                await session.scalars(
                    select(Member.id)
                    .where(Member.status == "active", last_seen < cutoff, Member.joined_at < cutoff)
                    .order_by(Member.id)
                )
            ).all()
        )
    if policy.child_data_age_years:
        born_before = today - relativedelta(years=policy.child_data_age_years)
        child_ids = list(
            (
                await session.scalars(
                    select(Child.id).where(Child.birth_date <= born_before).order_by(Child.id)
                )
            ).all()
        )
    return Due(member_ids, child_ids)


def _local_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=utcnow().tzinfo)


async def start_run(session: AsyncSession, trigger: str) -> RetentionRun:
    policy = await get_policy(session)
    run = RetentionRun(
        run_on=await members.local_today(session),
        trigger=trigger,
        policy=_policy_facts(policy),
        members_erased=0,
        children_erased=0,
        member_ids=[],
        started_at=utcnow(),
    )
    session.add(run)
    await session.flush()
    record(
        session,
        "privacy.retention_started",
        "retention_run",
        run.id,
        {"trigger": trigger, "policy": run.policy},
    )
    return run


async def erase_children(
    session: AsyncSession, run_id: uuid.UUID, child_ids: list[uuid.UUID]
) -> int:
    """Children past the age limit: their rows go (their members stay)."""
    result = await session.execute(delete(Child).where(Child.id.in_(child_ids)))
    erased = int(getattr(result, "rowcount", 0) or 0)
    run = await _run(session, run_id)
    run.children_erased += erased
    if erased:
        record(session, "children.erased", "retention_run", run_id, {"children": erased})
    return erased


async def erase_for_retention(
    session: AsyncSession, run_id: uuid.UUID, member_id: uuid.UUID, years: int
) -> bool:
    """One inactive member, in the run's name; ``False`` when skipped (points held, or
    erased meanwhile)."""
    if await _erasure_of(session, member_id) is not None:
        return False
    try:
        await erase_member(
            session,
            member_id,
            reason=f"retention: inactive for {years} years",
            source="retention",
        )
    except Conflict:
        return False
    run = await _run(session, run_id)
    run.members_erased += 1
    run.member_ids = [*run.member_ids, str(member_id)]
    return True


async def finish_run(session: AsyncSession, run_id: uuid.UUID) -> RetentionRun:
    run = await _run(session, run_id)
    run.finished_at = utcnow()
    record(
        session,
        "privacy.retention_finished",
        "retention_run",
        run_id,
        {"members_erased": run.members_erased, "children_erased": run.children_erased},
    )
    return run


async def _run(session: AsyncSession, run_id: uuid.UUID) -> RetentionRun:
    run = await session.scalar(select(RetentionRun).where(RetentionRun.id == run_id))
    if run is None:
        raise NotFound("no such retention run")
    return run


async def get_run(session: AsyncSession, run_id: uuid.UUID) -> RetentionRun:
    return await _run(session, run_id)


async def list_runs(session: AsyncSession, *, cursor: str | None, limit: int) -> Page[RetentionRun]:
    keys = (RetentionRun.started_at, RetentionRun.id)
    return await paginate(session, select(RetentionRun), keys, cursor=cursor, limit=limit)
