"""Rules of the platform's billing of its tenants (docs/billing.md). No HTTP; never commits.

* Plans are the operator's catalogue; a tenant's subscription names one. Choosing a plan
  records the local intent (``sync_state = pending``) in the caller's transaction; after
  the commit the ``billing.sync_subscription`` worker makes it so in Stripe
  (``nestpoint.billing.jobs``), never inside a transaction.
* Usage is recorded per tenant by :func:`refresh_usage` (a periodic job and on demand); a
  limit crossed at 80% and 100% warns HQ once per period (a unique row, an audit entry and
  a ``billing.limit_warning`` outbox event).
* Over a limit only new growth is refused (:func:`ensure_room` and friends, called by the
  enrolment, store, plugin and marketing-message services), with a 409
  ``plan-limit-reached`` naming the limit. Nothing of the till calls them.

The enrolment check is cheap: it reads the recorded usage (cached per process for
``config_cache_seconds``) plus the enrolments this process admitted since that record, and
never counts the members. See "Limits" in docs/billing.md for what that means at the limit.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, distinct, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from nestpoint.audit.service import record
from nestpoint.billing.models import (
    LIMIT_NAMES,
    THRESHOLDS,
    BillingPlan,
    BillingSubscription,
    BillingUsage,
    BillingWarning,
)
from nestpoint.billing.schemas import (
    BillingView,
    LimitRead,
    PlanIn,
    PlanRead,
    SubscriptionRead,
    WarningRead,
)
from nestpoint.cache import BoundedCache
from nestpoint.context import current_tenant, require_tenant, tenant_context
from nestpoint.db import new_id, utcnow
from nestpoint.db.pagination import Page, paginate
from nestpoint.db.session import on_commit, rebind_tenant
from nestpoint.errors import Conflict, FieldError, NotFound
from nestpoint.events.service import emit
from nestpoint.jobs.broker import JobRef, enqueue_best_effort
from nestpoint.members.models import Member
from nestpoint.messaging.models import Message
from nestpoint.messaging.schemas import TRANSACTIONAL
from nestpoint.plugins.models import PluginEnablement
from nestpoint.tenancy.models import Store, Tenant

log = logging.getLogger("nestpoint.billing")

SYNC = JobRef("billing.sync_subscription")
REFRESH = JobRef("billing.refresh_usage")
_SYNC_KEY = "nestpoint.billing.sync"


class PlanLimitReached(Conflict):
    """New growth refused: the chain's plan does not allow it (409, ``plan-limit-reached``)."""

    title = "Plan limit reached"
    slug = "plan-limit-reached"

    def __init__(self, name: str, used: int, limit: int, field: str) -> None:
        message = (
            f"plan limit {name!r} reached: the chain's plan allows {limit} {_NOUNS[name]} "
            f"and {used} are used; new growth is refused until the plan changes "
            "(existing members are served as before)"
        )
        super().__init__(message, errors=[FieldError(field, message)])
        self.limit_name = name


_NOUNS = {
    "members": "members",
    "stores": "active stores",
    "plugins": "enabled plugins",
    "messages": "messages this month",
}


# ---------------------------------------------------------------------------- plans


async def list_plans(session: AsyncSession) -> list[BillingPlan]:
    return list((await session.scalars(select(BillingPlan).order_by(BillingPlan.price_fen))).all())


async def get_plan(session: AsyncSession, code: str) -> BillingPlan:
    plan = await session.get(BillingPlan, code)
    if plan is None:
        raise NotFound(f"no plan {code!r}")
    return plan


async def put_plan(session: AsyncSession, code: str, data: PlanIn) -> tuple[BillingPlan, bool]:
    """Create or replace a plan (the operator's). Its tenants' limits follow at once here,
    in other processes within ``config_cache_seconds``."""
    plan = await session.get(BillingPlan, code, with_for_update=True)
    created = plan is None
    if plan is None:
        plan = BillingPlan(code=code)
        session.add(plan)
    changes: dict[str, Any] = {}
    for name, value in data.model_dump().items():
        old = None if created else getattr(plan, name)
        if created or old != value:
            changes[name] = [old, value]
            setattr(plan, name, value)
    await session.flush()
    if changes:
        _limits.clear()
        log.info("billing plan set", extra={"plan": code, "changes": changes})
    return plan, created


# ---------------------------------------------------------------------------- subscriptions


async def _tenant(session: AsyncSession, tenant_id: uuid.UUID) -> Tenant:
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("no such tenant")
    return tenant


async def subscription_of(
    session: AsyncSession, tenant_id: uuid.UUID, *, lock: bool = False
) -> BillingSubscription | None:
    stmt = select(BillingSubscription).where(BillingSubscription.tenant_id == tenant_id)
    if lock:
        stmt = stmt.with_for_update()
    return await session.scalar(stmt)


async def subscribe(
    session: AsyncSession, tenant_id: uuid.UUID, plan_code: str
) -> BillingSubscription:
    """The operator puts a chain on a plan, or moves it to another: the local intent now
    (limits follow at once), Stripe after the commit (``billing.sync_subscription``). The
    same plan again changes nothing."""
    await _tenant(session, tenant_id)
    plan = await session.get(BillingPlan, plan_code)
    if plan is None:
        raise NotFound(f"no plan {plan_code!r}", errors=[FieldError("plan_code", "no such plan")])
    sub = await subscription_of(session, tenant_id, lock=True)
    if sub is not None and sub.plan_code == plan_code and sub.status != "canceled":
        return sub
    if not plan.active:
        raise Conflict(
            f"plan {plan_code!r} is no longer offered",
            errors=[FieldError("plan_code", "the plan is not offered to new subscriptions")],
        )
    now = utcnow()
    before = sub.plan_code if sub is not None else None
    if sub is None:
        sub = BillingSubscription(tenant_id=tenant_id, plan_code=plan_code, status="trialing")
        session.add(sub)
    elif sub.status == "canceled":  # a new Stripe subscription; the customer stays
        sub.status = "trialing"
        sub.stripe_subscription_id = None
        sub.stripe_plan_id = None
        sub.current_period_start = sub.current_period_end = None
        sub.paid_through = sub.failed_through = sub.canceled_at = None
        sub.state_event_at = 0
    sub.plan_code = plan_code
    sub.sync_state = "pending"
    sub.sync_intent = new_id()
    sub.sync_attempts = 0
    sub.sync_error = ""
    sub.requested_at = now
    await session.flush()
    await audit_as_tenant(
        session,
        tenant_id,
        "billing.plan_changed",
        {"from": before, "to": plan_code, "intent": str(sub.sync_intent)},
    )
    _limits.forget(tenant_id)
    session.info.setdefault(_SYNC_KEY, set()).add(tenant_id)
    return sub


def enqueue_syncs_after_commit(session: Session) -> None:
    for tenant_id in session.info.pop(_SYNC_KEY, set()):
        enqueue_best_effort(SYNC, str(tenant_id))


on_commit(enqueue_syncs_after_commit)


async def audit_as_tenant(
    session: AsyncSession, tenant_id: uuid.UUID, action: str, payload: dict[str, Any]
) -> None:
    """An audit entry and an outbox event of the chain's, from a platform transaction."""
    previous = current_tenant()
    with tenant_context(tenant_id):
        await rebind_tenant(session)
        record(session, action, "tenant", tenant_id, payload)
        emit(session, action, "tenant", tenant_id, payload)
        await session.flush()
    if previous is None or previous.tenant_id != tenant_id:
        await rebind_tenant(session)


async def pending_syncs(session: AsyncSession, *, older_than: datetime) -> list[uuid.UUID]:
    """Subscriptions whose intent Stripe has not confirmed yet (the sweep's work)."""
    rows = await session.scalars(
        select(BillingSubscription.tenant_id).where(
            BillingSubscription.sync_state == "pending",
            BillingSubscription.requested_at <= older_than,
        )
    )
    return list(rows.all())


# ---------------------------------------------------------------------------- usage


def month_of(now: datetime, timezone: str) -> tuple[str, datetime]:
    """The calendar month in the chain's time zone ("2026-11") and its first instant."""
    local = now.astimezone(ZoneInfo(timezone))
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return f"{local:%Y-%m}", start


async def measure(session: AsyncSession, tenant: Tenant, now: datetime) -> dict[str, int]:
    """The chain's usage now, counted (the job's and the on-demand refresh's work; never
    per request)."""
    _, month_start = month_of(now, tenant.timezone)
    with tenant_context(tenant.id):
        await rebind_tenant(session)
        members = await session.scalar(
            select(func.count()).select_from(Member).where(Member.status == "active")
        )
        stores = await session.scalar(
            select(func.count()).select_from(Store).where(Store.active.is_(True))
        )
        plugins = await session.scalar(_enabled_plugins())
        messages = await session.scalar(
            select(func.count())
            .select_from(Message)
            .where(Message.created_at >= month_start, Message.status != "suppressed")
        )
    await rebind_tenant(session)
    return {
        "members": int(members or 0),
        "stores": int(stores or 0),
        "plugins": int(plugins or 0),
        "messages": int(messages or 0),
    }


def _enabled_plugins(excluding: str | None = None) -> Select[Any]:
    """How many plugins are on somewhere in the chain (for the whole chain or a store)."""
    stmt = select(func.count(distinct(PluginEnablement.plugin_id))).where(
        PluginEnablement.enabled.is_(True)
    )
    if excluding is not None:
        stmt = stmt.where(PluginEnablement.plugin_id != excluding)
    return stmt


async def refresh_usage(session: AsyncSession, tenant_id: uuid.UUID) -> BillingUsage:
    """Record the chain's usage now and warn HQ of a limit crossed (once per period)."""
    tenant = await _tenant(session, tenant_id)
    now = utcnow()
    month, _ = month_of(now, tenant.timezone)
    used = await measure(session, tenant, now)
    usage = await session.get(BillingUsage, tenant_id, with_for_update=True)
    if usage is None:
        usage = BillingUsage(tenant_id=tenant_id, month=month, **used, refreshed_at=now)
        session.add(usage)
    else:
        for name, value in used.items():
            setattr(usage, name, value)
        usage.month, usage.refreshed_at = month, now
    await session.flush()
    sub = await subscription_of(session, tenant_id)
    plan = await session.get(BillingPlan, sub.plan_code) if sub is not None else None
    if plan is not None:
        await _warn(session, tenant_id, month, used, _plan_limits(plan))
    _limits.forget(tenant_id)
    return usage


async def _warn(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    period: str,
    used: dict[str, int],
    limits: dict[str, int | None],
) -> None:
    for name in LIMIT_NAMES:
        limit = limits[name]
        if limit is None:
            continue
        for threshold in THRESHOLDS:
            if used[name] * 100 < threshold * limit:
                continue
            exists = await session.scalar(
                select(BillingWarning.id).where(
                    BillingWarning.tenant_id == tenant_id,
                    BillingWarning.period == period,
                    BillingWarning.limit_name == name,
                    BillingWarning.threshold == threshold,
                )
            )
            if exists is not None:
                continue
            try:
                async with session.begin_nested():  # a concurrent refresh may warn first
                    session.add(
                        BillingWarning(
                            tenant_id=tenant_id,
                            period=period,
                            limit_name=name,
                            threshold=threshold,
                            used=used[name],
                            limit_value=limit,
                        )
                    )
            except IntegrityError:
                continue
            await audit_as_tenant(
                session,
                tenant_id,
                "billing.limit_warning",
                {
                    "limit": name,
                    "threshold": threshold,
                    "used": used[name],
                    "limit_value": limit,
                    "period": period,
                },
            )


def _plan_limits(plan: BillingPlan) -> dict[str, int | None]:
    return {
        "members": plan.max_members,
        "stores": plan.max_stores,
        "plugins": plan.max_plugins,
        "messages": plan.max_messages,
    }


# ---------------------------------------------------------------------------- limits


@dataclass(frozen=True, slots=True)
class _Limits:
    """What a chain may grow to and its recorded usage (cached per process)."""

    limits: dict[str, int | None]
    usage: dict[str, int]
    usage_month: str | None
    recorded_at: datetime | None
    timezone: str


_NO_LIMITS = _Limits(dict.fromkeys(LIMIT_NAMES), {}, None, None, "Asia/Shanghai")

_limits: BoundedCache[uuid.UUID, _Limits] = BoundedCache("billing.limits", max_size=10_000)

# Growth this process admitted since the usage record it knows, per (tenant, limit):
# (the record's time, count). The check and the reservation happen with no await between
# them, so within a process two enrolments at the limit are decided one after the other.
_admitted: dict[tuple[uuid.UUID, str], tuple[datetime | None, int]] = {}
_admitted_lock = threading.Lock()
# When a refusal last asked for a fresh usage record, per tenant (at most once a minute).
_asked_refresh: dict[uuid.UUID, float] = {}
REFRESH_ASK_SECONDS = 60.0


def forget_limits() -> None:
    _limits.clear()
    with _admitted_lock:
        _admitted.clear()


async def _limits_of(session: AsyncSession, tenant_id: uuid.UUID) -> _Limits:
    cached = _limits.get(tenant_id)
    if cached is not None:
        return cached
    row = (
        await session.execute(
            select(BillingPlan, BillingUsage, Tenant.timezone)
            .select_from(BillingSubscription)
            .join(BillingPlan, BillingPlan.code == BillingSubscription.plan_code)
            .join(Tenant, Tenant.id == BillingSubscription.tenant_id)
            .outerjoin(BillingUsage, BillingUsage.tenant_id == BillingSubscription.tenant_id)
            .where(BillingSubscription.tenant_id == tenant_id)
        )
    ).one_or_none()
    if row is None:
        return _limits.put(tenant_id, _NO_LIMITS)
    plan, usage, timezone = row
    recorded: dict[str, int] = (
        {n: int(getattr(usage, n)) for n in LIMIT_NAMES}
        if usage is not None
        else dict.fromkeys(LIMIT_NAMES, 0)
    )
    return _limits.put(
        tenant_id,
        _Limits(
            _plan_limits(plan),
            recorded,
            usage.month if usage is not None else None,
            usage.refreshed_at if usage is not None else None,
            timezone,
        ),
    )


def _refuse(tenant_id: uuid.UUID, name: str, used: int, limit: int, field: str) -> None:
    now = time.monotonic()
    if now - _asked_refresh.get(tenant_id, -REFRESH_ASK_SECONDS) >= REFRESH_ASK_SECONDS:
        _asked_refresh[tenant_id] = now
        enqueue_best_effort(REFRESH, str(tenant_id))  # records the 100% warning soon
    raise PlanLimitReached(name, used, limit, field)


async def ensure_room(session: AsyncSession, name: str, field: str, adding: int = 1) -> None:
    """Refuse ``adding`` more of ``name`` (members, messages) when the plan's limit would be
    passed; otherwise count them as admitted by this process. No count of the chain's rows:
    the recorded usage plus what this process admitted since it was recorded."""
    tenant_id = require_tenant().tenant_id
    state = await _limits_of(session, tenant_id)
    limit = state.limits[name]
    if limit is None:
        return
    recorded = state.usage.get(name, 0)
    if name == "messages" and state.usage_month != month_of(utcnow(), state.timezone)[0]:
        recorded = 0  # a new month: the quota starts again
    key = (tenant_id, name)
    with _admitted_lock:  # no await inside: check and reserve are one step
        basis, admitted = _admitted.get(key, (state.recorded_at, 0))
        if basis != state.recorded_at:
            admitted = 0
        used = recorded + admitted
        if used + adding > limit:
            refused = True
        else:
            refused = False
            _admitted[key] = (state.recorded_at, admitted + adding)
    if refused:
        _refuse(tenant_id, name, used, limit, field)


async def ensure_member_room(session: AsyncSession) -> None:
    """Enrolment of a new member (never the till's service of existing ones)."""
    await ensure_room(session, "members", "phone")


async def ensure_message_room(session: AsyncSession, purpose: str, count: int, field: str) -> None:
    """Marketing messages count against the monthly quota; transactional ones never wait."""
    if purpose in TRANSACTIONAL:
        return
    await ensure_room(session, "messages", field, adding=count)


async def ensure_store_room(session: AsyncSession, field: str = "code") -> None:
    """A new (or reactivated) store. Stores are few: counted exactly, under the lock of the
    chain's subscription row, so two stores created at once at the limit make one."""
    tenant_id = require_tenant().tenant_id
    state = await _limits_of(session, tenant_id)
    limit = state.limits["stores"]
    if limit is None:
        return
    await subscription_of(session, tenant_id, lock=True)
    used = int(
        await session.scalar(select(func.count()).select_from(Store).where(Store.active.is_(True)))
        or 0
    )
    if used + 1 > limit:
        _refuse(tenant_id, "stores", used, limit, field)


async def ensure_plugin_room(session: AsyncSession, plugin_id: str) -> None:
    """Enabling a plugin that is on nowhere in the chain yet (counted exactly, under the
    subscription row's lock); switching one that is on already for another store is free."""
    tenant_id = require_tenant().tenant_id
    state = await _limits_of(session, tenant_id)
    limit = state.limits["plugins"]
    if limit is None:
        return
    await subscription_of(session, tenant_id, lock=True)
    on_already = await session.scalar(
        select(PluginEnablement.id)
        .where(PluginEnablement.plugin_id == plugin_id, PluginEnablement.enabled.is_(True))
        .limit(1)
    )
    if on_already is not None:
        return
    used = int(await session.scalar(_enabled_plugins(excluding=plugin_id)) or 0)
    if used + 1 > limit:
        _refuse(tenant_id, "plugins", used, limit, "enabled")


# ---------------------------------------------------------------------------- views


def _state(used: int, limit: int | None) -> str:
    if limit is None:
        return "ok"
    if used >= limit:
        return "reached"
    return "warning" if used * 100 >= 80 * limit else "ok"


async def _views(session: AsyncSession, tenants: list[Tenant]) -> list[BillingView]:
    ids = [t.id for t in tenants]
    if not ids:
        return []
    subs = {
        s.tenant_id: s
        for s in (
            await session.scalars(
                select(BillingSubscription).where(BillingSubscription.tenant_id.in_(ids))
            )
        ).all()
    }
    usages = {
        u.tenant_id: u
        for u in (
            await session.scalars(select(BillingUsage).where(BillingUsage.tenant_id.in_(ids)))
        ).all()
    }
    plans = {p.code: p for p in await list_plans(session)}
    now = utcnow()
    months = {t.id: month_of(now, t.timezone)[0] for t in tenants}
    warnings: dict[uuid.UUID, list[BillingWarning]] = {}
    rows = await session.scalars(
        select(BillingWarning)
        .where(
            BillingWarning.tenant_id.in_(ids),
            or_(*[BillingWarning.period == m for m in set(months.values())]),
        )
        .order_by(BillingWarning.created_at, BillingWarning.limit_name, BillingWarning.threshold)
    )
    for w in rows.all():
        if w.period == months[w.tenant_id]:
            warnings.setdefault(w.tenant_id, []).append(w)
    views = []
    for t in tenants:
        sub, usage = subs.get(t.id), usages.get(t.id)
        plan = plans.get(sub.plan_code) if sub is not None else None
        limits = _plan_limits(plan) if plan is not None else dict.fromkeys(LIMIT_NAMES)
        used = {n: int(getattr(usage, n)) if usage is not None else 0 for n in LIMIT_NAMES}
        if usage is not None and usage.month != months[t.id]:
            used["messages"] = 0
        views.append(
            BillingView(
                tenant_id=t.id,
                tenant_slug=t.slug,
                plan=PlanRead.model_validate(plan) if plan is not None else None,
                subscription=SubscriptionRead.model_validate(sub) if sub is not None else None,
                limits=[
                    LimitRead(
                        name=n, limit=limits[n], used=used[n], state=_state(used[n], limits[n])
                    )
                    for n in LIMIT_NAMES
                ],
                usage_month=usage.month if usage is not None else None,
                usage_refreshed_at=usage.refreshed_at if usage is not None else None,
                warnings=[WarningRead.model_validate(w) for w in warnings.get(t.id, [])],
            )
        )
    return views


async def view_of(session: AsyncSession, tenant_id: uuid.UUID) -> BillingView:
    return (await _views(session, [await _tenant(session, tenant_id)]))[0]


async def list_views(
    session: AsyncSession, *, cursor: str | None, limit: int
) -> tuple[list[BillingView], str | None]:
    """Every tenant's plan, usage, limits and state (the operator's view), by slug."""
    page: Page[Tenant] = await paginate(
        session, select(Tenant), (Tenant.slug,), cursor=cursor, limit=limit
    )
    return await _views(session, list(page.items)), page.next_cursor


async def all_tenant_ids(session: AsyncSession) -> list[uuid.UUID]:
    rows = await session.scalars(select(Tenant.id).where(Tenant.active.is_(True)))
    return list(rows.all())


async def tenant_id_by_slug(session: AsyncSession, slug: str) -> uuid.UUID:
    found = await session.scalar(select(Tenant.id).where(Tenant.slug == slug))
    if found is None:
        raise NotFound(f"no tenant {slug!r}")
    return found
