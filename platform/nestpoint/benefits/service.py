"""Benefits' rules: the catalog, who holds what, quotas per period, use and reversal, and
exchange for points. No HTTP; never commits.

Locks, in the one order used everywhere: the member's points account (an exchange, a
bundle's points), then the benefit's catalog row (its exchange stock), then the member's
entitlement rows of that benefit, in id order. Every use takes the entitlement rows
``FOR UPDATE`` before it counts what is left, so two tills using the last free
consultation at once are serial: one wins, the other is told it is used up. On SQLite
(``BEGIN IMMEDIATE``) write transactions are serial anyway.

Tier and stage entitlements follow the member: :func:`sync_member` grants what the member
qualifies for now and lapses what they no longer do. It runs before every look-up and use
of a member's benefits and from the periodic job, and each of its writes is conditional,
so concurrent runs raise each ``benefit.*`` event once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ValidationError
from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.audit.service import record
from nestpoint.benefits.models import (
    Benefit,
    BenefitBundle,
    BenefitUse,
    BundleGrant,
    Entitlement,
)
from nestpoint.benefits.schemas import (
    BenefitRead,
    BenefitSpec,
    BenefitTypeRead,
    BundleRead,
    BundleSpec,
    EntitlementRead,
    ExchangeIn,
    ExchangeOffer,
    ExchangeRead,
    MemberBenefits,
    UseIn,
    UseRead,
)
from nestpoint.benefits.types import CORE_PREFIX, CORE_TYPES
from nestpoint.cache import BoundedCache
from nestpoint.context import current_actor, require_tenant
from nestpoint.db import utcnow
from nestpoint.db.base import table_of
from nestpoint.db.batch import WriteBatch
from nestpoint.errors import Conflict, FieldError, Invalid, NotFound
from nestpoint.events.service import emit
from nestpoint.idempotency import service as idempotency
from nestpoint.idempotency.service import Answer, fingerprint
from nestpoint.loyalty.rules import Program
from nestpoint.loyalty.service import get_program
from nestpoint.members.models import Child
from nestpoint.members.service import get_active_member, stage_of
from nestpoint.plugins.manager import get_plugin_host
from nestpoint.plugins.types import BenefitType
from nestpoint.points import service as points
from nestpoint.tenancy.service import store_codes

catalog_rows = table_of(Benefit)
entitlements = table_of(Entitlement)
uses = table_of(BenefitUse)
grants = table_of(BundleGrant)


class BenefitNotHeld(Invalid):
    title = "Benefit not held"
    slug = "benefit-not-held"


class BenefitUnavailable(Invalid):
    title = "Benefit not available here"
    slug = "benefit-unavailable"


class BenefitUsedUp(Invalid):
    title = "Benefit used up for this period"
    slug = "benefit-used-up"


class ExchangeRefused(Invalid):
    title = "Exchange refused"
    slug = "exchange-refused"


# ------------------------------------------------------------------ the catalog


@dataclass(frozen=True, slots=True)
class CatalogItem:
    """A catalog entry as the rules read it (cached per tenant; no ORM object)."""

    id: uuid.UUID
    spec: BenefitSpec

    @property
    def code(self) -> str:
        return self.spec.code

    def quota_for(self, tier_code: str | None, source: str) -> int:
        if source == "tier" and tier_code in self.spec.tier_quotas:
            return self.spec.tier_quotas[tier_code]
        return self.spec.quota

    def in_validity(self, today: date) -> bool:
        spec = self.spec
        starts_ok = spec.valid_from is None or spec.valid_from <= today
        return spec.active and starts_ok and (spec.valid_until is None or today <= spec.valid_until)


@dataclass(frozen=True, slots=True)
class Catalog:
    items: dict[str, CatalogItem]  # by code
    by_id: dict[uuid.UUID, CatalogItem]
    bundles: tuple[tuple[uuid.UUID, BundleSpec], ...]


_catalogs: BoundedCache[uuid.UUID, Catalog] = BoundedCache("benefit_catalog", max_size=1000)


async def get_catalog(session: AsyncSession) -> Catalog:
    """The tenant's catalog and bundles (cached; this process forgets it on every change,
    others follow within the configuration cache's TTL)."""
    tenant_id = require_tenant().tenant_id
    cached = _catalogs.get(tenant_id)
    if cached is not None:
        return cached
    rows = (await session.scalars(select(Benefit).order_by(Benefit.code))).all()
    items = {row.code: CatalogItem(row.id, _spec_of(row)) for row in rows}
    bundle_rows = (await session.scalars(select(BenefitBundle).order_by(BenefitBundle.code))).all()
    catalog = Catalog(
        items=items,
        by_id={item.id: item for item in items.values()},
        bundles=tuple((b.id, _bundle_spec_of(b)) for b in bundle_rows),
    )
    return _catalogs.put(tenant_id, catalog)


def _spec_of(row: Benefit) -> BenefitSpec:
    return BenefitSpec(
        code=row.code,
        name=row.name,
        type=row.type_key,
        options=row.options,
        child_stages=row.child_stages,
        exchange_points=row.exchange_points,
        stock=row.stock,
        per_member_limit=row.per_member_limit,
        quota=row.quota,
        tier_quotas=row.tier_quotas,
        period=row.period,
        valid_days=row.valid_days,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        on_lapse=row.on_lapse,
        store_codes=row.store_codes,
        active=row.active,
    )


def _bundle_spec_of(row: BenefitBundle) -> BundleSpec:
    return BundleSpec(
        code=row.code,
        name=row.name,
        trigger=row.trigger,
        within_days=row.within_days,
        benefits=row.benefit_codes,
        points=row.points,
        valid_days=row.valid_days,
        active=row.active,
    )


def benefit_read(item: CatalogItem, updated_at: datetime) -> BenefitRead:
    return BenefitRead(id=item.id, updated_at=updated_at, **item.spec.model_dump())


async def benefit_types(session: AsyncSession) -> dict[str, BenefitType]:
    """The types HQ may use: the core's and those of plugins enabled anywhere in the chain."""
    host = get_plugin_host()
    tenant_id = require_tenant().tenant_id
    enabled = await host.enabled_plugins(tenant_id, None, anywhere=True, session=session)
    found = dict(CORE_TYPES)
    for plugin_id in sorted(enabled):
        for key, kind in host.contributions[plugin_id].benefit_types.items():
            found[f"{plugin_id}.{key}"] = kind
    return found


def type_read(key: str, kind: BenefitType) -> BenefitTypeRead:
    schema = kind.options.model_json_schema() if kind.options is not None else {}
    return BenefitTypeRead(
        key=key, title=kind.title, description=kind.description, options_schema=schema
    )


def _validated_options(kind: BenefitType, options: dict[str, Any], prefix: str) -> dict[str, Any]:
    if kind.options is None:
        if options:
            raise Invalid.field(f"{prefix}options", "this type takes no options")
        return {}
    try:
        model: BaseModel = kind.options.model_validate(options)
    except ValidationError as exc:
        errors = [
            FieldError(".".join([f"{prefix}options", *(str(p) for p in e["loc"])]), e["msg"])
            for e in exc.errors()
        ]
        raise Invalid("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors) from exc
    return model.model_dump(mode="json")


async def normalised(session: AsyncSession, spec: BenefitSpec) -> BenefitSpec:
    """The spec with its options as they would be stored (defaults filled in), for
    comparing a manifest with the database; unchanged when the type or options are not
    valid here yet (applying then says why)."""
    kind = (await benefit_types(session)).get(spec.type)
    try:
        options = _validated_options(kind, spec.options, "") if kind else spec.options
    except Invalid:
        return spec
    return spec.model_copy(update={"options": options})


async def check_spec(session: AsyncSession, spec: BenefitSpec, prefix: str = "") -> BenefitSpec:
    """The spec with its options normalised, or Invalid naming each bad field: an unknown
    or not-enabled type, options its schema refuses, unknown tiers or stores."""
    kinds = await benefit_types(session)
    kind = kinds.get(spec.type)
    if kind is None:
        raise Invalid.field(
            f"{prefix}type",
            f"no benefit type {spec.type!r} here (core types, or a plugin's once enabled)",
        )
    options = _validated_options(kind, spec.options, prefix)
    program = await get_program(session)
    tier_codes = {t.code for t in program.tiers}
    errors = [
        FieldError(f"{prefix}tier_quotas.{code}", "no such tier")
        for code in spec.tier_quotas
        if code not in tier_codes
    ]
    known_stores = await store_codes(session, refresh=True)
    errors += [
        FieldError(f"{prefix}store_codes.{i}", f"no store with code {code!r}")
        for i, code in enumerate(spec.store_codes)
        if code not in known_stores
    ]
    if errors:
        raise Invalid("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)
    return spec.model_copy(update={"options": options})


async def put_benefit(session: AsyncSession, spec: BenefitSpec, prefix: str = "") -> BenefitRead:
    """Create or replace a catalog entry (audited). Entitlements already granted keep
    their history; new quotas and stores apply from the next use."""
    spec = await check_spec(session, spec, prefix)
    row = await session.scalar(select(Benefit).where(Benefit.code == spec.code))
    values = _row_values(spec)
    if row is None:
        row = Benefit(**values)
        session.add(row)
        record(session, "benefit.created", "benefit", spec.code, {"type": spec.type})
    else:
        before = _spec_of(row).model_dump(mode="json")
        for name, value in values.items():
            setattr(row, name, value)
        after = spec.model_dump(mode="json")
        changed = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
        if changed:
            record(session, "benefit.updated", "benefit", spec.code, changed)
    await session.flush()
    forget_catalog()
    return BenefitRead(id=row.id, updated_at=row.updated_at, **spec.model_dump())


def _row_values(spec: BenefitSpec) -> dict[str, Any]:
    values = spec.model_dump(mode="python", exclude={"type"})
    values["type_key"] = spec.type
    return values


async def put_bundle(session: AsyncSession, spec: BundleSpec, prefix: str = "") -> BundleRead:
    """Create or replace a bundle; every benefit it names must be in the catalog."""
    catalog = await get_catalog(session)
    missing = [
        FieldError(f"{prefix}benefits.{i}", f"no benefit {code!r} in the catalog")
        for i, code in enumerate(spec.benefits)
        if code not in catalog.items
    ]
    if missing:
        raise Invalid("; ".join(f"{e.field}: {e.message}" for e in missing), errors=missing)
    row = await session.scalar(select(BenefitBundle).where(BenefitBundle.code == spec.code))
    values = spec.model_dump(exclude={"benefits"}) | {"benefit_codes": list(spec.benefits)}
    if row is None:
        row = BenefitBundle(**values)
        session.add(row)
        record(session, "bundle.created", "benefit_bundle", spec.code, {})
    else:
        before = _bundle_spec_of(row).model_dump(mode="json")
        for name, value in values.items():
            setattr(row, name, value)
        after = spec.model_dump(mode="json")
        changed = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
        if changed:
            record(session, "bundle.updated", "benefit_bundle", spec.code, changed)
    await session.flush()
    forget_catalog()
    return BundleRead(id=row.id, **spec.model_dump())


def forget_catalog() -> None:
    _catalogs.forget(require_tenant().tenant_id)


async def get_benefit(session: AsyncSession, code: str) -> BenefitRead:
    row = await session.scalar(select(Benefit).where(Benefit.code == code))
    if row is None:
        raise NotFound(f"no benefit {code!r} in the catalog")
    return BenefitRead(id=row.id, updated_at=row.updated_at, **_spec_of(row).model_dump())


async def list_benefits(session: AsyncSession) -> list[BenefitRead]:
    rows = (await session.scalars(select(Benefit).order_by(Benefit.code))).all()
    return [BenefitRead(id=r.id, updated_at=r.updated_at, **_spec_of(r).model_dump()) for r in rows]


async def list_bundles(session: AsyncSession) -> list[BundleRead]:
    catalog = await get_catalog(session)
    return [BundleRead(id=bundle_id, **spec.model_dump()) for bundle_id, spec in catalog.bundles]


# ------------------------------------------------------------------ quota periods


def period_key(period: str, today: date) -> str:
    """The quota period a local day falls in: ``2026-11-29``, ``2026-W48``, ``2026-11``,
    ``2026``; ``grant`` for a quota over the entitlement's whole life."""
    if period == "day":
        return today.isoformat()
    if period == "week":
        year, week, _ = today.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return f"{today:%Y-%m}"
    if period == "year":
        return f"{today:%Y}"
    return "grant"


def period_end(period: str, today: date, zone: ZoneInfo) -> datetime | None:
    """When the period containing ``today`` ends (local midnight, as UTC)."""
    if period == "day":
        nxt = today + timedelta(days=1)
    elif period == "week":
        nxt = today + timedelta(days=8 - today.isoweekday())
    elif period == "month":
        nxt = date(today.year + today.month // 12, today.month % 12 + 1, 1)
    elif period == "year":
        nxt = date(today.year + 1, 1, 1)
    else:
        return None
    return datetime.combine(nxt, time(), zone).astimezone(UTC)


# ------------------------------------------------------------------ who holds what


@dataclass(slots=True)
class Holder:
    """A member's facts that decide their benefits, and what they hold."""

    member_id: uuid.UUID
    tier_code: str | None
    children: list[tuple[uuid.UUID, date | None, date | None]]  # id, birth, due
    held: list[Any] = field(default_factory=list)  # entitlement rows


@dataclass(slots=True)
class Clock:
    now: datetime
    today: date
    zone: ZoneInfo

    @classmethod
    def of(cls, program: Program, now: datetime) -> Clock:
        return cls(now, now.astimezone(program.zone).date(), program.zone)


ENTITLEMENT_COLUMNS = (
    entitlements.c.id,
    entitlements.c.benefit_id,
    entitlements.c.source,
    entitlements.c.source_ref,
    entitlements.c.status,
    entitlements.c.granted_at,
    entitlements.c.expires_at,
    entitlements.c.lapsed_at,
    entitlements.c.points_paid,
)


async def _held(session: AsyncSession, member_id: uuid.UUID) -> list[Any]:
    tenant_id = require_tenant().tenant_id
    rows = await session.execute(
        select(*ENTITLEMENT_COLUMNS)
        .where(entitlements.c.tenant_id == tenant_id, entitlements.c.member_id == member_id)
        .order_by(entitlements.c.id)
    )
    return list(rows.all())


async def _holder(session: AsyncSession, member_id: uuid.UUID) -> Holder:
    member = await get_active_member(session, member_id)
    children = (
        await session.execute(
            select(Child.id, Child.birth_date, Child.due_date).where(Child.member_id == member.id)
        )
    ).all()
    return Holder(member.id, member.tier_code, [tuple(c) for c in children])  # type: ignore[misc]


def qualifying(
    holder: Holder, program: Program, catalog: Catalog, today: date
) -> set[tuple[uuid.UUID, str]]:
    """(benefit id, source) of the tier and stage benefits the member qualifies for."""
    wanted: set[tuple[uuid.UUID, str]] = set()
    for code in program.tier(holder.tier_code).benefits if holder.tier_code else ():
        item = catalog.items.get(code)
        if item is not None and item.in_validity(today):
            wanted.add((item.id, "tier"))
    stages = {stage_of(birth, today, due) for _, birth, due in holder.children}
    for item in catalog.items.values():
        if item.in_validity(today) and stages & set(item.spec.child_stages):
            wanted.add((item.id, "stage"))
    return wanted


def due_bundles(
    holder: Holder, catalog: Catalog, today: date
) -> list[tuple[uuid.UUID, BundleSpec, uuid.UUID]]:
    """(bundle id, bundle, child id) of each active bundle a child's recorded birth or due
    date calls for now (granted once: the caller skips those already given)."""
    due: list[tuple[uuid.UUID, BundleSpec, uuid.UUID]] = []
    for bundle_id, spec in catalog.bundles:
        if not spec.active:
            continue
        for child_id, birth, due_date in holder.children:
            if spec.trigger == "child_born" and birth is not None:
                recent = timedelta(0) <= today - birth <= timedelta(days=spec.within_days)
            elif spec.trigger == "due_date_recorded" and birth is None and due_date is not None:
                recent = timedelta(0) <= due_date - today <= timedelta(days=spec.within_days)
            else:
                recent = False
            if recent:
                due.append((bundle_id, spec, child_id))
    return due


async def sync_member(
    session: AsyncSession, member_id: uuid.UUID, now: datetime | None = None
) -> Holder:
    """Make the member's entitlements match what they qualify for now; returns the holder
    with what they hold. Grants, reactivations, lapses and expiries each raise their event
    once, however many requests run this at the same time."""
    program = await get_program(session)
    catalog = await get_catalog(session)
    clock = Clock.of(program, now or utcnow())
    holder = await _holder(session, member_id)
    holder.held = await _held(session, holder.member_id)
    # Re-read after any write tried: a concurrent request may have made the grant this one
    # found already done (ON CONFLICT DO NOTHING), and it is committed now.
    tried = await _grant_bundles(session, holder, catalog, program, clock)
    tried |= await _follow_qualification(session, holder, program, catalog, clock)
    tried |= await _expire_due(session, holder, catalog, clock.now)
    if tried:
        holder.held = await _held(session, holder.member_id)
    return holder


async def _follow_qualification(
    session: AsyncSession, holder: Holder, program: Program, catalog: Catalog, clock: Clock
) -> bool:
    wanted = qualifying(holder, program, catalog, clock.today)
    following = {
        (row.benefit_id, row.source): row for row in holder.held if row.source in ("tier", "stage")
    }
    tried = False
    for benefit_id, source in sorted(wanted - set(following)):
        tried = True
        await _grant(session, holder.member_id, catalog.by_id[benefit_id], source, "", clock.now)
    for key, row in following.items():
        item = catalog.by_id[row.benefit_id]
        if key in wanted and (row.status != "active" or row.lapsed_at is not None):
            tried = True
            await _reactivate(session, holder.member_id, item, row, clock.now)
        elif key not in wanted and row.status == "active" and row.lapsed_at is None:
            tried = True
            await _lapse(session, holder.member_id, item, row, clock)
    return tried


async def _grant(
    session: AsyncSession,
    member_id: uuid.UUID,
    item: CatalogItem,
    source: str,
    source_ref: str,
    now: datetime,
    *,
    expires_at: datetime | None = None,
    points_paid: int = 0,
) -> bool:
    """Insert an entitlement unless it exists (a concurrent grant wins quietly)."""
    tenant_id = require_tenant().tenant_id
    entitlement_id = uuid.uuid4()
    inserted = await session.scalar(
        postgresql.insert(entitlements)
        .values(
            tenant_id=tenant_id,
            id=entitlement_id,
            member_id=member_id,
            benefit_id=item.id,
            source=source,
            source_ref=source_ref,
            status="active",
            points_paid=points_paid,
            granted_at=now,
            expires_at=expires_at,
        )
        .on_conflict_do_nothing(
            index_elements=["tenant_id", "member_id", "benefit_id", "source", "source_ref"]
        )
        .returning(entitlements.c.id)
    )
    if inserted is None:
        return False
    event(session, "benefit.granted", member_id, item, entitlement_id, source=source)
    return True


async def grant_once(
    session: AsyncSession,
    member_id: uuid.UUID,
    code: str,
    *,
    source: str,
    source_ref: str,
    now: datetime,
    expires_at: datetime | None,
) -> bool:
    """Grant the catalog benefit ``code`` to a member once per ``(source, source_ref)`` (a
    campaign's grant: source ``campaign``), running to ``expires_at``; False when it was
    granted before. An unknown or inactive code is a 422 naming ``benefit_code``."""
    item = (await get_catalog(session)).items.get(code)
    if item is None or not item.spec.active:
        raise Invalid.field("benefit_code", f"no active benefit {code!r}")
    return await _grant(session, member_id, item, source, source_ref, now, expires_at=expires_at)


async def set_grant_expiry(
    session: AsyncSession,
    member_id: uuid.UUID,
    *,
    source: str,
    source_ref: str,
    expires_at: datetime,
) -> int:
    """Move the end of the active entitlements granted once for ``(source, source_ref)``
    (a paid card's grace period keeps its benefits longer). Returns how many moved."""
    moved = await session.execute(
        update(entitlements)
        .where(
            entitlements.c.tenant_id == require_tenant().tenant_id,
            entitlements.c.member_id == member_id,
            entitlements.c.source == source,
            entitlements.c.source_ref == source_ref,
            entitlements.c.status == "active",
        )
        .values(expires_at=expires_at)
    )
    return int(moved.rowcount or 0)  # type: ignore[attr-defined]


async def end_grants(
    session: AsyncSession, member_id: uuid.UUID, *, source: str, source_ref: str, now: datetime
) -> int:
    """End now the active entitlements granted once for ``(source, source_ref)`` (a paid
    card cancelled, lapsed, or replaced by an upgrade): a ``benefit.expired`` event each
    (reason ``revoked``), once (the update is conditional). Returns how many ended."""
    catalog = await get_catalog(session)
    ended = await session.execute(
        update(entitlements)
        .where(
            entitlements.c.tenant_id == require_tenant().tenant_id,
            entitlements.c.member_id == member_id,
            entitlements.c.source == source,
            entitlements.c.source_ref == source_ref,
            entitlements.c.status == "active",
        )
        .values(status="revoked", ended_at=now, lapsed_at=now)
        .returning(entitlements.c.id, entitlements.c.benefit_id)
    )
    rows = ended.all()
    for entitlement_id, benefit_id in rows:
        item = catalog.by_id.get(benefit_id)
        if item is not None:
            event(session, "benefit.expired", member_id, item, entitlement_id, reason="revoked")
    return len(rows)


async def _reactivate(
    session: AsyncSession, member_id: uuid.UUID, item: CatalogItem, row: Any, now: datetime
) -> bool:
    done = await session.scalar(
        update(entitlements)
        .where(
            entitlements.c.tenant_id == require_tenant().tenant_id,
            entitlements.c.id == row.id,
            (entitlements.c.status != "active") | entitlements.c.lapsed_at.is_not(None),
        )
        .values(status="active", lapsed_at=None, expires_at=None, ended_at=None, granted_at=now)
        .returning(entitlements.c.id)
    )
    if done is None:
        return False
    event(session, "benefit.granted", member_id, item, row.id, source=row.source)
    return True


async def _lapse(
    session: AsyncSession, member_id: uuid.UUID, item: CatalogItem, row: Any, clock: Clock
) -> bool:
    """The member no longer qualifies: revoke now, or let it run to the period's end."""
    revoke = item.spec.on_lapse == "revoke" or item.spec.period == "grant"
    values: dict[str, Any] = {"lapsed_at": clock.now}
    if revoke:
        values |= {"status": "revoked", "ended_at": clock.now}
    else:
        values["expires_at"] = period_end(item.spec.period, clock.today, clock.zone)
    done = await session.scalar(
        update(entitlements)
        .where(
            entitlements.c.tenant_id == require_tenant().tenant_id,
            entitlements.c.id == row.id,
            entitlements.c.status == "active",
            entitlements.c.lapsed_at.is_(None),
        )
        .values(values)
        .returning(entitlements.c.id)
    )
    if done is None:
        return False
    if revoke:
        event(session, "benefit.expired", member_id, item, row.id, reason="revoked")
    return True


async def _expire_due(
    session: AsyncSession, holder: Holder, catalog: Catalog, now: datetime
) -> bool:
    tried = False
    for row in holder.held:
        if row.status == "active" and row.expires_at is not None and row.expires_at <= now:
            tried = True
            await expire_one(session, holder.member_id, catalog.by_id[row.benefit_id], row.id, now)
    return tried


async def expire_one(
    session: AsyncSession,
    member_id: uuid.UUID,
    item: CatalogItem,
    entitlement_id: uuid.UUID,
    now: datetime,
) -> bool:
    """End an entitlement whose time is up (once: the update is conditional)."""
    done = await session.scalar(
        update(entitlements)
        .where(
            entitlements.c.tenant_id == require_tenant().tenant_id,
            entitlements.c.id == entitlement_id,
            entitlements.c.status == "active",
            entitlements.c.expires_at <= now,
        )
        .values(status="expired", ended_at=now)
        .returning(entitlements.c.id)
    )
    if done is None:
        return False
    event(session, "benefit.expired", member_id, item, entitlement_id, reason="expired")
    return True


async def _grant_bundles(
    session: AsyncSession, holder: Holder, catalog: Catalog, program: Program, clock: Clock
) -> bool:
    """Give each bundle a child's birth (or due date) calls for, once per child."""
    due = due_bundles(holder, catalog, clock.today)
    if not due:
        return False
    given = set(
        (
            await session.execute(
                select(grants.c.bundle_id, grants.c.child_id).where(
                    grants.c.tenant_id == require_tenant().tenant_id,
                    grants.c.member_id == holder.member_id,
                )
            )
        ).all()
    )
    tried = False
    for bundle_id, spec, child_id in due:
        if (bundle_id, child_id) not in given:
            tried = True
            await _give_bundle(session, holder, catalog, program, clock, bundle_id, spec, child_id)
    return tried


async def _give_bundle(
    session: AsyncSession,
    holder: Holder,
    catalog: Catalog,
    program: Program,
    clock: Clock,
    bundle_id: uuid.UUID,
    spec: BundleSpec,
    child_id: uuid.UUID,
) -> bool:
    # The account first (the one lock order), then the grant's unique key: once per child.
    acct = await points.lock_account(session, holder.member_id) if spec.points else None
    grant_id = uuid.uuid4()
    inserted = await session.scalar(
        postgresql.insert(grants)
        .values(
            tenant_id=require_tenant().tenant_id,
            id=grant_id,
            member_id=holder.member_id,
            bundle_id=bundle_id,
            child_id=child_id,
            points=spec.points,
            granted_at=clock.now,
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "member_id", "bundle_id", "child_id"])
        .returning(grants.c.id)
    )
    if inserted is None:
        return False
    for code in spec.benefits:
        item = catalog.items.get(code)
        if item is not None and item.spec.active:
            expires = clock.now + timedelta(days=item.spec.valid_days or spec.valid_days)
            await _grant(
                session,
                holder.member_id,
                item,
                "bundle",
                str(grant_id),
                clock.now,
                expires_at=expires,
            )
    if acct is not None:
        _credit_bundle_points(acct, program, spec, grant_id, clock.now)
        await points.save(session, acct, clock.now)
        emit(
            session,
            "points.earned",
            "member",
            acct.member_id,
            {
                "member_id": str(acct.member_id),
                "order_id": None,
                "points": spec.points,
                "balance": acct.balance,
            },
        )
    return True


def _credit_bundle_points(
    acct: points.Account, program: Program, spec: BundleSpec, grant_id: uuid.UUID, now: datetime
) -> None:
    points.credit(
        acct,
        program,
        points.Credit(
            spec.points,
            kind="bonus",
            cause_type="bundle",
            cause_id=str(grant_id),
            source="earn",
            reason=spec.name,
        ),
        now,
    )


def event(
    session: AsyncSession,
    kind: str,
    member_id: uuid.UUID,
    item: CatalogItem,
    entitlement_id: uuid.UUID,
    *,
    batch: WriteBatch | None = None,
    **extra: Any,
) -> None:
    """A ``benefit.*`` event about one entitlement (``batch``: with the caller's writes)."""
    emit(
        session,
        kind,
        "member",
        member_id,
        {
            "member_id": str(member_id),
            "benefit_code": item.code,
            "benefit_type": item.spec.type,
            "entitlement_id": str(entitlement_id),
            **extra,
        },
        batch=batch,
    )


async def move_held(session: AsyncSession, source_id: uuid.UUID, target_id: uuid.UUID) -> None:
    """A merge: what the source member was given once (bundles, exchanges) moves to the
    target, with its uses; what followed the source's tier or children ends (the target's
    own tier and children decide from now on; the children move with the merge)."""
    tenant_id = require_tenant().tenant_id
    mine = (entitlements.c.tenant_id == tenant_id) & (entitlements.c.member_id == source_id)
    await session.execute(
        update(entitlements)
        .where(mine, entitlements.c.source.in_(("bundle", "exchange")))
        .values(member_id=target_id)
    )
    await session.execute(
        update(grants)
        .where(grants.c.tenant_id == tenant_id, grants.c.member_id == source_id)
        .values(member_id=target_id)
    )
    now = utcnow()
    await session.execute(
        update(entitlements)
        .where(mine, entitlements.c.status == "active")
        .values(status="revoked", ended_at=now, lapsed_at=now)
    )


# ------------------------------------------------------------------ what can be used here


@dataclass(frozen=True, slots=True)
class Place:
    """Where a benefit is asked for: a store (id and code), or none (HQ, anywhere)."""

    store_id: uuid.UUID | None
    store_code: str | None
    plugins: frozenset[str]  # plugins enabled at the store (all enabled ones for None)


async def place_of(session: AsyncSession, store_code: str | None) -> Place:
    """The caller's store (a store key's own; an HQ key's ``store_code``), or none."""
    ctx = require_tenant()
    codes = await store_codes(session)
    store_id = ctx.store_id
    if store_id is None and store_code is not None:
        store_id = codes.get(store_code) or (await store_codes(session, refresh=True)).get(
            store_code
        )
        if store_id is None:
            raise Invalid.field("store_code", f"no store with code {store_code!r}")
    code = next((c for c, i in codes.items() if i == store_id), store_code) if store_id else None
    host = get_plugin_host()
    enabled = await host.enabled_plugins(
        ctx.tenant_id, store_id, anywhere=store_id is None, session=session, fresh=False
    )
    return Place(store_id, code, frozenset(enabled))


def unusable_reason(item: CatalogItem, place: Place, today: date) -> str | None:
    """Why a benefit cannot be used at this place today, or None."""
    if not item.in_validity(today):
        return "not_offered_now"
    if (
        place.store_code is not None
        and item.spec.store_codes
        and place.store_code not in item.spec.store_codes
    ):
        return "not_at_this_store"
    plugin_id = item.spec.type.split(".", 1)[0]
    if not item.spec.type.startswith(CORE_PREFIX) and plugin_id not in place.plugins:
        return "not_at_this_store"
    return None


async def net_uses(
    session: AsyncSession, keys: Iterable[tuple[uuid.UUID, str]]
) -> dict[tuple[uuid.UUID, str], int]:
    """Net uses per (entitlement, period key)."""
    wanted = list(keys)
    if not wanted:
        return {}
    rows = await session.execute(
        select(uses.c.entitlement_id, uses.c.period_key, func.sum(uses.c.amount))
        .where(
            uses.c.tenant_id == require_tenant().tenant_id,
            uses.c.entitlement_id.in_({e for e, _ in wanted}),
            uses.c.period_key.in_({p for _, p in wanted}),
        )
        .group_by(uses.c.entitlement_id, uses.c.period_key)
    )
    return {(e, p): int(n) for e, p, n in rows.all()}


def _entitlement_read(
    row: Any, item: CatalogItem, holder: Holder, today: date, used: int, reason: str | None
) -> EntitlementRead:
    quota = item.quota_for(holder.tier_code, row.source)
    remaining = max(0, quota - used)
    if reason is None and remaining == 0:
        reason = "used_up"
    return EntitlementRead(
        id=row.id,
        benefit_code=item.code,
        benefit_name=item.spec.name,
        type=item.spec.type,
        options=item.spec.options,
        source=row.source,
        status=row.status,
        quota=quota,
        used=used,
        remaining=remaining,
        period=item.spec.period,
        period_key=period_key(item.spec.period, today),
        granted_at=row.granted_at,
        expires_at=row.expires_at,
        usable_here=reason is None,
        unusable_reason=reason,
    )


async def member_benefits(
    session: AsyncSession, member_id: uuid.UUID, store_code: str | None
) -> MemberBenefits:
    """Everything the member holds now, each with what is left this period and whether it
    can be used at the caller's store; and what their points can buy here."""
    place = await place_of(session, store_code)
    holder = await sync_member(session, member_id)
    program = await get_program(session)
    catalog = await get_catalog(session)
    today = Clock.of(program, utcnow()).today
    active = [row for row in holder.held if row.status == "active"]
    keyed = [(row, catalog.by_id[row.benefit_id]) for row in active]
    used = await net_uses(
        session, [(row.id, period_key(item.spec.period, today)) for row, item in keyed]
    )
    reads = [
        _entitlement_read(
            row,
            item,
            holder,
            today,
            used.get((row.id, period_key(item.spec.period, today)), 0),
            unusable_reason(item, place, today),
        )
        for row, item in keyed
    ]
    return MemberBenefits(
        member_id=holder.member_id,
        store_code=place.store_code,
        entitlements=reads,
        exchange=await _offers(session, holder.member_id, catalog, place, today),
    )


async def _exchanged(
    session: AsyncSession, benefit_ids: Sequence[uuid.UUID], member_id: uuid.UUID
) -> dict[uuid.UUID, tuple[int, int]]:
    """Per benefit, the exchanges that count against its stock and those of this member
    (against their limit): all but undone ones. One statement, on the benefit's index."""
    if not benefit_ids:
        return {}
    mine = func.count().filter(entitlements.c.member_id == member_id)
    rows = await session.execute(
        select(entitlements.c.benefit_id, func.count(), mine)
        .where(
            entitlements.c.tenant_id == require_tenant().tenant_id,
            entitlements.c.benefit_id.in_(benefit_ids),
            entitlements.c.source == "exchange",
            entitlements.c.status != "revoked",
        )
        .group_by(entitlements.c.benefit_id)
    )
    return {benefit_id: (int(n), int(m)) for benefit_id, n, m in rows.all()}


async def _offers(
    session: AsyncSession, member_id: uuid.UUID, catalog: Catalog, place: Place, today: date
) -> list[ExchangeOffer]:
    items = [
        item
        for item in catalog.items.values()
        if item.spec.exchange_points and unusable_reason(item, place, today) is None
    ]
    counted = [i.id for i in items if i.spec.stock is not None or i.spec.per_member_limit]
    taken = await _exchanged(session, counted, member_id)
    return [
        ExchangeOffer(
            benefit_code=item.code,
            benefit_name=item.spec.name,
            type=item.spec.type,
            points=item.spec.exchange_points or 0,
            stock_left=None
            if item.spec.stock is None
            else max(0, item.spec.stock - taken.get(item.id, (0, 0))[0]),
            member_limit_left=None
            if item.spec.per_member_limit is None
            else max(0, item.spec.per_member_limit - taken.get(item.id, (0, 0))[1]),
        )
        for item in items
    ]


# ------------------------------------------------------------------ use and reversal


def _catalog_item(catalog: Catalog, code: str) -> CatalogItem:
    item = catalog.items.get(code)
    if item is None:
        raise NotFound(f"no benefit {code!r} in the catalog")
    return item


async def _lock_entitlements(
    session: AsyncSession, member_id: uuid.UUID, benefit_id: uuid.UUID
) -> list[Any]:
    rows = await session.execute(
        select(*ENTITLEMENT_COLUMNS)
        .where(
            entitlements.c.tenant_id == require_tenant().tenant_id,
            entitlements.c.member_id == member_id,
            entitlements.c.benefit_id == benefit_id,
        )
        .order_by(entitlements.c.id)
        .with_for_update()
    )
    return list(rows.all())


def soonest_first(row: Any) -> tuple[datetime, datetime]:
    far = datetime.max.replace(tzinfo=UTC)
    return (row.expires_at or far, row.granted_at)


async def use(
    session: AsyncSession, member_id: uuid.UUID, code: str, data: UseIn
) -> Answer[UseRead]:
    """Use a benefit once (or ``quantity`` times) at the caller's store: from the member's
    entitlement of it that expires soonest and has quota left this period. Idempotent by
    ``idempotency_key``; serial per member and benefit (the entitlement rows' locks)."""
    catalog = await get_catalog(session)
    item = _catalog_item(catalog, code)
    place = await place_of(session, data.store_code)
    holder = await sync_member(session, member_id)
    rows = await _lock_entitlements(session, holder.member_id, item.id)
    request = fingerprint(
        {
            "kind": "benefit_use",
            "member": holder.member_id,
            "benefit": code,
            "store": place.store_id,
        }
        | data.model_dump(exclude={"idempotency_key", "store_code"})
    )
    earlier = await idempotency.replay(
        session, idempotency.REQUEST, data.idempotency_key, request, field="idempotency_key"
    )
    if earlier is not None:
        return earlier
    program = await get_program(session)
    clock = Clock.of(program, utcnow())
    chosen, left = await _choose(session, holder, item, rows, place, clock, data.quantity)
    key = period_key(item.spec.period, clock.today)
    use_id = uuid.uuid4()
    row = use_row(
        use_id,
        chosen.id,
        holder.member_id,
        item,
        "use",
        data.quantity,
        key,
        place.store_id,
        clock.now,
    )
    row["reference"] = data.reference
    await session.execute(insert(uses), [row])
    event(
        session,
        "benefit.used",
        holder.member_id,
        item,
        chosen.id,
        use_id=str(use_id),
        quantity=data.quantity,
        reference=data.reference,
        store_id=str(place.store_id) if place.store_id else None,
    )
    answer = idempotency.created(_use_read(row, item, left - data.quantity))
    return await idempotency.record(
        session, idempotency.REQUEST, data.idempotency_key, request, answer, field="idempotency_key"
    )


async def _choose(
    session: AsyncSession,
    holder: Holder,
    item: CatalogItem,
    rows: list[Any],
    place: Place,
    clock: Clock,
    quantity: int,
) -> tuple[Any, int]:
    """The entitlement to use, and what it has left before this use; or why none."""
    live = [
        r
        for r in rows
        if r.status == "active" and (r.expires_at is None or r.expires_at > clock.now)
    ]
    if not live:
        raise BenefitNotHeld.field("benefit_code", f"the member does not hold {item.code!r}")
    reason = unusable_reason(item, place, clock.today)
    if reason is not None:
        raise BenefitUnavailable.field(
            "store_code", f"{item.code!r} cannot be used here ({reason})"
        )
    key = period_key(item.spec.period, clock.today)
    used = await net_uses(session, [(r.id, key) for r in live])
    left_by_row = [
        (r, item.quota_for(holder.tier_code, r.source) - used.get((r.id, key), 0))
        for r in sorted(live, key=soonest_first)
    ]
    for row, left in left_by_row:
        if left >= quantity:
            return row, left
    best = max(left for _, left in left_by_row)
    raise BenefitUsedUp.field(
        "quantity", f"{quantity} asked, {max(0, best)} left of {item.code!r} this period"
    )


def use_row(
    use_id: uuid.UUID,
    entitlement_id: uuid.UUID,
    member_id: uuid.UUID,
    item: CatalogItem,
    kind: str,
    amount: int,
    key: str,
    store_id: uuid.UUID | None,
    now: datetime,
) -> dict[str, Any]:
    return {
        "tenant_id": require_tenant().tenant_id,
        "id": use_id,
        "entitlement_id": entitlement_id,
        "member_id": member_id,
        "benefit_id": item.id,
        "kind": kind,
        "amount": amount,
        "period_key": key,
        "store_id": store_id,
        "reference": "",
        "reverses_id": None,
        "reason": "",
        "actor": current_actor().name,
        "created_at": now,
    }


def _use_read(row: dict[str, Any], item: CatalogItem, remaining: int) -> UseRead:
    return UseRead(
        id=row["id"],
        entitlement_id=row["entitlement_id"],
        member_id=row["member_id"],
        benefit_code=item.code,
        kind=row["kind"],
        amount=row["amount"],
        period_key=row["period_key"],
        store_id=row["store_id"],
        reference=row["reference"],
        reverses_id=row["reverses_id"],
        remaining=max(0, remaining),
        created_at=row["created_at"],
    )


async def reverse_use(session: AsyncSession, use_id: uuid.UUID, reason: str) -> UseRead:
    """Give a use back (a cancelled booking, a refunded order), exactly once: reversing
    again answers the same reversal. A store key reverses only its own store's uses."""
    found = await session.execute(
        select(uses).where(
            uses.c.tenant_id == require_tenant().tenant_id,
            uses.c.id == use_id,
            uses.c.kind == "use",
        )
    )
    original = found.one_or_none()
    store_id = require_tenant().store_id
    if original is None or (store_id is not None and original.store_id != store_id):
        raise NotFound("no such benefit use")
    return await _reverse(session, original, reason)


async def reverse_uses_named(
    session: AsyncSession, member_ids: Sequence[uuid.UUID], reference: str, reason: str
) -> list[uuid.UUID]:
    """Give back every use of these members' (one, and any merged into it) that names
    ``reference`` and is not reversed yet (a refunded order's: the ones it applied and
    those the till recorded for it); the ids of the uses given back."""
    reversal = uses.alias("reversal")
    found = await session.execute(
        select(uses)
        .where(
            uses.c.tenant_id == require_tenant().tenant_id,
            uses.c.member_id.in_(member_ids),
            uses.c.reference == reference,
            uses.c.kind == "use",
            ~select(reversal.c.id)
            .where(reversal.c.tenant_id == uses.c.tenant_id, reversal.c.reverses_id == uses.c.id)
            .exists(),
        )
        .order_by(uses.c.entitlement_id, uses.c.id)  # entitlement locks in id order
    )
    given_back = []
    for original in found.all():
        await _reverse(session, original, reason)
        given_back.append(original.id)
    return given_back


async def _reverse(session: AsyncSession, original: Any, reason: str) -> UseRead:
    """The reversal of one use row, under its entitlement's lock; the earlier one if any."""
    await session.execute(
        select(entitlements.c.id)
        .where(
            entitlements.c.tenant_id == original.tenant_id,
            entitlements.c.id == original.entitlement_id,
        )
        .with_for_update()
    )
    catalog = await get_catalog(session)
    item = catalog.by_id[original.benefit_id]
    earlier = (
        await session.execute(
            select(uses).where(
                uses.c.tenant_id == original.tenant_id, uses.c.reverses_id == original.id
            )
        )
    ).one_or_none()
    if earlier is not None:
        return _use_read(dict(earlier._mapping), item, 0)
    row = use_row(
        uuid.uuid4(),
        original.entitlement_id,
        original.member_id,
        item,
        "reverse",
        -original.amount,
        original.period_key,
        original.store_id,
        utcnow(),
    )
    row |= {"reverses_id": original.id, "reason": reason, "reference": original.reference}
    await session.execute(insert(uses), [row])
    event(
        session,
        "benefit.use_reversed",
        original.member_id,
        item,
        original.entitlement_id,
        use_id=str(original.id),
        quantity=original.amount,
        reason=reason,
    )
    return _use_read(row, item, 0)


# ------------------------------------------------------------------ exchange for points


async def exchange(
    session: AsyncSession, member_id: uuid.UUID, code: str, data: ExchangeIn
) -> Answer[ExchangeRead]:
    """积分兑换: spend the benefit's price in points for an entitlement to it. Stock and the
    member's limit are checked under the benefit row's lock; idempotent by key."""
    catalog = await get_catalog(session)
    item = _catalog_item(catalog, code)
    place = await place_of(session, data.store_code)
    member = await get_active_member(session, member_id)
    acct = await points.lock_account(session, member.id)
    request = fingerprint(
        {
            "kind": "benefit_exchange",
            "member": acct.member_id,
            "benefit": code,
            "store": place.store_id,
        }
    )
    earlier = await idempotency.replay(
        session, idempotency.REQUEST, data.idempotency_key, request, field="idempotency_key"
    )
    if earlier is not None:
        return earlier
    program = await get_program(session)
    clock = Clock.of(program, utcnow())
    price = _exchange_price(item, place, clock.today)
    await _check_stock(session, item, acct.member_id)
    entitlement_id = uuid.uuid4()
    await points.spend(
        session,
        acct,
        price,
        kind="redeem",
        cause_type="exchange",
        cause_id=str(entitlement_id),
        now=clock.now,
        field_name="points",
        reason=item.spec.name,
    )
    await points.save(session, acct, clock.now)
    expires = clock.now + timedelta(days=item.spec.valid_days) if item.spec.valid_days else None
    await _insert_exchange(
        session,
        entitlement_id,
        acct.member_id,
        item,
        data.idempotency_key,
        price,
        clock.now,
        expires,
    )
    emit(
        session,
        "points.redeemed",
        "member",
        acct.member_id,
        {"member_id": str(acct.member_id), "order_id": None, "points": price},
    )
    event(session, "benefit.granted", acct.member_id, item, entitlement_id, source="exchange")
    holder = Holder(acct.member_id, member.tier_code, [])
    read = _entitlement_read(
        _Granted(entitlement_id, "exchange", "active", clock.now, expires),
        item,
        holder,
        clock.today,
        0,
        None,
    )
    answer = idempotency.created(
        ExchangeRead(entitlement=read, points_spent=price, balance=acct.balance)
    )
    return await idempotency.record(
        session, idempotency.REQUEST, data.idempotency_key, request, answer, field="idempotency_key"
    )


@dataclass(frozen=True, slots=True)
class _Granted:
    """The columns ``_entitlement_read`` reads, for an entitlement written just now."""

    id: uuid.UUID
    source: str
    status: str
    granted_at: datetime
    expires_at: datetime | None


def _exchange_price(item: CatalogItem, place: Place, today: date) -> int:
    if not item.spec.exchange_points:
        raise ExchangeRefused.field("benefit_code", f"{item.code!r} cannot be exchanged for points")
    reason = unusable_reason(item, place, today)
    if reason is not None:
        raise BenefitUnavailable.field(
            "store_code", f"{item.code!r} cannot be exchanged here ({reason})"
        )
    return item.spec.exchange_points


async def _check_stock(session: AsyncSession, item: CatalogItem, member_id: uuid.UUID) -> None:
    """Under the benefit row's lock: stock left, and the member's limit."""
    await session.execute(select(Benefit.id).where(Benefit.id == item.id).with_for_update())
    taken, mine = (await _exchanged(session, [item.id], member_id)).get(item.id, (0, 0))
    if item.spec.stock is not None and taken >= item.spec.stock:
        raise ExchangeRefused.field("benefit_code", f"{item.code!r} is out of stock")
    if item.spec.per_member_limit is not None and mine >= item.spec.per_member_limit:
        raise ExchangeRefused.field(
            "benefit_code", f"the member has exchanged {item.code!r} {mine} times, the limit"
        )


async def _insert_exchange(
    session: AsyncSession,
    entitlement_id: uuid.UUID,
    member_id: uuid.UUID,
    item: CatalogItem,
    key: str,
    price: int,
    now: datetime,
    expires: datetime | None,
) -> None:
    await session.execute(
        insert(entitlements),
        [
            {
                "tenant_id": require_tenant().tenant_id,
                "id": entitlement_id,
                "member_id": member_id,
                "benefit_id": item.id,
                "source": "exchange",
                "source_ref": key,
                "status": "active",
                "points_paid": price,
                "granted_at": now,
                "expires_at": expires,
                "lapsed_at": None,
                "ended_at": None,
            }
        ],
    )


async def reverse_exchange(session: AsyncSession, entitlement_id: uuid.UUID) -> EntitlementRead:
    """Undo an exchange not used yet: the points come back (as a new lot, like a refund's)
    and the entitlement is revoked, once; a used one is a conflict (reverse its uses first)."""
    tenant_id = require_tenant().tenant_id
    peek = (
        await session.execute(
            select(entitlements.c.member_id).where(
                entitlements.c.tenant_id == tenant_id,
                entitlements.c.id == entitlement_id,
                entitlements.c.source == "exchange",
            )
        )
    ).one_or_none()
    if peek is None:
        raise NotFound("no such exchange")
    acct = await points.lock_account(session, peek.member_id)
    row = (
        await session.execute(
            select(*ENTITLEMENT_COLUMNS)
            .where(entitlements.c.tenant_id == tenant_id, entitlements.c.id == entitlement_id)
            .with_for_update()
        )
    ).one()
    catalog = await get_catalog(session)
    item = catalog.by_id[row.benefit_id]
    program = await get_program(session)
    clock = Clock.of(program, utcnow())
    holder = Holder(peek.member_id, None, [])
    if row.status != "revoked":
        await _refund_exchange(session, acct, program, item, row, clock.now)
    ended = _Granted(row.id, row.source, "revoked", row.granted_at, row.expires_at)
    return _entitlement_read(ended, item, holder, clock.today, 0, "revoked")


async def _refund_exchange(
    session: AsyncSession,
    acct: points.Account,
    program: Program,
    item: CatalogItem,
    row: Any,
    now: datetime,
) -> None:
    net_used = await session.scalar(
        select(func.coalesce(func.sum(uses.c.amount), 0)).where(
            uses.c.tenant_id == acct.tenant_id, uses.c.entitlement_id == row.id
        )
    )
    if net_used:
        raise Conflict(
            "the exchanged benefit has been used; reverse its uses first",
            errors=[FieldError("entitlement_id", "used")],
        )
    points.credit(
        acct,
        program,
        points.Credit(
            row.points_paid,
            kind="reverse",
            cause_type="exchange",
            cause_id=str(row.id),
            source="return",
            reason=item.spec.name,
        ),
        now,
    )
    await points.save(session, acct, now)
    await session.execute(
        update(entitlements)
        .where(entitlements.c.tenant_id == acct.tenant_id, entitlements.c.id == row.id)
        .values(status="revoked", ended_at=now)
    )
    event(session, "benefit.expired", acct.member_id, item, row.id, reason="exchange_reversed")
