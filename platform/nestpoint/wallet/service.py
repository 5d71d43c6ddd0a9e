"""Stored value (储值): top-ups with the chain's bonus, spending as an order's tender,
refunds back to the balance, adjustments, merges, and the liability report. No HTTP; never
commits.

Every change locks the member's points account first (``points.lock_account``, which follows
a merged-away member to the survivor and refuses an erased one), then the wallet account:
the one lock order of the ledgers, so a top-up, an order and a merge never deadlock and two
spends of one member run one after the other (no overdraft). An order locks the points
account with the member (``orders.service.lock_member``) and calls :func:`plan_spend` next.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.audit.service import record as audit
from nestpoint.context import current_actor, require_tenant
from nestpoint.db import utcnow
from nestpoint.db.pagination import Page, paginate
from nestpoint.errors import Invalid, NotFound
from nestpoint.events.service import emit
from nestpoint.idempotency import service as idempotency
from nestpoint.idempotency.service import Answer, fingerprint
from nestpoint.members.service import get_member_in_reach
from nestpoint.payments import service as payments
from nestpoint.payments.models import Payment
from nestpoint.payments.registry import PaymentHandlers, register_purpose
from nestpoint.points import service as points
from nestpoint.tenancy.models import Store, Tenant
from nestpoint.tenancy.service import selling_store
from nestpoint.wallet.models import (
    Bucket,
    WalletAccount,
    WalletCause,
    WalletEntry,
    WalletEntryKind,
    WalletLot,
    WalletRulesRow,
    WalletTopup,
)
from nestpoint.wallet.schemas import (
    Liability,
    StoreLiability,
    TopupIn,
    TopupRead,
    TopupResult,
    WalletAdjustmentIn,
    WalletEntryRead,
    WalletRead,
    WalletRules,
)


class InsufficientStoredValue(Invalid):
    title = "Not enough stored value"
    slug = "insufficient-stored-value"


# ------------------------------------------------------------------ rules


async def get_rules(session: AsyncSession) -> WalletRules:
    row = await session.get(WalletRulesRow, require_tenant().tenant_id)
    if row is None:
        return WalletRules()
    return WalletRules.model_validate(
        {"bonus_tiers": row.bonus_tiers, "bonus_valid_days": row.bonus_valid_days}
    )


async def put_rules(session: AsyncSession, rules: WalletRules) -> WalletRules:
    """Replace the chain's rules; audited when they change (the same body changes nothing)."""
    tenant_id = require_tenant().tenant_id
    row = await session.get(WalletRulesRow, tenant_id, with_for_update=True)
    before = (await get_rules(session)).model_dump()
    after = rules.model_dump()
    if row is None:
        row = WalletRulesRow(tenant_id=tenant_id)
        session.add(row)
    row.bonus_tiers, row.bonus_valid_days = after["bonus_tiers"], after["bonus_valid_days"]
    changed = {k: [before[k], v] for k, v in after.items() if before[k] != v}
    if changed:
        audit(session, "wallet.rules_put", "wallet_rules", tenant_id, changed)
    await session.flush()
    return rules


def bonus_for(rules: WalletRules, amount_fen: int) -> int:
    """The bonus a top-up of ``amount_fen`` gets (pure): the highest tier it reaches."""
    reached = [t.bonus_fen for t in rules.bonus_tiers if amount_fen >= t.threshold_fen]
    return reached[-1] if reached else 0


# ------------------------------------------------------------------ accounts and entries


async def lock_wallet(session: AsyncSession, member_id: uuid.UUID) -> WalletAccount | None:
    """The member's wallet account, locked (after their points account), or None."""
    return await session.scalar(
        select(WalletAccount)
        .where(WalletAccount.member_id == member_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def open_wallet(session: AsyncSession, member_id: uuid.UUID) -> WalletAccount:
    """The member's wallet account, locked; made on first use (under the points account's
    lock, so two first top-ups never both make it)."""
    account = await lock_wallet(session, member_id)
    if account is None:
        account = WalletAccount(member_id=member_id, principal_fen=0, bonus_fen=0)
        session.add(account)
        await session.flush()
    return account


@dataclass(frozen=True, slots=True)
class Note:
    """What an entry says beside its amounts: the tender, the client's key, why and who."""

    tender: str | None = None
    key: str | None = None
    reason: str = ""
    actor: str = ""


def _entry(
    session: AsyncSession,
    account: WalletAccount,
    kind: WalletEntryKind,
    principal: int,
    bonus: int,
    cause_type: WalletCause,
    cause_id: str,
    now: datetime,
    *,
    store_id: uuid.UUID | None = None,
    note: Note = Note(),
    entry_id: uuid.UUID | None = None,
) -> WalletEntry:
    """Move the account's totals and append the entry saying so."""
    account.principal_fen += principal
    account.bonus_fen += bonus
    account.updated_at = now
    entry = WalletEntry(
        id=entry_id or uuid.uuid4(),
        member_id=account.member_id,
        kind=kind,
        principal_fen=principal,
        bonus_fen=bonus,
        principal_after=account.principal_fen,
        bonus_after=account.bonus_fen,
        cause_type=cause_type,
        cause_id=cause_id,
        store_id=store_id,
        tender=note.tender,
        idempotency_key=note.key,
        reason=note.reason,
        actor=note.actor[:100],
        created_at=now,
    )
    session.add(entry)
    return entry


def _lot(
    session: AsyncSession,
    member_id: uuid.UUID,
    bucket: Bucket,
    amount: int,
    store_id: uuid.UUID | None,
    now: datetime,
    expires_at: datetime | None = None,
) -> None:
    if amount > 0:
        session.add(
            WalletLot(
                id=uuid.uuid4(),
                member_id=member_id,
                bucket=bucket,
                store_id=store_id,
                amount=amount,
                remaining=amount,
                created_at=now,
                expires_at=expires_at,
            )
        )


def credit(
    session: AsyncSession,
    account: WalletAccount,
    kind: WalletEntryKind,
    principal: int,
    bonus: int,
    cause_type: WalletCause,
    cause_id: str,
    now: datetime,
    *,
    store_id: uuid.UUID | None,
    note: Note = Note(),
    entry_id: uuid.UUID | None = None,
    bonus_expires_at: datetime | None = None,
) -> WalletEntry:
    """Put money into the member's wallet: a lot per bucket, at ``store_id``, and the entry."""
    _lot(session, account.member_id, "principal", principal, store_id, now)
    _lot(session, account.member_id, "bonus", bonus, store_id, now, bonus_expires_at)
    return _entry(session, account, kind, principal, bonus, cause_type, cause_id, now,
                  store_id=store_id, note=note, entry_id=entry_id)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Taken:
    lot: WalletLot
    amount: int


@dataclass(slots=True)
class Spend:
    """Stored value an order (or a debit) takes, worked out under the lock, not yet written:
    the principal first, then the bonus, and from which lots."""

    account: WalletAccount
    principal: int
    bonus: int
    taken: list[Taken] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.principal + self.bonus


def _spend_order(lot: WalletLot) -> tuple[bool, bool, datetime, datetime, uuid.UUID]:
    """Principal first (oldest first); bonus last, soonest to expire first."""
    expires = lot.expires_at or lot.created_at
    return (lot.bucket != "principal", lot.expires_at is None, expires, lot.created_at, lot.id)


def take(lots: Sequence[WalletLot], bucket: Bucket, amount: int) -> list[Taken]:
    """``amount`` of ``bucket`` from ``lots`` in spending order (pure)."""
    taken = []
    for lot in sorted((lot for lot in lots if lot.bucket == bucket), key=_spend_order):
        if amount == 0:
            break
        part = min(amount, lot.remaining)
        if part > 0:
            taken.append(Taken(lot, part))
            amount -= part
    assert amount == 0, "the lots hold less than the account says"
    return taken


def _expired(lot: WalletLot, now: datetime) -> bool:
    return lot.bucket == "bonus" and lot.expires_at is not None and lot.expires_at <= now


async def _open_lots(session: AsyncSession, member_id: uuid.UUID) -> list[WalletLot]:
    rows = await session.scalars(
        select(WalletLot)
        .where(WalletLot.member_id == member_id, WalletLot.remaining > 0)
        .execution_options(populate_existing=True)
    )
    return list(rows.all())


async def plan_spend(
    session: AsyncSession,
    member_id: uuid.UUID,
    amount: int,
    *,
    field_name: str,
    principal: int | None = None,
) -> Spend:
    """Lock the member's wallet (the points account is locked already) and work out what
    paying ``amount`` takes: principal first, then bonus (or, for a debit, ``principal`` of
    it from the principal and the rest from the bonus). Too little: 422 naming
    ``field_name``. Writes nothing: :func:`book_spend` does, once the caller may write."""
    account = await lock_wallet(session, member_id)
    lots = await _open_lots(session, member_id) if account else []
    usable = [lot for lot in lots if not _expired(lot, utcnow())]
    have_p = account.principal_fen if account else 0
    # Bonus past its date is no longer spendable, even before the job takes it back.
    have_b = (account.bonus_fen if account else 0) - sum(
        lot.remaining for lot in lots if lot not in usable
    )
    if principal is None:
        principal = min(amount, have_p)
    bonus = amount - principal
    if account is None or principal > have_p or bonus > have_b:
        raise InsufficientStoredValue.field(
            field_name,
            f"the member has {have_p} fen of principal and {have_b} fen of bonus stored value",
        )
    taken = take(usable, "principal", principal) + take(usable, "bonus", bonus)
    return Spend(account, principal, bonus, taken)


def book_spend(
    session: AsyncSession,
    spend: Spend,
    kind: WalletEntryKind,
    cause_type: WalletCause,
    cause_id: str,
    now: datetime,
    *,
    store_id: uuid.UUID | None,
    note: Note = Note(),
) -> WalletEntry:
    """Write a planned spend: the lots it takes and the entry."""
    for t in spend.taken:
        t.lot.remaining -= t.amount
    return _entry(session, spend.account, kind, -spend.principal, -spend.bonus, cause_type,
                  cause_id, now, store_id=store_id, note=note)  # fmt: skip


# ------------------------------------------------------------------ top-ups and adjustments


async def _store(session: AsyncSession, code: str | None) -> uuid.UUID:
    """The store money comes in at (an HQ key must name one)."""
    store_id = await selling_store(session, code, required=True, doing="tops up")
    assert store_id is not None
    return store_id


def _topup_request(member_id: uuid.UUID, data: TopupIn) -> str:
    body = data.model_dump()
    if body["payment_method"] is None:  # cash top-ups fingerprint as before Stripe existed
        del body["payment_method"]
    return fingerprint({"kind": "wallet.topup", "member": member_id} | body)


def _check_tender(data: TopupIn) -> None:
    if data.tender == "stripe" and data.payment_method is None:
        raise Invalid.field("payment_method", "required with tender `stripe`")
    if data.tender == "cash" and data.payment_method is not None:
        raise Invalid.field("payment_method", "only with tender `stripe`")


def _credit_topup(
    session: AsyncSession,
    account: WalletAccount,
    topup_id: uuid.UUID,
    amount: int,
    bonus: int,
    store_id: uuid.UUID,
    note: Note,
    valid_days: int | None,
) -> datetime:
    """The top-up's principal (its entry's id is the top-up's) and the bonus promised,
    spendable for ``valid_days`` when the chain's rule says so; audited and announced."""
    now = utcnow()
    credit(session, account, "topup", amount, 0, "topup", str(topup_id), now,
           store_id=store_id, note=note, entry_id=topup_id)  # fmt: skip
    if bonus:
        until = now + timedelta(days=valid_days) if valid_days else None
        credit(session, account, "bonus", 0, bonus, "topup", str(topup_id), now,
               store_id=store_id, note=note, bonus_expires_at=until)  # fmt: skip
    holder = account.member_id
    payload = {"member_id": str(holder), "amount_fen": amount, "bonus_fen": bonus,
               "tender": note.tender, "store_id": str(store_id)}  # fmt: skip
    audit(session, "wallet.topup", "member", holder, payload | {"entry_id": str(topup_id)})
    emit(session, "wallet.topped_up", "member", holder, payload, store_id=store_id)
    return now


async def top_up(session: AsyncSession, member_id: uuid.UUID, data: TopupIn) -> Answer[TopupResult]:
    """Money paid in against ``data.tender``, with the chain's bonus: cash at the till is
    credited at once; a Stripe payment is asked for and credited when it succeeds
    (:func:`_stripe_paid`). Idempotent by ``idempotency_key``; audited."""
    _check_tender(data)
    member = await get_member_in_reach(session, member_id, active=True)
    store_id = await _store(session, data.store_code)
    holder = (await points.lock_account(session, member.id)).member_id  # the one lock order
    request = _topup_request(member_id, data)
    key = data.idempotency_key
    earlier = await idempotency.replay(
        session, idempotency.REQUEST, key, request, field="idempotency_key"
    )
    if earlier is not None:
        return earlier
    rules = await get_rules(session)
    bonus = bonus_for(rules, data.amount_fen)
    account = await open_wallet(session, holder)
    topup_id = uuid.uuid4()
    actor = current_actor().name or str(current_actor().key_id or "")
    note = Note(tender=data.tender, key=key, actor=actor)
    payment_id = None
    if data.tender == "stripe":
        payment_id = await _ask_stripe(session, holder, topup_id, store_id, data, bonus, note)
        now = utcnow()
    else:
        now = _credit_topup(session, account, topup_id, data.amount_fen, bonus, store_id, note,
                            rules.bonus_valid_days)  # fmt: skip
    result = TopupResult(
        entry_id=topup_id,
        member_id=holder,
        store_id=store_id,
        tender=data.tender,
        status="pending" if payment_id else "credited",
        payment_id=payment_id,
        amount_fen=data.amount_fen,
        bonus_fen=bonus,
        principal_fen=account.principal_fen,
        bonus_balance_fen=account.bonus_fen,
        created_at=now,
    )
    answer = idempotency.created(result)
    return await idempotency.record(
        session, idempotency.REQUEST, key, request, answer, field="idempotency_key"
    )


# ------------------------------------------------------------------ top-ups through Stripe

STRIPE_TOPUP = "wallet_topup"


async def _ask_stripe(
    session: AsyncSession,
    holder: uuid.UUID,
    topup_id: uuid.UUID,
    store_id: uuid.UUID,
    data: TopupIn,
    bonus: int,
    note: Note,
) -> uuid.UUID:
    """Record the pending top-up and ask for its payment, in this transaction."""
    currency = await session.scalar(
        select(Tenant.currency).where(Tenant.id == require_tenant().tenant_id)
    )
    topup = WalletTopup(id=topup_id, member_id=holder, store_id=store_id,
                        amount_fen=data.amount_fen, bonus_fen=bonus,
                        idempotency_key=data.idempotency_key, actor=note.actor[:100])  # fmt: skip
    session.add(topup)
    await session.flush()
    payment = await payments.request_payment(
        session, purpose=STRIPE_TOPUP, subject_id=topup_id, amount_fen=data.amount_fen,
        currency=currency or "CNY", member_id=holder, payment_method=data.payment_method,
        store_id=store_id, description="stored value top-up",
    )  # fmt: skip
    await session.execute(
        update(WalletTopup).where(WalletTopup.id == topup_id).values(payment_id=payment.id)
    )
    audit(session, "wallet.topup_requested", "member", holder,
          {"topup_id": str(topup_id), "amount_fen": data.amount_fen, "bonus_fen": bonus,
           "payment_id": str(payment.id)})  # fmt: skip
    return payment.id


async def _stripe_paid(session: AsyncSession, payment: Payment) -> None:
    """The payment succeeded: credit the top-up, once (its row locked after the ledgers'
    accounts; a top-up we had marked failed is credited all the same: the money came)."""
    topup = await session.scalar(select(WalletTopup).where(WalletTopup.id == payment.subject_id))
    if topup is None or topup.status == "credited":
        return
    holder = (await points.lock_account(session, topup.member_id)).member_id
    account = await open_wallet(session, holder)
    topup = await session.scalar(
        select(WalletTopup).where(WalletTopup.id == payment.subject_id).with_for_update()
    )
    if topup is None or topup.status == "credited":
        return
    note = Note(tender="stripe", key=topup.idempotency_key, actor=topup.actor)
    valid_days = (await get_rules(session)).bonus_valid_days  # the rule when it is credited
    topup.settled_at = _credit_topup(
        session,
        account,
        topup.id,
        topup.amount_fen,
        topup.bonus_fen,
        topup.store_id,
        note,
        valid_days,
    )
    topup.status = "credited"


async def _stripe_failed(session: AsyncSession, payment: Payment) -> None:
    topup = await session.scalar(
        select(WalletTopup).where(WalletTopup.id == payment.subject_id).with_for_update()
    )
    if topup is not None and topup.status == "pending":
        topup.status, topup.settled_at = "failed", utcnow()
        audit(session, "wallet.topup_failed", "member", topup.member_id,
              {"topup_id": str(topup.id), "failure": payment.failure})  # fmt: skip


register_purpose(STRIPE_TOPUP, PaymentHandlers(succeeded=_stripe_paid, failed=_stripe_failed))


async def get_topup(session: AsyncSession, member_id: uuid.UUID, topup_id: uuid.UUID) -> TopupRead:
    """A top-up paid through Stripe, with its state."""
    await get_member_in_reach(session, member_id)
    topup = await session.scalar(
        select(WalletTopup).where(WalletTopup.id == topup_id, WalletTopup.member_id == member_id)
    )
    if topup is None:
        raise NotFound(f"no Stripe top-up {topup_id} for this member")
    return TopupRead.model_validate(topup)


async def adjust(
    session: AsyncSession, member_id: uuid.UUID, data: WalletAdjustmentIn
) -> Answer[WalletEntryRead]:
    """HQ by hand: principal and bonus each credited (+) or debited (-), with a reason and
    the actor; a debit never takes a balance below zero (422). Idempotent by key; audited."""
    if data.principal_fen == 0 and data.bonus_fen == 0:
        raise Invalid.field("principal_fen", "give principal_fen or bonus_fen other than 0")
    member = await get_member_in_reach(session, member_id, active=True)
    store_id = None if data.store_code is None else await _store(session, data.store_code)
    holder = (await points.lock_account(session, member.id)).member_id
    request = fingerprint({"kind": "wallet.adjust", "member": member_id} | data.model_dump())
    key = data.idempotency_key
    earlier = await idempotency.replay(
        session, idempotency.REQUEST, key, request, field="idempotency_key"
    )
    if earlier is not None:
        return earlier
    now = utcnow()
    actor = current_actor().name or str(current_actor().key_id or "")
    cause = str(uuid.uuid4())
    note = Note(key=key, reason=data.reason, actor=actor)
    debit_p, debit_b = max(0, -data.principal_fen), max(0, -data.bonus_fen)
    account = await open_wallet(session, holder)
    entries = []
    if debit_p or debit_b:
        field_name = "principal_fen" if debit_p > account.principal_fen else "bonus_fen"
        spend = await plan_spend(session, holder, debit_p + debit_b, field_name=field_name,
                                 principal=debit_p)  # fmt: skip
        entries.append(book_spend(session, spend, "adjust", "adjust", cause, now,
                                  store_id=store_id, note=note))  # fmt: skip
    credit_p, credit_b = max(0, data.principal_fen), max(0, data.bonus_fen)
    if credit_p or credit_b:
        entries.append(credit(session, account, "adjust", credit_p, credit_b, "adjust", cause,
                              now, store_id=store_id, note=note))  # fmt: skip
    audit(session, "wallet.adjust", "member", holder,
          {"principal_fen": data.principal_fen, "bonus_fen": data.bonus_fen,
           "reason": data.reason})  # fmt: skip
    emit(session, "wallet.adjusted", "member", holder,
         {"member_id": str(holder), "principal_fen": data.principal_fen,
          "bonus_fen": data.bonus_fen, "reason": data.reason})  # fmt: skip
    await session.flush()
    answer = idempotency.created(WalletEntryRead.model_validate(entries[-1]))
    return await idempotency.record(
        session, idempotency.REQUEST, key, request, answer, field="idempotency_key"
    )


# ------------------------------------------------------------------ merges


async def move_all(
    session: AsyncSession, source_id: uuid.UUID, target_id: uuid.UUID, now: datetime
) -> int:
    """A merge (both points accounts locked): the source's stored value and lots become the
    target's, a ``transfer`` entry on each side. Returns the fen moved."""
    first, second = sorted([source_id, target_id])
    locked = {first: await lock_wallet(session, first), second: await lock_wallet(session, second)}
    source = locked[source_id]
    if source is None or (source.principal_fen == 0 and source.bonus_fen == 0):
        return 0
    target = locked[target_id] or await open_wallet(session, target_id)
    p, b = source.principal_fen, source.bonus_fen
    await session.flush()
    await session.execute(
        update(WalletLot)
        .where(WalletLot.member_id == source_id, WalletLot.remaining > 0)
        .values(member_id=target_id)
    )
    _entry(session, source, "transfer", -p, -b, "merge", str(target_id), now)
    _entry(session, target, "transfer", p, b, "merge", str(source_id), now)
    return p + b


# ------------------------------------------------------------------ reading


async def balance(session: AsyncSession, member_id: uuid.UUID) -> WalletRead:
    member = await get_member_in_reach(session, member_id, active=True)
    account = await session.get(WalletAccount, (require_tenant().tenant_id, member.id))
    p, b = (account.principal_fen, account.bonus_fen) if account else (0, 0)
    return WalletRead(member_id=member.id, principal_fen=p, bonus_fen=b, balance_fen=p + b)


async def list_entries(
    session: AsyncSession, member_id: uuid.UUID, *, cursor: str | None, limit: int
) -> Page[WalletEntry]:
    await get_member_in_reach(session, member_id)
    stmt = select(WalletEntry).where(WalletEntry.member_id == member_id)
    return await paginate(
        session, stmt, (WalletEntry.created_at, WalletEntry.id), cursor=cursor, limit=limit
    )


async def liability(session: AsyncSession) -> Liability:
    """What the chain owes its members: what is left of every lot, by the store it came in
    at (a top-up's store; a refund's order's store; an adjustment's, or none), principal and
    bonus apart."""
    left = WalletLot.remaining
    rows = (
        await session.execute(
            select(
                WalletLot.store_id,
                func.coalesce(func.sum(left).filter(WalletLot.bucket == "principal"), 0),
                func.coalesce(func.sum(left).filter(WalletLot.bucket == "bonus"), 0),
            )
            .where(WalletLot.remaining > 0)
            .group_by(WalletLot.store_id)
        )
    ).all()
    codes: dict[uuid.UUID, str] = {}
    for store_id, code in (await session.execute(select(Store.id, Store.code))).all():
        codes[store_id] = code
    stores = [
        StoreLiability(
            store_id=s,
            store_code=codes.get(s) if s else None,
            principal_fen=int(p),
            bonus_fen=int(b),
        )
        for s, p, b in rows
    ]
    stores.sort(key=lambda x: (x.store_code is None, x.store_code or ""))
    holders = await session.scalar(
        select(func.count())
        .select_from(WalletAccount)
        .where((WalletAccount.principal_fen > 0) | (WalletAccount.bonus_fen > 0))
    )
    return Liability(
        principal_fen=sum(s.principal_fen for s in stores),
        bonus_fen=sum(s.bonus_fen for s in stores),
        members=int(holders or 0),
        stores=stores,
    )


# ------------------------------------------------------------------ bonus expiry

EXPIRY_CHUNK = 500


async def expire_bonus(session: AsyncSession, now: datetime | None = None) -> int:
    """Take back the bonus past its date (the chain's ``bonus_valid_days``): for each member
    holding some (at most ``EXPIRY_CHUNK`` a run; the job runs again), lock the points
    account, then the wallet (the one lock order), zero the due bonus lots and write one
    ``expire`` entry. Returns the members done. Idempotent: a lot taken back is empty."""
    now = now or utcnow()
    due = (WalletLot.bucket == "bonus") & (WalletLot.remaining > 0) & (WalletLot.expires_at <= now)
    members = (
        await session.scalars(select(WalletLot.member_id).where(due).distinct().limit(EXPIRY_CHUNK))
    ).all()
    done = 0
    for member_id in members:
        await points.lock_account(session, member_id, follow_merge=False)
        account = await lock_wallet(session, member_id)
        lots = (
            await session.scalars(
                select(WalletLot)
                .where(due, WalletLot.member_id == member_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).all()
        total = sum(lot.remaining for lot in lots)
        if account is None or total == 0:
            continue
        for lot in lots:
            lot.remaining = 0
        # Written at the time it happens; ``now`` only decides what is due (a test runs ahead).
        _entry(session, account, "expire", 0, -total, "expiry", f"{now:%Y-%m-%d}", utcnow())
        emit(session, "wallet.bonus_expired", "member", member_id, {"bonus_fen": total})
        done += 1
    return done
