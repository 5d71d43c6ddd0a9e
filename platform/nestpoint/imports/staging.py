"""An import's rows staged in temporary tables of its transaction, checked set-based
against the file and the chain, and merged with ``INSERT ... SELECT`` (see ``service``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    and_,
    case,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from nestpoint.context import require_tenant
from nestpoint.db.base import UTCDateTime, table_of
from nestpoint.idempotency.models import IdempotencyKey
from nestpoint.imports.files import Facts, Row
from nestpoint.imports.models import ImportKey
from nestpoint.limits import MAX_ORDER_FEN, MAX_POINTS
from nestpoint.members import dates, pii
from nestpoint.members.models import IDENTITY_KINDS, Child, Member, MemberIdentity
from nestpoint.members.schemas import MAX_TAGS
from nestpoint.orders.models import Order
from nestpoint.points.models import PointAccount, PointEntry, PointLot
from nestpoint.tiers.models import TierChange

BATCH_SIZE = 5000  # rows read back per statement (nicknames to seal, tag sets)
ORDER_CHANNELS = ("pos", "mall", "mini_program", "app")
ERASED = "the member was erased (a deletion request): nothing of theirs is imported again"


# ---------------------------------------------------------------------------- staging

_meta = MetaData()


def _stage(name: str, *columns: Column[Any]) -> Table:
    table = Table(
        f"import_stage_{name}",
        _meta,
        Column("row_no", Integer, primary_key=True),
        *columns,
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",
    )
    if "member_id" in table.c:  # correlated lookups of a member's rows (sums, latest order)
        Index(f"ix_import_stage_{name}_member", table.c.member_id)
    return table


def _member_columns() -> list[Column[Any]]:
    return [
        Column("member_ref", String(100)),
        Column("member_hash", String(64)),
        Column("member_id", Uuid()),
    ]


STAGES: dict[str, Table] = {
    "members": _stage(
        "members",
        Column("id", Uuid()),
        Column("change_id", Uuid()),
        Column("phone_hash", String(64)),
        Column("phone_enc", Text),
        Column("name_enc", Text),
        Column("data_key", Text),
        Column("gender", String(8)),
        Column("birthday", Date),
        Column("home_store_id", Uuid()),
        Column("joined_at", UTCDateTime()),
        Column("tags", JSON),
        Column("consent_at", UTCDateTime()),
        Column("legacy_id", String(100)),
        Column("existing_id", Uuid()),
    ),
    "children": _stage(
        "children",
        Column("id", Uuid()),
        *_member_columns(),
        Column("legacy_id", String(100)),
        Column("nickname", Text),
        Column("gender", String(8)),
        Column("birth_date", Date),
        Column("due_date", Date),
        Column("existing_id", Uuid()),
    ),
    "balances": _stage(
        "balances",
        *_member_columns(),
        Column("legacy_id", String(100)),
        Column("points", BigInteger),
        Column("earned_at", UTCDateTime()),
        Column("expires_at", UTCDateTime()),
        Column("lot_id", Uuid()),
        Column("entry_id", Uuid()),
        Column("seen", Integer),
    ),
    "orders": _stage(
        "orders",
        Column("id", Uuid()),
        *_member_columns(),
        Column("external_id", String(100)),
        Column("channel", String(16)),
        Column("store_id", Uuid()),
        Column("paid_at", UTCDateTime()),
        Column("total_fen", BigInteger),
        Column("cash_fen", BigInteger),
        Column("discount_fen", BigInteger),
        Column("points_used", BigInteger),
        Column("refunded_fen", BigInteger),
        Column("status", String(24)),
        Column("seen", Integer),
    ),
    "tags": _stage("tags", *_member_columns(), Column("tags", JSON)),
}
# New members' ids in other channels (several a row), sealed under the member's key.
IDENTITIES = Table(
    "import_stage_identities",
    _meta,
    Column("row_no", Integer, primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("id", Uuid()),
    Column("value_hash", String(64)),
    Column("value_enc", Text),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)
# Temporary tables a kind's import fills beside its stage.
EXTRAS: dict[str, tuple[Table, ...]] = {"members": (IDENTITIES,)}
# Children's nicknames sealed under their member's key, once the member is known.
NICKNAMES = _stage("nicknames", Column("nickname_enc", Text))
# The tags each member ends with (a tags import).
TAG_SETS = Table(
    "import_stage_tag_sets",
    _meta,
    Column("member_id", Uuid(), primary_key=True),
    Column("tags", JSON),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)


def is_postgres(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql"


async def create_temporary(conn: AsyncConnection, table: Table) -> None:
    if not is_postgres(conn):  # SQLite keeps a temporary table for the connection's life
        await conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{table.name}")
    await conn.run_sync(table.create)


async def analyze(conn: AsyncConnection, table: Table) -> None:
    """Statistics of a filled temporary table (PostgreSQL: autovacuum never sees them)."""
    if is_postgres(conn):
        await conn.exec_driver_sql(f"ANALYZE {table.name}")


async def drop_temporary(conn: AsyncConnection, *tables: Table) -> None:
    if not is_postgres(conn):  # PostgreSQL drops them at commit
        for table in tables:
            await conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{table.name}")


async def copy_rows(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Stage rows: ``COPY`` on PostgreSQL (asyncpg, binary), ``executemany`` elsewhere."""
    if not rows:
        return
    if is_postgres(conn):
        names = list(rows[0])
        json_columns = {n for n in names if isinstance(table.c[n].type, JSON)}
        records = [
            tuple(json.dumps(r[n]) if n in json_columns else r[n] for n in names) for r in rows
        ]
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        await driver.copy_records_to_table(table.name, records=records, columns=names)
    else:
        await conn.execute(insert(table), rows)


# ---------------------------------------------------------------------------- kinds

Problems = list[tuple[int, str, str]]  # (row, field, problem)


def _prepare_member(row: Row) -> dict[str, Any] | None:
    facts = row.facts
    e164 = row.phone("phone", required=True)
    name = row.text("name", 100)
    gender = row.gender("gender")
    birthday = row.day("birthday")
    if birthday is not None:
        row.check("birthday", lambda: dates.check_birthday(birthday, facts.today))
    store_code = row.text("home_store", 32)
    home_store_id = facts.stores.get(store_code) if store_code else None
    if store_code and home_store_id is None:
        row.bad("home_store", f"no store {store_code!r} in the chain")
    joined_at = row.moment("joined_at")
    row.not_after_now("joined_at", joined_at)
    tags = row.tags("tags")
    consent_at = row.moment("guardian_consent_at")
    row.not_after_now("guardian_consent_at", consent_at)
    legacy_id = row.text("legacy_id", 100)
    identities = [
        (kind, value) for kind in IDENTITY_KINDS if (value := row.text(kind, 128)) is not None
    ]
    if row.problems or e164 is None:
        return None
    return {
        "id": uuid.uuid4(),
        "change_id": uuid.uuid4(),
        "phone_hash": pii.keyring().lookup_hash(e164),
        "_phone": e164,  # sealed by _seal_members, unless the member is there already
        "_name": name,
        "_identities": identities,
        "gender": gender,
        "birthday": birthday,
        "home_store_id": home_store_id,
        "joined_at": joined_at or facts.now,
        "tags": tags,
        "consent_at": consent_at,
        "legacy_id": legacy_id,
    }


def _prepare_child(row: Row) -> dict[str, Any] | None:
    facts = row.facts
    ref, member_hash = row.member_ref()
    legacy_id = row.text("legacy_id", 100, required=True)
    nickname = row.text("nickname", 50)
    gender = row.gender("gender")
    birth = row.day("birth_date")
    due = row.day("due_date")
    if birth is not None:
        row.check("birth_date", lambda: dates.check_birth_date(birth, facts.today))
        if due is not None:
            row.check("due_date", lambda: dates.check_birth_against_due(birth, due, "due_date"))
    elif due is not None:
        row.check("due_date", lambda: dates.check_due_date(due, facts.today))
    elif not row.problems:
        row.bad("birth_date", "a birth_date or, for a pregnancy, a due_date is needed")
    if row.problems:
        return None
    return {
        "id": uuid.uuid4(),
        "member_ref": ref,
        "member_hash": member_hash,
        "legacy_id": legacy_id,
        "nickname": nickname,
        "gender": gender,
        "birth_date": birth,
        "due_date": due,
    }


def _prepare_balance(row: Row) -> dict[str, Any] | None:
    facts = row.facts
    ref, member_hash = row.member_ref()
    legacy_id = row.text("legacy_id", 100, required=True)
    points = row.number("points", 1, MAX_POINTS, required=True)
    expires_at = row.moment("expires_at", required=True, end_of_day=True)
    if expires_at is not None and expires_at <= facts.now:
        row.bad("expires_at", "already expired: leave expired balances out")
    earned_at = row.moment("earned_at")
    row.not_after_now("earned_at", earned_at)
    if row.problems:
        return None
    return {
        "member_ref": ref,
        "member_hash": member_hash,
        "legacy_id": legacy_id,
        "points": points,
        "earned_at": earned_at or facts.now,
        "expires_at": expires_at,
        "lot_id": uuid.uuid4(),
        "entry_id": uuid.uuid4(),
    }


def _prepare_order(row: Row) -> dict[str, Any] | None:
    facts = row.facts
    external_id = row.text("external_id", 100, required=True)
    channel = (row.text("channel", 16) or "pos").lower()
    if channel not in ORDER_CHANNELS:
        row.bad("channel", f"one of {', '.join(ORDER_CHANNELS)}")
    store_code = row.text("store", 32, required=True)
    store_id = facts.stores.get(store_code) if store_code else None
    if store_code and store_id is None:
        row.bad("store", f"no store {store_code!r} in the chain")
    ref, member_hash = row.member_ref(required=False)
    paid_at = row.moment("paid_at", required=True)
    row.not_after_now("paid_at", paid_at)
    total = row.number("total_fen", 0, MAX_ORDER_FEN, required=True)
    cash = row.number("cash_fen", 0, MAX_ORDER_FEN)
    discount = row.number("discount_fen", 0, MAX_ORDER_FEN) or 0
    points_used = row.number("points_used", 0, MAX_POINTS) or 0
    refunded = row.number("refunded_fen", 0, MAX_ORDER_FEN) or 0
    if total is not None:
        if cash is not None and cash > total:
            row.bad("cash_fen", "more than total_fen")
        if refunded > total:
            row.bad("refunded_fen", "more than total_fen")
    if row.problems or total is None:
        return None
    status = "paid" if refunded == 0 else "refunded" if refunded == total else "partially_refunded"
    return {
        "id": uuid.uuid4(),
        "member_ref": ref,
        "member_hash": member_hash,
        "external_id": external_id,
        "channel": channel,
        "store_id": store_id,
        "paid_at": paid_at,
        "total_fen": total,
        "cash_fen": total if cash is None else cash,
        "discount_fen": discount,
        "points_used": points_used,
        "refunded_fen": refunded,
        "status": status,
    }


def _prepare_tags(row: Row) -> dict[str, Any] | None:
    ref, member_hash = row.member_ref()
    tags = row.tags("tags", required=True)
    if row.problems:
        return None
    return {"member_ref": ref, "member_hash": member_hash, "tags": tags}


PREPARE: dict[str, Callable[[Row], dict[str, Any] | None]] = {
    "members": _prepare_member,
    "children": _prepare_child,
    "balances": _prepare_balance,
    "orders": _prepare_order,
    "tags": _prepare_tags,
}

members_t = table_of(Member)
children_t = table_of(Child)
accounts_t = table_of(PointAccount)
lots_t = table_of(PointLot)
entries_t = table_of(PointEntry)
orders_t = table_of(Order)
changes_t = table_of(TierChange)
keys_t = table_of(ImportKey)
identities_t = table_of(MemberIdentity)
idem_t = table_of(IdempotencyKey)


def _tenant(facts: Facts) -> Any:
    return literal(facts.tenant_id, Uuid())


def _at(facts: Facts) -> Any:
    return literal(facts.now, UTCDateTime())


async def _rows(conn: AsyncConnection, stmt: Any) -> list[Any]:
    return list((await conn.execute(stmt)).all())


async def _twice(conn: AsyncConnection, stage: Table, name: str, problem: str) -> Problems:
    """Rows whose ``name`` another row of the file has too."""
    column = stage.c[name]
    dupes = select(column).where(column.is_not(None)).group_by(column).having(func.count() > 1)
    stmt = select(stage.c.row_no).where(column.in_(dupes)).order_by(stage.c.row_no)
    return [(r.row_no, _field_of(name), problem) for r in await _rows(conn, stmt)]


def _field_of(column: str) -> str:
    return {"phone_hash": "phone", "member_hash": "member_phone"}.get(column, column)


async def _resolve_members(
    conn: AsyncConnection, stage: Table, facts: Facts, **also: Any
) -> Problems:
    """Set each row's ``member_id`` from its legacy id or phone (a member merged away is
    followed to the member it was merged into), and the columns of ``also`` in the same
    pass over the staged rows; rows naming no member of the chain are problems."""
    t = facts.tenant_id
    found = func.coalesce(members_t.c.merged_into_id, members_t.c.id)
    by_hash = (
        select(found)
        .where(members_t.c.tenant_id == t, members_t.c.phone_hash == stage.c.member_hash)
        .scalar_subquery()
    )
    by_ref = (
        select(keys_t.c.target_id)
        .where(
            keys_t.c.tenant_id == t, keys_t.c.kind == "member", keys_t.c.ref == stage.c.member_ref
        )
        .correlate_except(keys_t)  # the staged row, two levels up
        .scalar_subquery()
    )
    by_ref_followed = (
        select(found)
        .where(members_t.c.tenant_id == t, members_t.c.id == by_ref)
        .correlate_except(members_t)
        .scalar_subquery()
    )
    await conn.execute(
        update(stage).values(member_id=func.coalesce(by_ref_followed, by_hash), **also)
    )
    named = or_(stage.c.member_ref.is_not(None), stage.c.member_hash.is_not(None))
    missing = select(stage.c.row_no, stage.c.member_ref).where(named, stage.c.member_id.is_(None))
    problems: Problems = [
        (
            r.row_no,
            "member_legacy_id" if r.member_ref else "member_phone",
            "no member of the chain has this "
            + ("legacy id (import the members first)" if r.member_ref else "phone"),
        )
        for r in await _rows(conn, missing.order_by(stage.c.row_no))
    ]
    status = (
        select(members_t.c.status)
        .where(members_t.c.tenant_id == t, members_t.c.id == stage.c.member_id)
        .scalar_subquery()
    )
    erased = select(stage.c.row_no, stage.c.member_ref).where(status == "erased")
    problems += [
        (
            r.row_no,
            "member_legacy_id" if r.member_ref else "member_phone",
            ERASED,
        )
        for r in await _rows(conn, erased.order_by(stage.c.row_no))
    ]
    return problems


# -- members


async def _check_members(conn: AsyncConnection, facts: Facts) -> Problems:
    s, t = STAGES["members"], facts.tenant_id
    problems = await _twice(conn, s, "phone_hash", "the same phone is on another row of the file")
    problems += await _twice(conn, s, "legacy_id", "the same legacy id is on another row")
    existing = (
        select(members_t.c.id)
        .where(members_t.c.tenant_id == t, members_t.c.phone_hash == s.c.phone_hash)
        .scalar_subquery()
    )
    await conn.execute(update(s).values(existing_id=existing))
    # A legacy id an earlier import gave to another member.
    given = (
        select(keys_t.c.target_id)
        .where(keys_t.c.tenant_id == t, keys_t.c.kind == "member", keys_t.c.ref == s.c.legacy_id)
        .correlate_except(keys_t)  # the staged row, also from inside ``status`` below
        .scalar_subquery()
    )
    taken = select(s.c.row_no).where(
        s.c.legacy_id.is_not(None), given != func.coalesce(s.c.existing_id, s.c.id)
    )
    status = (
        select(members_t.c.status)
        .where(members_t.c.tenant_id == t, members_t.c.id == given)
        .correlate_except(members_t)
        .scalar_subquery()
    )
    problems += [
        (
            r.row_no,
            "legacy_id",
            ERASED
            if r.status == "erased"
            else "an earlier import gave this legacy id to another member",
        )
        for r in await _rows(conn, taken.add_columns(status.label("status")))
    ]
    # Each new member's ids in other channels: once in the file, and nobody's in the chain.
    d = IDENTITIES
    key = d.c.kind + literal(":") + d.c.value_hash
    dupes = select(key).group_by(key).having(func.count() > 1)
    problems += [
        (r.row_no, r.kind, "the same id is on another row of the file")
        for r in await _rows(
            conn, select(d.c.row_no, d.c.kind).where(key.in_(dupes)).order_by(d.c.row_no)
        )
    ]
    owned = (
        select(identities_t.c.id)
        .where(
            identities_t.c.tenant_id == t,
            identities_t.c.kind == d.c.kind,
            identities_t.c.value_hash == d.c.value_hash,
        )
        .exists()
    )
    problems += [
        (r.row_no, r.kind, "another member of the chain has this id")
        for r in await _rows(conn, select(d.c.row_no, d.c.kind).where(owned).order_by(d.c.row_no))
    ]
    return problems


async def _merge_members(conn: AsyncConnection, facts: Facts) -> tuple[int, int]:
    s, t, now = STAGES["members"], _tenant(facts), _at(facts)
    new = s.c.existing_id.is_(None)
    await _insert_from(
        conn,
        members_t,
        {
            "tenant_id": t,
            "id": s.c.id,
            "phone_hash": s.c.phone_hash,
            "phone_enc": s.c.phone_enc,
            "name_enc": s.c.name_enc,
            "data_key": s.c.data_key,
            "gender": s.c.gender,
            "birthday": s.c.birthday,
            "home_store_id": s.c.home_store_id,
            "join_channel": literal("import"),
            "join_store_id": s.c.home_store_id,
            "joined_at": s.c.joined_at,
            "tags": s.c.tags,
            "status": literal("active"),
            "child_data_consent_at": s.c.consent_at,
            "child_data_consent_source": case(
                (s.c.consent_at.is_not(None), literal("import")), else_=None
            ),
            "tier_code": literal(facts.entry_tier),
            "growth_value": literal(0, BigInteger),
            "tier_since": now,
            "created_at": now,
            "updated_at": now,
        },
        new,
    )
    await _insert_from(
        conn,
        accounts_t,
        {
            "tenant_id": t,
            "member_id": s.c.id,
            "balance": literal(0, BigInteger),
            "debt": literal(0, BigInteger),
            "held": literal(0, BigInteger),
            "lifetime_earned": literal(0, BigInteger),
            "earned_day": literal(""),
            "earned_today": literal(0, BigInteger),
            "updated_at": now,
        },
        new,
    )
    await _insert_from(
        conn,
        changes_t,
        {
            "tenant_id": t,
            "id": s.c.change_id,
            "member_id": s.c.id,
            "to_tier": literal(facts.entry_tier),
            "reason": literal("join"),
            "growth_value": literal(0, BigInteger),
            "run_id": literal(""),
            "changed_at": now,
        },
        new,
    )
    d = IDENTITIES
    await _insert_from(
        conn,
        identities_t,
        {
            "tenant_id": t,
            "id": d.c.id,
            "member_id": s.c.id,
            "kind": d.c.kind,
            "value_hash": d.c.value_hash,
            "value_enc": d.c.value_enc,
            "created_at": now,
        },
        new,
        source=d.join(s, s.c.row_no == d.c.row_no),
    )
    await _record_keys(conn, facts, s, "member", func.coalesce(s.c.existing_id, s.c.id))
    return await _counts(conn, s, new)


async def _insert_from(
    conn: AsyncConnection,
    target: Table,
    values: dict[str, Any],
    where: Any,
    source: Any = None,
) -> None:
    """``INSERT INTO target (column, ...) SELECT value, ... [FROM source] WHERE where``: one
    set-based statement (columns left out keep their NULL)."""
    rows = select(*values.values()).where(where)
    if source is not None:
        rows = rows.select_from(source)
    await conn.execute(insert(target).from_select(list(values), rows))


async def _record_keys(
    conn: AsyncConnection, facts: Facts, s: Table, kind: str, target: Any
) -> None:
    """Remember each row's legacy id (once: an earlier import's stays)."""
    known = select(keys_t.c.ref).where(
        keys_t.c.tenant_id == facts.tenant_id, keys_t.c.kind == kind, keys_t.c.ref == s.c.legacy_id
    )
    await _insert_from(
        conn,
        keys_t,
        {
            "tenant_id": _tenant(facts),
            "kind": literal(kind),
            "ref": s.c.legacy_id,
            "target_id": target,
            "import_id": literal(facts.import_id, Uuid()),
            "created_at": _at(facts),
        },
        and_(s.c.legacy_id.is_not(None), ~known.exists()),
    )


async def _counts(conn: AsyncConnection, s: Table, new: Any) -> tuple[int, int]:
    total = int(await conn.scalar(select(func.count()).select_from(s)) or 0)
    imported = int(await conn.scalar(select(func.count()).select_from(s).where(new)) or 0)
    return imported, total - imported


# -- children


async def _check_children(conn: AsyncConnection, facts: Facts) -> Problems:
    s, t = STAGES["children"], facts.tenant_id
    problems = await _twice(conn, s, "legacy_id", "the same legacy id is on another row")
    existing = (
        select(keys_t.c.target_id)
        .where(keys_t.c.tenant_id == t, keys_t.c.kind == "child", keys_t.c.ref == s.c.legacy_id)
        .scalar_subquery()
    )
    problems += await _resolve_members(conn, s, facts, existing_id=existing)

    # Correlated lookups by the members' primary key: right after a large members import
    # the planner's statistics still say "few members", and a join would be planned as such.
    def of_member(column: Any) -> Any:
        return (
            select(column)
            .where(members_t.c.tenant_id == t, members_t.c.id == s.c.member_id)
            .scalar_subquery()
        )

    new = and_(s.c.existing_id.is_(None), s.c.member_id.is_not(None))
    no_consent = select(s.c.row_no).where(
        new, of_member(members_t.c.child_data_consent_at).is_(None)
    )
    problems += [
        (
            r.row_no,
            "member_phone",
            "the member has no guardian's consent to children's data"
            " (import it with the member: guardian_consent_at)",
        )
        for r in await _rows(conn, no_consent.order_by(s.c.row_no))
    ]
    no_key = select(s.c.row_no).where(
        new, s.c.nickname.is_not(None), of_member(members_t.c.data_key).is_(None)
    )
    problems += [
        (r.row_no, "nickname", "the member has no data key (erased, or keys not rotated yet)")
        for r in await _rows(conn, no_key.order_by(s.c.row_no))
    ]
    return problems


async def _seal_nicknames(conn: AsyncConnection, facts: Facts) -> None:
    """Each new child's nickname sealed under its member's data key, into ``NICKNAMES``."""
    s, t = STAGES["children"], facts.tenant_id
    await create_temporary(conn, NICKNAMES)
    data_key = (
        select(members_t.c.data_key)
        .where(members_t.c.tenant_id == t, members_t.c.id == s.c.member_id)
        .scalar_subquery()
        .label("data_key")
    )
    after = 0
    while True:
        rows = await _rows(
            conn,
            select(s.c.row_no, s.c.id, s.c.member_id, data_key, s.c.nickname)
            .where(s.c.row_no > after, s.c.nickname.is_not(None), s.c.existing_id.is_(None))
            .order_by(s.c.row_no)
            .limit(BATCH_SIZE),
        )
        if not rows:
            await analyze(conn, NICKNAMES)
            return
        ciphers: dict[uuid.UUID, pii.MemberCipher] = {}
        sealed = []
        for r in rows:
            cipher = ciphers.get(r.member_id)
            if cipher is None:
                cipher = ciphers[r.member_id] = pii.member_cipher(t, r.member_id, r.data_key)
            context = pii.row_context(t, "children", r.id)
            sealed.append(
                {"row_no": r.row_no, "nickname_enc": cipher.encrypt(r.nickname, context=context)}
            )
        await copy_rows(conn, NICKNAMES, sealed)
        after = rows[-1].row_no


async def _merge_children(conn: AsyncConnection, facts: Facts) -> tuple[int, int]:
    s, t, now = STAGES["children"], _tenant(facts), _at(facts)
    new = s.c.existing_id.is_(None)
    await _seal_nicknames(conn, facts)
    n = NICKNAMES
    await _insert_from(
        conn,
        children_t,
        {
            "tenant_id": t,
            "id": s.c.id,
            "member_id": s.c.member_id,
            "nickname_enc": n.c.nickname_enc,
            "gender": s.c.gender,
            "birth_date": s.c.birth_date,
            "due_date": s.c.due_date,
            "created_at": now,
            "updated_at": now,
        },
        new,
        source=s.outerjoin(n, n.c.row_no == s.c.row_no),
    )
    await _record_keys(conn, facts, s, "child", s.c.id)
    await drop_temporary(conn, NICKNAMES)
    return await _counts(conn, s, new)


# -- balances


async def _check_balances(conn: AsyncConnection, facts: Facts) -> Problems:
    s, t = STAGES["balances"], facts.tenant_id
    problems = await _twice(conn, s, "legacy_id", "the same legacy id is on another row")
    seen = (
        select(entries_t.c.id)
        .where(
            entries_t.c.tenant_id == t,
            entries_t.c.cause_type == "import",
            entries_t.c.cause_id == s.c.legacy_id,
        )
        .exists()
    )
    problems += await _resolve_members(conn, s, facts, seen=func.cast(seen, Integer))
    debt = (
        select(accounts_t.c.debt)
        .where(accounts_t.c.tenant_id == t, accounts_t.c.member_id == s.c.member_id)
        .scalar_subquery()
    )
    in_debt = select(s.c.row_no).where(s.c.seen == 0, debt > 0)
    problems += [
        (r.row_no, "member_phone", "the member owes points (clawback debt): settle it first")
        for r in await _rows(conn, in_debt.order_by(s.c.row_no))
    ]
    return problems


async def _merge_balances(conn: AsyncConnection, facts: Facts) -> tuple[int, int]:
    """Each opening balance a lot with its original expiry and a ``migration`` entry; the
    account's balance grows by the sum. Accounts are locked first (the ledger's lock order)."""
    s, t, now = STAGES["balances"], _tenant(facts), _at(facts)
    new = s.c.seen == 0
    members_of = select(s.c.member_id).where(new)
    if is_postgres(conn):
        await conn.execute(
            select(accounts_t.c.member_id)
            .where(
                accounts_t.c.tenant_id == facts.tenant_id, accounts_t.c.member_id.in_(members_of)
            )
            .order_by(accounts_t.c.member_id)
            .with_for_update()
        )
    await _insert_from(
        conn,
        lots_t,
        {
            "tenant_id": t,
            "id": s.c.lot_id,
            "member_id": s.c.member_id,
            "amount": s.c.points,
            "remaining": s.c.points,
            "source": literal("migration"),
            "earned_at": s.c.earned_at,
            "available_at": s.c.earned_at,
            "expires_at": s.c.expires_at,
        },
        new,
    )
    balance = (
        select(accounts_t.c.balance)
        .where(accounts_t.c.tenant_id == facts.tenant_id, accounts_t.c.member_id == s.c.member_id)
        .scalar_subquery()
    )
    running = func.sum(s.c.points).over(partition_by=s.c.member_id, order_by=s.c.row_no)
    await _insert_from(
        conn,
        entries_t,
        {
            "tenant_id": t,
            "id": s.c.entry_id,
            "member_id": s.c.member_id,
            "kind": literal("migration"),
            "amount": s.c.points,
            "balance_after": balance + running,
            "lot_id": s.c.lot_id,
            "cause_type": literal("import"),
            "cause_id": s.c.legacy_id,
            "reason": literal("opening balance (import)"),
            "actor": literal(facts.requested_by),
            "created_at": now,
        },
        new,
    )
    added = (
        select(func.sum(s.c.points))
        .where(new, s.c.member_id == accounts_t.c.member_id)
        .scalar_subquery()
    )
    await conn.execute(
        update(accounts_t)
        .values(balance=accounts_t.c.balance + added, updated_at=now)
        .where(accounts_t.c.tenant_id == facts.tenant_id, accounts_t.c.member_id.in_(members_of))
    )
    return await _counts(conn, s, new)


# -- orders


async def _check_orders(conn: AsyncConnection, facts: Facts) -> Problems:
    s, t = STAGES["orders"], facts.tenant_id
    key = s.c.channel + literal("/") + s.c.external_id
    dupes = select(key).group_by(key).having(func.count() > 1)
    problems: Problems = [
        (r.row_no, "external_id", "the same order (channel and external_id) is on another row")
        for r in await _rows(conn, select(s.c.row_no).where(key.in_(dupes)).order_by(s.c.row_no))
    ]
    seen = (
        select(orders_t.c.id)
        .where(
            orders_t.c.tenant_id == t,
            orders_t.c.channel == s.c.channel,
            orders_t.c.external_id == s.c.external_id,
        )
        .exists()
    )
    problems += await _resolve_members(conn, s, facts, seen=func.cast(seen, Integer))
    return problems


async def _merge_orders(conn: AsyncConnection, facts: Facts) -> tuple[int, int]:
    """Historic orders, recorded as they were: no points earned now, no lines."""
    s, t, now = STAGES["orders"], _tenant(facts), _at(facts)
    new = s.c.seen == 0
    answer = {"imported": True, "import_id": str(facts.import_id)}
    await _insert_from(
        conn,
        orders_t,
        {
            "tenant_id": t,
            "id": s.c.id,
            "channel": s.c.channel,
            "external_id": s.c.external_id,
            "store_id": s.c.store_id,
            "member_id": s.c.member_id,
            "status": s.c.status,
            "paid_at": s.c.paid_at,
            "total_fen": s.c.total_fen,
            "cash_fen": s.c.cash_fen,
            "points_used": s.c.points_used,
            "points_value_fen": literal(0, BigInteger),
            "coupons": literal([], JSON()),
            "points_earned": literal(0, BigInteger),
            "discount_fen": s.c.discount_fen,
            "refunded_fen": s.c.refunded_fen,
            "response": literal(answer, JSON()),
            "created_at": now,
        },
        new,
    )
    # The till's idempotency key of each order (``orders.service.order_key``): a till that
    # sends an imported receipt again is told it is taken (409 naming external_id), never
    # a second order.
    key = s.c.channel + literal("/") + s.c.external_id
    claimed = select(idem_t.c.key).where(
        idem_t.c.tenant_id == facts.tenant_id, idem_t.c.scope == "order", idem_t.c.key == key
    )
    await _insert_from(
        conn,
        idem_t,
        {
            "tenant_id": t,
            "scope": literal("order"),
            "key": key,
            "request_hash": literal("imported"),
            "status_code": literal(201),
            "response": literal(answer, JSON()),
            "created_at": now,
        },
        and_(new, ~claimed.exists()),
    )
    # The member's last order, if the history has a later one.
    latest = (
        select(func.max(s.c.paid_at)).where(new, s.c.member_id == members_t.c.id).scalar_subquery()
    )
    await conn.execute(
        update(members_t)
        .values(last_order_at=latest)
        .where(
            members_t.c.tenant_id == facts.tenant_id,
            members_t.c.id.in_(select(s.c.member_id).where(new, s.c.member_id.is_not(None))),
            or_(members_t.c.last_order_at.is_(None), members_t.c.last_order_at < latest),
        )
    )
    return await _counts(conn, s, new)


# -- tags


async def _check_tags(conn: AsyncConnection, facts: Facts) -> Problems:
    """Resolve the members, then work out each one's tags (theirs and the file's): more than
    :data:`MAX_TAGS` is a problem; the sets that change are kept for the merge."""
    s, t = STAGES["tags"], facts.tenant_id
    problems = await _resolve_members(conn, s, facts)
    await create_temporary(conn, TAG_SETS)
    wanted: dict[uuid.UUID, tuple[set[str], list[int]]] = {}
    for r in await _rows(
        conn, select(s.c.row_no, s.c.member_id, s.c.tags).where(s.c.member_id.is_not(None))
    ):
        tags, rows = wanted.setdefault(r.member_id, (set(), []))
        tags.update(r.tags)
        rows.append(r.row_no)
    changed = []
    ids = list(wanted)
    for start in range(0, len(ids), BATCH_SIZE):
        part = ids[start : start + BATCH_SIZE]
        current = await _rows(
            conn,
            select(members_t.c.id, members_t.c.tags).where(
                members_t.c.tenant_id == t, members_t.c.id.in_(part)
            ),
        )
        for member_id, tags in current:
            union = sorted(set(tags or []) | wanted[member_id][0])
            if len(union) > MAX_TAGS:
                problems += [
                    (row_no, "tags", f"the member would have more than {MAX_TAGS} tags")
                    for row_no in wanted[member_id][1]
                ]
            elif len(union) != len(set(tags or [])):
                changed.append({"member_id": member_id, "tags": union})
    for start in range(0, len(changed), BATCH_SIZE):
        await copy_rows(conn, TAG_SETS, changed[start : start + BATCH_SIZE])
    await analyze(conn, TAG_SETS)
    return problems


async def _merge_tags(conn: AsyncConnection, facts: Facts) -> tuple[int, int]:
    s, g = STAGES["tags"], TAG_SETS
    tags = select(g.c.tags).where(g.c.member_id == members_t.c.id).scalar_subquery()
    await conn.execute(
        update(members_t)
        .values(tags=tags, updated_at=_at(facts))
        .where(members_t.c.tenant_id == facts.tenant_id, members_t.c.id.in_(select(g.c.member_id)))
    )
    new = s.c.member_id.in_(select(g.c.member_id))
    counts = await _counts(conn, s, new)
    await drop_temporary(conn, TAG_SETS)
    return counts


Check = Callable[[AsyncConnection, Facts], Awaitable[Problems]]
Merge = Callable[[AsyncConnection, Facts], Awaitable[tuple[int, int]]]
CHECKS: dict[str, Check] = {
    "members": _check_members,
    "children": _check_children,
    "balances": _check_balances,
    "orders": _check_orders,
    "tags": _check_tags,
}
MERGES: dict[str, Merge] = {
    "members": _merge_members,
    "children": _merge_children,
    "balances": _merge_balances,
    "orders": _merge_orders,
    "tags": _merge_tags,
}


async def seal_members(conn: AsyncConnection, batch: list[dict[str, Any]]) -> None:
    """Each new member's data key, and phone and name sealed under it (as ``create_member``
    does). A phone the chain has already is not sealed: the row will be skipped (a re-run
    of a large file costs little more than reading it)."""
    t = require_tenant().tenant_id
    known = set(
        (
            await conn.execute(
                select(members_t.c.phone_hash).where(
                    members_t.c.tenant_id == t,
                    members_t.c.phone_hash.in_([r["phone_hash"] for r in batch]),
                )
            )
        ).scalars()
    )
    identities: list[dict[str, Any]] = []
    for r in batch:
        phone, name, ids = r.pop("_phone"), r.pop("_name"), r.pop("_identities")
        if r["phone_hash"] in known:
            r.update(phone_enc=None, name_enc=None, data_key=None)
            continue
        data_key = pii.new_data_key(t, r["id"])
        cipher = pii.member_cipher(t, r["id"], data_key)
        context = f"{t}:{r['id']}".encode()
        r.update(
            phone_enc=cipher.encrypt(phone, context=context),
            name_enc=cipher.encrypt(name, context=context) if name else None,
            data_key=data_key,
        )
        for kind, value in ids:
            identity_id = uuid.uuid4()
            sealed = cipher.encrypt(
                value, context=pii.row_context(t, "member_identities", identity_id)
            )
            identities.append(
                {
                    "row_no": r["row_no"],
                    "kind": kind,
                    "id": identity_id,
                    "value_hash": pii.identity_hash(kind, value),
                    "value_enc": sealed,
                }
            )
    await copy_rows(conn, IDENTITIES, identities)
