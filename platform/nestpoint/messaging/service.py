"""Rules of messaging that answer the API: settings, templates, sending, records, reach.

The pipeline that decides and sends (consent, quiet hours, cap, fallback) is
``nestpoint.messaging.pipeline``; this module creates the messages it works through.
"""

from __future__ import annotations

import calendar
import json
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import extract, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from nestpoint.audit.service import record
from nestpoint.billing import service as billing
from nestpoint.context import require_tenant
from nestpoint.db.base import new_id, utcnow
from nestpoint.db.pagination import Page, paginate
from nestpoint.db.session import on_commit
from nestpoint.errors import FieldError, Invalid, NotFound
from nestpoint.idempotency import service as idempotency
from nestpoint.idempotency.service import Answer, fingerprint
from nestpoint.jobs.broker import JobRef, enqueue_best_effort
from nestpoint.members.models import Member
from nestpoint.members.service import cipher_of, get_active_member, seal, unseal, writing_cipher
from nestpoint.messaging import templates
from nestpoint.messaging.models import (
    Message,
    MessageAttempt,
    MessageTemplate,
    MessagingSettingsRow,
)
from nestpoint.messaging.schemas import (
    TRANSACTIONAL,
    MessageList,
    MessageRead,
    MessagingSettings,
    PreviewIn,
    ReachReport,
    ReachRow,
    Rendered,
    SendIn,
    TemplateIn,
    TemplateRead,
)
from nestpoint.messaging.variables import member_variables, sample_variables
from nestpoint.plugins.types import DeliveryReport
from nestpoint.tenancy.models import Store

DELIVER = JobRef("messaging.deliver", queue_name="default")
# System purposes whose messages carry sealed secrets (``Message.sealed``): sent once, to
# the sealed address, never requeued (the secret is wiped when the message settles).
PHONE_VERIFICATION = "phone_verification"
SEALED_PURPOSES = (PHONE_VERIFICATION,)
_NEW_KEY = "nestpoint.messaging.new"
FINAL = frozenset({"sent", "delivered", "failed", "suppressed"})

# ---------------------------------------------------------------------------- settings


async def get_messaging_settings(session: AsyncSession) -> MessagingSettings:
    """The chain's settings (the defaults until HQ sets them)."""
    return await stored_messaging_settings(session) or MessagingSettings()


async def stored_messaging_settings(session: AsyncSession) -> MessagingSettings | None:
    """The settings HQ stored, or ``None`` when the chain never set any."""
    row = await session.get(MessagingSettingsRow, require_tenant().tenant_id)
    return MessagingSettings.model_validate(row.settings) if row else None


async def put_messaging_settings(
    session: AsyncSession, data: MessagingSettings
) -> MessagingSettings:
    tenant_id = require_tenant().tenant_id
    row = await session.get(MessagingSettingsRow, tenant_id)
    before = row.settings if row else {}
    after = data.model_dump(mode="json")
    if row is None:
        session.add(MessagingSettingsRow(settings=after))
    else:
        row.settings = after
    record(
        session, "messaging.settings_changed", "tenant", tenant_id, {"settings": [before, after]}
    )
    return data


# ---------------------------------------------------------------------------- templates


async def _custom(session: AsyncSession, key: str | None = None) -> list[MessageTemplate]:
    stmt = select(MessageTemplate).order_by(MessageTemplate.key, MessageTemplate.locale)
    if key is not None:
        stmt = stmt.where(MessageTemplate.key == key)
    return list((await session.scalars(stmt)).all())


async def list_templates(session: AsyncSession) -> list[TemplateRead]:
    """Every template the chain can send: built-in wording, overridden by the chain's."""
    custom = {
        (t.key, t.locale): templates.Wording(t.subject, t.body, t.html)
        for t in await _custom(session)
    }
    out: list[TemplateRead] = []
    for key in sorted(set(templates.BUILT_IN) | {k for k, _ in custom}):
        for locale in ("zh-CN", "en"):
            own = custom.get((key, locale))
            wording = own or templates.BUILT_IN.get(key, {}).get(locale)
            if wording is not None:
                out.append(_template_read(key, locale, wording, custom=own is not None))
    return out


def _template_read(
    key: str, locale: str, wording: templates.Wording, *, custom: bool
) -> TemplateRead:
    return TemplateRead(
        key=key,
        locale=locale,
        subject=wording.subject,
        body=wording.body,
        html=wording.html,
        custom=custom,
    )


async def put_template(
    session: AsyncSession, key: str, locale: str, data: TemplateIn
) -> TemplateRead:
    templates.check("subject", data.subject)
    templates.check("body", data.body)
    templates.check("html", data.html, html=True)
    row = await session.scalar(
        select(MessageTemplate).where(MessageTemplate.key == key, MessageTemplate.locale == locale)
    )
    if row is None:
        row = MessageTemplate(key=key, locale=locale, subject="", body="", html="")
        session.add(row)
    before = {"subject": row.subject, "body": row.body, "html": row.html}
    row.subject, row.body, row.html = data.subject, data.body, data.html
    record(
        session,
        "messaging.template_set",
        "template",
        f"{key}/{locale}",
        {"before": before, "after": data.model_dump()},
    )
    return _template_read(
        key, locale, templates.Wording(data.subject, data.body, data.html), custom=True
    )


async def delete_template(session: AsyncSession, key: str, locale: str) -> None:
    """Back to the built-in wording (for a key without one, the template is gone)."""
    row = await session.scalar(
        select(MessageTemplate).where(MessageTemplate.key == key, MessageTemplate.locale == locale)
    )
    if row is not None:
        await session.delete(row)
        record(session, "messaging.template_cleared", "template", f"{key}/{locale}")


async def wording(session: AsyncSession, key: str, locale: str) -> templates.Wording | None:
    """The chain's wording of ``key`` in ``locale`` (or in the other locale when only
    that one exists), else the built-in one; ``None`` when there is none at all."""
    custom = {t.locale: t for t in await _custom(session, key)}
    built = templates.BUILT_IN.get(key, {})
    for candidate in (locale, "zh-CN", "en"):
        if (own := custom.get(candidate)) is not None:
            return templates.Wording(own.subject, own.body, own.html)
        if (found := built.get(candidate)) is not None:
            return found
    return None


def render(wording: templates.Wording, variables: dict[str, Any]) -> Rendered:
    return Rendered(
        subject=templates.render(wording.subject, variables),
        body=templates.render(wording.body, variables),
        html=templates.render(wording.html, variables, html=True),
        variables={k: "" if v is None else str(v) for k, v in variables.items()},
    )


async def preview(session: AsyncSession, data: PreviewIn) -> Rendered:
    """Render a stored template or the given text, for a member or with sample values."""
    stored = await wording(session, data.key, data.locale) if data.key else None
    if data.key and stored is None and data.body is None:
        raise NotFound(f"no template {data.key!r}", errors=[FieldError("key", "no such template")])
    base = stored or templates.Wording("", "")
    chosen = templates.Wording(
        data.subject if data.subject is not None else base.subject,
        data.body if data.body is not None else base.body,
        data.html if data.html is not None else base.html,
    )
    for field, source, html in (
        ("subject", chosen.subject, False),
        ("body", chosen.body, False),
        ("html", chosen.html, True),
    ):
        templates.check(field, source, html=html)
    if data.member_id is not None:
        variables = await member_variables(session, data.member_id, None, data.locale)
    else:
        variables = sample_variables(data.locale)
    return render(chosen, {**variables, **data.params})


# ---------------------------------------------------------------------------- sending


SEND_SCOPE = "message"  # idempotency keys of POST /messages: the request's message_key


async def send(session: AsyncSession, data: SendIn) -> Answer[MessageList]:
    """One message per member, queued; idempotent by ``message_key`` through the
    idempotency keys: a retry answers the first 202 (nothing new queued), the same key with
    another request is a 409 naming ``message_key``. Claimed before anything is written, so
    two identical requests at once queue the messages once."""
    if await wording(session, data.template, "zh-CN") is None:
        raise Invalid.field("template", f"no template {data.template!r}")
    store_id = await _store_id(session, data.store_code)
    now = utcnow()
    messages = [
        _new_message(
            member_id=await _member_of(session, index, member_id),
            key=f"api:{data.message_key}:{member_id}",
            purpose=data.purpose,
            template=data.template,
            params=data.params,
            store_id=store_id,
            now=now,
        )
        for index, member_id in enumerate(dict.fromkeys(data.member_ids))
    ]
    body = MessageList(items=[MessageRead.model_validate(m) for m in messages])
    answer = Answer(202, body.model_dump(mode="json"), result=body)
    earlier = await idempotency.claim(
        session, SEND_SCOPE, data.message_key, fingerprint(data), answer, field="message_key"
    )
    if earlier is not None:
        return earlier
    # Marketing messages count against the plan's monthly quota (docs/billing.md).
    await billing.ensure_message_room(session, data.purpose, len(messages), "member_ids")
    session.add_all(messages)
    await session.flush()
    _enqueue_after_commit(session, messages)
    return answer


async def _member_of(session: AsyncSession, index: int, member_id: uuid.UUID) -> uuid.UUID:
    """The member (a merged one's survivor), or 404 naming ``member_ids.<index>``."""
    try:
        return (await get_active_member(session, member_id)).id
    except NotFound as exc:
        raise NotFound(
            f"no member {member_id}", errors=[FieldError(f"member_ids.{index}", "no such member")]
        ) from exc


def _new_message(
    *,
    member_id: uuid.UUID,
    key: str,
    purpose: str,
    template: str,
    params: dict[str, Any],
    store_id: uuid.UUID | None,
    now: datetime,
) -> Message:
    """A queued message with every column set (its answer is made before it is written)."""
    return Message(
        id=new_id(),
        message_key=key,
        member_id=member_id,
        store_id=store_id,
        purpose=purpose,
        template=template,
        params=params,
        status="queued",
        reason=None,
        channel=None,
        tried=[],
        attempts=0,
        provider_message_id=None,
        not_before=now,
        lease_until=None,
        created_at=now,
        updated_at=now,
        sent_at=None,
        delivered_at=None,
    )


async def queue_message(
    session: AsyncSession,
    *,
    member_id: uuid.UUID,
    key: str,
    purpose: str,
    template: str,
    params: dict[str, Any],
    store_id: uuid.UUID | None = None,
) -> Message:
    """The message for ``key``: queued now (sent after the commit) unless it exists. Two
    callers with the same key at once get the one message (the loser of the unique key
    finds the winner's)."""
    found = await _by_key(session, key)
    if found is not None:
        return found
    await billing.ensure_message_room(session, purpose, 1, "purpose")  # the plan's quota
    message = _new_message(
        member_id=member_id,
        key=key,
        purpose=purpose,
        template=template,
        params=params,
        store_id=store_id,
        now=utcnow(),
    )
    try:
        async with session.begin_nested():
            session.add(message)
    except IntegrityError:
        winner = await _by_key(session, key)
        if winner is None:
            raise
        return winner
    _enqueue_after_commit(session, [message])
    return message


async def queue_sealed(
    session: AsyncSession,
    *,
    member: Member,
    key: str,
    purpose: str,
    to: str,
    secrets: dict[str, str],
    store_id: uuid.UUID | None = None,
) -> Message:
    """A system message (a one-time code) to ``to``, an address that is not the member's
    yet, queued now unless ``key`` exists. The address and ``secrets`` (variables of the
    template ``purpose``) are sealed under the member's key on the message, never in its
    ``params``, and wiped once it settles (``pipeline``); it goes by a phone channel only,
    without consent, quiet hours or the frequency cap (the member asks for it now), and
    never counts against the plan's message quota."""
    found = await _by_key(session, key)
    if found is not None:
        return found
    message = _new_message(
        member_id=member.id,
        key=key,
        purpose=purpose,
        template=purpose,
        params={},
        store_id=store_id,
        now=utcnow(),
    )
    sealed = json.dumps({"to": to, "params": secrets}, separators=(",", ":"))
    message.sealed = seal(writing_cipher(member), "messages", message.id, sealed)
    session.add(message)
    _enqueue_after_commit(session, [message])
    return message


def open_sealed(member: Member, message: Message) -> tuple[str, dict[str, str]] | None:
    """The address and secret variables :func:`queue_sealed` sealed (None once wiped)."""
    if message.sealed is None:
        return None
    opened = json.loads(unseal(cipher_of(member), "messages", message.id, message.sealed))
    return str(opened["to"]), {str(k): str(v) for k, v in opened["params"].items()}


async def _by_key(session: AsyncSession, key: str) -> Message | None:
    return await session.scalar(select(Message).where(Message.message_key == key))


def _enqueue_after_commit(session: AsyncSession, messages: list[Message]) -> None:
    tenant_id = require_tenant().tenant_id
    session.info.setdefault(_NEW_KEY, []).extend((tenant_id, m.id) for m in messages)


def transactional_enabled(settings: MessagingSettings, purpose: str) -> bool:
    return purpose not in TRANSACTIONAL or settings.transactional.get(purpose, False)


def enqueue_new_after_commit(session: Session) -> None:
    """Session hook: hand the messages this commit created to the workers (best effort:
    the sweep finds any a lost enqueue missed)."""
    for tenant_id, message_id in session.info.pop(_NEW_KEY, []):
        enqueue_best_effort(DELIVER, str(tenant_id), str(message_id))


on_commit(enqueue_new_after_commit)


async def _store_id(session: AsyncSession, code: str | None) -> uuid.UUID | None:
    if code is None:
        return None
    store = await session.scalar(select(Store).where(Store.code == code))
    if store is None:
        raise NotFound(f"no store {code!r}", errors=[FieldError("store_code", "no such store")])
    return store.id


# ---------------------------------------------------------------------------- records


async def list_messages(
    session: AsyncSession,
    *,
    cursor: str | None,
    limit: int,
    member_id: uuid.UUID | None,
    status: str | None,
    purpose: str | None,
) -> Page[Message]:
    stmt = select(Message)
    if member_id is not None:
        stmt = stmt.where(Message.member_id == member_id)
    if status is not None:
        stmt = stmt.where(Message.status == status)
    if purpose is not None:
        stmt = stmt.where(Message.purpose == purpose)
    return await paginate(
        session, stmt, (Message.created_at, Message.id), cursor=cursor, limit=limit
    )


async def get_message(
    session: AsyncSession, message_id: uuid.UUID
) -> tuple[Message, list[MessageAttempt]]:
    message = await session.get(Message, (require_tenant().tenant_id, message_id))
    if message is None:
        raise NotFound("no such message")
    attempts = (
        await session.scalars(
            select(MessageAttempt)
            .where(MessageAttempt.message_id == message_id)
            .order_by(MessageAttempt.number)
        )
    ).all()
    return message, list(attempts)


async def reach(session: AsyncSession, since: datetime, until: datetime) -> ReachReport:
    """Counts by channel, status and reason of the messages created in ``[since, until)``."""
    if until <= since:
        raise Invalid.field("until", "must be after since")
    rows = (
        await session.execute(
            select(Message.channel, Message.status, Message.reason, func.count())
            .where(Message.created_at >= since, Message.created_at < until)
            .group_by(Message.channel, Message.status, Message.reason)
            .order_by(Message.channel, Message.status, Message.reason)
        )
    ).all()
    out = [ReachRow(channel=c, status=s, reason=r, count=int(n)) for c, s, r, n in rows]
    settled = [r for r in out if r.status in FINAL]
    total = sum(r.count for r in settled)
    reached = sum(r.count for r in settled if r.status in ("sent", "delivered"))
    return ReachReport(
        since=since,
        until=until,
        total=total,
        reached=reached,
        reach_rate=round(reached / total, 4) if total else None,
        rows=out,
    )


async def apply_reports(session: AsyncSession, channel: str, reports: list[DeliveryReport]) -> int:
    """A provider's receipts: sent messages become delivered, or failed (``undelivered``).
    A receipt for a message already settled by another receipt changes nothing."""
    applied = 0
    for report in reports:
        message = await session.scalar(
            select(Message)
            .where(
                Message.provider_message_id == report.provider_message_id,
                Message.channel == channel,
            )
            .with_for_update()
        )
        if message is None or message.status != "sent":
            continue
        if report.delivered:
            message.status, message.delivered_at = "delivered", utcnow()
        else:
            message.status, message.reason = "failed", "undelivered"
        applied += 1
    return applied


# ---------------------------------------------------------------------------- birthdays


async def queue_birthdays(session: AsyncSession, today: date) -> int:
    """Queue the birthday message for every active member born on ``today``'s month and
    day (the chain's date; 29 February counts on 28 February in other years), once per
    member and year; nothing when the chain switched ``birthday`` off. Returns how many
    were new."""
    if not transactional_enabled(await get_messaging_settings(session), "birthday"):
        return 0
    days = [today.day]
    if (today.month, today.day) == (2, 28) and not calendar.isleap(today.year):
        days.append(29)
    born = await session.scalars(
        select(Member.id).where(
            Member.status == "active",
            Member.birthday.is_not(None),
            extract("month", Member.birthday) == today.month,
            extract("day", Member.birthday).in_(days),
        )
    )
    new = 0
    for member_id in born.all():
        key = f"birthday:{today.year}:{member_id}"
        before = len(session.info.get(_NEW_KEY, []))
        await queue_message(
            session,
            member_id=member_id,
            key=key,
            purpose="birthday",
            template="birthday",
            params={},
        )
        new += len(session.info.get(_NEW_KEY, [])) - before
    return new


# ---------------------------------------------------------------------------- operators

# Failures that are safe to try again: no provider took the message. ``interrupted`` (a
# provider may have it) and ``undelivered`` (a provider sent it) never are.
REQUEUEABLE = ("all_channels_failed", "no_template")


async def requeue_failed(session: AsyncSession, since: datetime) -> list[uuid.UUID]:
    """Queue again the messages created since ``since`` that failed before any provider
    took them (after a provider's outage), with every channel to try afresh; audited."""
    rows = (
        await session.scalars(
            select(Message)
            .where(
                Message.status == "failed",
                Message.reason.in_(REQUEUEABLE),
                Message.purpose.not_in(SEALED_PURPOSES),  # their secret is gone
                Message.created_at >= since,
            )
            .with_for_update()
        )
    ).all()
    for message in rows:
        message.status, message.reason, message.tried = "queued", None, []
        message.not_before = utcnow()
        session.info.setdefault(_NEW_KEY, []).append((message.tenant_id, message.id))
    if rows:
        record(
            session,
            "messaging.requeued",
            "tenant",
            require_tenant().tenant_id,
            {"messages": len(rows), "since": since.isoformat()},
        )
    return [m.id for m in rows]
