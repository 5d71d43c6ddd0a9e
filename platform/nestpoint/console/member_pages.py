"""The member's page in the console (their 360° view) and what HQ's admin does there.

Profile, children, tier and its history, points with their lots and ledger, orders with
their refunds, benefits, stored value, messages, then the plugins' panels (bookings,
classes, survey answers...). Everything is read through the same services as the API, as
the signed-in user: the reach rules, the masking of personal data and the audit of an
unmasked read apply unchanged.
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Request, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.api.deps import Db
from nestpoint.benefits import service as benefits
from nestpoint.console import service
from nestpoint.console.pages import PURPOSE, allow, render
from nestpoint.console.web import PREFIX, Me, _, language, me_of
from nestpoint.context import current_actor, require_tenant
from nestpoint.errors import Forbidden, NotFound
from nestpoint.loyalty.service import get_program
from nestpoint.memberapi.service import revoke_member_tokens
from nestpoint.members import service as members
from nestpoint.members.models import Member
from nestpoint.plugins.manager import RenderedPanel, get_plugin_host
from nestpoint.plugins.types import ConsoleViewer
from nestpoint.points import service as points
from nestpoint.tiers import service as tiers
from nestpoint.wallet import service as wallet

REVOKE_SCOPE = "member_tokens:write"  # what the API's POST /member-tokens/revoke needs


async def _member(db: AsyncSession, member_id: str) -> Member:
    """The member the user reaches, or 404 (an id that is not one, another store's)."""
    try:
        wanted = uuid.UUID(member_id)
    except ValueError:
        raise NotFound(_("No such member")) from None
    return await members.get_member_in_reach(db, wanted)


def _may_revoke(me: Me) -> bool:
    return me.role == "hq_admin" and current_actor().has(REVOKE_SCOPE)


@get("/members/{member_id:str}", name="console:member")
async def member_page(
    request: Request[Any, Any, Any],
    db: Db,
    member_id: FromPath[str],
    app_sessions: FromQuery[str] = "",
) -> Template:
    me = me_of(request.scope)
    allow(me, "members")
    member = await _member(db, member_id)
    await members.audit_unmasked(db, [member], PURPOSE, "console.member")
    return await _member_page(db, me, member, ended=app_sessions == "ended")


async def _member_page(db: AsyncSession, me: Me, member: Member, **extra: Any) -> Template:
    view = await members.member_read(db, member)
    personal = (await members.caller_reach(db)).view(member).pii
    program = await get_program(db)
    active = member.status == "active"
    entries = await points.list_entries(db, member.id, cursor=None, limit=50)
    history = await tiers.history(db, member.id, cursor=None, limit=20)
    orders = await service.member_orders(db, member.id)
    may_revoke = _may_revoke(me)
    return render(
        "member.html",
        me,
        m=view,
        balances=await points.balances(db, program, member.id) if active else None,
        lots=await service.open_lots(db, member.id),
        entries=entries.items,
        history=history.items,
        orders=orders,
        refunds=[(o, r) for o, refunds in orders for r in refunds],
        held=await benefits.member_benefits(db, member.id, None) if active else None,
        purse=await wallet.balance(db, member.id) if active else None,
        stores=await service.store_names(db),
        segment=await service.member_segment(db, member.id),
        messages=await _messages(db, member.id),
        messages_limit=service.MESSAGES_SHOWN,
        may_revoke=may_revoke,
        app_sessions=await service.live_app_sessions(db, member.id) if may_revoke else None,
        panels=await _plugin_panels(db, "member", str(member.id), _viewer(me, personal)),
        **extra,
    )


async def _messages(db: AsyncSession, member_id: uuid.UUID) -> list[service.MessageLine] | None:
    """The member's latest messages for a role that reads messages (HQ's, as with the
    API's ``messages:read``); ``None`` for the others (the section is not shown)."""
    if not current_actor().has("messages:read"):
        return None
    locale = "en" if language() == "en" else "zh-CN"
    return await service.member_messages(db, member_id, locale)


def _viewer(me: Me, personal_data: bool) -> ConsoleViewer:
    return ConsoleViewer(role=me.role, locale=language(), personal_data=personal_data)


async def _plugin_panels(
    db: AsyncSession, page: str, subject_id: str | None, viewer: ConsoleViewer
) -> list[RenderedPanel]:
    """The panels the plugins enabled where the user works add to ``page``.

    The page's reads (and the audit of an unmasked read) are committed first: a panel reads
    in its own session (``PluginContext.session``), which on SQLite waits for the write lock
    every transaction there takes, so it would wait for this request's to end."""
    await db.commit()
    here = require_tenant()
    return await get_plugin_host().console_panels(
        page, here.tenant_id, here.store_id, subject_id, viewer
    )


@post(
    "/members/{member_id:str}/app-sessions/revoke",
    name="console:member-app-sessions-revoke",
    status_code=303,
)
async def revoke_app_sessions(
    request: Request[Any, Any, Any], db: Db, member_id: FromPath[str]
) -> Redirect:
    """HQ's admin signs the member out of the chain's app everywhere: every live member
    token stops at once (``memberapi.service.revoke_member_tokens``, what ``nestpoint
    member-tokens revoke`` runs; audited as ``member_tokens.revoked`` with the admin as its
    author). Doing it twice is harmless: the second finds none live."""
    me = me_of(request.scope)
    allow(me, "members")
    if not _may_revoke(me):
        raise Forbidden(_("Your role cannot end a member's app sessions."))
    member = await _member(db, member_id)
    await revoke_member_tokens(db, member.id, reason="console")
    return Redirect(f"{PREFIX}/members/{member.id}?app_sessions=ended", status_code=303)
