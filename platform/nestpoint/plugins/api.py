"""The public extension API: the one module a plugin imports from Nestpoint.

Everything a plugin needs is here, and nothing else in the core is a promise (errors a
plugin raises from here, ``Invalid``, ``NotFound`` and ``Conflict``, answer as RFC 9457
problem details naming the field, like the core's): an
import-linter contract keeps first-party plugins on this module (tests may also use
:mod:`nestpoint.testing`). Typical use::

    from nestpoint.plugins.api import EarnAdjustment, EarnContext, hookimpl

    @hookimpl
    def nestpoint_adjust_earned_points(context: EarnContext) -> EarnAdjustment | None:
        ...

See ``docs/plugins/`` for the tutorial, the how-tos and the reference of every hook.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from litestar.di import NamedDependency
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.api.problems import problems
from nestpoint.audit.service import record as _record_audit
from nestpoint.benefits import service as _benefits
from nestpoint.benefits.schemas import EntitlementRead, MemberBenefits, UseIn, UseRead
from nestpoint.context import Actor as _Actor
from nestpoint.context import acting_as as _acting_as
from nestpoint.context import current_actor as _current_actor
from nestpoint.context import require_tenant, tenant_context
from nestpoint.db import rls, scoped_session
from nestpoint.db.base import Base, TenantOwned, UTCDateTime, new_id, utcnow
from nestpoint.errors import Conflict, FieldError, Invalid, NotFound
from nestpoint.events.service import Event
from nestpoint.events.service import emit as _emit
from nestpoint.idempotency import service as _idempotency
from nestpoint.loyalty.service import get_program as _get_program
from nestpoint.members import pii as _pii
from nestpoint.members.models import Child as _Child
from nestpoint.members.service import active_member_ids as _active_member_ids
from nestpoint.members.service import add_tags as _add_tags
from nestpoint.members.service import get_active_member as _get_active_member
from nestpoint.members.service import stage_of as _stage_of
from nestpoint.messaging import service as _messaging
from nestpoint.plugins import ENTRY_POINT_GROUP, PROJECT_NAME, hookimpl
from nestpoint.plugins import secrets as _secrets
from nestpoint.plugins import shared as _shared
from nestpoint.plugins.manager import get_plugin_host as _get_plugin_host
from nestpoint.plugins.registries import (
    BenefitTypeRegistry,
    ChannelRegistry,
    ConfigSchemaRegistry,
    ConsolePanelRegistry,
    JobRegistry,
    MigrationRegistry,
    PeriodicJob,
    PluginJob,
    RegistrationError,
    RouteRegistry,
    SurveyTypeRegistry,
)
from nestpoint.plugins.routing import public_path as _public_path
from nestpoint.plugins.types import (
    BenefitType,
    CallbackRequest,
    ChannelChoice,
    ChannelConnector,
    ChildFacts,
    ConsolePanel,
    ConsoleViewer,
    DeliveryReceipt,
    DeliveryReport,
    EarnAdjustment,
    EarnContext,
    EarnLine,
    MemberFacts,
    OutboundMessage,
    PluginContext,
    QuestionType,
)
from nestpoint.points import service as _points
from nestpoint.points.schemas import EntryRead
from nestpoint.tenancy.models import Tenant as _Tenant

# Parameter types for a plugin's route handlers: ``async def h(plugin: Plugin, db: Db)``.
Plugin = NamedDependency[PluginContext]
"""The caller's :class:`PluginContext` (tenant, store, merged config) in a route handler."""
Db = NamedDependency[AsyncSession]
"""The request's database session (scoped to the tenant; commits after the handler)."""

# ---- benefits: what a plugin's own routes use (a booking and its use commit together)

BenefitUse = UseRead
"""A use (or its reversal) of a member's benefit: ``id``, ``entitlement_id``, ``benefit_code``,
``kind``, ``amount``, ``period_key``, ``remaining`` (left in the period after it)..."""
Entitlement = EntitlementRead
MemberBenefitsView = MemberBenefits


async def member_benefits(db: AsyncSession, member_id: uuid.UUID) -> MemberBenefits:
    """What the member holds, each entitlement saying whether it can be used at the
    request's store now (the same answer as ``GET /members/{id}/benefits``)."""
    return await _benefits.member_benefits(db, member_id, None)


async def use_benefit(
    db: AsyncSession,
    member_id: uuid.UUID,
    benefit_code: str,
    *,
    idempotency_key: str,
    reference: str = "",
    quantity: int = 1,
) -> UseRead:
    """Use a member's benefit at the request's store, in the request's transaction (so the
    plugin's own row, a booking, and the use commit or roll back together). Idempotent by
    ``idempotency_key`` (derive it from your own id: ``f"booking:{booking.id}"``). Raises the
    core's 422 problems (``benefit-not-held``, ``benefit-unavailable``, ``benefit-used-up``)
    and 404 for an unknown code, which the API answers as problem details."""
    data = UseIn(idempotency_key=idempotency_key, reference=reference, quantity=quantity)
    answer = await _benefits.use(db, member_id, benefit_code, data)
    return answer.result if answer.result is not None else UseRead.model_validate(answer.body)


async def reverse_benefit_use(db: AsyncSession, use_id: uuid.UUID, reason: str = "") -> UseRead:
    """Give a use back (a cancelled booking), exactly once; again answers the same."""
    return await _benefits.reverse_use(db, use_id, reason)


# ---- members and points, as a plugin's rules need them


async def member_facts(db: AsyncSession, member_id: uuid.UUID) -> MemberFacts:
    """The member's tier (code and rank) and children's stages today (chain's calendar);
    404 for a member the chain does not have. A merged member answers as its survivor."""
    member = await _get_active_member(db, member_id)
    program = await _get_program(db)
    today = utcnow().astimezone(program.zone).date()
    rows = await db.execute(
        select(_Child.id, _Child.birth_date, _Child.due_date).where(_Child.member_id == member.id)
    )
    children = tuple(ChildFacts(cid, _stage_of(born, today, due)) for cid, born, due in rows)
    return MemberFacts(member.id, member.tier_code, program.rank(member.tier_code), children)


async def award_points(
    db: AsyncSession,
    plugin: PluginContext,
    member_id: uuid.UUID,
    points: int,
    *,
    reason: str,
    idempotency_key: str,
) -> EntryRead:
    """Credit (or, negative, deduct) points through the ledger as an adjustment by the
    plugin (``actor`` ``plugin:<id>``), in the caller's transaction; idempotent by key (a
    retry answers the first entry). Raises ``insufficient-points`` for a deduction the
    member cannot pay."""
    program = await _get_program(db)
    answer = await _points.adjust(
        db,
        program,
        member_id,
        points,
        reason=reason,
        actor=f"plugin:{plugin.plugin_id}",
        idempotency_key=f"{plugin.plugin_id}:{idempotency_key}",
    )
    return answer.result if answer.result is not None else EntryRead.model_validate(answer.body)


# ---- the one idempotency mechanism, for a plugin's own writes a client may retry


async def replayed(
    db: AsyncSession, plugin: PluginContext, key: str, request: Any
) -> tuple[int, dict[str, Any]] | None:
    """The answer stored for ``key`` (status, body) if this request was answered before;
    a 409 problem (naming ``idempotency_key``) when the key came with another request.
    Take your write's lock first (e.g. a row ``FOR UPDATE``), then ask."""
    answer = await _idempotency.replay(
        db, _scope(plugin), key, _idempotency.fingerprint(request), field="idempotency_key"
    )
    return None if answer is None else (answer.status_code, answer.body)


async def remember(
    db: AsyncSession, plugin: PluginContext, key: str, request: Any, status: int, body: Any
) -> None:
    """Store the answer to ``key`` in the write's transaction (``body``: JSON-able, or a
    pydantic model): a retry is answered with it, and a concurrent twin is a 409."""
    dumped = body.model_dump(mode="json") if hasattr(body, "model_dump") else body
    answer: _idempotency.Answer[Any] = _idempotency.Answer(status, dumped)
    await _idempotency.record(
        db, _scope(plugin), key, _idempotency.fingerprint(request), answer, field="idempotency_key"
    )


def _scope(plugin: PluginContext) -> str:
    return f"plugin:{plugin.plugin_id}"


# ---- personal data, the chain's clock, and events of the plugin's own


def seal(table: str, row_id: uuid.UUID, plaintext: str) -> str:
    """Encrypt personal data (an address, a note) for one row of the plugin's table, bound
    to the tenant, the table and the row, with the core's keys (rotated with them)."""
    context = _pii.row_context(require_tenant().tenant_id, table, row_id)
    return _pii.keyring().encrypt(plaintext, context=context)


def unseal(table: str, row_id: uuid.UUID, token: str) -> str:
    """Decrypt what :func:`seal` wrote for the same table and row."""
    context = _pii.row_context(require_tenant().tenant_id, table, row_id)
    return _pii.keyring().decrypt(token, context=context)


async def chain_now(db: AsyncSession) -> datetime:
    """Now, in the chain's time zone (its programme's): cut-offs and "tomorrow" are local."""
    return utcnow().astimezone((await _get_program(db)).zone)


def emit_event(
    db: AsyncSession,
    plugin: PluginContext,
    name: str,
    subject_type: str,
    subject_id: object,
    payload: dict[str, Any],
) -> None:
    """Raise ``<plugin-id>.<name>`` (e.g. ``delivery.status_changed``) through the outbox,
    in the caller's transaction, at the context's store: delivered after the commit to
    every plugin's ``nestpoint_on_event`` (and listed by ``GET /api/v1/events``)."""
    _emit(db, f"{plugin.plugin_id}.{name}", subject_type, subject_id, payload)


# ---- public routes (``RouteRegistry.add_public``): links anyone may open


async def public_path(db: AsyncSession, plugin: PluginContext, path: str = "") -> str:
    """The path at which the plugin's public route ``path`` answers for the plugin's chain:
    ``/public/<tenant-slug>/<plugin-id><path>`` (e.g. for a QR code printed on a product;
    put the service's public address in front of it, from your configuration)."""
    slug = await db.scalar(select(_Tenant.slug).where(_Tenant.id == plugin.tenant_id))
    if slug is None:
        raise NotFound("no such tenant")
    return _public_path(slug, plugin.plugin_id, path)


# ---- member routes (``RouteRegistry.add_member``): the member of the token, at a store


def current_member_id() -> uuid.UUID:
    """In a member route, the calling member's id (the member of the token, always an active
    member of the chain). Take the member from nowhere else: a member route answers only
    this member's rows (404 for another's). Raises ``NotFound`` (404) in any other request
    or in a job."""
    actor = _current_actor()
    if actor.kind != "member" or actor.key_id is None:
        raise NotFound("no member in this request")
    return actor.key_id


def member_key(member_id: uuid.UUID, key: str) -> str:
    """An idempotency key a member chose, made that member's own for :func:`replayed` and
    :func:`remember` (whose keys are the chain's): ``me.<member id, 32 hex>.<key>``, at
    most 100 characters for a key of at most 64. Two members who pick the same key then
    never meet (no 409 between them, no answer replayed to the wrong one)."""
    return f"me.{member_id.hex}.{key}"


async def plugin_at_store(
    db: AsyncSession, plugin: PluginContext, store_id: uuid.UUID
) -> PluginContext | None:
    """The plugin's context at one store of its chain (``config`` merged for that store), or
    ``None`` where the plugin is not enabled there. For a member route, a public route or a
    chain-wide job that acts on something of a store's (a consultant, a class session):
    offer it only where the plugin is on, under that store's configuration."""
    host = _get_plugin_host()
    enabled = await host.enabled_plugins(plugin.tenant_id, store_id, session=db, fresh=False)
    if plugin.plugin_id not in enabled:
        return None
    return PluginContext(plugin.plugin_id, plugin.tenant_id, store_id, enabled[plugin.plugin_id])


@contextmanager
def acting_at_store(store: PluginContext) -> Iterator[PluginContext]:
    """Run a block at the store of ``store`` (a context from :func:`plugin_at_store`), as
    its till would: what the core does in the block is that store's (a benefit is used, and
    checked usable, there; an event is raised there). The actor stays the caller's (in a
    member route, the member: audited as such). Same chain only."""
    if store.store_id is None or require_tenant().tenant_id != store.tenant_id:
        raise ValueError("acting_at_store takes a store's context of the request's chain")
    with tenant_context(store.tenant_id, store.store_id):
        yield store


# ---- the audit trail


def audit(
    db: AsyncSession,
    plugin: PluginContext,
    action: str,
    subject_type: str,
    subject_id: object,
    changes: dict[str, Any] | None = None,
) -> None:
    """Record ``<plugin-id>.<action>`` in the audit trail (``GET /api/v1/audit``), in the
    caller's transaction, with the request's actor: the key, the console user or, in a
    member route, the member (``actor_kind`` ``member``). Call it beside every change a
    client asked for (a booking, a cancellation), not on a replay. ``changes``: ids and
    values, never personal data in clear."""
    _record_audit(db, f"{plugin.plugin_id}.{action}", subject_type, subject_id, changes)


# ---- credentials the chain set for the plugin (write-only through the API)


async def plugin_secret(plugin: PluginContext, name: str) -> str | None:
    """The chain's value of a secret the plugin declared (``registry.secret(name, ...)`` in
    ``nestpoint_register_config_schema``), or ``None`` when HQ has not set it. Never log it,
    put it in an event or answer it: the core keeps it sealed for exactly that reason."""
    with tenant_context(plugin.tenant_id, plugin.store_id):
        async with scoped_session() as session:
            return await _secrets.reveal(session, plugin.plugin_id, name)


# ---- messages to members (the core's pipeline: consent, quiet hours, cap, fallback)


async def send_message(
    db: AsyncSession,
    plugin: PluginContext,
    member_id: uuid.UUID,
    *,
    key: str,
    purpose: str,
    template: str,
    params: dict[str, Any] | None = None,
) -> uuid.UUID | None:
    """Queue a message to a member in the caller's transaction (sent by the workers after
    the commit, through the chain's channels and rules: ``docs/messaging.md``). Idempotent
    by ``key`` (derive it from your own id or the event's: ``f"{event.id}"``; the plugin's
    id is prefixed). ``params`` add to the template's variables (``booking_time``...).
    Returns the message's id, or ``None`` when the chain switched this transactional
    ``purpose`` off. Raises 404 for a member the chain does not have."""
    settings = await _messaging.get_messaging_settings(db)
    if not _messaging.transactional_enabled(settings, purpose):
        return None
    member = await _get_active_member(db, member_id)
    message = await _messaging.queue_message(
        db,
        member_id=member.id,
        key=f"{plugin.plugin_id}:{key}",
        purpose=purpose,
        template=template,
        params=dict(params or {}),
        store_id=plugin.store_id,
    )
    return message.id


# ---- members as a plugin reaches them: an audience, and tags learnt from them

MAX_MEMBER_IDS = 1000


async def member_ids(
    db: AsyncSession,
    *,
    tags: Sequence[str] | None = None,
    after: uuid.UUID | None = None,
    limit: int = 500,
) -> list[uuid.UUID]:
    """The chain's active members' ids (an audience), in id order: with ``tags``, only the
    members holding at least one of them. A page at a time: pass the last id of a page as
    ``after`` for the next (``limit`` 1-1000); an empty list is the end. No personal data."""
    if not 1 <= limit <= MAX_MEMBER_IDS:
        raise ValueError(f"limit must be 1-{MAX_MEMBER_IDS}")
    return await _active_member_ids(db, tags=list(tags or ()), after=after, limit=limit)


async def add_member_tags(
    db: AsyncSession, plugin: PluginContext, member_id: uuid.UUID, tags: Sequence[str]
) -> list[str]:
    """Add ``tags`` to a member (a merged member's survivor) in the caller's transaction,
    keeping the tags it has; returns the member's tags after. Idempotent: tags it holds
    already change nothing. A change is audited with the plugin as actor (``plugin:<id>``)
    and raises ``member.updated``. Tags are checked like the members API's (at most 32
    characters, not blank: a 422 naming ``tags.<i>``); a member holds at most 50 tags (a
    422 naming ``tags`` when these would make more); 404 for a member the chain does not
    have."""
    with _acting_as(_Actor("system", name=f"plugin:{plugin.plugin_id}")):
        member = await _add_tags(db, member_id, list(tags))
    return list(member.tags)


# ---- survey question types (``nestpoint_register_survey_types``)


async def question_types(plugin: PluginContext) -> dict[str, QuestionType]:
    """The survey question types the plugins enabled here registered, by
    ``<plugin-id>.<key>`` (``surveys.nps``, ``my-plugin.baby_stage``): for a store's
    context the plugins enabled at that store; for the chain's (an HQ key, a public route,
    a periodic job) the plugins enabled for the chain or any of its stores. It may read the
    chain's plugin settings through a session of its own (a few seconds' cache): call it
    before your transaction's first statement, not while it holds locks (SQLite has one
    writer at a time)."""
    host = _get_plugin_host()
    found = await host.contributed(
        "question_types", plugin.tenant_id, plugin.store_id, anywhere=plugin.store_id is None
    )
    return {key: item for key, item in found.items() if isinstance(item, QuestionType)}


# ---- state shared by every worker: a provider's access token, per-recipient counters


async def cached_token(
    plugin: PluginContext, name: str, fetch: Callable[[], Awaitable[tuple[str, int]]]
) -> str:
    """A provider's access token shared by every worker of the chain: the cached one, or
    ``await fetch()``'s ``(token, lifetime_seconds)`` kept until five minutes before it
    expires (sealed, in the broker's Redis when there is one). Key it by what the token is
    for (``name``: e.g. the WeCom corp and agent); call :func:`forget_token` when the
    provider says the token expired, then fetch again."""
    return await _shared.cached_credential(_token_key(plugin, name), fetch)


async def forget_token(plugin: PluginContext, name: str) -> None:
    """Drop the cached token ``name`` (the provider refused it as expired or invalid)."""
    await _shared.forget_credential(_token_key(plugin, name))


def _token_key(plugin: PluginContext, name: str) -> str:
    return f"{plugin.plugin_id}:{plugin.tenant_id}:{name}"


async def within_rate_limit(plugin: PluginContext, key: str, limits: str) -> bool:
    """Count one use of ``key`` (a phone number, a destination) for the chain against
    ``limits`` (``"1/minute;5/hour;10/day"``, the ``limits`` library's notation), shared by
    every worker; ``False`` when a limit is used up (do not send)."""
    return await _shared.within_limits(f"{plugin.plugin_id}:{plugin.tenant_id}", key, limits)


__all__ = [
    "ENTRY_POINT_GROUP",
    "PROJECT_NAME",
    "Base",
    "BenefitType",
    "BenefitTypeRegistry",
    "BenefitUse",
    "CallbackRequest",
    "ChannelChoice",
    "ChannelConnector",
    "ChannelRegistry",
    "ChildFacts",
    "ConfigSchemaRegistry",
    "Conflict",
    "ConsolePanel",
    "ConsolePanelRegistry",
    "ConsoleViewer",
    "Db",
    "DeliveryReceipt",
    "DeliveryReport",
    "EarnAdjustment",
    "EarnContext",
    "EarnLine",
    "Entitlement",
    "Event",
    "FieldError",
    "Invalid",
    "JobRegistry",
    "MemberBenefitsView",
    "MemberFacts",
    "MigrationRegistry",
    "NotFound",
    "OutboundMessage",
    "PeriodicJob",
    "Plugin",
    "PluginContext",
    "PluginJob",
    "QuestionType",
    "RegistrationError",
    "RouteRegistry",
    "SurveyTypeRegistry",
    "TenantOwned",
    "UTCDateTime",
    "acting_at_store",
    "add_member_tags",
    "audit",
    "award_points",
    "cached_token",
    "chain_now",
    "current_member_id",
    "emit_event",
    "forget_token",
    "hookimpl",
    "member_benefits",
    "member_facts",
    "member_ids",
    "member_key",
    "new_id",
    "plugin_at_store",
    "plugin_secret",
    "problems",
    "public_path",
    "question_types",
    "remember",
    "replayed",
    "reverse_benefit_use",
    "rls",
    "seal",
    "send_message",
    "unseal",
    "use_benefit",
    "utcnow",
    "within_rate_limit",
]
