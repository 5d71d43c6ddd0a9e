"""The points ledger's rules. No HTTP; never commits.

Every change takes the member's account row ``FOR UPDATE`` first (one lock order everywhere:
account, then lots), computes in Python with the lock held, and writes lots, entries and the
account in bulk statements. So per member, movements are serial, and the three views of a
balance (account row, sum of entries, sum of lots less debt) always agree.

Core statements are used on these tables for speed, so each one names its ``tenant_id``
explicitly (RLS checks it again on PostgreSQL).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Uuid,
    bindparam,
    case,
    column,
    func,
    insert,
    select,
    update,
    values,
)
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.context import require_tenant
from nestpoint.db import utcnow
from nestpoint.db.base import table_of
from nestpoint.db.batch import WriteBatch
from nestpoint.db.pagination import Page, paginate
from nestpoint.errors import Conflict, FieldError, Invalid, NotFound
from nestpoint.loyalty import rules
from nestpoint.loyalty.rules import Program
from nestpoint.points.models import (
    PointAccount,
    PointEntry,
    PointHold,
    PointHoldAllocation,
    PointLot,
)
from nestpoint.tenancy.service import ensure_store_trading

accounts = table_of(PointAccount)
lots = table_of(PointLot)
entries = table_of(PointEntry)
holds = table_of(PointHold)
allocations = table_of(PointHoldAllocation)


class InsufficientPoints(Invalid):
    title = "Not enough points"
    slug = "insufficient-points"


@dataclass(slots=True)
class Account:
    """A member's locked account and the writes queued against it in this transaction."""

    tenant_id: uuid.UUID
    member_id: uuid.UUID
    balance: int
    debt: int
    held: int
    lifetime_earned: int
    earned_day: str
    earned_today: int
    new_lots: list[dict[str, Any]] = field(default_factory=list)
    lot_changes: list[dict[str, Any]] = field(default_factory=list)
    new_entries: list[dict[str, Any]] = field(default_factory=list)

    def entry(
        self,
        kind: str,
        amount: int,
        cause_type: str,
        cause_id: str,
        now: datetime,
        *,
        lot_id: uuid.UUID | None = None,
        line_no: int | None = None,
        reason: str = "",
        actor: str = "",
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        self.balance += amount
        row = {
            "tenant_id": self.tenant_id,
            "id": uuid.uuid4(),
            "member_id": self.member_id,
            "kind": kind,
            "amount": amount,
            "balance_after": self.balance,
            "lot_id": lot_id,
            "cause_type": cause_type,
            "cause_id": cause_id,
            "line_no": line_no,
            "reason": reason,
            "actor": actor,
            "idempotency_key": idempotency_key,
            "created_at": now,
        }
        self.new_entries.append(row)
        return row


@dataclass(frozen=True, slots=True)
class Allocation:
    lot_id: uuid.UUID
    amount: int
    expires_at: datetime


# ------------------------------------------------------------------ account access


async def ensure_account(session: AsyncSession, member_id: uuid.UUID) -> None:
    session.add(PointAccount(member_id=member_id))
    await session.flush()


async def lock_account(session: AsyncSession, member_id: uuid.UUID) -> Account:
    tenant_id = require_tenant().tenant_id
    row = (
        await session.execute(
            select(
                accounts.c.balance,
                accounts.c.debt,
                accounts.c.held,
                accounts.c.lifetime_earned,
                accounts.c.earned_day,
                accounts.c.earned_today,
            )
            .where(accounts.c.tenant_id == tenant_id, accounts.c.member_id == member_id)
            .with_for_update()
        )
    ).one_or_none()
    if row is None:
        raise NotFound("no points account for this member")
    return Account(tenant_id, member_id, *row)


async def save(
    session: AsyncSession, acct: Account, now: datetime, batch: WriteBatch | None = None
) -> None:
    """Write the queued lots, lot changes and entries, then the account's totals.

    With ``batch`` the writes join the caller's batch (one round trip with the order's other
    writes on PostgreSQL); without, they go out now.
    """
    own = batch is None
    writes = batch or WriteBatch(session)
    writes.insert(lots, acct.new_lots)
    if acct.lot_changes:
        deltas: dict[uuid.UUID, int] = {}
        for change in acct.lot_changes:  # one lot may change twice in a transaction
            deltas[change["lot"]] = deltas.get(change["lot"], 0) + change["delta"]
        if writes.postgres:
            changes = values(
                column("lot_id", Uuid()), column("delta", BigInteger()), name="lot_changes"
            ).data(list(deltas.items()))
            writes.add(
                update(lots)
                .where(lots.c.tenant_id == acct.tenant_id, lots.c.id == changes.c.lot_id)
                .values(remaining=lots.c.remaining + changes.c.delta)
            )
        else:
            writes.add(
                update(lots)
                .where(lots.c.tenant_id == bindparam("t"), lots.c.id == bindparam("lot"))
                .values(remaining=lots.c.remaining + bindparam("delta")),
                [{"t": acct.tenant_id, "lot": lot, "delta": d} for lot, d in deltas.items()],
            )
    if acct.new_entries:
        # The ledger lists by (created_at, id) and these entries share one moment: hand
        # them their ids in ascending order, so they list in the order they were made.
        ids = sorted(row["id"] for row in acct.new_entries)
        for row, entry_id in zip(acct.new_entries, ids, strict=True):
            row["id"] = entry_id
        writes.insert(entries, acct.new_entries)
    writes.add(
        update(accounts)
        .where(accounts.c.tenant_id == acct.tenant_id, accounts.c.member_id == acct.member_id)
        .values(
            balance=acct.balance,
            debt=acct.debt,
            held=acct.held,
            lifetime_earned=acct.lifetime_earned,
            earned_day=acct.earned_day,
            earned_today=acct.earned_today,
            updated_at=now,
        )
    )
    acct.new_lots, acct.lot_changes, acct.new_entries = [], [], []
    if own:
        await writes.execute()


# ------------------------------------------------------------------ credits


def credit(
    acct: Account,
    program: Program,
    amount: int,
    *,
    kind: str,
    cause_type: str,
    cause_id: str,
    now: datetime,
    source: str,
    order_id: uuid.UUID | None = None,
    line_no: int | None = None,
    expires_at: datetime | None = None,
    pending: bool = False,
    reason: str = "",
    actor: str = "",
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Credit ``amount`` as a new lot; debt from earlier clawbacks is repaid first."""
    if amount < 0:
        raise ValueError("credit amount must be >= 0")
    repay = min(amount, acct.debt)
    acct.debt -= repay
    lot_id = uuid.uuid4()
    acct.new_lots.append(
        {
            "tenant_id": acct.tenant_id,
            "id": lot_id,
            "member_id": acct.member_id,
            "amount": amount,
            "remaining": amount - repay,
            "source": source,
            "order_id": order_id,
            "line_no": line_no,
            "earned_at": now,
            "available_at": rules.available_at(program.points, now) if pending else now,
            "expires_at": expires_at or rules.expires_at(program, now),
        }
    )
    return acct.entry(
        kind,
        amount,
        cause_type,
        cause_id,
        now,
        lot_id=lot_id,
        line_no=line_no,
        reason=reason,
        actor=actor,
        idempotency_key=idempotency_key,
    )


# ------------------------------------------------------------------ debits


async def _spendable_lots(
    session: AsyncSession, acct: Account, now: datetime
) -> list[tuple[uuid.UUID, int, datetime]]:
    rows = await session.execute(
        select(lots.c.id, lots.c.remaining, lots.c.expires_at)
        .where(
            lots.c.tenant_id == acct.tenant_id,
            lots.c.member_id == acct.member_id,
            lots.c.remaining > 0,
            lots.c.available_at <= now,
            lots.c.expires_at > now,
        )
        .order_by(lots.c.expires_at, lots.c.earned_at, lots.c.id)
    )
    return [(r.id, r.remaining, r.expires_at) for r in rows]


async def _clawback_lots(
    session: AsyncSession, acct: Account, order_id: uuid.UUID | None, line_no: int | None
) -> list[tuple[uuid.UUID, int, datetime]]:
    """Any lot with points left: the refunded line's own lots first, then soonest-expiring."""
    # A CASE, not the bare comparison: that is NULL for lots of no order, and PostgreSQL
    # sorts NULLs first in descending order.
    own_first = case(((lots.c.order_id == order_id) & (lots.c.line_no == line_no), 0), else_=1)
    rows = await session.execute(
        select(lots.c.id, lots.c.remaining, lots.c.expires_at)
        .where(
            lots.c.tenant_id == acct.tenant_id,
            lots.c.member_id == acct.member_id,
            lots.c.remaining > 0,
        )
        .order_by(
            own_first if order_id else lots.c.expires_at,
            lots.c.expires_at,
            lots.c.earned_at,
            lots.c.id,
        )
    )
    return [(r.id, r.remaining, r.expires_at) for r in rows]


def _take(
    acct: Account, candidates: list[tuple[uuid.UUID, int, datetime]], amount: int
) -> tuple[list[Allocation], int]:
    """Which lots give ``amount`` in order, and how much is short.

    Lot changes queued earlier in this transaction are not in the database yet (``save``
    writes them), so each candidate's remainder is read net of them.
    """
    queued: dict[uuid.UUID, int] = {}
    for change in acct.lot_changes:
        queued[change["lot"]] = queued.get(change["lot"], 0) + change["delta"]
    taken: list[Allocation] = []
    left = amount
    for lot_id, stored, expires_at in candidates:
        remaining = stored + queued.get(lot_id, 0)
        if remaining <= 0:
            continue
        if left == 0:
            break
        take = min(remaining, left)
        taken.append(Allocation(lot_id, take, expires_at))
        left -= take
    return taken, left


def _consume(acct: Account, taken: list[Allocation]) -> None:
    acct.lot_changes.extend(
        {"t": acct.tenant_id, "lot": a.lot_id, "delta": -a.amount} for a in taken
    )


async def spend(
    session: AsyncSession,
    acct: Account,
    amount: int,
    *,
    kind: str,
    cause_type: str,
    cause_id: str,
    now: datetime,
    field_name: str = "points",
    reason: str = "",
    actor: str = "",
    idempotency_key: str | None = None,
) -> tuple[dict[str, Any], list[Allocation]]:
    """Take ``amount`` available points, soonest-to-expire first; never goes below zero."""
    if amount <= 0:
        raise Invalid.field(field_name, "must be a positive number of points")
    taken, short = _take(acct, await _spendable_lots(session, acct, now), amount)
    if short:
        raise InsufficientPoints(
            f"{field_name}: {amount} points asked, {amount - short} available",
            errors=[FieldError(field_name, f"only {amount - short} points available")],
        )
    _consume(acct, taken)
    entry = acct.entry(
        kind,
        -amount,
        cause_type,
        cause_id,
        now,
        reason=reason,
        actor=actor,
        idempotency_key=idempotency_key,
    )
    return entry, taken


async def claw_back(
    session: AsyncSession,
    acct: Account,
    amount: int,
    *,
    cause_type: str,
    cause_id: str,
    now: datetime,
    order_id: uuid.UUID | None,
    line_no: int | None,
) -> dict[str, Any]:
    """Reverse points a refunded line earned. What was already spent becomes debt."""
    taken, short = _take(acct, await _clawback_lots(session, acct, order_id, line_no), amount)
    _consume(acct, taken)
    acct.debt += short
    return acct.entry("reverse", -amount, cause_type, cause_id, now, line_no=line_no)


# ------------------------------------------------------------------ holds (the till)


async def hold(
    session: AsyncSession,
    program: Program,
    member_id: uuid.UUID,
    amount: int,
    *,
    idempotency_key: str | None,
    order_ref: str | None,
    store_id: uuid.UUID | None,
) -> PointHold:
    """Set points aside at scan; capture on payment, release on cancel or timeout."""
    tenant_id = require_tenant().tenant_id
    if idempotency_key:
        existing = await session.scalar(
            select(PointHold).where(PointHold.idempotency_key == idempotency_key)
        )
        if existing is not None:
            if existing.member_id != member_id or existing.amount != amount:
                raise Conflict(
                    "idempotency key reused with a different hold",
                    errors=[FieldError("idempotency_key", "reused")],
                )
            return existing
    if store_id is not None:  # a hold is new business: only at an active store
        await ensure_store_trading(session, store_id)
    acct = await lock_account(session, member_id)
    now = utcnow()  # after the lock, so entries' times follow the lock order
    hold_id = uuid.uuid4()
    _, taken = await spend(
        session, acct, amount, kind="hold", cause_type="hold", cause_id=str(hold_id), now=now
    )
    acct.held += amount
    session.add(
        PointHold(
            id=hold_id,
            member_id=member_id,
            amount=amount,
            store_id=store_id,
            idempotency_key=idempotency_key,
            order_ref=order_ref,
            created_at=now,
            expires_at=now + timedelta(minutes=program.points.hold_timeout_minutes),
        )
    )
    await session.flush()
    await save(session, acct, now)
    await session.execute(
        insert(allocations),
        [
            {"tenant_id": tenant_id, "hold_id": hold_id, "lot_id": a.lot_id, "amount": a.amount}
            for a in taken
        ],
    )
    return await get_hold(session, hold_id)


async def get_hold(
    session: AsyncSession, hold_id: uuid.UUID, *, for_update: bool = False
) -> PointHold:
    stmt = select(PointHold).where(PointHold.id == hold_id)
    if for_update:
        stmt = stmt.with_for_update()
    found = await session.scalar(stmt.execution_options(populate_existing=True))
    if found is None:
        raise NotFound("no such hold")
    return found


def capture_into(
    acct: Account, held: PointHold, *, cause_type: str, cause_id: str, now: datetime
) -> None:
    """Turn a hold into a redemption: the held lots stay consumed (release + redeem)."""
    acct.entry("release", held.amount, "hold", str(held.id), now)
    acct.entry("redeem", -held.amount, cause_type, cause_id, now)
    acct.held -= held.amount
    held.status, held.resolved_at = "captured", now


async def resolve_hold(
    session: AsyncSession,
    hold_id: uuid.UUID,
    action: str,
    *,
    cause_type: str = "hold",
    cause_id: str | None = None,
) -> PointHold:
    """Capture or release a hold, exactly once. Repeating the same action is a no-op;
    the other action after resolution is a conflict."""
    peek = await get_hold(session, hold_id)
    acct = await lock_account(session, peek.member_id)  # account first, as everywhere
    held = await get_hold(session, hold_id, for_update=True)
    target = "captured" if action == "capture" else "released"
    if held.status == target:
        return held
    if held.status != "held":
        raise Conflict(
            f"the hold is already {held.status}",
            errors=[FieldError("hold_id", f"already {held.status}")],
        )
    now = utcnow()
    cause = cause_id or str(hold_id)
    if action == "capture":
        capture_into(acct, held, cause_type=cause_type, cause_id=cause, now=now)
        await save(session, acct, now)
        return held
    for lot_id, amount in (
        await session.execute(
            select(allocations.c.lot_id, allocations.c.amount).where(
                allocations.c.tenant_id == acct.tenant_id, allocations.c.hold_id == hold_id
            )
        )
    ).all():
        acct.lot_changes.append({"t": acct.tenant_id, "lot": lot_id, "delta": amount})
    acct.entry("release", held.amount, "hold", str(hold_id), now)
    acct.held -= held.amount
    held.status, held.resolved_at = target, now
    await save(session, acct, now)
    return held


# ------------------------------------------------------------------ HQ operations


async def adjust(
    session: AsyncSession,
    program: Program,
    member_id: uuid.UUID,
    amount: int,
    *,
    reason: str,
    actor: str,
    idempotency_key: str,
) -> dict[str, Any]:
    """Manual adjustment by HQ, with a reason and the actor; idempotent by key."""
    replay = await _replay(session, idempotency_key, ("adjust", member_id, amount))
    if replay is not None:
        return replay
    if amount == 0:
        raise Invalid.field("amount", "must not be zero")
    acct = await lock_account(session, member_id)
    now = utcnow()  # after the lock, so entries' times follow the lock order
    cause = str(uuid.uuid4())
    if amount > 0:
        entry = credit(
            acct,
            program,
            amount,
            kind="adjust",
            cause_type="adjust",
            cause_id=cause,
            now=now,
            source="adjust",
            reason=reason,
            actor=actor,
            idempotency_key=idempotency_key,
        )
    else:
        entry, _ = await spend(
            session,
            acct,
            -amount,
            kind="adjust",
            cause_type="adjust",
            cause_id=cause,
            now=now,
            field_name="amount",
            reason=reason,
            actor=actor,
            idempotency_key=idempotency_key,
        )
    await save(session, acct, now)
    return entry


async def transfer(
    session: AsyncSession,
    program: Program,
    from_id: uuid.UUID,
    to_id: uuid.UUID,
    amount: int,
    *,
    actor: str,
    idempotency_key: str,
) -> dict[str, Any]:
    """Move points within one family. Lots keep their expiry, so a transfer never extends
    the life of points."""
    from nestpoint.members.models import Member

    replay = await _replay(session, idempotency_key, ("transfer", from_id, -amount))
    if replay is not None:
        return replay
    if not program.points.family_transfer:
        raise Invalid.field("to_member_id", "this programme does not allow transfers")
    if from_id == to_id:
        raise Invalid.field("to_member_id", "cannot transfer to the same member")
    families = dict(
        (
            await session.execute(
                select(Member.id, Member.family_id).where(
                    Member.id.in_([from_id, to_id]), Member.status == "active"
                )
            )
        ).all()
    )
    if len(families) != 2:
        raise NotFound("no such member")
    if families[from_id] is None or families[from_id] != families[to_id]:
        raise Invalid.field("to_member_id", "transfers are only allowed within one family")
    first, second = sorted([from_id, to_id])
    locked = {
        first: await lock_account(session, first),
        second: await lock_account(session, second),
    }
    now = utcnow()
    source, target = locked[from_id], locked[to_id]
    cause = str(uuid.uuid4())
    entry, taken = await spend(
        session,
        source,
        amount,
        kind="transfer",
        cause_type="transfer",
        cause_id=cause,
        now=now,
        field_name="amount",
        actor=actor,
        idempotency_key=idempotency_key,
    )
    for allocation in taken:
        credit(
            target,
            program,
            allocation.amount,
            kind="transfer",
            cause_type="transfer",
            cause_id=cause,
            now=now,
            source="transfer",
            expires_at=allocation.expires_at,
            actor=actor,
        )
    await save(session, source, now)
    await save(session, target, now)
    return entry


async def move_all(session: AsyncSession, source_id: uuid.UUID, target_id: uuid.UUID) -> int:
    """Merge: the source's lots, holds and debt move to the target; returns points moved."""
    first, second = sorted([source_id, target_id])
    locked = {
        first: await lock_account(session, first),
        second: await lock_account(session, second),
    }
    now = utcnow()
    source, target = locked[source_id], locked[target_id]
    tenant_id = source.tenant_id
    await session.execute(
        update(lots)
        .where(lots.c.tenant_id == tenant_id, lots.c.member_id == source_id)
        .values(member_id=target_id)
    )
    await session.execute(
        update(holds)
        .where(holds.c.tenant_id == tenant_id, holds.c.member_id == source_id)
        .values(member_id=target_id)
    )
    moved = source.balance
    if moved:
        source.entry("transfer", -moved, "merge", str(target_id), now)
        target.entry("transfer", moved, "merge", str(source_id), now)
    target.debt += source.debt
    target.held += source.held
    target.lifetime_earned += source.lifetime_earned
    source.debt = source.held = 0
    await save(session, source, now)
    await save(session, target, now)
    return moved


async def _replay(
    session: AsyncSession, key: str, expected: tuple[str, uuid.UUID, int]
) -> dict[str, Any] | None:
    """The entry an earlier request with this idempotency key wrote, if any; a conflict
    when that entry is not the same (kind, member, amount)."""
    replay = await _entry_by_key(session, key)
    if replay is not None and (replay["kind"], replay["member_id"], replay["amount"]) != expected:
        raise Conflict(
            f"idempotency key reused with a different {expected[0]}",
            errors=[FieldError("idempotency_key", "reused")],
        )
    return replay


async def _entry_by_key(session: AsyncSession, key: str) -> dict[str, Any] | None:
    row = (
        (
            await session.execute(
                select(entries).where(
                    entries.c.tenant_id == require_tenant().tenant_id,
                    entries.c.idempotency_key == key,
                )
            )
        )
        .mappings()
        .one_or_none()
    )
    return dict(row) if row else None


# ------------------------------------------------------------------ reading


@dataclass(frozen=True, slots=True)
class Balances:
    balance: int
    available: int
    pending: int
    held: int
    debt: int
    expiring_soon: int
    expiring_before: datetime
    lifetime_earned: int


async def balances(session: AsyncSession, program: Program, member_id: uuid.UUID) -> Balances:
    tenant_id = require_tenant().tenant_id
    now = utcnow()
    soon = now + timedelta(days=program.points.expiring_soon_days)
    acct = (
        await session.execute(
            select(accounts).where(
                accounts.c.tenant_id == tenant_id, accounts.c.member_id == member_id
            )
        )
    ).one_or_none()
    if acct is None:
        raise NotFound("no such member")
    live = (
        (lots.c.tenant_id == tenant_id)
        & (lots.c.member_id == member_id)
        & (lots.c.remaining > 0)
        & (lots.c.expires_at > now)
    )
    row = (
        await session.execute(
            select(
                func.coalesce(func.sum(lots.c.remaining).filter(lots.c.available_at <= now), 0),
                func.coalesce(func.sum(lots.c.remaining).filter(lots.c.available_at > now), 0),
                func.coalesce(func.sum(lots.c.remaining).filter(lots.c.expires_at <= soon), 0),
            ).where(live)
        )
    ).one()
    return Balances(
        balance=acct.balance,
        available=int(row[0]),
        pending=int(row[1]),
        held=acct.held,
        debt=acct.debt,
        expiring_soon=int(row[2]),
        expiring_before=soon,
        lifetime_earned=acct.lifetime_earned,
    )


async def list_entries(
    session: AsyncSession, member_id: uuid.UUID, *, cursor: str | None, limit: int
) -> Page[PointEntry]:
    stmt = select(PointEntry).where(PointEntry.member_id == member_id)
    return await paginate(
        session, stmt, (PointEntry.created_at, PointEntry.id), cursor=cursor, limit=limit
    )
