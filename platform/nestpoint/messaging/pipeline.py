"""The send pipeline: one step of one message at a time, run by the ``messaging.deliver``
worker job (never in a request).

A step, for a message that is due:

1. **Decide**, in one transaction holding the message's row: the member still active, the
   purpose switched on, quiet hours in the chain's time zone (defer or suppress), the
   frequency cap, then the channels that may reach the member now (enabled, consented,
   with an address), in the chain's order (``nestpoint_choose_channel`` may pick the first),
   minus those already given up on. Nothing left → suppressed (``no_channel``,
   ``no_consent``, ``no_address``) before any attempt, failed (``all_channels_failed``)
   after some. Otherwise the message becomes ``sending`` under a lease, and an attempt row
   is written and committed *before* the connector is called.
2. **Send**, outside any transaction: the connector's ``send`` with a timeout.
3. **Record**, in a second transaction: accepted → ``sent`` (or ``delivered``); ``retry``
   → the same channel again after its back-off, until its ``max_attempts``; refused or
   out of attempts → the next channel at once.

A worker that dies between 1 and 3 leaves the message ``sending`` with an attempt that has
no outcome. When its lease has run out, the next step does not guess: a connector whose
provider deduplicates by ``message_id`` (``idempotent``) is called again with the same id;
any other makes the message ``failed`` with reason ``interrupted``. Hence a retried job, a
redelivered job or a sweep never sends a message twice.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.context import Actor, acting_as, require_tenant, tenant_context
from nestpoint.db import scoped_session
from nestpoint.db.base import utcnow
from nestpoint.loyalty.service import get_program
from nestpoint.members.models import Member, MemberConsent
from nestpoint.messaging import service
from nestpoint.messaging.models import Message, MessageAttempt
from nestpoint.messaging.schemas import MessagingSettings
from nestpoint.messaging.variables import member_address, member_variables
from nestpoint.plugins.manager import get_plugin_host
from nestpoint.plugins.types import (
    ChannelChoice,
    ChannelConnector,
    DeliveryReceipt,
    OutboundMessage,
    PluginContext,
)
from nestpoint.tenancy.models import Tenant

log = logging.getLogger("nestpoint.messaging")

LEASE = timedelta(minutes=2)
SEND_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Route:
    """A connector that may take this message now, with what it needs."""

    plugin_id: str
    connector: ChannelConnector
    config: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Send:
    route: Route
    outbound: OutboundMessage
    attempt_id: uuid.UUID


async def step(
    tenant_id: uuid.UUID, message_id: uuid.UUID, now: datetime | None = None
) -> float | None:
    """Run one step of the message; returns the seconds until its next step is due (0: at
    once), or ``None`` when there is nothing more to do (settled, or held by a worker)."""
    with acting_as(Actor("system", name="messaging.deliver")), tenant_context(tenant_id):
        moment = now or utcnow()
        async with scoped_session() as session:
            decided = await _decide(session, message_id, moment)
        if not isinstance(decided, Send):
            return decided
        receipt = await _call(decided)
        async with scoped_session() as session:
            return await _record(session, message_id, decided, receipt, now or utcnow())


# ---------------------------------------------------------------------------- 1. decide


async def _decide(
    session: AsyncSession, message_id: uuid.UUID, now: datetime
) -> Send | float | None:
    message = await session.scalar(
        select(Message).where(Message.id == message_id).with_for_update()
    )
    if message is None or message.status in service.FINAL:
        return None
    try:
        return await _decide_for(session, message, now)
    finally:
        _wipe_if_settled(message)


def _wipe_if_settled(message: Message) -> None:
    """A settled message keeps no sealed secret (a one-time code is of no use any more)."""
    if message.status in service.FINAL:
        message.sealed = None


async def _decide_for(
    session: AsyncSession, message: Message, now: datetime
) -> Send | float | None:
    if message.status == "sending":
        if message.lease_until is not None and message.lease_until > now:
            return None  # a worker holds it
        resumed = await _resume_interrupted(session, message, now)
        if resumed is not None:
            return resumed
        if message.status in service.FINAL:
            return None
    if message.not_before > now:
        return (message.not_before - now).total_seconds()
    return await _plan(session, message, now)


async def _resume_interrupted(
    session: AsyncSession, message: Message, now: datetime
) -> Send | None:
    """A worker died mid-send: call an idempotent connector again, fail the message otherwise."""
    attempt = await session.scalar(
        select(MessageAttempt)
        .where(MessageAttempt.message_id == message.id, MessageAttempt.outcome.is_(None))
        .order_by(MessageAttempt.number.desc())
        .limit(1)
    )
    routes = await _routes(session, message)
    route = routes.get(message.channel or "")
    if attempt is not None:
        attempt.outcome, attempt.finished_at, attempt.detail = "interrupted", now, "worker lost"
    if route is not None and route.connector.idempotent:
        return await _begin(session, message, route, now)
    message.status, message.reason, message.lease_until = "failed", "interrupted", None
    return None


async def _plan(session: AsyncSession, message: Message, now: datetime) -> Send | float | None:
    settings = await service.get_messaging_settings(session)
    member = await session.get(Member, (require_tenant().tenant_id, message.member_id))
    fresh = message.attempts == 0 and not message.tried
    if member is None or member.status != "active":
        return _suppress(message, "member_inactive")
    if not service.transactional_enabled(settings, message.purpose):
        return _suppress(message, "disabled")
    if message.purpose in service.SEALED_PURPOSES:
        return await _plan_sealed(session, message, member, now)
    quiet_until = await _quiet_until(session, settings, now)
    if quiet_until is not None:
        if fresh and settings.quiet_hours and settings.quiet_hours.action == "suppress":
            return _suppress(message, "quiet_hours")
        message.not_before = quiet_until
        return (quiet_until - now).total_seconds()
    if fresh and await _over_cap(session, settings, message, now):
        return _suppress(message, "frequency_cap")
    candidates, why_none = await _candidates(session, settings, message, member)
    if not candidates:
        if message.tried:
            message.status, message.reason, message.lease_until = (
                "failed",
                "all_channels_failed",
                None,
            )
            return None
        return _suppress(message, why_none)
    if fresh:
        candidates = await _ask_plugins(message, candidates)
    return await _begin(session, message, candidates[0], now)


async def _plan_sealed(
    session: AsyncSession, message: Message, member: Member, now: datetime
) -> Send | float | None:
    """A system message (``service.queue_sealed``): to its sealed address, by the enabled
    phone channels (the chain's order), without consent, quiet hours or the cap: the member
    asked for it a moment ago and waits for it."""
    opened = service.open_sealed(member, message)
    if opened is None:
        return _suppress(message, "no_address")
    settings = await service.get_messaging_settings(session)
    routes = await _routes(session, message)
    order = [k for k in settings.channel_order if k in routes]
    order += sorted(k for k in routes if k not in order)
    phones = [k for k in order if routes[k].connector.address == "phone" and k not in message.tried]
    if not phones:
        if message.tried:
            message.status, message.reason, message.lease_until = (
                "failed",
                "all_channels_failed",
                None,
            )
            return None
        return _suppress(message, "no_channel")
    return await _begin(session, message, (routes[phones[0]], opened[0]), now)


def _suppress(message: Message, reason: str) -> float | None:
    """Settle the message unsent: nothing more to do (``None``)."""
    message.status, message.reason, message.lease_until = "suppressed", reason, None
    return None


async def _quiet_until(
    session: AsyncSession, settings: MessagingSettings, now: datetime
) -> datetime | None:
    """The end of the quiet hours ``now`` falls in (chain's time zone), or ``None``."""
    quiet = settings.quiet_hours
    if quiet is None or quiet.start == quiet.end:
        return None
    start, end_at = quiet.window
    zone = (await get_program(session)).zone
    local = now.astimezone(zone)
    t = local.time().replace(tzinfo=None)
    inside = (start <= t < end_at) if start < end_at else (t >= start or t < end_at)
    if not inside:
        return None
    end = datetime.combine(local.date(), end_at, tzinfo=zone)
    if end <= local:
        end += timedelta(days=1)
    return end


async def _over_cap(
    session: AsyncSession, settings: MessagingSettings, message: Message, now: datetime
) -> bool:
    cap = settings.frequency_cap
    if cap is None or message.purpose in cap.exempt:
        return False
    sent = await session.scalar(
        select(func.count())
        .select_from(Message)
        .where(
            Message.member_id == message.member_id,
            Message.status.in_(("sent", "delivered")),
            Message.sent_at >= now - timedelta(days=cap.days),
            Message.purpose.not_in(cap.exempt),
        )
    )
    return int(sent or 0) >= cap.count


async def _routes(session: AsyncSession, message: Message) -> dict[str, Route]:
    """The connectors enabled for the message's tenant and store, by channel key."""
    return await _enabled_routes(session, message.store_id)


async def can_reach_phone(session: AsyncSession, store_id: uuid.UUID | None) -> bool:
    """Whether a system message to a phone (``_plan_sealed``: a code to a new phone) has a
    channel to go by for the current tenant and this store: an enabled connector whose
    address is the phone (SMS). Asked before a code is promised, so none is lost."""
    routes = await _enabled_routes(session, store_id)
    return any(route.connector.address == "phone" for route in routes.values())


async def _enabled_routes(session: AsyncSession, store_id: uuid.UUID | None) -> dict[str, Route]:
    host = get_plugin_host()
    tenant_id = require_tenant().tenant_id
    enabled = await host.enabled_plugins(tenant_id, store_id, session=session)
    routes: dict[str, Route] = {}
    for plugin_id in sorted(enabled):
        for key, connector in host.contributions[plugin_id].channels.items():
            routes.setdefault(key, Route(plugin_id, connector, enabled[plugin_id]))
    return routes


async def _candidates(
    session: AsyncSession, settings: MessagingSettings, message: Message, member: Member
) -> tuple[list[tuple[Route, str]], str]:
    """The routes that may reach the member now, in order, each with the address; and why
    there are none when there are none."""
    routes = await _routes(session, message)
    order = [k for k in settings.channel_order if k in routes]
    order += sorted(k for k in routes if k not in order)
    order = [k for k in order if k not in message.tried]
    if not order:
        return [], "no_channel"
    granted = set(
        (
            await session.scalars(
                select(MemberConsent.channel).where(
                    MemberConsent.member_id == member.id, MemberConsent.granted.is_(True)
                )
            )
        ).all()
    )
    consented = [k for k in order if routes[k].connector.consent in granted]
    if not consented:
        return [], "no_consent"
    out: list[tuple[Route, str]] = []
    for key in consented:
        address = await member_address(session, member, routes[key].connector.address)
        if address:
            out.append((routes[key], address))
    return out, "no_address"


async def _ask_plugins(
    message: Message, candidates: list[tuple[Route, str]]
) -> list[tuple[Route, str]]:
    keys = tuple(route.connector.key for route, _ in candidates)
    choice = ChannelChoice(
        tenant_id=str(require_tenant().tenant_id),
        store_id=str(message.store_id) if message.store_id else None,
        member_id=str(message.member_id),
        purpose=message.purpose,
        available=keys,
    )
    chosen = await get_plugin_host().choose_channel(
        require_tenant().tenant_id, message.store_id, choice
    )
    if chosen is None:
        return candidates
    return sorted(candidates, key=lambda c: c[0].connector.key != chosen)


async def _begin(
    session: AsyncSession, message: Message, candidate: Route | tuple[Route, str], now: datetime
) -> Send | None:
    """Render, hold the message for this worker and write the attempt before the call."""
    member = await session.get(Member, (require_tenant().tenant_id, message.member_id))
    assert member is not None
    opened = service.open_sealed(member, message)
    if isinstance(candidate, Route):  # resuming: the address is looked up again
        route, address = (
            candidate,
            opened[0]
            if opened
            else await member_address(session, member, candidate.connector.address) or "",
        )
    else:
        route, address = candidate
    tenant = await session.get(Tenant, require_tenant().tenant_id)
    locale = tenant.locale if tenant and tenant.locale in ("zh-CN", "en") else "en"
    wording = await service.wording(session, message.template, locale)
    if wording is None:  # the chain deleted a template of its own since it was queued
        message.status, message.reason, message.lease_until = "failed", "no_template", None
        return None
    variables = await member_variables(session, message.member_id, message.store_id, locale)
    secrets = opened[1] if opened else {}
    rendered = service.render(wording, {**variables, **message.params, **secrets})
    number = message.attempts + 1
    attempt = MessageAttempt(
        message_id=message.id, channel=route.connector.key, number=number, started_at=now
    )
    session.add(attempt)
    message.status, message.channel, message.attempts = "sending", route.connector.key, number
    message.lease_until = now + LEASE
    await session.flush()
    outbound = OutboundMessage(
        message_id=f"{message.id}:{route.connector.key}",
        tenant_id=str(message.tenant_id),
        store_id=str(message.store_id) if message.store_id else None,
        member_id=str(message.member_id),
        channel=route.connector.key,
        to=address,
        purpose=message.purpose,
        template=message.template,
        locale=locale,
        subject=rendered.subject,
        body=rendered.body,
        html=rendered.html,
        params=rendered.variables,
    )
    return Send(route, outbound, attempt.id)


# ---------------------------------------------------------------------------- 2. send


async def _call(decided: Send) -> DeliveryReceipt:
    route = decided.route
    context = PluginContext(
        route.plugin_id,
        require_tenant().tenant_id,
        uuid.UUID(decided.outbound.store_id) if decided.outbound.store_id else None,
        route.config,
    )
    try:
        receipt = await asyncio.wait_for(
            route.connector.send(decided.outbound, context), SEND_TIMEOUT_SECONDS
        )
    except Exception as exc:  # the connector's failure: retried; its text may hold a token
        log.warning(
            "connector failed",
            extra={"channel": route.connector.key, "error": type(exc).__name__},
        )
        return DeliveryReceipt(accepted=False, retry=True, detail=type(exc).__name__)
    if not isinstance(receipt, DeliveryReceipt):
        return DeliveryReceipt(accepted=False, detail=f"returned {type(receipt).__name__}")
    return receipt


# ---------------------------------------------------------------------------- 3. record


async def _record(
    session: AsyncSession,
    message_id: uuid.UUID,
    sent: Send,
    receipt: DeliveryReceipt,
    now: datetime,
) -> float | None:
    message = await session.scalar(
        select(Message).where(Message.id == message_id).with_for_update()
    )
    assert message is not None
    try:
        return await _record_for(session, message, sent, receipt, now)
    finally:
        _wipe_if_settled(message)


async def _record_for(
    session: AsyncSession,
    message: Message,
    sent: Send,
    receipt: DeliveryReceipt,
    now: datetime,
) -> float | None:
    message_id = message.id
    attempt = await session.get(MessageAttempt, (require_tenant().tenant_id, sent.attempt_id))
    assert attempt is not None
    attempt.finished_at = now
    attempt.detail = receipt.detail[:200]
    attempt.provider_message_id = receipt.provider_message_id or None
    message.lease_until = None
    if receipt.accepted:
        attempt.outcome = "delivered" if receipt.delivered else "accepted"
        message.status = "delivered" if receipt.delivered else "sent"
        message.provider_message_id = receipt.provider_message_id or None
        message.sent_at = now
        message.delivered_at = now if receipt.delivered else None
        message.reason = None
        return None
    connector = sent.route.connector
    attempt.outcome = "retry" if receipt.retry else "refused"
    message.status, message.reason = "queued", (receipt.detail or attempt.outcome)[:64]
    tries = await session.scalar(
        select(func.count())
        .select_from(MessageAttempt)
        .where(MessageAttempt.message_id == message_id, MessageAttempt.channel == connector.key)
    )
    if receipt.retry and int(tries or 0) < connector.max_attempts:
        wait = connector.retry_seconds * 2 ** (int(tries or 1) - 1)
        message.not_before = now + timedelta(seconds=wait)
        return float(wait)
    message.tried = [*message.tried, connector.key]
    message.not_before = now
    return 0.0
