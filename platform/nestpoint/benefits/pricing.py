"""Benefits that change an order: member price (会员价), member day (会员日) and the points
multiplier (生日月双倍积分). No HTTP; never commits.

How an order uses them (docs/benefits.md, "In the order"):

* The preview offers each line the deepest discount the member holds and may use here now
  with quota left (:func:`best_discount`), and the largest points multiplier that applies
  today (:func:`best_multiplier`). Discounts do not stack; neither do multipliers.
* The till charges what the preview said and records the order with each discounted line's
  ``benefit_code`` and ``discount_fen`` (``paid_fen`` is after the discount). The order
  checks each claim under the member's entitlement locks (:func:`check_claims`): a benefit
  the member does not hold, cannot use here, has used up, or that does not give that
  discount on that line is a 422 naming the line's field.
* The multiplier needs nothing from the till: the order applies it.
* Each benefit an order applies is one use of its quota (``amount`` 1, whatever the
  number of lines), with ``reference`` ``order:<channel>/<external_id>``; refunding the
  whole order gives it back (``benefits.service.reverse_uses_named``).

The order reads what the member holds: the preview and the benefits look-up bring that up
to date (``sync_member``); the order itself does not (it is the till's hot path), so a
member who qualified a moment ago gets the benefit at the next look-up or preview.
"""

from __future__ import annotations

import calendar
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import String, Uuid, bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.benefits.models import PERIODS
from nestpoint.benefits.service import (
    ENTITLEMENT_COLUMNS,
    BenefitNotHeld,
    BenefitUnavailable,
    BenefitUsedUp,
    CatalogItem,
    Place,
    catalog_rows,
    entitlements,
    event,
    get_catalog,
    period_key,
    soonest_first,
    unusable_reason,
    use_row,
    uses,
)
from nestpoint.context import require_tenant
from nestpoint.db.batch import WriteBatch
from nestpoint.db.raw import Statement
from nestpoint.errors import FieldError, Invalid
from nestpoint.members.models import Child, Member

MEMBER_PRICE = "core.member_price"
MEMBER_DAY = "core.member_day"
POINTS_MULTIPLIER = "core.points_multiplier"
PRICING_TYPES = frozenset({MEMBER_PRICE, MEMBER_DAY, POINTS_MULTIPLIER})
NO_MULTIPLIER = 100


@dataclass(frozen=True, slots=True)
class Standing:
    """A pricing benefit the member holds (the entitlement that would be used), what is
    left of its quota this period, and why it cannot be used here now (None: it can)."""

    entitlement_id: uuid.UUID
    item: CatalogItem
    period_key: str
    left: int
    reason: str | None

    @property
    def usable(self) -> bool:
        return self.reason is None and self.left >= 1


@dataclass(frozen=True, slots=True)
class Occasions:
    """The facts a multiplier's occasion reads: the chain's local day and the birthdays."""

    today: date
    member_birthday: date | None = None
    child_birthdays: tuple[date, ...] = ()


@dataclass(slots=True)
class Priced:
    """What the pricing benefits give one basket: per line the benefit and the fen it took
    off, the multiplier (and its benefit), and the benefits used (each once)."""

    discounts: list[tuple[Standing | None, int]]
    multiplier: tuple[Standing, int] | None = None

    @property
    def multiplier_percent(self) -> int:
        return self.multiplier[1] if self.multiplier else NO_MULTIPLIER

    @property
    def applied(self) -> list[Standing]:
        found = {s.item.code: s for s, fen in self.discounts if s is not None and fen > 0}
        if self.multiplier is not None:
            found.setdefault(self.multiplier[0].item.code, self.multiplier[0])
        return [found[code] for code in sorted(found)]

    def discount_of(self, code: str) -> int:
        return sum(fen for s, fen in self.discounts if s is not None and s.item.code == code)


# ------------------------------------------------------------------ the rules (pure)


def is_member_day(options: dict[str, Any], today: date) -> bool:
    """Whether ``today`` (the chain's local day) is the member day the options name; a day
    of month past the month's end falls on its last day."""
    if options.get("weekday") is not None:
        return bool(today.isoweekday() == options["weekday"])
    day = options.get("day_of_month")
    if day is None:
        return False
    last = calendar.monthrange(today.year, today.month)[1]
    return bool(today.day == min(day, last))


def discount_percent(item: CatalogItem, category: str, today: date) -> int | None:
    """The share of the price a member pays for a line of ``category`` under this benefit
    today (95: 5% off), or None when it gives that line nothing."""
    options, kind = item.spec.options, item.spec.type
    if kind == MEMBER_PRICE:
        categories = options.get("categories") or []
        applies = not categories or category in categories
        return int(options["discount_percent"]) if applies else None
    if kind == MEMBER_DAY and options.get("discount_percent") and is_member_day(options, today):
        return int(options["discount_percent"])
    return None


def multiplier_percent(item: CatalogItem, occasions: Occasions) -> int | None:
    """The points multiplier this benefit gives today (200: double), or None."""
    options, kind, today = item.spec.options, item.spec.type, occasions.today
    if kind == MEMBER_DAY:
        pct = options.get("points_multiplier_percent")
        return int(pct) if pct and is_member_day(options, today) else None
    if kind != POINTS_MULTIPLIER:
        return None
    if options.get("occasion") == "while_held":
        return int(options["multiplier_percent"])
    if options.get("occasion") == "child_birthday_month":
        births = occasions.child_birthdays
    else:
        births = (occasions.member_birthday,) if occasions.member_birthday else ()
    applies = any(b.month == today.month for b in births)
    return int(options["multiplier_percent"]) if applies else None


def discount_fen(price_fen: int, percent: int) -> int:
    """What ``percent`` (the share paid) takes off ``price_fen``; the member's price is
    rounded down, so the discount is rounded up by less than a fen."""
    return price_fen - price_fen * percent // 100


def best_discount(
    standings: list[Standing], category: str, today: date
) -> tuple[Standing, int] | None:
    """The deepest discount on a line among the usable benefits (ties: the first code)."""
    offers = [
        (pct, s.item.code, s)
        for s in standings
        if s.usable and (pct := discount_percent(s.item, category, today)) is not None
    ]
    if not offers:
        return None
    pct, _, standing = min(offers, key=lambda o: (o[0], o[1]))
    return standing, pct


def best_multiplier(standings: list[Standing], occasions: Occasions) -> tuple[Standing, int] | None:
    """The largest multiplier among the usable benefits today (ties: the first code)."""
    offers = [
        (pct, s.item.code, s)
        for s in standings
        if s.usable and (pct := multiplier_percent(s.item, occasions)) is not None
    ]
    if not offers:
        return None
    pct, _, standing = min(offers, key=lambda o: (-o[0], o[1]))
    return standing, pct


def offer(standings: list[Standing], lines: list[tuple[str, int]], occasions: Occasions) -> Priced:
    """The preview: per ``(category, paid_fen)`` line the best discount, and the multiplier."""
    discounts: list[tuple[Standing | None, int]] = []
    for category, paid in lines:
        best = best_discount(standings, category, occasions.today)
        discounts.append((best[0], discount_fen(paid, best[1])) if best else (None, 0))
    return Priced(discounts, best_multiplier(standings, occasions))


@dataclass(frozen=True, slots=True)
class Claim:
    """A line as the till recorded it: the benefit it applied and what it took off."""

    category: str
    paid_fen: int
    benefit_code: str | None
    discount_fen: int


def check_claims(standings: list[Standing], claims: list[Claim], occasions: Occasions) -> Priced:
    """The order: each line's claimed discount checked against what the member holds here
    now (every bad line named at once), and the multiplier that applies today."""
    by_code = {s.item.code: s for s in standings}
    discounts: list[tuple[Standing | None, int]] = []
    errors: list[tuple[type[Invalid], FieldError]] = []
    for i, claim in enumerate(claims):
        if claim.benefit_code is None:
            discounts.append((None, 0))
            continue
        problem = _claim_problem(by_code.get(claim.benefit_code), claim, occasions.today)
        if problem is not None:
            kind, name, message = problem
            errors.append((kind, FieldError(f"lines.{i}.{name}", message)))
        discounts.append((by_code.get(claim.benefit_code), claim.discount_fen))
    if errors:
        kind = errors[0][0]
        raise kind(
            "; ".join(f"{e.field}: {e.message}" for _, e in errors), errors=[e for _, e in errors]
        )
    return Priced(discounts, best_multiplier(standings, occasions))


def _claim_problem(
    standing: Standing | None, claim: Claim, today: date
) -> tuple[type[Invalid], str, str] | None:
    code = claim.benefit_code
    if standing is None:
        return BenefitNotHeld, "benefit_code", f"the member does not hold {code!r}"
    if standing.reason is not None:
        why = f"{code!r} cannot be used here ({standing.reason})"
        return BenefitUnavailable, "benefit_code", why
    if standing.left < 1:
        return BenefitUsedUp, "benefit_code", f"{code!r} is used up this period"
    pct = discount_percent(standing.item, claim.category, today)
    if pct is None:
        return Invalid, "benefit_code", f"{code!r} gives no discount on this line today"
    most = discount_fen(claim.paid_fen + claim.discount_fen, pct)
    if claim.discount_fen > most:
        return Invalid, "discount_fen", f"{code!r} takes at most {most} fen off this line"
    return None


# ------------------------------------------------------------------ what the member holds


def _pricing_entitlements(*, lock: bool) -> Statement:
    """The member's active entitlements to pricing benefits (locked: ``FOR UPDATE`` of the
    entitlement rows only), with the benefit's type checked in SQL so that no other
    entitlement is locked."""
    stmt = (
        select(*ENTITLEMENT_COLUMNS)
        .join(
            catalog_rows,
            (catalog_rows.c.tenant_id == entitlements.c.tenant_id)
            & (catalog_rows.c.id == entitlements.c.benefit_id),
        )
        .where(
            entitlements.c.tenant_id == bindparam("tenant_id", type_=Uuid()),
            entitlements.c.member_id == bindparam("member_id", type_=Uuid()),
            entitlements.c.status == "active",
            catalog_rows.c.tenant_id == bindparam("tenant_id", type_=Uuid()),
            or_(*(catalog_rows.c.type_key == kind for kind in sorted(PRICING_TYPES))),
        )
        .order_by(entitlements.c.id)
    )
    return Statement(stmt.with_for_update(of=entitlements) if lock else stmt)


# The order's statements (``nestpoint.db.raw``: compiled once, no execution layer).
LOCK_PRICING = _pricing_entitlements(lock=True)
READ_PRICING = _pricing_entitlements(lock=False)
# Net uses of the member's pricing entitlements in the periods of one local day (day, ISO
# week, month, year, and "grant"), on the uses' period index.
PRICING_USES = Statement(
    select(uses.c.entitlement_id, uses.c.period_key, func.sum(uses.c.amount).label("used"))
    .join(
        entitlements,
        (entitlements.c.tenant_id == uses.c.tenant_id)
        & (entitlements.c.id == uses.c.entitlement_id),
    )
    .join(
        catalog_rows,
        (catalog_rows.c.tenant_id == entitlements.c.tenant_id)
        & (catalog_rows.c.id == entitlements.c.benefit_id),
    )
    .where(
        uses.c.tenant_id == bindparam("tenant_id", type_=Uuid()),
        entitlements.c.tenant_id == bindparam("tenant_id", type_=Uuid()),
        catalog_rows.c.tenant_id == bindparam("tenant_id", type_=Uuid()),
        entitlements.c.member_id == bindparam("member_id", type_=Uuid()),
        entitlements.c.status == "active",
        or_(*(catalog_rows.c.type_key == kind for kind in sorted(PRICING_TYPES))),
        or_(*(uses.c.period_key == bindparam(p, type_=String()) for p in PERIODS)),
    )
    .group_by(uses.c.entitlement_id, uses.c.period_key)
)


async def held(
    session: AsyncSession,
    member_id: uuid.UUID,
    tier_code: str | None,
    place: Place,
    now: datetime,
    today: date,
    *,
    lock: bool,
) -> list[Standing]:
    """The member's live pricing entitlements (``lock``: taken ``FOR UPDATE``, after the
    points account: the one lock order), one per benefit: the one a use would take. No
    query at all when the chain's catalog has no pricing benefit."""
    catalog = await get_catalog(session)
    items = {i.id: i for i in catalog.items.values() if i.spec.type in PRICING_TYPES}
    if not items:
        return []
    tenant_id = require_tenant().tenant_id
    found = await (LOCK_PRICING if lock else READ_PRICING).rows(
        session, tenant_id=tenant_id, member_id=member_id
    )
    rows = [
        r for r in found if r.benefit_id in items and (r.expires_at is None or r.expires_at > now)
    ]
    if not rows:
        return []
    # A statement of its own, after the lock: under READ COMMITTED it sees the uses of
    # whoever held the lock before (a count inside the locking statement would not).
    keys = {p: period_key(p, today) for p in PERIODS}
    counted = await PRICING_USES.rows(session, tenant_id=tenant_id, member_id=member_id, **keys)
    used = {(r.entitlement_id, r.period_key): int(r.used) for r in counted}
    chosen: dict[uuid.UUID, Standing] = {}
    for row in sorted(rows, key=soonest_first):
        item = items[row.benefit_id]
        key = keys[item.spec.period]
        left = item.quota_for(tier_code, row.source) - used.get((row.id, key), 0)
        standing = Standing(row.id, item, key, left, unusable_reason(item, place, today))
        if item.id not in chosen or (left >= 1 and chosen[item.id].left < 1):
            chosen[item.id] = standing
    return list(chosen.values())


async def holdings(
    session: AsyncSession,
    member_id: uuid.UUID,
    tier_code: str | None,
    store: tuple[uuid.UUID, str],
    now: datetime,
    today: date,
    *,
    lock: bool,
) -> tuple[list[Standing], Occasions]:
    """What the order or the preview prices with: the member's pricing benefits at the
    till's store (id, code) and the birthdays their multipliers read."""
    place = Place(store[0], store[1] or None, frozenset())  # pricing types are the core's
    standings = await held(session, member_id, tier_code, place, now, today, lock=lock)
    return standings, await occasions_of(session, member_id, today, standings)


async def occasions_of(
    session: AsyncSession, member_id: uuid.UUID, today: date, standings: list[Standing]
) -> Occasions:
    """The birthdays a held multiplier reads (no query when none is held)."""
    if not any(s.item.spec.type == POINTS_MULTIPLIER for s in standings):
        return Occasions(today)
    birthday = await session.scalar(select(Member.birthday).where(Member.id == member_id))
    births = await session.scalars(
        select(Child.birth_date).where(Child.member_id == member_id, Child.birth_date.is_not(None))
    )
    return Occasions(today, birthday, tuple(b for b in births.all() if b is not None))


# ------------------------------------------------------------------ recording the uses


def order_reference(channel: str, external_id: str) -> str:
    """What a use for an order names: the till's own name for it."""
    return f"order:{channel}/{external_id}"


def record_uses(
    session: AsyncSession,
    writes: WriteBatch,
    priced: Priced,
    member_id: uuid.UUID,
    store_id: uuid.UUID,
    reference: str,
    now: datetime,
    use_ids: dict[str, uuid.UUID],
) -> None:
    """One use of each benefit the order applied (ids decided with the order's answer),
    and its ``benefit.used`` event, into ``writes``."""
    rows = []
    for standing in priced.applied:
        use_id = use_ids[standing.item.code]
        row = use_row(
            use_id,
            standing.entitlement_id,
            member_id,
            standing.item,
            "use",
            1,
            standing.period_key,
            store_id,
            now,
        )
        rows.append(row | {"reference": reference})
        event(
            session,
            "benefit.used",
            member_id,
            standing.item,
            standing.entitlement_id,
            batch=writes,
            use_id=str(use_id),
            quantity=1,
            reference=reference,
            store_id=str(store_id),
        )
    if rows:
        writes.insert(uses, rows)
