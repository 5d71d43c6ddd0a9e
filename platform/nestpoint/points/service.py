"""The points ledger's rules. No HTTP; never commits.

Every change takes the member's account row ``FOR UPDATE`` first (one lock order everywhere:
accounts in member-id order, then member rows, then lots, holds and orders), computes in
Python with the lock held, and writes lots, entries and the account in bulk statements. So
per member, movements are serial, and the three views of a balance (account row, sum of
entries, sum of lots less debt) always agree.

Debt (clawback of points already spent) is repaid before points go back into any lot:
earning, a released hold, a merge, a transfer, points returned by a refund. So while there
is debt no lot has points left, ``balance == -debt``, and nothing can be spent.

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
from sqlalchemy.sql.dml import UpdateBase

from nestpoint.context import require_tenant
from nestpoint.db import utcnow
from nestpoint.db.base import table_of
from nestpoint.db.batch import WriteBatch
from nestpoint.db.pagination import Page, paginate
from nestpoint.errors import Conflict, FieldError, Invalid, NotFound
from nestpoint.events.service import emit
from nestpoint.idempotency import service as idempotency
from nestpoint.idempotency.service import Answer, fingerprint
from nestpoint.loyalty import rules
from nestpoint.loyalty.rules import Program
from nestpoint.members.models import Member
from nestpoint.points.models import (
    CauseType,
    EntryKind,
    HoldStatus,
    LotSource,
    PointAccount,
    PointEntry,
    PointHold,
    PointHoldAllocation,
    PointLot,
)
from nestpoint.points.schemas import EntryRead, HoldRead
from nestpoint.tenancy.service import ensure_store_trading

accounts = table_of(PointAccount)
lots = table_of(PointLot)
entries = table_of(PointEntry)
holds = table_of(PointHold)
allocations = table_of(PointHoldAllocation)


class InsufficientPoints(Invalid):
    title = "Not enough points"
    slug = "insufficient-points"


@dataclass(frozen=True, slots=True)
class LotChange:
    """Points taken from (negative) or put back into (positive) a lot, queued for ``save``."""

    lot_id: uuid.UUID
    delta: int


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
    lot_changes: list[LotChange] = field(default_factory=list)
    new_entries: list[dict[str, Any]] = field(default_factory=list)

    def repay_debt(self, amount: int) -> int:
        """Points coming back into lots repay debt first; returns what is left for lots.
        Every path that puts points back (credits, released holds) goes through here."""
        repay = min(amount, self.debt)
        self.debt -= repay
        return amount - repay

    def entry(
        self,
        kind: EntryKind,
        amount: int,
        cause_type: CauseType,
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


async def lock_account(
    session: AsyncSession, member_id: uuid.UUID, *, follow_merge: bool = True
) -> Account:
    """Lock a member's account. A member merged away (perhaps while this waited for the
    lock) leads to the account of the member it was merged into: ``Account.member_id`` is
    the member whose points move, which callers must use from here on."""
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
                accounts.c.merged_into_id,
                accounts.c.closed_at,
            )
            .where(accounts.c.tenant_id == tenant_id, accounts.c.member_id == member_id)
            .with_for_update()
        )
    ).one_or_none()
    if row is None:
        raise NotFound("no points account for this member")
    if row.merged_into_id is not None and follow_merge:
        return await lock_account(session, row.merged_into_id)
    if row.closed_at is not None and follow_merge:  # the member was erased
        raise NotFound("no such member")
    return Account(tenant_id, member_id, *row[:6])


async def lock_accounts(
    session: AsyncSession, member_ids: list[uuid.UUID], *, follow_merge: bool = True
) -> dict[uuid.UUID, Account]:
    """Lock several accounts in member-id order (the one order, so two never deadlock),
    keyed by the member asked for."""
    return {
        member_id: await lock_account(session, member_id, follow_merge=follow_merge)
        for member_id in sorted(set(member_ids))
    }


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
        deltas = _net_deltas(acct.lot_changes)  # one lot may change twice in a transaction
        if writes.postgres:
            writes.add(_lot_changes(len(deltas)), _lot_change_params(acct.tenant_id, deltas))
        else:
            writes.add(
                LOT_CHANGE,
                many=[
                    {"lot_tenant_id": acct.tenant_id, "lot_id": lot_id, "delta": delta}
                    for lot_id, delta in deltas.items()
                ],
            )
    if acct.new_entries:
        # The ledger lists by (created_at, id) and these entries share one moment: hand
        # them their ids in ascending order, so they list in the order they were made.
        ids = sorted(row["id"] for row in acct.new_entries)
        for row, entry_id in zip(acct.new_entries, ids, strict=True):
            row["id"] = entry_id
        writes.insert(entries, acct.new_entries)
    writes.add(
        ACCOUNT_TOTALS,
        {
            "account_tenant_id": acct.tenant_id,
            "account_member_id": acct.member_id,
            "account_balance": acct.balance,
            "account_debt": acct.debt,
            "account_held": acct.held,
            "account_lifetime_earned": acct.lifetime_earned,
            "account_earned_day": acct.earned_day,
            "account_earned_today": acct.earned_today,
            "account_updated_at": now,
        },
    )
    acct.new_lots, acct.lot_changes, acct.new_entries = [], [], []
    if own:
        await writes.execute()


# The statements ``save`` adds to a batch, built once with named parameters (see
# ``nestpoint.db.batch``): the account's totals, and the lots' remaining points.
ACCOUNT_TOTAL_COLUMNS = (
    "balance", "debt", "held", "lifetime_earned", "earned_day", "earned_today", "updated_at"
)  # fmt: skip
ACCOUNT_TOTALS = (
    update(accounts)
    .where(
        accounts.c.tenant_id == bindparam("account_tenant_id", type_=Uuid()),
        accounts.c.member_id == bindparam("account_member_id", type_=Uuid()),
    )
    .values(
        {
            name: bindparam(f"account_{name}", type_=accounts.c[name].type)
            for name in ACCOUNT_TOTAL_COLUMNS
        }
    )
)
LOT_CHANGE = (  # one lot (SQLite: run once per lot)
    update(lots)
    .where(lots.c.tenant_id == bindparam("lot_tenant_id"), lots.c.id == bindparam("lot_id"))
    .values(remaining=lots.c.remaining + bindparam("delta"))
)
_LOT_CHANGES: dict[int, UpdateBase] = {}


def _lot_changes(count: int) -> UpdateBase:
    """``UPDATE point_lots ... FROM (VALUES ...)`` for ``count`` lots (PostgreSQL), built
    once per count."""
    statement = _LOT_CHANGES.get(count)
    if statement is None:
        rows = [
            (
                bindparam(f"lot_change_{i}_id", type_=Uuid()),
                bindparam(f"lot_change_{i}_delta", type_=BigInteger()),
            )
            for i in range(count)
        ]
        changes = values(
            column("lot_id", Uuid()), column("delta", BigInteger()), name="lot_changes"
        ).data(rows)
        statement = _LOT_CHANGES[count] = (
            update(lots)
            .where(
                lots.c.tenant_id == bindparam("lot_change_tenant_id", type_=Uuid()),
                lots.c.id == changes.c.lot_id,
            )
            .values(remaining=lots.c.remaining + changes.c.delta)
        )
    return statement


def _lot_change_params(tenant_id: uuid.UUID, deltas: dict[uuid.UUID, int]) -> dict[str, Any]:
    params: dict[str, Any] = {"lot_change_tenant_id": tenant_id}
    for i, (lot_id, delta) in enumerate(deltas.items()):
        params[f"lot_change_{i}_id"], params[f"lot_change_{i}_delta"] = lot_id, delta
    return params


def _net_deltas(changes: list[LotChange]) -> dict[uuid.UUID, int]:
    """Each lot's net change (in the order the lots were first touched)."""
    deltas: dict[uuid.UUID, int] = {}
    for change in changes:
        deltas[change.lot_id] = deltas.get(change.lot_id, 0) + change.delta
    return deltas


# ------------------------------------------------------------------ credits


@dataclass(frozen=True, slots=True)
class Credit:
    """Points going into an account as a new lot, and the ledger entry that says why.

    ``pending`` lots become spendable after the programme's pending period; ``expires_at``
    defaults to the programme's expiry for points earned now (a transfer keeps the lot's).
    """

    amount: int
    kind: EntryKind
    cause_type: CauseType
    cause_id: str
    source: LotSource
    order_id: uuid.UUID | None = None
    line_no: int | None = None
    expires_at: datetime | None = None
    pending: bool = False
    reason: str = ""
    actor: str = ""
    idempotency_key: str | None = None


def credit(acct: Account, program: Program, what: Credit, now: datetime) -> dict[str, Any]:
    """Credit ``what.amount`` as a new lot; debt from earlier clawbacks is repaid first."""
    if what.amount < 0:
        raise ValueError("credit amount must be >= 0")
    remaining = acct.repay_debt(what.amount)
    lot_id = uuid.uuid4()
    acct.new_lots.append(
        {
            "tenant_id": acct.tenant_id,
            "id": lot_id,
            "member_id": acct.member_id,
            "amount": what.amount,
            "remaining": remaining,
            "source": what.source,
            "order_id": what.order_id,
            "line_no": what.line_no,
            "earned_at": now,
            "available_at": rules.available_at(program.points, now) if what.pending else now,
            "expires_at": what.expires_at or rules.expires_at(program, now),
        }
    )
    return acct.entry(
        what.kind,
        what.amount,
        what.cause_type,
        what.cause_id,
        now,
        lot_id=lot_id,
        line_no=what.line_no,
        reason=what.reason,
        actor=what.actor,
        idempotency_key=what.idempotency_key,
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


async def available(session: AsyncSession, acct: Account, now: datetime) -> int:
    """Points the member could spend now (none while there is debt)."""
    if acct.debt > 0:
        return 0
    return sum(remaining for _, remaining, _ in await _spendable_lots(session, acct, now))


def _take(
    acct: Account, candidates: list[tuple[uuid.UUID, int, datetime]], amount: int
) -> tuple[list[Allocation], int]:
    """Which lots give ``amount`` in order, and how much is short.

    Lot changes queued earlier in this transaction are not in the database yet (``save``
    writes them), so each candidate's remainder is read net of them.
    """
    queued = _net_deltas(acct.lot_changes)
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
    acct.lot_changes.extend(LotChange(a.lot_id, -a.amount) for a in taken)


def restore(acct: Account, lot_id: uuid.UUID, amount: int) -> None:
    """Put ``amount`` back into a lot (a released hold); debt is repaid first."""
    remaining = acct.repay_debt(amount)
    if remaining:
        acct.lot_changes.append(LotChange(lot_id, remaining))


async def settle_debt(session: AsyncSession, acct: Account) -> int:
    """Let the account's lots pay its debt, soonest-expiring first (after a merge brought
    debt and lots together). The balance does not change: lots and debt fall together.
    Returns the points settled."""
    if acct.debt <= 0:
        return 0
    taken, _ = _take(acct, await _clawback_lots(session, acct, None, None), acct.debt)
    _consume(acct, taken)
    settled = sum(a.amount for a in taken)
    acct.debt -= settled
    return settled


async def spend(
    session: AsyncSession,
    acct: Account,
    amount: int,
    *,
    kind: EntryKind,
    cause_type: CauseType,
    cause_id: str,
    now: datetime,
    field_name: str = "points",
    reason: str = "",
    actor: str = "",
    idempotency_key: str | None = None,
) -> tuple[dict[str, Any], list[Allocation]]:
    """Take ``amount`` available points, soonest-to-expire first; never goes below zero
    and never takes more than is available (nothing while there is debt)."""
    if amount <= 0:
        raise Invalid.field(field_name, "must be a positive number of points")
    if acct.debt > 0:  # no lot has points left while there is debt; say so without a query
        raise InsufficientPoints(
            f"{field_name}: {amount} points asked, 0 available (the member owes {acct.debt})",
            errors=[FieldError(field_name, "no points available")],
        )
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
    cause_type: CauseType,
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
) -> Answer[HoldRead]:
    """Set points aside at scan; an order naming the hold captures it, a release (or the
    timeout) returns the points. Idempotent by ``idempotency_key`` when one is given."""
    tenant_id = require_tenant().tenant_id
    acct = await lock_account(session, member_id)
    request = fingerprint(
        {
            "kind": "hold",
            "member": member_id,
            "points": amount,
            "order_ref": order_ref,
            "store": store_id,
        }
    )
    if idempotency_key:
        earlier = await idempotency.replay(
            session, idempotency.REQUEST, idempotency_key, request, field="idempotency_key"
        )
        if earlier is not None:
            return earlier
    if store_id is not None:  # a hold is new business: only at an active store
        await ensure_store_trading(session, store_id)
    now = utcnow()  # after the lock, so entries' times follow the lock order
    hold_id = uuid.uuid4()
    _, taken = await spend(
        session, acct, amount, kind="hold", cause_type="hold", cause_id=str(hold_id), now=now
    )
    acct.held += amount
    held = PointHold(
        id=hold_id,
        member_id=acct.member_id,
        amount=amount,
        store_id=store_id,
        status="held",
        idempotency_key=idempotency_key,
        order_ref=order_ref,
        created_at=now,
        expires_at=now + timedelta(minutes=program.points.hold_timeout_minutes),
        resolved_at=None,
    )
    session.add(held)
    await session.flush()
    await save(session, acct, now)
    await session.execute(
        insert(allocations),
        [
            {"tenant_id": tenant_id, "hold_id": hold_id, "lot_id": a.lot_id, "amount": a.amount}
            for a in taken
        ],
    )
    answer = idempotency.created(HoldRead.model_validate(held))  # as written: no re-read
    if idempotency_key:
        await idempotency.record(
            session, idempotency.REQUEST, idempotency_key, request, answer, field="idempotency_key"
        )
    return answer


async def get_hold(
    session: AsyncSession, hold_id: uuid.UUID, *, for_update: bool = False
) -> PointHold:
    """A hold; a store key sees only the holds made at its own store."""
    stmt = select(PointHold).where(PointHold.id == hold_id)
    store_id = require_tenant().store_id
    if store_id is not None:
        stmt = stmt.where(PointHold.store_id == store_id)
    if for_update:
        stmt = stmt.with_for_update()
    found = await session.scalar(stmt.execution_options(populate_existing=True))
    if found is None:
        raise NotFound("no such hold")
    return found


def capture_into(
    acct: Account, held: PointHold, *, cause_type: CauseType, cause_id: str, now: datetime
) -> None:
    """Turn a hold into a redemption: the held lots stay consumed (release + redeem)."""
    acct.entry("release", held.amount, "hold", str(held.id), now)
    acct.entry("redeem", -held.amount, cause_type, cause_id, now)
    acct.held -= held.amount
    held.status, held.resolved_at = "captured", now


async def release_hold(session: AsyncSession, hold_id: uuid.UUID) -> PointHold:
    """Release a hold, exactly once: its points go back to their lots (debt first).
    Releasing again is a no-op; releasing a captured hold is a conflict."""
    peek = await get_hold(session, hold_id)
    acct = await lock_account(session, peek.member_id)  # account first, as everywhere
    held = await get_hold(session, hold_id, for_update=True)
    if held.status == "released":
        return held
    if held.status != "held":
        raise Conflict(
            f"the hold is already {held.status}",
            errors=[FieldError("hold_id", f"already {held.status}")],
        )
    now = utcnow()
    for lot_id, amount in (
        await session.execute(
            select(allocations.c.lot_id, allocations.c.amount).where(
                allocations.c.tenant_id == acct.tenant_id, allocations.c.hold_id == hold_id
            )
        )
    ).all():
        restore(acct, lot_id, amount)
    acct.entry("release", held.amount, "hold", str(hold_id), now)
    acct.held -= held.amount
    held.status, held.resolved_at = "released", now
    await save(session, acct, now)
    return held


# ------------------------------------------------------------------ HQ operations


async def grant_bonus(
    session: AsyncSession,
    program: Program,
    member_id: uuid.UUID,
    amount: int,
    *,
    cause_type: CauseType,
    cause_id: str,
    reason: str,
    now: datetime,
    actor: str = "",
) -> Account:
    """Points the programme gives (a referral's reward, a campaign's grant): a new lot of
    kind ``bonus`` that no refund takes back, and a ``points.earned`` event. The caller
    makes it once per cause (its own row, locked or unique)."""
    acct = await lock_account(session, member_id)
    credit(
        acct,
        program,
        Credit(amount, kind="bonus", cause_type=cause_type, cause_id=cause_id, source="earn",
               reason=reason[:200], actor=actor),
        now,
    )  # fmt: skip
    await save(session, acct, now)
    emit(
        session,
        "points.earned",
        "member",
        acct.member_id,
        {
            "member_id": str(acct.member_id),
            "order_id": None,
            "points": amount,
            "balance": acct.balance,
            "cause": f"{cause_type}:{cause_id}",
        },
    )
    return acct


async def adjust(
    session: AsyncSession,
    program: Program,
    member_id: uuid.UUID,
    amount: int,
    *,
    reason: str,
    actor: str,
    idempotency_key: str,
) -> Answer[EntryRead]:
    """Manual adjustment by HQ, with a reason and the actor; idempotent by key."""
    if amount == 0:
        raise Invalid.field("amount", "must not be zero")
    acct = await lock_account(session, member_id)
    request = fingerprint(
        {"kind": "adjust", "member": member_id, "amount": amount, "reason": reason}
    )
    earlier = await idempotency.replay(
        session, idempotency.REQUEST, idempotency_key, request, field="idempotency_key"
    )
    if earlier is not None:
        return earlier
    now = utcnow()  # after the lock, so entries' times follow the lock order
    cause = str(uuid.uuid4())
    if amount > 0:
        entry = credit(
            acct,
            program,
            Credit(
                amount,
                kind="adjust",
                cause_type="adjust",
                cause_id=cause,
                source="adjust",
                reason=reason,
                actor=actor,
                idempotency_key=idempotency_key,
            ),
            now,
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
    emit(
        session,
        "points.adjusted",
        "member",
        acct.member_id,
        {
            "member_id": str(acct.member_id),
            "points": amount,
            "balance": acct.balance,
            "reason": reason,
        },
    )
    answer = idempotency.created(EntryRead.model_validate(entry))
    return await idempotency.record(
        session, idempotency.REQUEST, idempotency_key, request, answer, field="idempotency_key"
    )


async def transfer(
    session: AsyncSession,
    program: Program,
    from_id: uuid.UUID,
    to_id: uuid.UUID,
    amount: int,
    *,
    actor: str,
    idempotency_key: str,
) -> Answer[EntryRead]:
    """Move points within one family. Lots keep their expiry, so a transfer never extends
    the life of points; the receiver's debt is repaid first."""
    if not program.points.family_transfer:
        raise Invalid.field("to_member_id", "this programme does not allow transfers")
    if from_id == to_id:
        raise Invalid.field("to_member_id", "cannot transfer to the same member")
    locked = await lock_accounts(session, [from_id, to_id])
    source, target = locked[from_id], locked[to_id]
    request = fingerprint({"kind": "transfer", "from": from_id, "to": to_id, "amount": amount})
    earlier = await idempotency.replay(
        session, idempotency.REQUEST, idempotency_key, request, field="idempotency_key"
    )
    if earlier is not None:
        return earlier
    await _check_same_family(session, source.member_id, target.member_id)
    now = utcnow()
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
            Credit(
                allocation.amount,
                kind="transfer",
                cause_type="transfer",
                cause_id=cause,
                source="transfer",
                expires_at=allocation.expires_at,
                actor=actor,
            ),
            now,
        )
    await save(session, source, now)
    await save(session, target, now)
    answer = idempotency.created(EntryRead.model_validate(entry))
    return await idempotency.record(
        session, idempotency.REQUEST, idempotency_key, request, answer, field="idempotency_key"
    )


async def _check_same_family(session: AsyncSession, from_id: uuid.UUID, to_id: uuid.UUID) -> None:
    if from_id == to_id:  # one of them was merged into the other
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


async def move_all(session: AsyncSession, source: Account, target: Account) -> int:
    """Merge: the source's lots, holds and debt move to the target (both accounts locked
    by the caller), whose lots then pay the debt; the source's account is marked merged so
    a till waiting on it follows to the target. Returns the points moved."""
    now = utcnow()
    tenant_id = source.tenant_id
    await session.execute(
        update(lots)
        .where(lots.c.tenant_id == tenant_id, lots.c.member_id == source.member_id)
        .values(member_id=target.member_id)
    )
    await session.execute(
        update(holds)
        .where(holds.c.tenant_id == tenant_id, holds.c.member_id == source.member_id)
        .values(member_id=target.member_id)
    )
    moved = source.balance
    if moved:
        source.entry("transfer", -moved, "merge", str(target.member_id), now)
        target.entry("transfer", moved, "merge", str(source.member_id), now)
    target.debt += source.debt
    target.held += source.held
    target.lifetime_earned += source.lifetime_earned
    source.debt = source.held = 0
    await settle_debt(session, target)
    await save(session, source, now)
    await save(session, target, now)
    await session.execute(
        update(accounts)
        .where(accounts.c.tenant_id == tenant_id, accounts.c.member_id == source.member_id)
        .values(merged_into_id=target.member_id)
    )
    return moved


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


async def list_holds(
    session: AsyncSession,
    *,
    cursor: str | None,
    limit: int,
    member_id: uuid.UUID | None = None,
    status: HoldStatus | None = None,
    store_id: uuid.UUID | None = None,
) -> Page[PointHold]:
    """Holds newest first, by member, status and store (the caller resolves the store: a
    store key's is always its own, see ``orders.service.listed_store``)."""
    stmt = select(PointHold)
    if member_id is not None:
        stmt = stmt.where(PointHold.member_id == member_id)
    if status is not None:
        stmt = stmt.where(PointHold.status == status)
    if store_id is not None:
        stmt = stmt.where(PointHold.store_id == store_id)
    return await paginate(
        session,
        stmt,
        (PointHold.created_at, PointHold.id),
        cursor=cursor,
        limit=limit,
        descending=True,
    )
