"""Rules of the members context. No HTTP here; never commits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

import msgspec
from dateutil.relativedelta import relativedelta
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Select,
    String,
    Uuid,
    bindparam,
    cast,
    column,
    delete,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.audit.service import record
from nestpoint.billing import service as billing
from nestpoint.context import current_actor, current_tenant, require_tenant
from nestpoint.db import get_database, utcnow
from nestpoint.db.pagination import Page, paginate
from nestpoint.db.raw import Statement
from nestpoint.errors import Conflict, FieldError, Invalid, NotFound
from nestpoint.events.service import emit
from nestpoint.loyalty.service import get_program
from nestpoint.members import dates, pii
from nestpoint.members.models import Child, Member, MemberConsent, MemberIdentity
from nestpoint.members.schemas import (
    MAX_TAGS,
    BirthIn,
    ChildIn,
    ChildRead,
    ChildUpdate,
    ConsentIn,
    ConsentRead,
    GuardianConsentIn,
    IdentityIn,
    IdentityRead,
    MemberCreate,
    MemberRead,
    MemberSummary,
    MemberUpdate,
    Stage,
    Tag,
)
from nestpoint.points.models import PointAccount
from nestpoint.tenancy.models import Store
from nestpoint.tenancy.service import ensure_store_trading, store_shares_members
from nestpoint.tiers.models import TierChange

# ------------------------------------------------------------------ derived facts


def child_stage(child: Child, today: date) -> Stage:
    """Pregnant (or birth overdue), 0-6 months, 6-12 months, 1-3 years, 3-6 years or older:
    derived, never stored."""
    return stage_of(child.birth_date, today, child.due_date)


def stage_of(birth_date: date | None, today: date, due_date: date | None = None) -> Stage:
    """The stage for a birth date (``None``: still a pregnancy, overdue two weeks after the
    due date until the birth is recorded; see ``members.dates``)."""
    if birth_date is None:
        if due_date is not None and dates.is_overdue(due_date, today):
            return "birth_overdue"
        return "pregnant"
    months = (today.year - birth_date.year) * 12 + today.month - birth_date.month
    if today.day < birth_date.day:
        months -= 1
    if months < 6:
        return "0-6m"
    if months < 12:
        return "6-12m"
    if months < 36:
        return "1-3y"
    if months < 72:
        return "3-6y"
    return "older"


async def local_today(session: AsyncSession) -> date:
    """Today in the tenant's time zone: a child's stage turns over at local midnight."""
    program = await get_program(session)
    return utcnow().astimezone(program.zone).date()


def phone_lookup_hash(raw_phone: str, field: str = "phone") -> tuple[str, str]:
    """(E.164, keyed hash) of a phone, or Invalid naming ``field``."""
    try:
        e164 = pii.normalize_phone(raw_phone)
    except pii.InvalidPhone as exc:
        raise Invalid.field(field, str(exc)) from exc
    return e164, pii.keyring().lookup_hash(e164)


def _context(member_id: uuid.UUID) -> bytes:
    """Ciphertexts are bound to their tenant and member (AES-GCM associated data)."""
    return f"{require_tenant().tenant_id}:{member_id}".encode()


class Keyed(Protocol):
    """A member row, or any row with its id and wrapped data key."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def data_key(self) -> str | None: ...


def cipher_of(member: Keyed) -> pii.MemberCipher:
    """The cipher of this member's personal data (its data key, unwrapped)."""
    return pii.member_cipher(require_tenant().tenant_id, member.id, member.data_key)


def writing_cipher(member: Member) -> pii.MemberCipher:
    """The cipher to seal new data of ``member`` with: a member from before data keys
    (migration 0019) is given its key here."""
    if member.data_key is None:
        member.data_key = pii.new_data_key(require_tenant().tenant_id, member.id)
    return cipher_of(member)


def set_phone(member: Member, e164: str, digest: str) -> None:
    """Give ``member`` the phone ``e164`` (its keyed hash ``digest``): sealed under the
    member's key like on enrolment. The caller has checked that no one else holds it."""
    member.phone_hash = digest
    member.phone_enc = writing_cipher(member).encrypt(e164, context=_context(member.id))


def decrypt_phone(member: MemberFacts, cipher: pii.MemberCipher | None = None) -> str:
    if not member.phone_enc:
        return ""  # erased
    cipher = cipher or cipher_of(member)
    return cipher.decrypt(member.phone_enc, context=_context(member.id))


def decrypt_name(member: MemberFacts, cipher: pii.MemberCipher | None = None) -> str | None:
    if member.name_enc is None:
        return None
    cipher = cipher or cipher_of(member)
    return cipher.decrypt(member.name_enc, context=_context(member.id))


def shown_phone(member: MemberFacts, full: bool, cipher: pii.MemberCipher | None = None) -> str:
    phone = decrypt_phone(member, cipher)
    return phone if full or not phone else pii.mask_phone(phone)


def seal(cipher: pii.MemberCipher, table: str, row_id: uuid.UUID, plaintext: str) -> str:
    """Encrypt a child's or an identity's text under its member's key, bound to its tenant,
    table and row."""
    context = pii.row_context(require_tenant().tenant_id, table, row_id)
    return cipher.encrypt(plaintext, context=context)


def unseal(cipher: pii.MemberCipher, table: str, row_id: uuid.UUID, token: str | None) -> str:
    """The text :func:`seal` sealed ("" for none)."""
    if token is None:
        return ""
    context = pii.row_context(require_tenant().tenant_id, table, row_id)
    return cipher.decrypt(token, context=context)


# ------------------------------------------------------------------ reach: who sees whom


@dataclass(frozen=True, slots=True)
class View:
    """How much of one member the caller is shown."""

    pii: bool  # full phone, identity values, birthday, children's birth and due dates
    profile: bool  # name and children's nicknames (False: served at the till from outside)


@dataclass(frozen=True, slots=True)
class Reach:
    """The members a key may list, read and change.

    HQ keys, and store keys of a kind the chain shares members with
    (``tenants.members_shared_with``), reach every member; other store keys reach only the
    members whose home store they are. Any store serves any member at the till by exact phone
    or card (lookup, orders), with the masked view.
    """

    home_store_id: uuid.UUID | None  # None: every member of the chain
    pii: bool  # the key holds members:pii
    # Personal data (pii and profile) only of this store's own members, even of members in
    # reach: the console's store roles (``Actor.own_members_pii_only``). None: no such limit.
    own_store_id: uuid.UUID | None = None

    def covers(self, member: MemberFacts) -> bool:
        """May this key list, read and change this member? The one decision for every route."""
        return self.home_store_id is None or member.home_store_id == self.home_store_id

    def view(self, member: MemberFacts) -> View:
        inside = self.covers(member) and (
            self.own_store_id is None or member.home_store_id == self.own_store_id
        )
        return View(pii=self.pii and inside, profile=inside)


async def caller_reach(session: AsyncSession) -> Reach:
    """The reach of the current key (for a store key, whether the chain shares members
    with stores of its kind: cached per process, see ``tenancy.store_shares_members``)."""
    has_pii = current_actor().has("members:pii")
    ctx = current_tenant()
    if ctx is None or ctx.store_id is None:
        return Reach(None, has_pii)
    shared = await store_shares_members(session, ctx.store_id)
    own = ctx.store_id if current_actor().own_members_pii_only else None
    return Reach(None if shared else ctx.store_id, has_pii, own)


# ------------------------------------------------------------------ lookups


async def store_id_for(session: AsyncSession, code: str | None, field: str) -> uuid.UUID | None:
    if code is None:
        return None
    store_id = await session.scalar(select(Store.id).where(Store.code == code))
    if store_id is None:
        raise Invalid.field(field, f"no store with code {code!r}")
    return store_id


async def get_member(
    session: AsyncSession, member_id: uuid.UUID, *, for_update: bool = False
) -> Member:
    stmt = select(Member).where(Member.id == member_id)
    if for_update:  # and read it afresh: what was loaded before the lock may be stale
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    member = await session.scalar(stmt)
    if member is None:
        raise NotFound("no such member")
    return member


async def get_active_member(
    session: AsyncSession, member_id: uuid.UUID, *, for_update: bool = False
) -> Member:
    """The member, or the one it was merged into; an erased member is not found."""
    member = await get_member(session, member_id, for_update=for_update)
    if member.status == "merged" and member.merged_into_id is not None:
        return await get_active_member(session, member.merged_into_id, for_update=for_update)
    if member.status == "erased":
        raise NotFound("no such member")
    return member


async def get_member_in_reach(
    session: AsyncSession, member_id: uuid.UUID, *, active: bool = False
) -> Member:
    """The member (or with ``active``, the one it was merged into) if the key reaches them;
    otherwise 404 exactly as for no member, so existence does not leak."""
    if active:
        member = await get_active_member(session, member_id)
    else:
        member = await get_member(session, member_id)
    if member.status == "erased" or not (await caller_reach(session)).covers(member):
        raise NotFound("no such member")
    return member


async def find_by_identity(session: AsyncSession, kind: str, value: str) -> Member | None:
    member_id = await session.scalar(
        select(MemberIdentity.member_id).where(
            MemberIdentity.kind == kind, MemberIdentity.value_hash == pii.identity_hash(kind, value)
        )
    )
    return await get_active_member(session, member_id) if member_id else None


# ------------------------------------------------------------------ reading


class Placed(Protocol):
    """A member as read (a row or a view): its id and home store."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def home_store_id(self) -> uuid.UUID | None: ...


async def audit_unmasked(
    session: AsyncSession, shown: list[Any], purpose: str | None, via: str
) -> None:
    """Audit the members of ``shown`` the caller saw unmasked (a key with ``members:pii``,
    within its reach): :func:`record_unmasked_reads`."""
    reach = await caller_reach(session)
    if not reach.pii:
        return
    seen = [m.id for m in shown if reach.view(m).pii]
    record_unmasked_reads(session, seen, purpose, via)


def record_unmasked_reads(
    session: AsyncSession, member_ids: list[uuid.UUID], purpose: str | None, via: str
) -> None:
    """Every read of a member's unmasked personal data is in the audit trail: who (the
    key), which member, why (the caller's ``Nestpoint-Purpose``) and through what."""
    for member_id in member_ids:
        record(
            session,
            "member.personal_data_read",
            "member",
            member_id,
            {"purpose": purpose, "via": via},
        )


class MemberFacts(Protocol):
    """What a member's view is made of: a ``Member``, or a row of :data:`MEMBER_BY_PHONE`
    (the columns of :data:`MEMBER_FACTS`)."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def phone_enc(self) -> str: ...

    @property
    def name_enc(self) -> str | None: ...

    @property
    def gender(self) -> str: ...

    @property
    def birthday(self) -> date | None: ...

    @property
    def home_store_id(self) -> uuid.UUID | None: ...

    @property
    def join_channel(self) -> str: ...

    @property
    def join_store_id(self) -> uuid.UUID | None: ...

    @property
    def joined_at(self) -> datetime: ...

    @property
    def tags(self) -> list[str]: ...

    @property
    def status(self) -> str: ...

    @property
    def merged_into_id(self) -> uuid.UUID | None: ...

    @property
    def tier_code(self) -> str | None: ...

    @property
    def growth_value(self) -> int: ...

    @property
    def child_data_consent_at(self) -> datetime | None: ...

    @property
    def data_key(self) -> str | None: ...


MEMBER_FACTS = tuple(
    name for name, value in vars(MemberFacts).items() if isinstance(value, property)
)


async def member_read(session: AsyncSession, member: Member) -> MemberRead:
    """The member with children, identities, consents and balance, read in one query (a
    UNION ALL of the four, so a lookup at the till is one round trip after the member),
    shown as much as the key may see (:class:`Reach`)."""
    view = (await caller_reach(session)).view(member)
    today = await local_today(session)
    parts = await MEMBER_PARTS.rows(
        session, tenant_id=require_tenant().tenant_id, member_id=member.id
    )
    return member_view(member, parts, view, today)


async def lookup_by_phone(raw_phone: str) -> MemberRead | None:
    """The till's lookup: the member by phone (or the one it was merged into) and its parts,
    in a read-only transaction of its own, on raw statements (``nestpoint.db.raw``): no
    session, no ORM. A session opens only to fill the per-process caches (the store key's
    reach, the programme) when they miss."""
    _, digest = phone_lookup_hash(raw_phone)
    tenant = require_tenant()
    database = get_database()
    reach, today = await _lookup_caches()
    if database.is_postgres:  # one round trip: the function binds the tenant itself
        async with database.statement_reader() as reader:
            rows = await MEMBER_LOOKUP.rows(
                reader, tenant_id=tenant.tenant_id, store_id=tenant.store_id, phone_hash=digest
            )
        if not rows:
            return None
        member = rows[0]
        if member.status != "merged" or member.merged_into_id is None:
            parts = [row for row in rows if row.part is not None]
            return member_view(member, parts, reach.view(member), today)
    return await _lookup(MEMBER_BY_PHONE, reach, today, phone_hash=digest)


async def lookup_by_id(member_id: uuid.UUID) -> MemberRead | None:
    """The till's lookup by id (a scanned card code names the member): as
    :func:`lookup_by_phone`, on raw statements; ``None`` for no member or an erased one."""
    reach, today = await _lookup_caches()
    return await _lookup(MEMBER_BY_ID, reach, today, member_id=member_id)


async def _lookup_caches() -> tuple[Reach, date]:
    """The key's reach and the chain's date, from the per-process caches (a session opens
    only when they miss, and ends before the lookup's own transaction)."""
    async with get_database().session() as session:
        reach = await caller_reach(session)
        today = await local_today(session)
        if session.in_transaction():
            await session.commit()
    return reach, today


async def _lookup(first: Statement, reach: Reach, today: date, **where: Any) -> MemberRead | None:
    """The member ``first`` finds, followed through merges, and its parts, in one read-only
    transaction."""
    tenant = require_tenant()
    async with get_database().read_transaction(tenant) as reader:
        member = await first.one_or_none(reader, tenant_id=tenant.tenant_id, **where)
        while member is not None and member.status == "merged" and member.merged_into_id:
            member = await MEMBER_BY_ID.one_or_none(
                reader, tenant_id=tenant.tenant_id, member_id=member.merged_into_id
            )
        if member is None or member.status == "erased":
            return None
        parts = await MEMBER_PARTS.rows(reader, tenant_id=tenant.tenant_id, member_id=member.id)
    return member_view(member, parts, reach.view(member), today)


def member_view(member: MemberFacts, parts: list[Any], view: View, today: date) -> MemberRead:
    """The member as ``view`` shows it, from its row and the rows of :data:`MEMBER_PARTS`."""
    cipher = cipher_of(member)
    children = sorted((r for r in parts if r.part == "child"), key=lambda r: (r.at, r.ref))
    identities = sorted(
        (r.text_1, unseal(cipher, "member_identities", r.ref, r.text_2), r.ref)
        for r in parts
        if r.part == "identity"
    )
    consents = sorted((r for r in parts if r.part == "consent"), key=lambda r: r.text_1)
    balance = next((r.number for r in parts if r.part == "balance"), 0)
    return MemberRead(
        id=member.id,
        phone=shown_phone(member, view.pii, cipher),
        name=shown_name(member, view, cipher),
        gender=member.gender,
        birthday=member.birthday if view.pii else None,
        birthday_month=member.birthday.month if member.birthday else None,
        home_store_id=member.home_store_id,
        join_channel=member.join_channel,
        join_store_id=member.join_store_id,
        joined_at=member.joined_at,
        tags=list(member.tags),
        status=member.status,
        merged_into_id=member.merged_into_id,
        tier_code=member.tier_code,
        growth_value=member.growth_value,
        points_balance=balance or 0,
        guardian_consent=member.child_data_consent_at is not None,
        children=[
            ChildRead(
                id=c.ref,
                nickname=unseal(cipher, "children", c.ref, c.text_1) if view.profile else "",
                gender=c.text_2,
                birth_date=c.date_1 if view.pii else None,
                due_date=c.date_2 if view.pii else None,
                stage=stage_of(c.date_1, today, c.date_2),
            )
            for c in children
        ],
        identities=[
            IdentityRead(id=i, kind=k, value=v if view.pii else pii.mask_identity(v))
            for k, v, i in identities
        ],
        consents=[
            ConsentRead(channel=c.text_1, granted=bool(c.flag), source=c.text_2, updated_at=c.at)
            for c in consents
        ],
    )


def _member_parts() -> Any:
    """Children, identities, consents and the points balance of one member (bound as
    ``tenant_id`` and ``member_id``) as rows of one shape: ``part`` says which, and the
    columns ``text_1``, ``text_2``, ``date_1``, ``date_2``, ``flag``, ``at`` and ``number``
    hold what each part has (see :func:`member_view`)."""
    tenant_id, member_id = (
        bindparam("tenant_id", type_=Uuid()),
        bindparam("member_id", type_=Uuid()),
    )

    def nothing(type_: Any) -> Any:
        return cast(null(), type_)

    parts = [
        select(
            literal("child").label("part"),
            Child.id.label("ref"),
            Child.nickname_enc.label("text_1"),
            Child.gender.label("text_2"),
            Child.birth_date.label("date_1"),
            Child.due_date.label("date_2"),
            nothing(Boolean()).label("flag"),
            Child.created_at.label("at"),
            nothing(BigInteger()).label("number"),
        ).where(Child.tenant_id == tenant_id, Child.member_id == member_id),
        select(
            literal("identity"),
            MemberIdentity.id,
            MemberIdentity.kind,
            MemberIdentity.value_enc,
            nothing(Date()),
            nothing(Date()),
            nothing(Boolean()),
            MemberIdentity.created_at,
            nothing(BigInteger()),
        ).where(MemberIdentity.tenant_id == tenant_id, MemberIdentity.member_id == member_id),
        select(
            literal("consent"),
            nothing(Uuid()),
            MemberConsent.channel,
            MemberConsent.source,
            nothing(Date()),
            nothing(Date()),
            MemberConsent.granted,
            MemberConsent.updated_at,
            nothing(BigInteger()),
        ).where(MemberConsent.tenant_id == tenant_id, MemberConsent.member_id == member_id),
        select(
            literal("balance"),
            nothing(Uuid()),
            nothing(String()),
            nothing(String()),
            nothing(Date()),
            nothing(Date()),
            nothing(Boolean()),
            PointAccount.updated_at,
            PointAccount.balance,
        ).where(PointAccount.tenant_id == tenant_id, PointAccount.member_id == member_id),
    ]
    return union_all(*parts)


def _member_row(*where: Any) -> Any:
    """The columns of :class:`MemberFacts`, for one member of the bound ``tenant_id``."""
    table = Member.__table__
    columns = [table.c[name] for name in MEMBER_FACTS]
    return select(*columns).where(table.c.tenant_id == bindparam("tenant_id", type_=Uuid()), *where)


# The lookup's statements, built and compiled once (``nestpoint.db.raw``).
MEMBER_PARTS = Statement(_member_parts())
MEMBER_BY_PHONE = Statement(
    _member_row(Member.phone_hash == bindparam("phone_hash", type_=String()))
)
MEMBER_BY_ID = Statement(_member_row(Member.id == bindparam("member_id", type_=Uuid())))


def _lookup_function() -> Any:
    """``nestpoint_lookup_member`` (PostgreSQL, migration 0007): the member by phone with
    its parts in one statement that binds the tenant itself; one row per part, each with
    the member's columns (:data:`MEMBER_FACTS`) and a part's (:func:`_member_parts`)."""
    member = Member.__table__
    facts = [column(name, member.c[name].type) for name in MEMBER_FACTS]
    parts = [column(c.name, c.type) for c in _member_parts().selected_columns]
    lookup = func.nestpoint_lookup_member(
        bindparam("tenant_id", type_=Uuid()),
        bindparam("store_id", type_=Uuid()),
        bindparam("phone_hash", type_=String()),
    ).table_valued(*facts, *parts)
    return select(*lookup.c)


MEMBER_LOOKUP = Statement(_lookup_function())


def shown_name(
    member: MemberFacts, view: View, cipher: pii.MemberCipher | None = None
) -> str | None:
    name = decrypt_name(member, cipher)
    return name if name is None or view.profile else pii.mask_name(name)


async def child_read(session: AsyncSession, child: Child) -> ChildRead:
    """A child as the key may see it (only routes of members in reach write children)."""
    pii_scope = (await caller_reach(session)).pii
    member = await get_member(session, child.member_id)
    return ChildRead(
        id=child.id,
        nickname=unseal(cipher_of(member), "children", child.id, child.nickname_enc),
        gender=child.gender,
        birth_date=child.birth_date if pii_scope else None,
        due_date=child.due_date if pii_scope else None,
        stage=child_stage(child, await local_today(session)),
    )


def member_summary(member: Member, view: View) -> MemberSummary:
    cipher = cipher_of(member)
    return MemberSummary(
        id=member.id,
        phone=shown_phone(member, view.pii, cipher),
        name=shown_name(member, view, cipher),
        tier_code=member.tier_code,
        home_store_id=member.home_store_id,
        joined_at=member.joined_at,
        tags=list(member.tags),
        status=member.status,
    )


async def list_members(
    session: AsyncSession,
    *,
    cursor: str | None,
    limit: int,
    tag: str | None = None,
    tier: str | None = None,
    home_store_code: str | None = None,
    status: str | None = "active",
    stage: str | None = None,
) -> Page[Member]:
    stmt: Select[Any] = select(Member)
    reach = await caller_reach(session)
    if reach.home_store_id is not None:
        stmt = stmt.where(Member.home_store_id == reach.home_store_id)
    if status:
        stmt = stmt.where(Member.status == status)
    if tier:
        stmt = stmt.where(Member.tier_code == tier)
    if home_store_code:
        store_id = await store_id_for(session, home_store_code, "query.home_store")
        stmt = stmt.where(Member.home_store_id == store_id)
    if tag:
        # Tags are a small JSON list; a LIKE on its text form works on both databases.
        stmt = stmt.where(cast(Member.tags, String).like(f'%"{tag}"%'))
    if stage:
        stmt = stmt.where(Member.id.in_(_members_with_stage(stage, await local_today(session))))
    return await paginate(session, stmt, (Member.joined_at, Member.id), cursor=cursor, limit=limit)


def _members_with_stage(stage: str, today: date) -> Select[Any]:
    """Members with a child at ``stage`` today, as a date-range query on birth/due dates."""
    bounds = {"0-6m": (0, 6), "6-12m": (6, 12), "1-3y": (12, 36), "3-6y": (36, 72)}
    overdue_before = today - dates.OVERDUE_AFTER
    if stage == "pregnant":
        return select(Child.member_id).where(
            Child.birth_date.is_(None), Child.due_date >= overdue_before
        )
    if stage == "birth_overdue":
        return select(Child.member_id).where(
            Child.birth_date.is_(None), Child.due_date < overdue_before
        )
    if stage == "older":
        return select(Child.member_id).where(Child.birth_date <= today - relativedelta(months=72))
    low, high = bounds[stage]
    return select(Child.member_id).where(
        Child.birth_date <= today - relativedelta(months=low),
        Child.birth_date > today - relativedelta(months=high),
    )


# ------------------------------------------------------------------ writing


def _require_guardian_consent(member: Member, field: str) -> None:
    if member.child_data_consent_at is None:
        raise Invalid.field(
            field, "child data needs the guardian's separate consent (guardian_consent) first"
        )


def _set_guardian_consent(member: Member, consent: GuardianConsentIn) -> None:
    if consent.granted:
        member.child_data_consent_at = utcnow()
        member.child_data_consent_source = consent.source
    else:
        member.child_data_consent_at = None
        member.child_data_consent_source = consent.source


async def _erase_children(session: AsyncSession, member: Member) -> int:
    """Guardian consent withdrawn: the children's data goes with it (PIPL), not only the flag."""
    result = await session.execute(
        delete(Child).where(
            Child.tenant_id == require_tenant().tenant_id, Child.member_id == member.id
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _check_child_dates(data: ChildIn, today: date, prefix: str = "") -> None:
    if data.birth_date is not None:
        dates.check_birth_date(data.birth_date, today, f"{prefix}birth_date")
    if data.due_date is not None:
        dates.check_due_date(data.due_date, today, f"{prefix}due_date")


def _new_child(cipher: pii.MemberCipher, member_id: uuid.UUID, data: ChildIn) -> Child:
    child_id = uuid.uuid4()
    return Child(
        id=child_id,
        member_id=member_id,
        nickname_enc=seal(cipher, "children", child_id, data.nickname) if data.nickname else None,
        gender=data.gender,
        birth_date=data.birth_date,
        due_date=data.due_date,
    )


async def create_member(session: AsyncSession, data: MemberCreate) -> Member:
    ctx = require_tenant()
    e164, digest = phone_lookup_hash(data.phone)
    today = await local_today(session)
    dates.check_birthday(data.birthday, today)
    for i, child in enumerate(data.children):
        _check_child_dates(child, today, f"children.{i}.")
    if await session.scalar(select(Member.id).where(Member.phone_hash == digest)):
        raise Conflict("a member with this phone exists", errors=[FieldError("phone", "taken")])
    home_store_id = await store_id_for(session, data.home_store_code, "home_store_code")
    if ctx.store_id is not None:  # enrolment is new business: only at active stores
        await ensure_store_trading(session, ctx.store_id)
    if home_store_id is not None:
        await ensure_store_trading(session, home_store_id, "home_store_code")
    await billing.ensure_member_room(session)  # the plan's member limit (docs/billing.md)
    join_store_id = ctx.store_id or home_store_id
    member_id = uuid.uuid4()
    data_key = pii.new_data_key(ctx.tenant_id, member_id)
    cipher = pii.member_cipher(ctx.tenant_id, member_id, data_key)
    program = await get_program(session)
    now = utcnow()
    member = Member(
        id=member_id,
        data_key=data_key,
        phone_hash=digest,
        phone_enc=cipher.encrypt(e164, context=_context(member_id)),
        name_enc=cipher.encrypt(data.name, context=_context(member_id)) if data.name else None,
        gender=data.gender,
        birthday=data.birthday,
        home_store_id=home_store_id or join_store_id,
        join_channel=data.join_channel,
        join_store_id=join_store_id,
        joined_at=now,
        tags=sorted(set(data.tags)),
        tier_code=program.entry_tier.code,
        tier_since=now,
    )
    if data.guardian_consent is not None:
        _set_guardian_consent(member, data.guardian_consent)
    if data.children:
        _require_guardian_consent(member, "children")
    session.add(member)
    try:
        # The member row first: the rows below refer to it, and with no ORM relationships
        # the unit of work does not order the inserts by those foreign keys.
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(
            "a member with this phone exists", errors=[FieldError("phone", "taken")]
        ) from exc
    session.add(PointAccount(member_id=member_id))
    session.add(
        TierChange(
            member_id=member_id,
            from_tier=None,
            to_tier=member.tier_code,
            reason="join",
            growth_value=0,
        )
    )
    for child in data.children:
        session.add(_new_child(cipher, member_id, child))
    for consent in data.consents:
        session.add(
            MemberConsent(
                member_id=member_id,
                channel=consent.channel,
                granted=consent.granted,
                source=consent.source,
            )
        )
    await _add_identities(session, cipher, member_id, data.identities)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(
            "the phone or an identity belongs to another member",
            errors=[FieldError("phone", "taken or identity taken")],
        ) from exc
    record(
        session,
        "member.created",
        "member",
        member_id,
        {"join_channel": data.join_channel, "children": len(data.children)},
    )
    emit(
        session,
        "member.joined",
        "member",
        member_id,
        {
            "member_id": str(member_id),
            "join_channel": data.join_channel,
            "tier_code": member.tier_code,
            "home_store_id": str(member.home_store_id) if member.home_store_id else None,
        },
        store_id=join_store_id,
    )
    return member


async def _add_identities(
    session: AsyncSession,
    cipher: pii.MemberCipher,
    member_id: uuid.UUID,
    identities: list[IdentityIn],
) -> None:
    for i, identity in enumerate(identities):
        digest = pii.identity_hash(identity.kind, identity.value)
        owner = await session.scalar(
            select(MemberIdentity.member_id).where(
                MemberIdentity.kind == identity.kind, MemberIdentity.value_hash == digest
            )
        )
        if owner is not None and owner != member_id:
            raise Conflict(
                "identity belongs to another member",
                errors=[FieldError(f"identities.{i}", "taken")],
            )
        if owner is None:
            row_id = uuid.uuid4()
            session.add(
                MemberIdentity(
                    id=row_id,
                    member_id=member_id,
                    kind=identity.kind,
                    value_hash=digest,
                    value_enc=seal(cipher, "member_identities", row_id, identity.value),
                )
            )


async def update_member(session: AsyncSession, member_id: uuid.UUID, data: MemberUpdate) -> Member:
    member = await get_member_in_reach(session, member_id)
    changes: dict[str, Any] = {}
    if data.name is not None:
        member.name_enc = writing_cipher(member).encrypt(data.name, context=_context(member.id))
        changes["name"] = "changed"
    if data.gender is not None and member.gender != data.gender:
        changes["gender"] = [member.gender, data.gender]
        member.gender = data.gender
    if data.birthday is not None and member.birthday != data.birthday:
        dates.check_birthday(data.birthday, await local_today(session))
        member.birthday = data.birthday
        changes["birthday"] = "changed"  # personal data: not in the audit trail
    if data.tags is not None:
        member.tags = sorted(set(data.tags))
        changes["tags"] = member.tags
    if data.home_store_code is not None:
        member.home_store_id = await store_id_for(session, data.home_store_code, "home_store_code")
        changes["home_store_id"] = str(member.home_store_id)
    if data.guardian_consent is not None:
        _set_guardian_consent(member, data.guardian_consent)
        changes["guardian_consent"] = data.guardian_consent.granted
        if not data.guardian_consent.granted:
            changes["children_erased"] = await _erase_children(session, member)
    if changes:
        record(session, "member.updated", "member", member.id, changes)
        emit(
            session,
            "member.updated",
            "member",
            member.id,
            {"member_id": str(member.id), "fields": sorted(changes)},
        )
    return member


async def add_child(session: AsyncSession, member_id: uuid.UUID, data: ChildIn) -> Child:
    member = await get_member_in_reach(session, member_id)
    _require_guardian_consent(member, "guardian_consent")
    _check_child_dates(data, await local_today(session))
    child = _new_child(writing_cipher(member), member.id, data)
    session.add(child)
    await session.flush()
    record(session, "child.added", "child", child.id, {"member_id": str(member.id)})
    return child


async def _get_child(session: AsyncSession, member_id: uuid.UUID, child_id: uuid.UUID) -> Child:
    child = await session.scalar(
        select(Child).where(Child.id == child_id, Child.member_id == member_id)
    )
    if child is None:
        raise NotFound("no such child")
    return child


async def update_child(
    session: AsyncSession, member_id: uuid.UUID, child_id: uuid.UUID, data: ChildUpdate
) -> Child:
    member = await get_member_in_reach(session, member_id)
    _require_guardian_consent(member, "guardian_consent")
    child = await _get_child(session, member_id, child_id)
    changed = sorted(data.model_dump(exclude_none=True))
    if data.nickname is not None:
        child.nickname_enc = (
            seal(writing_cipher(member), "children", child.id, data.nickname)
            if data.nickname
            else None
        )
    if data.gender is not None:
        child.gender = data.gender
    # Field names only: a child's nickname is personal data, kept out of the audit trail.
    record(session, "child.updated", "child", child.id, {"fields": changed})
    return child


async def record_birth(
    session: AsyncSession, member_id: uuid.UUID, child_id: uuid.UUID, data: BirthIn
) -> Child:
    """A pregnancy becomes a newborn: the stage follows from the birth date (child.born)."""
    member = await get_member_in_reach(session, member_id)
    _require_guardian_consent(member, "guardian_consent")
    child = await _get_child(session, member_id, child_id)
    dates.check_birth_date(data.birth_date, await local_today(session))
    if child.birth_date is not None:
        if child.birth_date == data.birth_date:
            return child  # a retry: already recorded
        raise Conflict(
            "this child's birth is already recorded",
            errors=[FieldError("birth_date", "already recorded")],
        )
    dates.check_birth_against_due(data.birth_date, child.due_date, "birth_date")
    child.birth_date = data.birth_date
    if data.gender:
        child.gender = data.gender
    if data.nickname is not None:
        child.nickname_enc = (
            seal(writing_cipher(member), "children", child.id, data.nickname)
            if data.nickname
            else None
        )
    record(session, "child.born", "child", child.id, {"member_id": str(member.id)})
    emit(
        session,
        "child.born",
        "child",
        child.id,
        {
            "member_id": str(member.id),
            "child_id": str(child.id),
            "birth_date": data.birth_date.isoformat(),
            "due_date": child.due_date.isoformat() if child.due_date else None,
        },
    )
    return child


async def set_consents(
    session: AsyncSession, member_id: uuid.UUID, consents: list[ConsentIn]
) -> None:
    member = await get_member_in_reach(session, member_id)
    existing = {
        c.channel: c
        for c in (
            await session.scalars(select(MemberConsent).where(MemberConsent.member_id == member.id))
        ).all()
    }
    for consent in consents:
        row = existing.get(consent.channel)
        if row is None:
            session.add(
                MemberConsent(
                    member_id=member.id,
                    channel=consent.channel,
                    granted=consent.granted,
                    source=consent.source,
                )
            )
        elif row.granted != consent.granted or row.source != consent.source:
            row.granted, row.source, row.updated_at = consent.granted, consent.source, utcnow()
        else:
            continue
        record(session, "consent.changed", "member", member.id, consent.model_dump())


async def add_identity(session: AsyncSession, member_id: uuid.UUID, data: IdentityIn) -> None:
    member = await get_member_in_reach(session, member_id)
    await _add_identities(session, writing_cipher(member), member.id, [data])
    # The kind only: the value (a card number, an openid) is personal data.
    record(session, "identity.added", "member", member.id, {"kind": data.kind})


async def remove_identity(
    session: AsyncSession, member_id: uuid.UUID, identity_id: uuid.UUID
) -> None:
    """Unlink one of the member's channel identities (a lost card, an app account closed):
    the row goes, so neither lookups nor orders find the member by it any more, and it may
    be linked again, to this member or another. Audited with the kind (the value is personal
    data) and announced as ``member.updated``. No "last way to be found" rule: the phone is
    required and unique, so a member stays found by phone whatever identities go."""
    member = await get_member_in_reach(session, member_id)
    identity = await session.scalar(
        select(MemberIdentity).where(
            MemberIdentity.id == identity_id, MemberIdentity.member_id == member.id
        )
    )
    if identity is None:
        raise NotFound("no such identity")
    await session.delete(identity)
    detail = {"kind": identity.kind, "identity_id": str(identity.id)}
    record(session, "identity.removed", "member", member.id, detail)
    emit(
        session,
        "member.updated",
        "member",
        member.id,
        {"member_id": str(member.id), "fields": ["identities"], "identity_removed": detail},
    )


async def link_family(
    session: AsyncSession, member_id: uuid.UUID, other_id: uuid.UUID
) -> uuid.UUID:
    member = await get_member_in_reach(session, member_id)
    other = await get_member_in_reach(session, other_id)
    family_id = member.family_id or other.family_id or uuid.uuid4()
    member.family_id = other.family_id = family_id
    record(
        session,
        "family.linked",
        "member",
        member.id,
        {"other": str(other.id), "family_id": str(family_id)},
    )
    return family_id


def current_store_id() -> uuid.UUID | None:
    ctx = current_tenant()
    return ctx.store_id if ctx else None


async def rotate_keys(session: AsyncSession, batch_size: int = 1000) -> int:
    """Bring personal data under the current keys; returns the rows rewritten.

    Members' data keys wrapped under an older keyring key are wrapped again under the active
    one (the data they seal stays as it is: that is what makes a rotation cheap); members
    from before data keys (migration 0019) are given one, and their phone, name, children's
    nicknames and identity values written under the keyring itself are sealed again under it.

    Runs for the current tenant; repeat until it returns 0 (each call takes one batch of each
    table).
    """
    ring = pii.keyring()
    rows = await _rotate_members(session, ring, batch_size)
    rows += await _reseal_children(session, batch_size)
    rows += await _reseal_identities(session, batch_size)
    if rows:
        record(
            session,
            "pii.rotated",
            "tenant",
            require_tenant().tenant_id,
            {"rows": rows, "key_id": ring.active_id},
        )
    return rows


SEALED_BY_MEMBER = f"{pii.MEMBER_SEALED}:"


def _by_keyring(column: Any) -> Any:
    """Rows whose ``column`` holds a ciphertext under the keyring, not a member's key."""
    return column.is_not(None) & (column != "") & ~column.startswith(SEALED_BY_MEMBER)


async def _rotate_members(session: AsyncSession, ring: pii.Keyring, batch_size: int) -> int:
    stale = (
        (Member.data_key.is_(None) & (Member.status != "erased"))
        | (Member.data_key.is_not(None) & ~Member.data_key.startswith(f"{ring.active_id}:"))
        | _by_keyring(Member.phone_enc)
        | _by_keyring(Member.name_enc)
    )
    rows = (
        await session.scalars(select(Member).where(stale).limit(batch_size).with_for_update())
    ).all()
    tenant_id = require_tenant().tenant_id
    for member in rows:
        if member.data_key is not None:  # wrapped again under the active key
            context = pii.data_key_context(tenant_id, member.id)
            member.data_key = ring.encrypt(
                ring.decrypt(member.data_key, context=context), context=context
            )
        cipher = writing_cipher(member)
        context = _context(member.id)
        if not member.phone_enc.startswith(SEALED_BY_MEMBER) and member.phone_enc:
            member.phone_enc = cipher.encrypt(
                cipher.decrypt(member.phone_enc, context=context), context=context
            )
        if member.name_enc is not None and not member.name_enc.startswith(SEALED_BY_MEMBER):
            member.name_enc = cipher.encrypt(
                cipher.decrypt(member.name_enc, context=context), context=context
            )
    return len(rows)


async def _reseal_children(session: AsyncSession, batch_size: int) -> int:
    """Nicknames still under the keyring, of members who have their key (see above)."""
    rows = (
        await session.execute(
            select(Child, Member.id, Member.data_key)
            .join(Member, (Member.tenant_id == Child.tenant_id) & (Member.id == Child.member_id))
            .where(_by_keyring(Child.nickname_enc), Member.data_key.is_not(None))
            .limit(batch_size)
            .with_for_update()
        )
    ).all()
    for child, member_id, data_key in rows:
        cipher = pii.member_cipher(require_tenant().tenant_id, member_id, data_key)
        nickname = unseal(cipher, "children", child.id, child.nickname_enc)
        child.nickname_enc = seal(cipher, "children", child.id, nickname)
    return len(rows)


async def _reseal_identities(session: AsyncSession, batch_size: int) -> int:
    rows = (
        await session.execute(
            select(MemberIdentity, Member.id, Member.data_key)
            .join(
                Member,
                (Member.tenant_id == MemberIdentity.tenant_id)
                & (Member.id == MemberIdentity.member_id),
            )
            .where(_by_keyring(MemberIdentity.value_enc), Member.data_key.is_not(None))
            .limit(batch_size)
            .with_for_update()
        )
    ).all()
    for identity, member_id, data_key in rows:
        cipher = pii.member_cipher(require_tenant().tenant_id, member_id, data_key)
        value = unseal(cipher, "member_identities", identity.id, identity.value_enc)
        identity.value_enc = seal(cipher, "member_identities", identity.id, value)
    return len(rows)


async def reseal_moved(session: AsyncSession, source: Member, target: Member) -> None:
    """Children and identities moving from ``source`` to ``target`` (a merge): opened with
    the source's key and sealed with the target's, so each member's data stays under its
    own key (erasing the target shreds them too)."""
    old, new = cipher_of(source), writing_cipher(target)
    children = await session.scalars(select(Child).where(Child.member_id == source.id))
    for child in children:
        if child.nickname_enc is not None:
            nickname = unseal(old, "children", child.id, child.nickname_enc)
            child.nickname_enc = seal(new, "children", child.id, nickname)
    identities = await session.scalars(
        select(MemberIdentity).where(MemberIdentity.member_id == source.id)
    )
    for identity in identities:
        value = unseal(old, "member_identities", identity.id, identity.value_enc)
        identity.value_enc = seal(new, "member_identities", identity.id, value)


# ------------------------------------------------------------------ for plugins (plugins/api.py)

TAG: TypeAdapter[str] = TypeAdapter(Tag)


def has_tag(tag: str) -> Any:
    """Members whose tags hold ``tag`` exactly: a LIKE on the list's JSON text (both
    databases), the tag written as the list stores it and LIKE's wildcards escaped."""
    encoded = msgspec.json.encode(tag).decode()
    escaped = encoded.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return cast(Member.tags, String).like(f"%{escaped}%", escape="!")


async def active_member_ids(
    session: AsyncSession, *, tags: list[str], after: uuid.UUID | None, limit: int
) -> list[uuid.UUID]:
    """Active members' ids in id order after ``after``; with ``tags``, those holding any."""
    stmt = select(Member.id).where(Member.status == "active")
    if tags:
        stmt = stmt.where(or_(*(has_tag(tag) for tag in tags)))
    if after is not None:
        stmt = stmt.where(Member.id > after)
    return list((await session.scalars(stmt.order_by(Member.id).limit(limit))).all())


async def add_tags(session: AsyncSession, member_id: uuid.UUID, tags: list[str]) -> Member:
    """Add ``tags`` to the member (a merged one's survivor), keeping those it has: audited
    and announced (``member.updated``) when something was added, a no-op otherwise. A tag
    is checked like the API's (``tags.<i>``); more than ``MAX_TAGS`` in all is refused."""
    wanted: list[str] = []
    for i, tag in enumerate(tags):
        try:
            wanted.append(TAG.validate_python(tag))
        except ValidationError as exc:
            raise Invalid.field(f"tags.{i}", exc.errors()[0]["msg"]) from exc
    member = await get_active_member(session, member_id, for_update=True)
    added = sorted(set(wanted) - set(member.tags))
    if not added:
        return member
    if len(member.tags) + len(added) > MAX_TAGS:
        raise Invalid.field("tags", f"a member has at most {MAX_TAGS} tags")
    member.tags = sorted(set(member.tags) | set(added))
    record(session, "member.tags_added", "member", member.id, {"tags": added})
    emit(
        session,
        "member.updated",
        "member",
        member.id,
        {"member_id": str(member.id), "fields": ["tags"]},
    )
    return member
