"""Merging two members: the orchestration above members, points, tiers and orders.

A merge moves points (``points.service``), orders, children and identities, growth
(``tiers.service``), benefits given once (``benefits.service``) and coupons
(``coupons.service``) and stored value (``wallet.service``) from one member to
another; it lives here, above those contexts, so none of them imports another to do it.
No HTTP here; never commits.
"""

from __future__ import annotations

import uuid

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.audit.service import record
from nestpoint.benefits import service as benefits
from nestpoint.coupons import service as coupons
from nestpoint.db import utcnow
from nestpoint.errors import Conflict, FieldError, Invalid, NotFound
from nestpoint.events.service import emit
from nestpoint.members.models import Child, Member, MemberIdentity
from nestpoint.members.service import get_member, reseal_moved
from nestpoint.orders.models import Order
from nestpoint.points import jobs as points_jobs
from nestpoint.points import service as points
from nestpoint.tiers import service as tiers
from nestpoint.wallet import service as wallet


async def merge_members(
    session: AsyncSession, target_id: uuid.UUID, source_id: uuid.UUID
) -> Member:
    """Merge ``source`` into ``target``: points, orders, children, identities, coupons move.

    The source stays as a tombstone (``status='merged'``) pointing at the target, so old
    references (its phone, its id) still lead to the right member.
    """
    if target_id == source_id:
        raise Invalid.field("source_member_id", "cannot merge a member into itself")
    # The one lock order (docs/guarantees.md): both accounts in member-id order, then both
    # member rows in the same order; a till recording an order takes the account first too.
    await get_member(session, target_id)  # 404 before any lock
    await get_member(session, source_id)
    # A points job locks the accounts with due lots or holds, then works on them: a merge
    # moving those into an account it did not lock would race it. Merges are rare: they
    # wait for a running job instead (the jobs' own lock, taken first as the jobs do).
    await points_jobs.wait_for_jobs(session)
    accounts = await points.lock_accounts(session, [target_id, source_id], follow_merge=False)
    first, second = sorted([target_id, source_id])
    locked = {
        m.id: m
        for m in [
            await get_member(session, first, for_update=True),
            await get_member(session, second, for_update=True),
        ]
    }
    target, source = locked[target_id], locked[source_id]
    if source.status != "active":
        raise Conflict(
            "the source member is already merged",
            errors=[FieldError("source_member_id", "already merged")],
        )
    if target.status != "active":
        raise NotFound("no such member")
    moved = await points.move_all(session, accounts[source.id], accounts[target.id])
    stored_value = await wallet.move_all(session, source.id, target.id, utcnow())
    await reseal_moved(session, source, target)
    await session.flush()  # the resealed rows are written before they move below
    await session.execute(
        update(Order).where(Order.member_id == source.id).values(member_id=target.id)
    )
    await session.execute(
        update(Child).where(Child.member_id == source.id).values(member_id=target.id)
    )
    await session.execute(
        update(MemberIdentity)
        .where(MemberIdentity.member_id == source.id)
        .values(member_id=target.id)
    )
    await benefits.move_held(session, source.id, target.id)
    await coupons.move_coupons(session, source.id, target.id)
    if source.child_data_consent_at and not target.child_data_consent_at:
        target.child_data_consent_at = source.child_data_consent_at
        target.child_data_consent_source = source.child_data_consent_source
    target.tags = sorted(set(target.tags) | set(source.tags))
    source.status, source.merged_into_id = "merged", target.id
    await tiers.add_growth(session, target, source.growth_value, "merge", str(source.id))
    source.growth_value = 0
    record(
        session,
        "member.merged",
        "member",
        target.id,
        {"source_member_id": str(source.id), "points_moved": moved,
         "stored_value_moved_fen": stored_value},
    )  # fmt: skip
    emit(
        session,
        "member.merged",
        "member",
        target.id,
        {"member_id": str(target.id), "source_member_id": str(source.id), "points_moved": moved},
    )
    return target
