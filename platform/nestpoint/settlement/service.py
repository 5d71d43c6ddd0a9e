"""Franchise settlement: the chain's rule, and a month's figures per store from the ledgers.

The rule (docs/settlement.md), as named steps:

* **issued** points are funded by the store that issued them: an order's earning belongs to
  the order's store (through the earning lot's order); points given without a store (a
  campaign's or referral's bonus, an HQ adjustment, an imported opening balance) are HQ's.
  A refund's clawback (a negative ``reverse``) makes the order's store's issued smaller.
* **redeemed** points are absorbed by the store where the order spent them; points spent
  on an exchange (a benefit, a coupon) are HQ's. Points a refund gives back (a positive
  ``reverse``) make the order's store's redeemed smaller.
* **expired** points release the liability of the store that issued their lot (the lot's
  order's store; HQ for a lot of no order).
* **benefit uses** are counted where they were used, net of reversals.
* Money: only franchise stores settle. A franchise store pays HQ ``issued x value`` and is
  paid ``(redeemed + expired) x value`` plus the benefit fees of its uses; its ``net_fen``
  is what it receives (negative: pays). HQ's line mirrors the franchisees' (what HQ
  receives from them), so a period's nets add up to zero (checked on every computation).

A period's figures are read from the ledgers by time (``created_at`` in the chain's month):
computing a draft again gives the same result. A closed period is never recomputed; an entry
written after its month closed but dated inside it (a transaction that committed late)
lands in the next open period, on a line whose ``origin_month`` names the closed month.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import case, delete, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.audit.service import record as audit
from nestpoint.benefits.models import Benefit, BenefitUse
from nestpoint.context import current_actor, require_tenant
from nestpoint.db import utcnow
from nestpoint.db.base import table_of
from nestpoint.errors import Conflict, FieldError, Forbidden, Invalid, NotFound
from nestpoint.events.service import emit
from nestpoint.idempotency import service as idempotency
from nestpoint.idempotency.service import Answer
from nestpoint.orders.models import Order, Refund
from nestpoint.points.models import PointEntry, PointLot
from nestpoint.settlement.models import SettlementLine, SettlementPeriod, SettlementRulesRow
from nestpoint.settlement.schemas import (
    CloseIn,
    PeriodFigures,
    PeriodList,
    PeriodRead,
    SettlementLineRead,
    SettlementRules,
)
from nestpoint.tenancy.models import Store, Tenant

entries = table_of(PointEntry)
lots = table_of(PointLot)
orders = table_of(Order)
refunds = table_of(Refund)
uses = table_of(BenefitUse)
benefits = table_of(Benefit)
periods = table_of(SettlementPeriod)
rules_table = table_of(SettlementRulesRow)

SCOPE = "settlement"  # the idempotency keys' namespace of closes
# The outbox event of a close (docs/settlement.md): written once, in the close's transaction.
CLOSED_EVENT = "settlement.period_closed"
CHUNK = 500  # ids per IN list
HQ: None = None  # the party key of HQ (and of points without a store)

# ------------------------------------------------------------------ the rule


async def get_rules(session: AsyncSession) -> SettlementRules:
    row = await session.get(SettlementRulesRow, require_tenant().tenant_id)
    if row is None:
        return SettlementRules()
    return SettlementRules(
        point_value_fen=row.point_value_fen,
        benefit_fee_fen=row.benefit_fee_fen,
        benefit_fees=dict(row.benefit_fees),
    )


async def put_rules(session: AsyncSession, rules: SettlementRules) -> SettlementRules:
    """Replace the chain's rule; audited when it changes (the same body changes nothing).
    It applies to the periods computed from now on; closed periods keep their figures."""
    tenant_id = require_tenant().tenant_id
    # Made with the defaults if missing, then locked: two first settings never collide.
    await session.execute(
        postgresql.insert(rules_table)
        .values(tenant_id=tenant_id, point_value_fen=1, benefit_fee_fen=0, benefit_fees={},
                updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=["tenant_id"])
    )  # fmt: skip
    row = await session.get(
        SettlementRulesRow, tenant_id, with_for_update=True, populate_existing=True
    )
    assert row is not None
    before = (await get_rules(session)).model_dump()
    after = rules.model_dump()
    row.point_value_fen = rules.point_value_fen
    row.benefit_fee_fen = rules.benefit_fee_fen
    row.benefit_fees = dict(rules.benefit_fees)
    changed = {k: [before[k], v] for k, v in after.items() if before[k] != v}
    if changed:
        audit(session, "settlement.rules_put", "settlement_rules", tenant_id, changed)
    await session.flush()
    return rules


def benefit_fee(rules: SettlementRules, code: str) -> int:
    """Fen HQ pays a franchisee for one use of benefit ``code`` (pure)."""
    return rules.benefit_fees.get(code, rules.benefit_fee_fen)


# ------------------------------------------------------------------ months


def parse_month(month: str) -> tuple[int, int] | None:
    """(year, month) of ``2026-11``, or None."""
    digits = month[:4] + month[5:]
    if len(month) != 7 or month[4] != "-" or not (digits.isascii() and digits.isdigit()):
        return None
    year, number = int(month[:4]), int(month[5:])
    if not (2000 <= year <= 9998 and 1 <= number <= 12):
        return None
    return year, number


def next_month(month: str) -> str:
    year, number = parse_month(month) or (0, 0)
    return f"{year + number // 12}-{number % 12 + 1:02d}"


def previous_month(month: str) -> str:
    year, number = parse_month(month) or (0, 0)
    return f"{year - 1}-12" if number == 1 else f"{year}-{number - 1:02d}"


def zone_of(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def window(month: str, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The month's first instant and the next month's, in UTC (pure)."""
    year, number = parse_month(month) or (0, 0)
    start = datetime(year, number, 1, tzinfo=zone)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def month_of(moment: datetime, zone: ZoneInfo) -> str:
    return f"{moment.astimezone(zone):%Y-%m}"


async def tenant_zone(session: AsyncSession) -> ZoneInfo:
    timezone = await session.scalar(
        select(Tenant.timezone).where(Tenant.id == require_tenant().tenant_id)
    )
    return zone_of(timezone or "UTC")


# ------------------------------------------------------------------ figures from the ledgers


@dataclass(slots=True)
class Figures:
    """One party's figures for one month (points, uses, and the fees of those uses)."""

    issued: int = 0
    redeemed: int = 0
    expired: int = 0
    uses: dict[str, int] = field(default_factory=dict)  # benefit code -> net uses

    def add_uses(self, code: str, count: int) -> None:
        self.uses[code] = self.uses.get(code, 0) + count

    def minus(self, other: Figures) -> Figures:
        codes = set(self.uses) | set(other.uses)
        return Figures(
            self.issued - other.issued,
            self.redeemed - other.redeemed,
            self.expired - other.expired,
            {c: n for c in codes if (n := self.uses.get(c, 0) - other.uses.get(c, 0))},
        )

    def plus(self, other: Figures) -> Figures:
        return self.minus(Figures(-other.issued, -other.redeemed, -other.expired,
                                  {c: -n for c, n in other.uses.items()}))  # fmt: skip

    def empty(self) -> bool:
        return not (self.issued or self.redeemed or self.expired or any(self.uses.values()))


Party = uuid.UUID | None
Ledger = dict[Party, Figures]


@dataclass(frozen=True, slots=True)
class Totals:
    """The month's totals read straight from the ledgers, with no attribution: what the
    parties' figures must add up to."""

    issued: int
    redeemed: int
    expired: int
    uses: int


def _in_window(table: Any, tenant_id: uuid.UUID, start: datetime, end: datetime) -> Any:
    return (
        (table.c.tenant_id == tenant_id)
        & (table.c.created_at >= start)
        & (table.c.created_at < end)
    )


async def _store_of_orders(session: AsyncSession, ids: Iterable[str]) -> dict[str, Party]:
    """The store of each order named by a ledger's ``cause_id`` (HQ when not an order's)."""
    parsed = {cid: _uuid(cid) for cid in ids}
    wanted = [u for u in parsed.values() if u is not None]
    found: dict[uuid.UUID, uuid.UUID] = {}
    tenant_id = require_tenant().tenant_id
    for i in range(0, len(wanted), CHUNK):
        rows = await session.execute(
            select(orders.c.id, orders.c.store_id).where(
                orders.c.tenant_id == tenant_id, orders.c.id.in_(wanted[i : i + CHUNK])
            )
        )
        found.update({r.id: r.store_id for r in rows})
    return {cid: found.get(u) if u else HQ for cid, u in parsed.items()}


async def _store_of_refunds(session: AsyncSession, ids: Iterable[str]) -> dict[str, Party]:
    """The store of each refund's order (a refund is settled where its order was)."""
    parsed = {cid: _uuid(cid) for cid in ids}
    wanted = [u for u in parsed.values() if u is not None]
    found: dict[uuid.UUID, uuid.UUID] = {}
    tenant_id = require_tenant().tenant_id
    for i in range(0, len(wanted), CHUNK):
        rows = await session.execute(
            select(refunds.c.id, orders.c.store_id)
            .join(
                orders,
                (orders.c.tenant_id == refunds.c.tenant_id) & (orders.c.id == refunds.c.order_id),
            )
            .where(refunds.c.tenant_id == tenant_id, refunds.c.id.in_(wanted[i : i + CHUNK]))
        )
        found.update({r.id: r.store_id for r in rows})
    return {cid: found.get(u) if u else HQ for cid, u in parsed.items()}


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def read_ledgers(session: AsyncSession, start: datetime, end: datetime) -> Ledger:
    """Each party's figures for entries and uses dated in ``[start, end)``."""
    tenant_id = require_tenant().tenant_id
    ledger: Ledger = defaultdict(Figures)
    in_window = _in_window(entries, tenant_id, start, end)

    # Earnings and expiries: the lot's order's store (HQ for a lot of no order).
    by_lot = await session.execute(
        select(orders.c.store_id, entries.c.kind, func.sum(entries.c.amount).label("points"))
        .select_from(
            entries.outerjoin(
                lots, (lots.c.tenant_id == entries.c.tenant_id) & (lots.c.id == entries.c.lot_id)
            ).outerjoin(
                orders, (orders.c.tenant_id == lots.c.tenant_id) & (orders.c.id == lots.c.order_id)
            )
        )
        .where(in_window, entries.c.kind.in_(("earn", "expire")))
        .group_by(orders.c.store_id, entries.c.kind)
    )
    for lot in by_lot:
        if lot.kind == "earn":
            ledger[lot.store_id].issued += int(lot.points)
        else:
            ledger[lot.store_id].expired -= int(lot.points)

    # Points HQ gives (bonus, adjustments, opening balances): HQ's issue.
    hq_issued = await session.scalar(
        select(func.coalesce(func.sum(entries.c.amount), 0)).where(
            in_window, entries.c.kind.in_(("bonus", "adjust", "migration"))
        )
    )
    ledger[HQ].issued += int(hq_issued or 0)

    # Redemptions: the order's store; exchanges (benefits, coupons) are HQ's.
    positive = case((entries.c.amount > 0, 1), else_=0).label("positive")
    caused = await session.execute(
        select(
            entries.c.kind,
            entries.c.cause_type,
            entries.c.cause_id,
            positive,
            func.sum(entries.c.amount).label("points"),
        )
        .where(in_window, entries.c.kind.in_(("redeem", "reverse")))
        .group_by(entries.c.kind, entries.c.cause_type, entries.c.cause_id, positive)
    )
    rows = caused.all()
    order_store = await _store_of_orders(
        session, {r.cause_id for r in rows if r.kind == "redeem" and r.cause_type == "order"}
    )
    refund_store = await _store_of_refunds(
        session, {r.cause_id for r in rows if r.kind == "reverse" and r.cause_type == "refund"}
    )
    for row in rows:
        points = int(row.points)
        if row.kind == "redeem":
            party = order_store.get(row.cause_id, HQ) if row.cause_type == "order" else HQ
            ledger[party].redeemed -= points
            continue
        party = refund_store.get(row.cause_id, HQ) if row.cause_type == "refund" else HQ
        if row.positive:  # points a refund (or an undone exchange) gave back
            ledger[party].redeemed -= points
        else:  # a refund's clawback of what its lines earned
            ledger[party].issued += points

    # Benefit uses, where they were used, net of reversals.
    used = await session.execute(
        select(uses.c.store_id, benefits.c.code, func.sum(uses.c.amount).label("used"))
        .select_from(
            uses.join(
                benefits,
                (benefits.c.tenant_id == uses.c.tenant_id) & (benefits.c.id == uses.c.benefit_id),
            )
        )
        .where(_in_window(uses, tenant_id, start, end))
        .group_by(uses.c.store_id, benefits.c.code)
    )
    for use in used:
        if int(use.used):
            ledger[use.store_id].add_uses(use.code, int(use.used))
    return dict(ledger)


async def read_totals(session: AsyncSession, start: datetime, end: datetime) -> Totals:
    """The month's totals with no attribution (for the conservation check)."""
    tenant_id = require_tenant().tenant_id
    in_window = _in_window(entries, tenant_id, start, end)
    sums = {
        (r.kind, bool(r.positive)): int(r.points)
        for r in await session.execute(
            select(
                entries.c.kind,
                case((entries.c.amount > 0, 1), else_=0).label("positive"),
                func.sum(entries.c.amount).label("points"),
            )
            .where(in_window)
            .group_by(entries.c.kind, "positive")
        )
    }

    def total(kind: str, positive: bool | None = None) -> int:
        return sum(v for (k, p), v in sums.items() if k == kind and positive in (None, p))

    used = await session.scalar(
        select(func.coalesce(func.sum(uses.c.amount), 0)).where(
            _in_window(uses, tenant_id, start, end)
        )
    )
    return Totals(
        issued=sum(total(k) for k in ("earn", "bonus", "adjust", "migration"))
        + total("reverse", False),
        redeemed=-total("redeem") - total("reverse", True),
        expired=-total("expire"),
        uses=int(used or 0),
    )


def check_conservation(month: str, ledger: Ledger, totals: Totals) -> None:
    """Every entry of the month is attributed to exactly one party (an invariant: a
    failure is a bug, never an answer)."""
    got = Totals(
        issued=sum(f.issued for f in ledger.values()),
        redeemed=sum(f.redeemed for f in ledger.values()),
        expired=sum(f.expired for f in ledger.values()),
        uses=sum(sum(f.uses.values()) for f in ledger.values()),
    )
    if got != totals:
        raise AssertionError(f"settlement {month}: attributed {got}, the ledgers hold {totals}")


# ------------------------------------------------------------------ lines (pure)


@dataclass(frozen=True, slots=True)
class StoreInfo:
    id: uuid.UUID
    code: str
    kind: str


def store_line(
    figures: Figures, store: StoreInfo | None, rules: SettlementRules, month: str, origin: str
) -> dict[str, Any]:
    """A line's columns (pure). A franchise store's money; a direct store's and HQ's own
    points carry no money (HQ's line gets the franchisees' mirror, ``hq_line``)."""
    settles = store is not None and store.kind == "franchise"
    v = rules.point_value_fen
    fees = sum(n * benefit_fee(rules, code) for code, n in figures.uses.items())
    issued_fen = figures.issued * v if settles else 0
    redeemed_fen = figures.redeemed * v if settles else 0
    expired_fen = figures.expired * v if settles else 0
    benefits_fen = fees if settles else 0
    return {
        "month": month,
        "origin_month": origin,
        "store_id": store.id if store else None,
        "store_code": store.code if store else "",
        "store_kind": store.kind if store else "",
        "settles": settles,
        "points_issued": figures.issued,
        "points_redeemed": figures.redeemed,
        "points_expired": figures.expired,
        "benefit_uses": sum(figures.uses.values()),
        "uses_by_benefit": {c: n for c, n in sorted(figures.uses.items()) if n},
        "issued_fen": issued_fen,
        "redeemed_fen": redeemed_fen,
        "expired_fen": expired_fen,
        "benefits_fen": benefits_fen,
        "net_fen": redeemed_fen + expired_fen + benefits_fen - issued_fen,
    }


def hq_line(
    own: Figures, store_lines: list[dict[str, Any]], month: str, origin: str
) -> dict[str, Any]:
    """HQ's line (pure): its own points, and the franchisees' money seen from HQ (it
    receives what they pay, pays what they receive): ``net_fen`` is minus the sum of theirs."""
    settling = [line for line in store_lines if line["settles"]]
    money = {k: sum(line[k] for line in settling)
             for k in ("issued_fen", "redeemed_fen", "expired_fen", "benefits_fen")}  # fmt: skip
    return {
        "month": month,
        "origin_month": origin,
        "store_id": None,
        "store_code": "",
        "store_kind": "",
        "settles": False,
        "points_issued": own.issued,
        "points_redeemed": own.redeemed,
        "points_expired": own.expired,
        "benefit_uses": sum(own.uses.values()),
        "uses_by_benefit": {c: n for c, n in sorted(own.uses.items()) if n},
        **money,
        "net_fen": money["issued_fen"]
        - money["redeemed_fen"]
        - money["expired_fen"]
        - money["benefits_fen"],
    }


def build_lines(
    ledger: Ledger,
    stores: dict[uuid.UUID, StoreInfo],
    rules: SettlementRules,
    month: str,
    origin: str,
    *,
    every_store: bool,
) -> list[dict[str, Any]]:
    """A month's lines (pure): one per store (every store for the month's own figures, only
    those with figures for a carried month) and HQ's. The nets add up to zero."""
    lines = []
    for store in sorted(stores.values(), key=lambda s: s.code):
        figures = ledger.get(store.id, Figures())
        if every_store or not figures.empty():
            lines.append(store_line(figures, store, rules, month, origin))
    unknown = [p for p in ledger if p is not None and p not in stores]
    own = ledger.get(HQ, Figures())
    for party in unknown:  # cannot happen (orders name stores by key); kept whole anyway
        own = own.plus(ledger[party])
    hq = hq_line(own, lines, month, origin)
    if every_store or not own.empty() or hq["net_fen"] or any(line["net_fen"] for line in lines):
        lines.append(hq)
    if sum(line["net_fen"] for line in lines):
        raise AssertionError(f"settlement {month} ({origin}): the nets do not add up to zero")
    return lines


def line_figures(line: Any) -> Figures:
    return Figures(
        line.points_issued, line.points_redeemed, line.points_expired, dict(line.uses_by_benefit)
    )


# ------------------------------------------------------------------ periods


async def _stores(session: AsyncSession) -> dict[uuid.UUID, StoreInfo]:
    rows = await session.execute(select(Store.id, Store.code, Store.kind))
    return {r.id: StoreInfo(r.id, r.code, r.kind) for r in rows}


async def _closed_months(session: AsyncSession) -> list[str]:
    rows = await session.scalars(
        select(SettlementPeriod.month)
        .where(SettlementPeriod.status == "closed")
        .order_by(SettlementPeriod.month)
    )
    return list(rows)


async def _lock_period(
    session: AsyncSession, month: str, zone: ZoneInfo, rules: SettlementRules
) -> SettlementPeriod:
    """The month's period row, made if missing, locked (computations and closes of one
    month run one at a time)."""
    start, end = window(month, zone)
    await session.execute(
        postgresql.insert(periods)
        .values(
            tenant_id=require_tenant().tenant_id,
            id=uuid.uuid4(),
            month=month,
            status="draft",
            starts_at=start,
            ends_at=end,
            point_value_fen=rules.point_value_fen,
            computed_at=utcnow(),
            closed_at=None,
            closed_by="",
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "month"])
    )
    period = await session.scalar(
        select(SettlementPeriod)
        .where(SettlementPeriod.month == month)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert period is not None
    return period


def _checked_month(month: str) -> str:
    if parse_month(month) is None:
        raise NotFound("no such month (the form is 2026-11)")
    return month


async def _figures(
    session: AsyncSession, period: SettlementPeriod, lines: list[SettlementLine]
) -> PeriodFigures:
    store_id = require_tenant().store_id
    if store_id is not None:  # a store key: its own store's lines only
        lines = [line for line in lines if line.store_id == store_id]
    return PeriodFigures(
        period=PeriodRead.model_validate(period),
        lines=[SettlementLineRead.model_validate(line) for line in lines],
    )


async def _lines(session: AsyncSession, period: SettlementPeriod) -> list[SettlementLine]:
    rows = await session.scalars(
        select(SettlementLine)
        .where(SettlementLine.period_id == period.id)
        .order_by(
            SettlementLine.origin_month.desc(),
            SettlementLine.store_id.is_(None),
            SettlementLine.store_code,
        )
    )
    return list(rows)


async def _compute_lines(
    session: AsyncSession,
    period: SettlementPeriod,
    rules: SettlementRules,
    closed: list[str],
) -> list[dict[str, Any]]:
    """The period's lines from the ledgers: its own month, and, when it is the month after
    the last closed one, what arrived late in each closed month."""
    stores = await _stores(session)
    ledger = await read_ledgers(session, period.starts_at, period.ends_at)
    check_conservation(
        period.month, ledger, await read_totals(session, period.starts_at, period.ends_at)
    )
    lines = build_lines(ledger, stores, rules, period.month, period.month, every_store=True)
    if closed and period.month == next_month(closed[-1]):
        for origin in reversed(closed):
            late = await _late(session, origin)
            lines += build_lines(late, stores, rules, period.month, origin, every_store=False)
    return lines


async def _late(session: AsyncSession, origin: str) -> Ledger:
    """What the ledgers now hold for the closed month ``origin`` beyond what its period
    and the closed periods after it already settled."""
    closed = await session.scalar(select(SettlementPeriod).where(SettlementPeriod.month == origin))
    assert closed is not None
    now = await read_ledgers(session, closed.starts_at, closed.ends_at)  # its own window
    settled: Ledger = defaultdict(Figures)
    for line in await session.scalars(
        select(SettlementLine).where(
            SettlementLine.origin_month == origin, SettlementLine.closed.is_(True)
        )
    ):
        settled[line.store_id] = settled[line.store_id].plus(line_figures(line))
    parties = set(now) | set(settled)
    late = {p: now.get(p, Figures()).minus(settled.get(p, Figures())) for p in parties}
    return {p: f for p, f in late.items() if not f.empty()}


async def compute(session: AsyncSession, month: str, now: datetime | None = None) -> PeriodFigures:
    """Compute the month's draft from the ledgers (again: the same result); a closed month
    answers its stored figures."""
    _checked_month(month)
    now = now or utcnow()
    zone = await tenant_zone(session)
    start, _ = window(month, zone)
    if start > now:
        raise Invalid.field("month", "the month has not begun")
    closed = await _closed_months(session)
    if closed and month < closed[0]:
        raise Conflict(
            f"settlement started with {closed[0]}: earlier months are not settled",
            errors=[FieldError("month", f"before {closed[0]}")],
        )
    rules = await get_rules(session)
    period = await _lock_period(session, month, zone, rules)
    if period.status == "closed":
        return await _figures(session, period, await _lines(session, period))
    closed = await _closed_months(session)  # under the lock: a close may just have finished
    before = draft_figures(await _lines(session, period))
    lines = await _compute_lines(session, period, rules, closed)
    await session.execute(delete(SettlementLine).where(SettlementLine.period_id == period.id))
    await _insert_lines(session, period, lines, closed=False)
    period.computed_at, period.point_value_fen = now, rules.point_value_fen
    await session.flush()
    stored = await _lines(session, period)
    after = draft_figures(stored)
    if after != before:  # the same ledgers give the same draft: audited only when it moved
        changes = {"month": [None, month], "lines": [before, after]}
        audit(session, "settlement.computed", "settlement_period", period.id, changes)
    return await _figures(session, period, stored)


def draft_figures(lines: Iterable[Any]) -> dict[str, list[int]]:
    """A period's lines as ``{[origin/]store: [issued, redeemed, expired, uses, net_fen]}``
    (pure): what a computation's audit compares."""
    return {_line_key(x): _line_numbers(x) for x in lines}


def _line_key(line: Any) -> str:
    carried = f"{line.origin_month}/" if line.origin_month != line.month else ""
    return carried + (line.store_code or "HQ")


def _line_numbers(line: Any) -> list[int]:
    return [line.points_issued, line.points_redeemed, line.points_expired, line.benefit_uses,
            line.net_fen]  # fmt: skip


def closed_payload(period: SettlementPeriod, lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``settlement.period_closed`` event's payload (pure): ids and values only. Totals
    over every line the period settles (late entries of earlier months included);
    ``net_fen`` per party (store code, ``HQ``), what each receives (negative: pays)."""
    nets: dict[str, int] = {}
    for line in lines:
        party = line["store_code"] or "HQ"
        nets[party] = nets.get(party, 0) + line["net_fen"]
    return {
        "month": period.month,
        "period_id": str(period.id),
        "point_value_fen": period.point_value_fen,
        "closed_at": period.closed_at.isoformat() if period.closed_at else None,
        "points_issued": sum(x["points_issued"] for x in lines),
        "points_redeemed": sum(x["points_redeemed"] for x in lines),
        "points_expired": sum(x["points_expired"] for x in lines),
        "benefit_uses": sum(x["benefit_uses"] for x in lines),
        "net_fen": nets,
        "carried_months": sorted({x["origin_month"] for x in lines} - {period.month}),
    }


async def _insert_lines(
    session: AsyncSession, period: SettlementPeriod, lines: list[dict[str, Any]], *, closed: bool
) -> None:
    for line in lines:
        session.add(SettlementLine(id=uuid.uuid4(), period_id=period.id, closed=closed, **line))
    await session.flush()


async def close(
    session: AsyncSession, month: str, data: CloseIn, now: datetime | None = None
) -> Answer[PeriodFigures]:
    """Close the month: computed once more and frozen. Idempotent by key; closing a closed
    month answers its stored figures (concurrent closes give one closed period)."""
    _checked_month(month)
    now = now or utcnow()
    zone = await tenant_zone(session)
    rules = await get_rules(session)
    request = idempotency.fingerprint({"op": "settlement.close", "month": month})
    closed = await _closed_months(session)
    if closed and month < closed[0]:
        raise Conflict(
            f"settlement started with {closed[0]}: earlier months are not settled",
            errors=[FieldError("month", f"before {closed[0]}")],
        )
    period = await _lock_period(session, month, zone, rules)
    earlier = await idempotency.replay(
        session, SCOPE, data.idempotency_key, request, field="idempotency_key"
    )
    if earlier is not None:
        return earlier
    if period.status != "closed":
        if period.ends_at > now:
            raise Invalid.field("month", "the month is not over yet")
        closed = await _closed_months(session)
        if closed and month != next_month(closed[-1]):
            raise Conflict(
                f"close {next_month(closed[-1])} first: months close in order",
                errors=[FieldError("month", f"close {next_month(closed[-1])} first")],
            )
        lines = await _compute_lines(session, period, rules, closed)
        await session.execute(delete(SettlementLine).where(SettlementLine.period_id == period.id))
        await _insert_lines(session, period, lines, closed=True)
        actor = current_actor()
        period.status, period.closed_at = "closed", now
        period.closed_by, period.computed_at = (actor.name or str(actor.key_id))[:100], now
        period.point_value_fen = rules.point_value_fen
        await session.flush()
        audit(session, "settlement.closed", "settlement_period", period.id, {
            "month": [None, month],
            "net_fen": [None, {line["store_code"] or "HQ": line["net_fen"]
                               for line in lines if line["origin_month"] == month}],
        })  # fmt: skip
        payload = closed_payload(period, lines)  # once: only the close that closes it
        emit(session, CLOSED_EVENT, "settlement_period", period.id, payload, store_id=None)
    figures = await _figures(session, period, await _lines(session, period))
    answer = Answer(200, figures.model_dump(mode="json"), result=figures)
    return await idempotency.record(
        session, SCOPE, data.idempotency_key, request, answer, field="idempotency_key"
    )


async def show(session: AsyncSession, month: str, store: str | None = None) -> PeriodFigures:
    """A computed or closed month, as stored (a store key: its own lines); ``store`` keeps
    one store's lines (``HQ``: HQ's)."""
    _checked_month(month)
    period = await session.scalar(select(SettlementPeriod).where(SettlementPeriod.month == month))
    if period is None:
        raise NotFound("the month has not been computed")
    figures = await _figures(session, period, await _lines(session, period))
    if store is None:
        return figures
    own = require_tenant().store_id
    if own is not None and store != await session.scalar(select(Store.code).where(Store.id == own)):
        raise Forbidden(
            "a store key reads only its own store's lines",
            errors=[FieldError("query.store", "not this key's store")],
        )
    kept = [x for x in figures.lines if (x.store_code or "HQ") == store]
    return figures.model_copy(update={"lines": kept})


async def list_periods(session: AsyncSession) -> PeriodList:
    rows = await session.scalars(select(SettlementPeriod).order_by(SettlementPeriod.month.desc()))
    return PeriodList(items=[PeriodRead.model_validate(p) for p in rows])


LINE_COLUMNS = (
    "month", "origin_month", "store_code", "store_kind", "settles", "points_issued",
    "points_redeemed", "points_expired", "benefit_uses", "issued_fen", "redeemed_fen",
    "expired_fen", "benefits_fen", "net_fen",
)  # fmt: skip


def to_csv(figures: PeriodFigures) -> str:
    """The lines as CSV (pure): one header row, HQ's line with store code ``HQ``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("status", *LINE_COLUMNS))
    for line in figures.lines:
        row = line.model_dump()
        row["store_code"] = row["store_code"] or "HQ"
        writer.writerow((figures.period.status, *(row[c] for c in LINE_COLUMNS)))
    return out.getvalue()


async def compute_last_month(session: AsyncSession, now: datetime | None = None) -> str | None:
    """The monthly job: last month's draft (the chain's calendar), unless it is closed or
    before the chain's settlement started. The month computed, or None."""
    now = now or utcnow()
    zone = await tenant_zone(session)
    month = previous_month(month_of(now, zone))
    closed = await _closed_months(session)
    if month in closed or (closed and month < closed[0]):
        return None
    await compute(session, month, now)
    return month
