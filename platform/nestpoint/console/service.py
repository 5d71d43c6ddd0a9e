"""The console's users, passwords, roles and sessions.

* **Passwords** are hashed with argon2id (``argon2-cffi``'s defaults); a hash made with
  weaker parameters than today's is replaced at the next sign-in. An unknown login is
  checked against a dummy hash, so it takes as long as a wrong password.
* **Roles** become the :class:`~nestpoint.context.Actor` every service already checks:
  HQ roles act as a tenant (HQ) key, store roles as a store key of their store, with
  ``key_id`` the user's id and ``name`` ``user:<login>``; the scopes come from the role
  (:data:`ROLE_SCOPES`). So a console change is audited as an API change is, the user as
  its "who".
* **Sessions** live in ``console_sessions``: the cookie holds ``<tenant id hex>.<token>``,
  the row the token's SHA-256, the session's CSRF token, an absolute expiry and the last
  request (the idle timeout). Ending one, disabling a user, changing their role or store or
  resetting their password ends their sessions.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.audit.service import record
from nestpoint.console.models import STORE_ROLES, ConsoleSession, ConsoleUser
from nestpoint.console.schemas import ConsoleUserCreate, ConsoleUserUpdate
from nestpoint.context import Actor, TenantContext, require_tenant
from nestpoint.db import utcnow
from nestpoint.db.pagination import Page, paginate
from nestpoint.db.sql import lock_job
from nestpoint.errors import Conflict, FieldError, Invalid, NotFound
from nestpoint.memberapi.models import MemberToken
from nestpoint.members.models import Member
from nestpoint.messaging import service as messaging
from nestpoint.messaging.models import Message
from nestpoint.orders.models import Order, Refund
from nestpoint.points.models import PointLot
from nestpoint.segments.models import MemberSegment
from nestpoint.tenancy.keys import DEFAULT_SCOPES, STORE_SCOPES, TENANT_SCOPES
from nestpoint.tenancy.models import Store
from nestpoint.tenancy.service import store_codes

_hasher = PasswordHasher()
# Checked when the login is unknown, so that answer takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

# What each role may do, as the scopes of the key it acts as.
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "hq_admin": TENANT_SCOPES,
    # Every HQ read scope, and no members:pii: members come masked.
    "hq_analyst": frozenset(s for s in TENANT_SCOPES if s.endswith(":read")),
    "store_manager": STORE_SCOPES,
    # The till's: what a store key gets by default (look up, enrol, order, redeem, benefits).
    "store_clerk": DEFAULT_SCOPES["store"],
}
COOKIE_SEPARATOR = "."
TOUCH_RESOLUTION = timedelta(minutes=1)  # last_seen_at is written at most this often


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def new_password() -> str:
    """A password made for a user (shown once): 16 characters of base64url."""
    return secrets.token_urlsafe(12)


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def acting(user: ConsoleUser, tenant_id: uuid.UUID) -> tuple[TenantContext, Actor]:
    """The tenant context and actor a user works as (see the module's doc)."""
    kind: Literal["store", "tenant"] = "store" if user.role in STORE_ROLES else "tenant"
    return (
        TenantContext(tenant_id, user.store_id if kind == "store" else None),
        # A store role sees personal data of its own store's members only (not of every
        # member its store's reach shares with it): the rule for the console.
        Actor(
            kind,
            user.id,
            ROLE_SCOPES[user.role],
            f"user:{user.login}",
            own_members_pii_only=kind == "store",
        ),
    )


# ------------------------------------------------------------------ users


async def _store_id(session: AsyncSession, role: str, code: str | None) -> uuid.UUID | None:
    if role in STORE_ROLES:
        if code is None:
            raise Invalid.field("store_code", f"a {role} belongs to a store: give store_code")
        codes = await store_codes(session)
        store_id = codes.get(code) or (await store_codes(session, refresh=True)).get(code)
        if store_id is None:
            raise Invalid.field("store_code", f"no store with code {code!r}")
        return store_id
    if code is not None:
        raise Invalid.field("store_code", f"a {role} belongs to no store")
    return None


def _facts(user: ConsoleUser) -> dict[str, Any]:
    """What the audit trail keeps of a user, before and after a change (never the hash)."""
    return {
        "login": user.login,
        "role": user.role,
        "store_id": str(user.store_id) if user.store_id else None,
        "locale": user.locale,
        "disabled": user.disabled_at is not None,
    }


async def create_user(
    session: AsyncSession, data: ConsoleUserCreate
) -> tuple[ConsoleUser, str | None]:
    """A new user; returns the password made for them when none was given (shown once)."""
    store_id = await _store_id(session, data.role, data.store_code)
    taken = await session.scalar(select(ConsoleUser.id).where(ConsoleUser.login == data.login))
    if taken is not None:
        raise Conflict(
            f"login: {data.login!r} is taken", errors=[FieldError("login", "already taken")]
        )
    made = None if data.password is not None else new_password()
    user = ConsoleUser(
        login=data.login,
        password_hash=hash_password(data.password or made or ""),
        role=data.role,
        store_id=store_id,
        locale=data.locale,
    )
    session.add(user)
    await session.flush()
    record(session, "console_user.created", "console_user", user.id, {"after": _facts(user)})
    return user, made


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> ConsoleUser:
    user = await session.scalar(select(ConsoleUser).where(ConsoleUser.id == user_id))
    if user is None:
        raise NotFound("no such console user")
    return user


async def list_users(session: AsyncSession, *, cursor: str | None, limit: int) -> Page[ConsoleUser]:
    return await paginate(
        session, select(ConsoleUser), (ConsoleUser.login,), cursor=cursor, limit=limit
    )


async def _keep_an_admin(session: AsyncSession, user: ConsoleUser, data: ConsoleUserUpdate) -> None:
    """An hq_admin may not demote or disable themselves as the chain's last active one: the
    chain would be left with no one to run its console (409 naming the field)."""
    demoted = data.role is not None and data.role != "hq_admin"
    if user.role != "hq_admin" or user.disabled_at is not None or not (demoted or data.disabled):
        return
    # One such change at a time per chain: two admins leaving at once cannot both go.
    await lock_job(session, "console_last_admin", require_tenant().tenant_id)
    others = await session.scalar(
        select(func.count()).where(
            ConsoleUser.role == "hq_admin",
            ConsoleUser.disabled_at.is_(None),
            ConsoleUser.id != user.id,
        )
    )
    if not others:
        field = "role" if demoted else "disabled"
        message = "you are the chain's last active hq_admin"
        raise Conflict(f"{field}: {message}", errors=[FieldError(field, message)])


async def update_user(
    session: AsyncSession,
    user_id: uuid.UUID,
    data: ConsoleUserUpdate,
    *,
    by: uuid.UUID | None = None,
) -> tuple[ConsoleUser, str | None]:
    """Change a user's role, store, locale or state, or reset their password (the new one
    is returned, shown once). Audited with the user's facts before and after. ``by``: the
    console user making the change; changing themselves, they must leave an active
    hq_admin behind."""
    user = await get_user(session, user_id)
    if by == user.id:
        await _keep_an_admin(session, user, data)
    before = _facts(user)
    role = data.role or user.role
    if data.role is not None or data.store_code is not None:
        code = data.store_code
        if code is None and role in STORE_ROLES and user.store_id is not None:
            user_codes = {v: k for k, v in (await store_codes(session)).items()}
            code = user_codes.get(user.store_id)
        user.store_id = await _store_id(session, role, code)
        user.role = role
    if data.locale is not None:
        user.locale = data.locale
    if data.disabled is not None:
        if data.disabled and user.disabled_at is None:
            user.disabled_at = utcnow()
        elif not data.disabled:
            user.disabled_at = None
    made = None
    if data.reset_password:
        made = new_password()
        user.password_hash = hash_password(made)
    after = _facts(user)
    changed: dict[str, Any] = {k: [before[k], after[k]] for k in before if before[k] != after[k]}
    if data.reset_password:
        changed["password"] = "reset"  # noqa: S105 - what happened, not a password
    if changed:
        user.updated_at = utcnow()
        record(
            session,
            "console_user.updated",
            "console_user",
            user.id,
            {"before": before, "after": after, "changed": changed},
        )
    if changed.keys() & {"role", "store_id", "disabled", "password"}:
        await end_user_sessions(session, user.id)
    return user, made


async def set_own_locale(session: AsyncSession, user_id: uuid.UUID, locale: str) -> None:
    """The user's own choice of language (the console's switch); audited like any change."""
    user = await get_user(session, user_id)
    if user.locale != locale:
        record(
            session,
            "console_user.updated",
            "console_user",
            user.id,
            {"before": {"locale": user.locale}, "after": {"locale": locale}},
        )
        user.locale = locale


async def user_store_codes(session: AsyncSession) -> dict[uuid.UUID, str]:
    return {v: k for k, v in (await store_codes(session)).items()}


# ------------------------------------------------------------------ signing in


async def check_password(session: AsyncSession, login: str, password: str) -> ConsoleUser | None:
    """The enabled user with this login and password, or ``None`` (in the same time either
    way). Upgrades an outdated hash."""
    user = await session.scalar(select(ConsoleUser).where(ConsoleUser.login == login))
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if user is None or user.disabled_at is not None:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


async def find_login(session: AsyncSession, login: str) -> uuid.UUID | None:
    return await session.scalar(select(ConsoleUser.id).where(ConsoleUser.login == login))


def record_login_failure(
    session: AsyncSession, login: str, user_id: uuid.UUID | None, client: str, reason: str
) -> None:
    record(
        session,
        "console.sign_in_refused",
        "console_user",
        user_id or login,
        {"login": login, "client": client, "reason": reason},
    )


async def start_session(
    session: AsyncSession, user: ConsoleUser, client: str, lifetime: timedelta
) -> tuple[str, ConsoleSession]:
    """A new session for ``user``: returns the cookie's value and the row."""
    tenant_id = require_tenant().tenant_id
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = ConsoleSession(
        user_id=user.id,
        token_hash=hash_token(token),
        csrf_token=secrets.token_urlsafe(32),
        client=client[:64],
        created_at=now,
        last_seen_at=now,
        expires_at=now + lifetime,
    )
    session.add(row)
    user.last_login_at = now
    await session.flush()
    record(session, "console.signed_in", "console_user", user.id, {"client": client[:64]})
    return f"{tenant_id.hex}{COOKIE_SEPARATOR}{token}", row


def parse_cookie(raw: str) -> tuple[uuid.UUID, str] | None:
    """The tenant and the token hash of a session cookie, or ``None`` if it cannot be ours."""
    tenant_hex, sep, token = raw.partition(COOKIE_SEPARATOR)
    if not sep or len(token) < 20 or len(raw) > 200:
        return None
    try:
        return uuid.UUID(hex=tenant_hex), hash_token(token)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A live session, as each console request sees it."""

    session_id: uuid.UUID
    csrf_token: str
    user_id: uuid.UUID
    login: str
    role: str
    store_id: uuid.UUID | None
    locale: str | None
    tenant: TenantContext
    actor: Actor


async def resolve_session(
    session: AsyncSession, token_hash: str, idle: timedelta
) -> SignedIn | None:
    """The live session with this token hash in the context's tenant (not ended, not
    expired, not idle, its user enabled), touching its last request; else ``None``."""
    tenant_id = require_tenant().tenant_id
    found = (
        await session.execute(
            select(ConsoleSession, ConsoleUser)
            .join(ConsoleUser, ConsoleUser.id == ConsoleSession.user_id)
            .where(ConsoleSession.token_hash == token_hash, ConsoleSession.ended_at.is_(None))
        )
    ).one_or_none()
    if found is None:
        return None
    row, user = found
    now = utcnow()
    if row.expires_at <= now or row.last_seen_at + idle <= now or user.disabled_at is not None:
        row.ended_at = now
        return None
    if now - row.last_seen_at > TOUCH_RESOLUTION:
        row.last_seen_at = now
    tenant, actor = acting(user, tenant_id)
    return SignedIn(
        row.id, row.csrf_token, user.id, user.login, user.role, user.store_id, user.locale,
        tenant, actor,
    )  # fmt: skip


async def end_session(session: AsyncSession, session_id: uuid.UUID) -> None:
    await session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.id == session_id, ConsoleSession.ended_at.is_(None))
        .values(ended_at=utcnow())
    )


async def end_user_sessions(session: AsyncSession, user_id: uuid.UUID) -> None:
    await session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.user_id == user_id, ConsoleSession.ended_at.is_(None))
        .values(ended_at=utcnow())
    )


# ------------------------------------------------------------------ what pages read


@dataclass(frozen=True, slots=True)
class Counts:
    members: int
    stores: int
    orders_today: int
    sales_today_fen: int


async def dashboard_counts(
    session: AsyncSession, store_id: uuid.UUID | None, since: datetime
) -> Counts:
    """A few figures for the dashboard: the chain's (HQ) or one store's (its manager)."""
    members = select(func.count()).select_from(Member).where(Member.status == "active")
    orders = select(func.count(), func.coalesce(func.sum(Order.total_fen), 0)).where(
        Order.paid_at >= since
    )
    if store_id is not None:
        members = members.where(Member.home_store_id == store_id)
        orders = orders.where(Order.store_id == store_id)
    order_row = (await session.execute(orders)).one()
    return Counts(
        members=int(await session.scalar(members) or 0),
        stores=int(await session.scalar(select(func.count()).select_from(Store)) or 0),
        orders_today=int(order_row[0]),
        sales_today_fen=int(order_row[1]),
    )


async def open_lots(session: AsyncSession, member_id: uuid.UUID) -> list[PointLot]:
    """The member's lots with points left, soonest to expire first: what expires when."""
    rows = await session.scalars(
        select(PointLot)
        .where(PointLot.member_id == member_id, PointLot.remaining > 0)
        .order_by(PointLot.expires_at, PointLot.id)
        .limit(100)
    )
    return list(rows)


async def member_orders(
    session: AsyncSession, member_id: uuid.UUID, limit: int = 20
) -> list[tuple[Order, list[Refund]]]:
    """The member's latest orders, each with its refunds."""
    orders = list(
        await session.scalars(
            select(Order)
            .where(Order.member_id == member_id)
            .order_by(Order.paid_at.desc(), Order.id)
            .limit(limit)
        )
    )
    refunds: dict[uuid.UUID, list[Refund]] = {o.id: [] for o in orders}
    if orders:
        for refund in await session.scalars(
            select(Refund).where(Refund.order_id.in_(list(refunds))).order_by(Refund.id)
        ):
            refunds[refund.order_id].append(refund)
    return [(o, refunds[o.id]) for o in orders]


async def store_names(session: AsyncSession) -> dict[uuid.UUID, str]:
    rows = (await session.execute(select(Store.id, Store.code, Store.name))).all()
    return {r.id: f"{r.code} {r.name}" for r in rows}


async def member_segment(session: AsyncSession, member_id: uuid.UUID) -> MemberSegment | None:
    """The member's built-in segments as last computed (RFM group, value circle, lifecycle)."""
    return await session.scalar(select(MemberSegment).where(MemberSegment.member_id == member_id))


@dataclass(frozen=True, slots=True)
class MessageLine:
    """A message to the member as the console lists it: its facts and its template's
    subject (the wording, not the message: what was sent is rendered once and not kept),
    never its parameters. ``secret``: ``sealed`` (a one-time code, sealed until the message
    settles), ``wiped`` (it was, and is gone) or ``None``."""

    created_at: datetime
    purpose: str
    template: str
    subject: str
    channel: str | None
    status: str
    reason: str | None
    sent_at: datetime | None
    delivered_at: datetime | None
    secret: str | None


MESSAGES_SHOWN = 50


async def member_messages(
    session: AsyncSession, member_id: uuid.UUID, locale: str, limit: int = MESSAGES_SHOWN
) -> list[MessageLine]:
    """The member's latest messages, newest first, each with its template's subject in
    ``locale`` (``zh-CN``, ``en``)."""
    rows = list(
        await session.scalars(
            select(Message)
            .where(Message.member_id == member_id)
            .order_by(Message.created_at.desc(), Message.id.desc())
            .limit(limit)
        )
    )
    subjects: dict[str, str] = {}
    for key in {m.template for m in rows}:
        wording = await messaging.wording(session, key, locale)
        subjects[key] = wording.subject if wording else ""
    return [_message_line(m, subjects[m.template]) for m in rows]


def _message_line(message: Message, subject: str) -> MessageLine:
    state = None  # what became of a sealed code (never the code)
    if message.sealed is not None:
        state = "sealed"
    elif message.purpose in messaging.SEALED_PURPOSES:
        state = "wiped"
    return MessageLine(
        created_at=message.created_at,
        purpose=message.purpose,
        template=message.template,
        subject=subject,
        channel=message.channel,
        status=message.status,
        reason=message.reason,
        sent_at=message.sent_at,
        delivered_at=message.delivered_at,
        secret=state,
    )


async def live_app_sessions(session: AsyncSession, member_id: uuid.UUID) -> int:
    """How many member-API tokens of the member work now (signed in to the chain's app)."""
    count = await session.scalar(
        select(func.count()).where(
            MemberToken.member_id == member_id,
            MemberToken.revoked_at.is_(None),
            MemberToken.expires_at > utcnow(),
        )
    )
    return int(count or 0)


# ------------------------------------------------------------------ housekeeping

# Every session expires within ``console_session_hours`` of its start (ended or idle ones
# earlier): a week past its expiry, its row only tells when someone signed in, which the
# audit trail keeps.
PURGE_AFTER = timedelta(days=7)


async def purge_sessions(session: AsyncSession, older_than: timedelta = PURGE_AFTER) -> int:
    """Delete the sessions that expired more than ``older_than`` ago (they open nothing)."""
    result = await session.execute(
        delete(ConsoleSession).where(ConsoleSession.expires_at < utcnow() - older_than)
    )
    return int(getattr(result, "rowcount", 0) or 0)
