"""The member API's rules: issuing and revoking member tokens, the chain's WeChat app and
the login-code exchange (and the login with the phone WeChat verified), what a member sees
of themselves, and the member's own phone change.

The routes give every ``me_*`` function the member's id from the token's actor, never one
from the request: a member reads only their own rows. They reuse the other contexts' services
(points, tiers through the programme, benefits, wallet, paid membership, messaging), so a
member sees the very figures the till and HQ see.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.audit.service import record
from nestpoint.benefits import service as benefits
from nestpoint.benefits.schemas import MemberBenefits
from nestpoint.context import current_actor, require_tenant
from nestpoint.db import utcnow
from nestpoint.db.pagination import paginate
from nestpoint.errors import Conflict, FieldError, NotFound
from nestpoint.idempotency.service import Answer
from nestpoint.loyalty.service import get_program
from nestpoint.memberapi import codes, tokens, wechat
from nestpoint.memberapi.models import MemberToken, WechatApp
from nestpoint.memberapi.schemas import (
    CardRead,
    ExpiringPoints,
    MemberTokenIn,
    MemberTokenRead,
    MeRead,
    MyMessage,
    MyMessageList,
    PointEntryList,
    PointEntryRead,
    PointsRead,
    RevokeRead,
    TierProgressRead,
    TierStep,
    WechatAppIn,
    WechatAppRead,
    WechatBindRead,
)
from nestpoint.members import phone, pii
from nestpoint.members import service as members
from nestpoint.members.models import Member
from nestpoint.members.schemas import (
    IdentityIn,
    MemberCreate,
    PhoneChangeIn,
    PhoneChangeRead,
    PhoneConfirmIn,
)
from nestpoint.membership import service as membership
from nestpoint.membership.schemas import PaidMembershipRead
from nestpoint.messaging import service as messaging
from nestpoint.messaging.models import Message
from nestpoint.messaging.variables import member_variables
from nestpoint.points import service as points
from nestpoint.points.models import PointEntry, PointLot
from nestpoint.settings import get_settings
from nestpoint.tenancy.models import Tenant
from nestpoint.wallet import service as wallet
from nestpoint.wallet.schemas import WalletRead


class WechatNotBound(NotFound):
    """No member of the chain has this WeChat identity: the member binds it (with a token
    from the chain's backend, ``POST /api/v1/me/wechat``) or is enrolled with it, then logs
    in again."""

    slug = "wechat-not-bound"


class WechatNotConfigured(NotFound):
    slug = "wechat-not-configured"


class WechatBoundElsewhere(Conflict):
    """The WeChat account is bound to another member of the chain."""

    slug = "wechat-bound-elsewhere"


class WechatPhoneNotMember(NotFound):
    """No member of the chain has the phone WeChat verified, and the chain does not enrol
    members this way (``enrol_by_phone``): the chain's backend enrols the member."""

    slug = "wechat-phone-not-member"


def _who() -> str:
    actor = current_actor()
    return str(actor.key_id or actor.name)[:100]


# ---------------------------------------------------------------- tokens


async def find_member(session: AsyncSession, data: MemberTokenIn) -> Member:
    """The active member the request names (a merged member's survivor); 404 otherwise."""
    if data.member_id is not None:
        return await members.get_active_member(session, data.member_id)
    if data.phone is not None:
        _, digest = members.phone_lookup_hash(data.phone, "phone")
        member_id = await session.scalar(select(Member.id).where(Member.phone_hash == digest))
        if member_id is None:
            raise NotFound("no such member")
        return await members.get_active_member(session, member_id)
    assert data.identity_kind is not None
    assert data.identity_value is not None
    found = await members.find_by_identity(session, data.identity_kind, data.identity_value)
    if found is None:
        raise NotFound("no such member")
    return found


async def issue_token(session: AsyncSession, member_id: uuid.UUID, via: str) -> MemberTokenRead:
    """A new token for an active member, valid ``NESTPOINT_MEMBER_TOKEN_SECONDS``; audited
    (never the token itself)."""
    tenant_id = require_tenant().tenant_id
    lifetime = get_settings().member_token_seconds
    now = utcnow()
    raw = tokens.new_token(tenant_id)
    row = MemberToken(
        member_id=member_id,
        token_hash=tokens.hash_token(raw),
        token_prefix=tokens.display_prefix(raw),
        issued_via=via,
        issued_by=_who(),
        created_at=now,
        expires_at=now + timedelta(seconds=lifetime),
    )
    session.add(row)
    await session.flush()
    record(
        session,
        "member_token.issued",
        "member",
        member_id,
        {"via": via, "token_id": str(row.id), "expires_at": row.expires_at.isoformat()},
    )
    return MemberTokenRead(
        token=raw, member_id=member_id, expires_at=row.expires_at, expires_in=lifetime
    )


async def revoke_member_tokens(
    session: AsyncSession, member_id: uuid.UUID, *, reason: str = ""
) -> RevokeRead:
    """Revoke every live token of a member (any member row, merged or erased included)."""
    await members.get_member(session, member_id)  # 404 for no such member (in this tenant)
    now = utcnow()
    result = await session.execute(
        update(MemberToken)
        .where(
            MemberToken.member_id == member_id,
            MemberToken.revoked_at.is_(None),
            MemberToken.expires_at > now,
        )
        .values(revoked_at=now)
    )
    count = int(getattr(result, "rowcount", 0) or 0)
    record(
        session, "member_tokens.revoked", "member", member_id, {"count": count, "reason": reason}
    )
    return RevokeRead(member_id=member_id, revoked=count)


async def revoke_token(session: AsyncSession, raw: str, member_id: uuid.UUID) -> None:
    """The member's own log-out: the presented token stops working."""
    now = utcnow()
    await session.execute(
        update(MemberToken)
        .where(
            MemberToken.token_hash == tokens.hash_token(raw),
            MemberToken.member_id == member_id,
            MemberToken.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    record(session, "member_token.logged_out", "member", member_id, {})


# Expired tokens are kept this long (they open nothing; the audit trail keeps their issue).
PURGE_AFTER = timedelta(days=7)


async def purge_tokens(session: AsyncSession, older_than: timedelta) -> int:
    """Delete the tokens that expired more than ``older_than`` ago (they open nothing)."""
    result = await session.execute(
        delete(MemberToken).where(MemberToken.expires_at < utcnow() - older_than)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# ---------------------------------------------------------------- the chain's WeChat app


def _secret_context() -> bytes:
    return pii.row_context(require_tenant().tenant_id, "wechat_apps", "secret")


def _app_read(row: WechatApp | None) -> WechatAppRead:
    if row is None:
        return WechatAppRead(configured=False)
    return WechatAppRead(
        configured=True,
        appid=row.appid,
        enrol_by_phone=row.enrol_by_phone,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


async def get_wechat_app(session: AsyncSession) -> WechatAppRead:
    return _app_read(await session.scalar(select(WechatApp)))


async def put_wechat_app(session: AsyncSession, data: WechatAppIn) -> WechatAppRead:
    """Set the chain's mini-program (the AppSecret sealed; audited without it)."""
    sealed = pii.keyring().encrypt(data.secret, context=_secret_context())
    row = await session.scalar(select(WechatApp))
    if row is None:
        row = WechatApp(appid=data.appid, secret_enc=sealed, updated_by=_who())
        session.add(row)
    else:
        row.appid, row.secret_enc, row.updated_by = data.appid, sealed, _who()
        row.updated_at = utcnow()
    row.enrol_by_phone = data.enrol_by_phone
    await session.flush()
    record(
        session,
        "memberapi.wechat_app_set",
        "tenant",
        require_tenant().tenant_id,
        {"appid": data.appid, "enrol_by_phone": data.enrol_by_phone},
    )
    return _app_read(row)


async def wechat_credentials(session: AsyncSession) -> wechat.WechatApp:
    """The chain's mini-program (appid, AppSecret); 404 ``wechat-not-configured``."""
    row = await session.scalar(select(WechatApp))
    if row is None:
        raise WechatNotConfigured(
            "the chain has not set its mini-program (PUT /api/v1/member-auth/wechat)"
        )
    secret = pii.keyring().decrypt(row.secret_enc, context=_secret_context())
    return wechat.WechatApp(require_tenant().tenant_id, row.appid, secret)


async def _wechat_holder(session: AsyncSession, found: wechat.WechatSession) -> Member | None:
    """The member with this openid (or, failing that, unionid), if any."""
    member = await members.find_by_identity(session, "mp_openid", found.openid)
    if member is None and found.unionid:
        member = await members.find_by_identity(session, "mp_unionid", found.unionid)
    return member


async def wechat_member(session: AsyncSession, found: wechat.WechatSession) -> Member:
    """The member with this openid (or, failing that, unionid); 404 ``wechat-not-bound``."""
    member = await _wechat_holder(session, found)
    if member is None:
        raise WechatNotBound(
            "no member of this chain has this WeChat identity: enrol the member (with "
            "identity mp_openid) or bind it to an existing member, then log in again"
        )
    return member


async def bind_wechat(
    session: AsyncSession, member_id: uuid.UUID, found: wechat.WechatSession
) -> WechatBindRead:
    """Bind the WeChat account of a login code to the member of the token (their openid,
    and unionid when WeChat gave one): later logins with that account find the member.
    Binding again is a no-op; an account bound to another member is 409."""
    member = await _me(session, member_id)
    kinds = await _bind_account(session, member, found)
    return WechatBindRead(member_id=member.id, kinds=kinds)


def _bound_elsewhere() -> WechatBoundElsewhere:
    return WechatBoundElsewhere(
        "this WeChat account is bound to another member of the chain",
        errors=[FieldError("code", "the WeChat account is another member's")],
    )


async def _bind_account(
    session: AsyncSession, member: Member, found: wechat.WechatSession
) -> list[str]:
    """The WeChat account's openid (and unionid) bound to ``member``: the kinds bound.
    Nothing is written when any is another member's (409); one bound to ``member`` at the
    same moment (a retry) is fine."""
    bound = [("mp_openid", found.openid)]
    if found.unionid:
        bound.append(("mp_unionid", found.unionid))
    missing = []
    for kind, value in bound:
        owner = await members.find_by_identity(session, kind, value)
        if owner is not None and owner.id != member.id:
            raise _bound_elsewhere()
        if owner is None:
            missing.append(IdentityIn(kind=kind, value=value))
    if not missing:
        return [kind for kind, _ in bound]
    try:
        async with session.begin_nested():
            for identity in missing:
                await members.add_identity(session, member.id, identity)
            await session.flush()
    except (Conflict, IntegrityError):  # bound a moment ago: to whom?
        for identity in missing:
            owner = await members.find_by_identity(session, identity.kind, identity.value)
            if owner is None or owner.id != member.id:
                raise _bound_elsewhere() from None
    return [kind for kind, _ in bound]


async def wechat_phone_member(
    session: AsyncSession, found: wechat.WechatSession, verified_phone: str
) -> Member:
    """The member holding the phone WeChat verified, with the WeChat account bound to them;
    enrolled first when no member holds it and the chain enrols this way (``enrol_by_phone``,
    else 404 ``wechat-phone-not-member``). A WeChat account bound to another member is 409
    ``wechat-bound-elsewhere``: that member logs in with the login code alone."""
    _, digest = members.phone_lookup_hash(verified_phone, "phone_code")
    member = await _phone_holder(session, digest)
    holder = await _wechat_holder(session, found)
    if holder is not None and (member is None or holder.id != member.id):
        raise _bound_elsewhere()
    if member is None:
        member = await _enrol_by_phone(session, verified_phone, digest)
    await _bind_account(session, member, found)
    return member


async def _phone_holder(session: AsyncSession, digest: str) -> Member | None:
    member_id = await session.scalar(select(Member.id).where(Member.phone_hash == digest))
    if member_id is None:
        return None
    try:
        return await members.get_active_member(session, member_id)
    except NotFound:
        return None


async def _enrol_by_phone(session: AsyncSession, verified_phone: str, digest: str) -> Member:
    allowed = await session.scalar(select(WechatApp.enrol_by_phone))
    if not allowed:
        raise WechatPhoneNotMember(
            "no member of this chain has this phone, and the chain does not enrol members "
            "from its mini-program: the chain's backend enrols the member, then log in again",
            errors=[FieldError("phone_code", "no member has this phone")],
        )
    try:
        async with session.begin_nested():
            return await members.create_member(
                session, MemberCreate(phone=verified_phone, join_channel="mini_program")
            )
    except Conflict:  # the phone enrolled a moment ago (a retry), or the plan's limit
        member = await _phone_holder(session, digest)
        if member is None:
            raise
        return member


# ---------------------------------------------------------------- the till: scan a code


def member_id_of_code(code: str) -> uuid.UUID:
    """The member a card's code names; 422 for a forged or expired code."""
    return codes.read_code(require_tenant().tenant_id, code, utcnow())


async def member_by_code(session: AsyncSession, code: str) -> Member:
    """The member a card's code names (a merged member's survivor); 422 for a forged or
    expired code, 404 for a member erased since."""
    return await members.get_active_member(session, member_id_of_code(code))


# ---------------------------------------------------------------- the member's own view


async def _me(session: AsyncSession, member_id: uuid.UUID) -> Member:
    member = await members.get_member(session, member_id)
    if member.status != "active":  # the token was checked; a merge may have followed
        raise NotFound("no such member")
    return member


async def me_profile(session: AsyncSession, member_id: uuid.UUID) -> MeRead:
    member = await _me(session, member_id)
    program = await get_program(session)
    parts = await members.MEMBER_PARTS.rows(
        session, tenant_id=require_tenant().tenant_id, member_id=member.id
    )
    today = await members.local_today(session)
    own = members.member_view(member, parts, members.View(pii=True, profile=True), today)
    balance = await wallet.balance(session, member.id)
    return MeRead(
        id=own.id,
        phone=own.phone,
        name=own.name,
        gender=own.gender,
        birthday=own.birthday,
        home_store_id=own.home_store_id,
        joined_at=own.joined_at,
        tier_code=program.tier(member.tier_code).code,
        tier_name=program.tier(member.tier_code).name,
        growth_value=own.growth_value,
        points_balance=own.points_balance,
        wallet_balance_fen=balance.balance_fen,
        children=own.children,
        consents=own.consents,
    )


async def me_card(session: AsyncSession, member_id: uuid.UUID) -> CardRead:
    member = await _me(session, member_id)
    program = await get_program(session)
    made = codes.make_code(require_tenant().tenant_id, member.id, utcnow())
    lifetime = int((made.expires_at - made.issued_at).total_seconds())
    tier = program.tier(member.tier_code)
    return CardRead(
        member_id=member.id,
        name=members.decrypt_name(member),
        tier_code=tier.code,
        tier_name=tier.name,
        code=made.code,
        issued_at=made.issued_at,
        expires_at=made.expires_at,
        refresh_in=max(5, lifetime - 15),
    )


MAX_EXPIRY_GROUPS = 100


async def me_points(session: AsyncSession, member_id: uuid.UUID) -> PointsRead:
    member = await _me(session, member_id)
    program = await get_program(session)
    held = await points.balances(session, program, member.id)
    now = utcnow()
    rows = (
        await session.execute(
            select(PointLot.expires_at, func.sum(PointLot.remaining))
            .where(
                PointLot.member_id == member.id,
                PointLot.remaining > 0,
                PointLot.expires_at > now,
            )
            .group_by(PointLot.expires_at)
            .order_by(PointLot.expires_at)
            .limit(MAX_EXPIRY_GROUPS)
        )
    ).all()
    return PointsRead(
        member_id=member.id,
        balance=held.balance,
        available=held.available,
        pending=held.pending,
        held=held.held,
        debt=held.debt,
        lifetime_earned=held.lifetime_earned,
        expiring=[ExpiringPoints(expires_at=at, points=int(n)) for at, n in rows],
    )


async def me_point_entries(
    session: AsyncSession, member_id: uuid.UUID, *, cursor: str | None, limit: int
) -> PointEntryList:
    member = await _me(session, member_id)
    page = await paginate(
        session,
        select(PointEntry).where(PointEntry.member_id == member.id),
        (PointEntry.created_at, PointEntry.id),
        cursor=cursor,
        limit=limit,
    )
    return PointEntryList(
        items=[
            PointEntryRead(
                id=e.id,
                kind=e.kind,
                amount=e.amount,
                balance_after=e.balance_after,
                cause_type=e.cause_type,
                reason=e.reason,
                created_at=e.created_at,
            )
            for e in page.items
        ],
        next_cursor=page.next_cursor,
    )


async def me_tier(session: AsyncSession, member_id: uuid.UUID) -> TierProgressRead:
    member = await _me(session, member_id)
    program = await get_program(session)
    tier = program.tier(member.tier_code)
    rank = program.rank(tier.code)
    above = program.tiers[rank + 1] if rank + 1 < len(program.tiers) else None
    if above is None:
        to_next, percent = None, 100
    else:
        to_next = max(0, above.threshold - member.growth_value)
        span = above.threshold - tier.threshold
        done = member.growth_value - tier.threshold
        percent = 100 if span <= 0 else max(0, min(100, done * 100 // span))
    return TierProgressRead(
        tier_code=tier.code,
        tier_name=tier.name,
        growth_value=member.growth_value,
        tier_since=member.tier_since,
        protected_until=member.tier_protected_until,
        next_tier=(
            TierStep(code=above.code, name=above.name, threshold=above.threshold) if above else None
        ),
        growth_to_next=to_next,
        progress_percent=percent,
        ladder=[TierStep(code=t.code, name=t.name, threshold=t.threshold) for t in program.tiers],
    )


async def me_benefits(
    session: AsyncSession, member_id: uuid.UUID, store_code: str | None
) -> MemberBenefits:
    member = await _me(session, member_id)
    return await benefits.member_benefits(session, member.id, store_code)


async def me_wallet(session: AsyncSession, member_id: uuid.UUID) -> WalletRead:
    member = await _me(session, member_id)
    return await wallet.balance(session, member.id)


async def me_membership(session: AsyncSession, member_id: uuid.UUID) -> list[PaidMembershipRead]:
    member = await _me(session, member_id)
    return await membership.list_member_cards(session, member.id)


# What the member was actually sent (queued, failed and suppressed messages never reached them).
RECEIVED = ("sent", "delivered")


async def me_messages(
    session: AsyncSession, member_id: uuid.UUID, *, cursor: str | None, limit: int
) -> MyMessageList:
    """The messages sent to the member, with their text as the chain's templates word them
    now (in the chain's locale)."""
    member = await _me(session, member_id)
    page = await paginate(
        session,
        select(Message).where(
            Message.member_id == member.id,
            Message.status.in_(RECEIVED),
            # A code to a new phone: its code is wiped once sent, nothing to show.
            Message.purpose.not_in(messaging.SEALED_PURPOSES),
        ),
        (Message.created_at, Message.id),
        cursor=cursor,
        limit=limit,
    )
    tenant = await session.get(Tenant, require_tenant().tenant_id)
    locale = tenant.locale if tenant and tenant.locale in ("zh-CN", "en") else "en"
    variables: dict[uuid.UUID | None, dict[str, object]] = {}
    items = []
    for message in page.items:
        if message.store_id not in variables:
            variables[message.store_id] = await member_variables(
                session, member.id, message.store_id, locale
            )
        wording = await messaging.wording(session, message.template, locale)
        rendered = (
            messaging.render(wording, {**variables[message.store_id], **message.params})
            if wording is not None
            else None
        )
        items.append(
            MyMessage(
                id=message.id,
                purpose=message.purpose,
                channel=message.channel,
                status=message.status,
                subject=rendered.subject if rendered else "",
                body=rendered.body if rendered else "",
                created_at=message.created_at,
                sent_at=message.sent_at,
                delivered_at=message.delivered_at,
            )
        )
    return MyMessageList(items=items, next_cursor=page.next_cursor)


# ---------------------------------------------------------------- the member's own phone


async def me_start_phone_change(
    session: AsyncSession, member_id: uuid.UUID, data: PhoneChangeIn
) -> Answer[PhoneChangeRead]:
    """The member changes their own phone: a code to the new one, as a staff start does
    (``members.phone``), refused first when no channel can carry it (409)."""
    member = await _me(session, member_id)
    return await phone.start_change(session, member.id, data, require_channel=True)


async def me_confirm_phone_change(
    session: AsyncSession, member_id: uuid.UUID, data: PhoneConfirmIn
) -> MeRead | phone.WrongCode:
    """The member's code: their profile with the new phone, or the wrong code counted (the
    caller commits the count, then answers 422)."""
    member = await _me(session, member_id)
    outcome = await phone.confirm_change(session, member.id, data)
    if isinstance(outcome, phone.WrongCode):
        return outcome
    return await me_profile(session, outcome.member.id)
