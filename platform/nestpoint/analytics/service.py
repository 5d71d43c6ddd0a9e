"""The figures HQ watches, computed in SQL from orders, their lines and the points ledger.

Every function takes the request's (or the console's) session, a period of local dates
(the tenant's time zone, both ends included) and an optional store; each runs one or two
grouped queries and returns a pydantic shape (``schemas.py``). The API and the console call
the same functions, so a figure is the same wherever it is read. docs/analytics.md defines
each figure; the definitions are here in SQL:

* an order *counts* unless it was wholly refunded (``status != 'refunded'``); its *net* is
  ``total_fen - refunded_fen`` (the lines' total, whatever paid it, less every refund of it
  so far): sales belong to the day the order was paid, refunds too;
* a member's order has a ``member_id``; every other order is a non-member's;
* an order is the period's when its ``paid_at`` falls in the period's local days;
* points are the ledger's entries created in the period (``docs/analytics.md``).

A store key (or a store user of the console) sees only its own store: the store comes from
the tenant context and naming another is refused (403).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, ColumnElement, String, and_, case, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.analytics.schemas import (
    CATEGORY_BENCHMARKS,
    DEFAULT_ACTIVE_DAYS,
    MEMBER_SHARE_TARGET,
    AnalyticsSummary,
    AverageOrder,
    CategoryRepurchase,
    Churn,
    Funnel,
    HourlySales,
    HourSales,
    Period,
    PointsRedemption,
    Rate,
    RepurchaseByCategory,
    Sales,
    TierCount,
    TierMix,
)
from nestpoint.context import require_tenant
from nestpoint.errors import FieldError, Forbidden, Invalid
from nestpoint.loyalty.service import get_program
from nestpoint.members.models import Member
from nestpoint.orders.models import Order, OrderLine, Refund
from nestpoint.points.models import PointEntry

# A period is at most this long: a year's figures in one request, never a decade's scan.
MAX_PERIOD_DAYS = 366
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(9998, 12, 31)
# Sales by hour are grouped by UTC quarter hour in SQL, then placed in the local hour in
# Python: every time zone's offset since 1972 is a whole number of quarter hours, so each
# bucket falls in one local hour, on both databases, daylight saving handled by zoneinfo.
BUCKET_SECONDS = 900
WEEKDAY_PEAKS = ["07:00-09:00", "17:00-20:00"]


# ------------------------------------------------------------------ the period


@dataclass(frozen=True, slots=True)
class Window:
    """A period as UTC instants: ``[since, until)`` and the previous one ``[before, since)``."""

    period: Period
    zone: ZoneInfo
    store_id: uuid.UUID | None
    tenant_id: uuid.UUID

    def _midnight(self, day: date) -> datetime:
        return datetime.combine(day, time(0), tzinfo=self.zone).astimezone(UTC)

    @property
    def since(self) -> datetime:
        return self._midnight(self.period.start)

    @property
    def until(self) -> datetime:
        return self._midnight(self.period.end + timedelta(days=1))

    @property
    def before(self) -> datetime:
        return self._midnight(self.period.previous_start)

    def days_before_end(self, days: int) -> datetime:
        """The start of the last ``days`` local days of the period."""
        return self._midnight(self.period.end + timedelta(days=1 - days))


def check_day(day: date, field: str) -> None:
    """A day the figures can be computed for (pure): 422 naming ``field`` outside
    ``FIRST_DAY``-``LAST_DAY`` (the period before it and the day after must exist too)."""
    if not FIRST_DAY <= day <= LAST_DAY:
        raise Invalid.field(field, f"a day from {FIRST_DAY} to {LAST_DAY}")


def check_period(start: date, end: date, fields: tuple[str, str] = ("start", "end")) -> None:
    """The period's rule (pure): both days in range, ``start <= end``, at most
    ``MAX_PERIOD_DAYS`` days. A violation is a 422 naming ``fields`` (the route passes its
    query parameters' names)."""
    check_day(start, fields[0])
    check_day(end, fields[1])
    if end < start:
        raise Invalid.field(fields[1], "the period ends before it starts")
    if (end - start).days + 1 > MAX_PERIOD_DAYS:
        raise Invalid.field(fields[1], f"a period is at most {MAX_PERIOD_DAYS} days")


def store_in_reach(store_id: uuid.UUID | None, field: str = "store_id") -> uuid.UUID | None:
    """The store the figures are for: a store key's own (naming another is a 403 on
    ``field``), or the one an HQ key names, or none (the whole chain)."""
    own = require_tenant().store_id
    if own is None:
        return store_id
    if store_id is not None and store_id != own:
        raise Forbidden(
            "a store key reads only its own store's figures",
            errors=[FieldError(field, "not this key's store")],
        )
    return own


async def today(session: AsyncSession) -> date:
    """Today in the tenant's time zone (the default end of a period)."""
    program = await get_program(session)
    return datetime.now(UTC).astimezone(program.zone).date()


async def window(
    session: AsyncSession, start: date, end: date, store_id: uuid.UUID | None
) -> Window:
    check_period(start, end)
    program = await get_program(session)
    days = (end - start).days + 1
    period = Period(
        start=start,
        end=end,
        days=days,
        previous_start=start - timedelta(days=days),
        previous_end=start - timedelta(days=1),
        timezone=program.timezone,
        store_id=store_in_reach(store_id),
    )
    return Window(period, program.zone, period.store_id, require_tenant().tenant_id)


# ------------------------------------------------------------------ shared SQL pieces

COUNTED = Order.status != "refunded"
NET = Order.total_fen - Order.refunded_fen
IS_MEMBER = Order.member_id.is_not(None)


def _orders(w: Window, *where: ColumnElement[bool]) -> list[ColumnElement[bool]]:
    """The tenant's orders (named explicitly: the session's automatic criterion does not
    reach into subqueries), at the store if there is one, and ``where``."""
    found = [Order.tenant_id == w.tenant_id, *where]
    if w.store_id is not None:
        found.append(Order.store_id == w.store_id)
    return found


def _orders_in(w: Window, since: datetime, until: datetime) -> list[ColumnElement[bool]]:
    return _orders(w, Order.paid_at >= since, Order.paid_at < until)


def ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def rate(numerator: int, denominator: int, target: float | None = None) -> Rate:
    return Rate(
        numerator=numerator,
        denominator=denominator,
        rate=ratio(numerator, denominator),
        target=target,
    )


def average(fen: int, orders: int) -> int | None:
    """``fen / orders`` rounded half up to the fen (integers only)."""
    return (2 * fen + orders) // (2 * orders) if orders else None


def _int(value: Any) -> int:
    return int(value or 0)


# ------------------------------------------------------------------ the figures


async def sales(session: AsyncSession, w: Window) -> Sales:
    """One row: net sales and counted orders, members and the rest."""
    member_net = func.sum(case((IS_MEMBER, NET), else_=0))
    row = (
        await session.execute(
            select(
                func.coalesce(func.sum(NET), 0),
                func.coalesce(member_net, 0),
                func.coalesce(func.sum(Order.refunded_fen), 0),
                func.count().filter(COUNTED),
                func.count().filter(COUNTED & IS_MEMBER),
            ).where(*_orders_in(w, w.since, w.until))
        )
    ).one()
    net, member, refunded, orders, member_orders = (_int(v) for v in row)
    return Sales(
        net_fen=net,
        member_net_fen=member,
        non_member_net_fen=net - member,
        refunded_fen=refunded,
        orders=orders,
        member_orders=member_orders,
        non_member_orders=orders - member_orders,
    )


@dataclass(frozen=True, slots=True)
class MemberActivity:
    buyers: int  # members with a counted order in the period
    repeat_buyers: int  # ... with two or more
    previous_active: int  # members with a counted order in the previous period
    churned: int  # ... and none in this one
    lapsed: int  # none in the previous period, one before it
    reactivated: int  # ... and one in this period


async def member_activity(session: AsyncSession, w: Window) -> MemberActivity:
    """Per member, counted orders in the period, in the previous one and before both
    (grouped in SQL), then counted once more over the members (one query)."""
    in_period = func.count().filter(Order.paid_at >= w.since).label("p")
    in_previous = func.count().filter(Order.paid_at >= w.before, Order.paid_at < w.since)
    earlier = func.count().filter(Order.paid_at < w.before).label("e")
    where = _orders(w, IS_MEMBER, COUNTED, Order.paid_at < w.until)
    per = (
        select(Order.member_id, in_period, in_previous.label("q"), earlier)
        .where(*where)
        .group_by(Order.member_id)
        .subquery()
    )
    p, q, e = per.c.p, per.c.q, per.c.e
    row = (
        await session.execute(
            select(
                func.count().filter(p >= 1),
                func.count().filter(p >= 2),
                func.count().filter(q >= 1),
                func.count().filter(q >= 1, p == 0),
                func.count().filter(q == 0, e >= 1),
                func.count().filter(q == 0, e >= 1, p >= 1),
            ).select_from(per)
        )
    ).one()
    return MemberActivity(*(_int(v) for v in row))


def _id_text(column: Any, dialect: str) -> ColumnElement[str]:
    """An id column as the text ``str(uuid)`` gives (how the ledger names its causes):
    PostgreSQL casts its ``uuid``; SQLite keeps 32 hex digits, hyphenated here."""
    if dialect == "postgresql":
        return cast(column, String)
    parts = [func.substr(column, a, n) for a, n in ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))]
    text: ColumnElement[str] = parts[0]
    for part in parts[1:]:
        text = text + "-" + part
    return text


async def points_redemption(session: AsyncSession, w: Window) -> PointsRedemption:
    """Issued: earned on orders and given as bonus, less what refunds clawed back.
    Redeemed: spent on orders and exchanged for benefits, less what came back (a refund or
    a reversed exchange). Entries created in the period; with a store, only the entries
    whose cause is an order of the store or a refund of one."""
    e = PointEntry
    issuing = e.kind.in_(("earn", "bonus")) | ((e.kind == "reverse") & (e.amount < 0))
    redeeming = (e.kind == "redeem") | ((e.kind == "reverse") & (e.amount > 0))
    stmt = select(
        func.coalesce(func.sum(case((issuing, e.amount), else_=0)), 0),
        func.coalesce(-func.sum(case((redeeming, e.amount), else_=0)), 0),
    ).where(
        e.tenant_id == w.tenant_id,
        e.created_at >= w.since,
        e.created_at < w.until,
        e.kind.in_(("earn", "bonus", "reverse", "redeem")),
    )
    if w.store_id is not None:
        dialect = session.get_bind().dialect.name
        orders = select(_id_text(Order.id, dialect)).where(*_orders(w))
        refunds = (
            select(_id_text(Refund.id, dialect))
            .join(Order, and_(Order.tenant_id == Refund.tenant_id, Order.id == Refund.order_id))
            .where(Refund.tenant_id == w.tenant_id, *_orders(w))
        )
        stmt = stmt.where(
            or_(
                and_(e.cause_type == "order", e.cause_id.in_(orders.scalar_subquery())),
                and_(e.cause_type == "refund", e.cause_id.in_(refunds.scalar_subquery())),
            )
        )
    issued, redeemed = (_int(v) for v in (await session.execute(stmt)).one())
    return PointsRedemption(issued=issued, redeemed=redeemed, rate=ratio(redeemed, issued))


async def new_members(session: AsyncSession, w: Window) -> int:
    stmt = select(func.count()).where(
        Member.tenant_id == w.tenant_id,
        Member.status == "active",
        Member.joined_at >= w.since,
        Member.joined_at < w.until,
    )
    if w.store_id is not None:
        stmt = stmt.where(Member.home_store_id == w.store_id)
    return _int(await session.scalar(stmt))


async def summary(
    session: AsyncSession, *, start: date, end: date, store_id: uuid.UUID | None = None
) -> AnalyticsSummary:
    """Every headline figure of the period (docs/analytics.md)."""
    w = await window(session, start, end, store_id)
    s = await sales(session, w)
    activity = await member_activity(session, w)
    member_aov = average(s.member_net_fen, s.member_orders)
    other_aov = average(s.non_member_net_fen, s.non_member_orders)
    uplift = (
        round(member_aov / other_aov - 1, 4)
        if member_aov is not None and other_aov  # a non-member average of 0 has no uplift
        else None
    )
    return AnalyticsSummary(
        period=w.period,
        sales=s,
        member_share=rate(s.member_net_fen, s.net_fen, MEMBER_SHARE_TARGET),
        average_order=AverageOrder(member_fen=member_aov, non_member_fen=other_aov, uplift=uplift),
        repurchase=rate(activity.repeat_buyers, activity.buyers),
        points_redemption=await points_redemption(session, w),
        churn=Churn(
            previous_active=activity.previous_active,
            churned=activity.churned,
            churn_rate=ratio(activity.churned, activity.previous_active),
            lapsed=activity.lapsed,
            reactivated=activity.reactivated,
            reactivation_rate=ratio(activity.reactivated, activity.lapsed),
        ),
        new_members=await new_members(session, w),
    )


def _bucket(dialect: str) -> ColumnElement[Any]:
    """``paid_at`` as its UTC quarter hour since the epoch (an integer)."""
    if dialect == "postgresql":
        seconds: ColumnElement[Any] = func.extract("epoch", Order.paid_at)
        return cast(func.floor(seconds / BUCKET_SECONDS), BigInteger)
    return cast(func.strftime("%s", Order.paid_at), BigInteger) / BUCKET_SECONDS


def _hours() -> list[HourSales]:
    return [
        HourSales(hour=h, orders=0, net_fen=0, member_orders=0, member_net_fen=0) for h in range(24)
    ]


async def hourly_sales(
    session: AsyncSession, *, start: date, end: date, store_id: uuid.UUID | None = None
) -> HourlySales:
    """Counted orders and net sales by local hour of the day, weekdays and weekends apart:
    grouped by UTC quarter hour in SQL, each quarter hour placed in its local hour here."""
    w = await window(session, start, end, store_id)
    bucket = _bucket(session.get_bind().dialect.name).label("bucket")
    rows = (
        await session.execute(
            select(
                bucket,
                func.count().filter(COUNTED),
                func.coalesce(func.sum(NET), 0),
                func.count().filter(COUNTED & IS_MEMBER),
                func.coalesce(func.sum(case((IS_MEMBER, NET), else_=0)), 0),
            )
            .where(*_orders_in(w, w.since, w.until))
            .group_by(bucket)
        )
    ).all()
    weekday, weekend = _hours(), _hours()
    for quarter, orders, net, member_orders, member_net in rows:
        local = datetime.fromtimestamp(int(quarter) * BUCKET_SECONDS, UTC).astimezone(w.zone)
        slot = (weekend if local.weekday() >= 5 else weekday)[local.hour]
        slot.orders += _int(orders)
        slot.net_fen += _int(net)
        slot.member_orders += _int(member_orders)
        slot.member_net_fen += _int(member_net)
    return HourlySales(period=w.period, weekday=weekday, weekend=weekend, peak_hours=WEEKDAY_PEAKS)


async def repurchase_by_category(
    session: AsyncSession, *, start: date, end: date, store_id: uuid.UUID | None = None
) -> RepurchaseByCategory:
    """Per category of the order lines: members who bought it in the period, and those who
    bought it in two or more orders. A line counts unless all of it was refunded; net sales
    per category for members and for everyone."""
    w = await window(session, start, end, store_id)
    line = OrderLine
    live = line.refunded_quantity < line.quantity
    per = (
        select(
            line.category.label("category"),
            Order.member_id.label("member_id"),
            func.count(func.distinct(line.order_id)).label("n"),
            func.sum(line.paid_fen - line.refunded_fen).label("fen"),
        )
        .join(Order, and_(Order.tenant_id == line.tenant_id, Order.id == line.order_id))
        .where(*_orders_in(w, w.since, w.until), COUNTED, live, line.tenant_id == w.tenant_id)
        .group_by(line.category, Order.member_id)
        .subquery()
    )
    member = per.c.member_id.is_not(None)
    rows = (
        await session.execute(
            select(
                per.c.category,
                func.count().filter(member),
                func.count().filter(member, per.c.n >= 2),
                func.coalesce(func.sum(case((member, per.c.fen), else_=0)), 0),
                func.coalesce(func.sum(per.c.fen), 0),
            ).group_by(per.c.category)
        )
    ).all()
    categories = [
        CategoryRepurchase(
            category=category,
            buyers=_int(buyers),
            repeat_buyers=_int(repeat),
            rate=ratio(_int(repeat), _int(buyers)),
            member_net_fen=_int(member_fen),
            net_fen=_int(fen),
            benchmark=CATEGORY_BENCHMARKS.get(category),
        )
        for category, buyers, repeat, member_fen, fen in rows
    ]
    categories.sort(key=lambda c: (-c.buyers, -c.net_fen, c.category))
    return RepurchaseByCategory(period=w.period, categories=categories)


async def tier_mix(
    session: AsyncSession, *, start: date, end: date, store_id: uuid.UUID | None = None
) -> TierMix:
    """Active members per tier now (a store: the members whose home store it is), in the
    ladder's order; a member with no tier yet is in the entry tier."""
    w = await window(session, start, end, store_id)
    program = await get_program(session)
    stmt = select(Member.tier_code, func.count()).where(
        Member.tenant_id == w.tenant_id, Member.status == "active"
    )
    if w.store_id is not None:
        stmt = stmt.where(Member.home_store_id == w.store_id)
    counts: dict[str, int] = {}
    for code, n in (await session.execute(stmt.group_by(Member.tier_code))).all():
        key = program.tier(code).code if code is None else code
        counts[key] = counts.get(key, 0) + _int(n)
    total = sum(counts.values())
    ladder = [(t.code, t.name) for t in program.tiers]
    known = {code for code, _ in ladder}
    ladder += [(code, code) for code in sorted(counts) if code not in known]  # a dropped tier
    return TierMix(
        period=w.period,
        members=total,
        tiers=[
            TierCount(
                code=code,
                name=name,
                members=counts.get(code, 0),
                share=ratio(counts.get(code, 0), total),
            )
            for code, name in ladder
        ],
    )


async def funnel(
    session: AsyncSession,
    *,
    start: date,
    end: date,
    store_id: uuid.UUID | None = None,
    active_days: int = DEFAULT_ACTIVE_DAYS,
) -> Funnel:
    """Active members who had joined by the period's end (a store: its home members) ->
    with a counted order by then (at the store) -> with two or more -> with one in the
    period's last ``active_days`` days."""
    if not 1 <= active_days <= MAX_PERIOD_DAYS:
        raise Invalid.field("active_days", f"between 1 and {MAX_PERIOD_DAYS} days")
    w = await window(session, start, end, store_id)
    enrolled_ids = select(Member.id).where(
        Member.tenant_id == w.tenant_id, Member.status == "active", Member.joined_at < w.until
    )
    if w.store_id is not None:
        enrolled_ids = enrolled_ids.where(Member.home_store_id == w.store_id)
    enrolled = _int(await session.scalar(select(func.count()).select_from(enrolled_ids.subquery())))
    # Their orders grouped per member (a semi-join on the members, never a join per member).
    recent = func.count().filter(Order.paid_at >= w.days_before_end(active_days)).label("r")
    where = _orders(w, IS_MEMBER, COUNTED, Order.paid_at < w.until)
    per = (
        select(Order.member_id, func.count().label("n"), recent)
        .where(*where, Order.member_id.in_(enrolled_ids.scalar_subquery()))
        .group_by(Order.member_id)
        .subquery()
    )
    stmt = select(
        func.count(), func.count().filter(per.c.n >= 2), func.count().filter(per.c.r >= 1)
    ).select_from(per)
    purchased, repeated, active = (_int(v) for v in (await session.execute(stmt)).one())
    return Funnel(
        period=w.period,
        active_days=active_days,
        enrolled=enrolled,
        purchased=purchased,
        repeated=repeated,
        active=active,
    )
