"""Exports: request a job, run it (stream rows into file chunks), read the file back.

A job reads its rows in batches of :data:`BATCH_SIZE` by primary key (keyset pagination,
one short transaction per batch that also stores the finished chunks and the progress), and
writes them through a CSV or XLSX writer whose output is cut into chunks of
:data:`CHUNK_SIZE` bytes in ``export_chunks``: memory stays bounded by one batch and one
chunk whatever the row count. The API process only creates the job; a worker
(``exports.run``) or the CLI runs it.

A ``member_data`` export (one member's right of access and copy) is the same job with
another body: one JSON document of everything kept about the member
(:mod:`nestpoint.exports.member_data`, the plugins' parts through the host), cut into chunks
the same way.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from nestpoint.audit.service import record
from nestpoint.context import Actor, current_actor, require_tenant
from nestpoint.db import Database, scoped_session
from nestpoint.db.base import new_id, utcnow
from nestpoint.db.chunks import pieces, read_in_order
from nestpoint.db.pagination import Page, paginate
from nestpoint.db.session import on_commit
from nestpoint.errors import Conflict, FieldError, Forbidden, Invalid, NotFound
from nestpoint.exports import member_data
from nestpoint.exports.models import Export, ExportChunk
from nestpoint.exports.schemas import ExportIn, ExportRead, MemberDataExportIn
from nestpoint.idempotency import service as idempotency
from nestpoint.idempotency.service import Answer, fingerprint
from nestpoint.jobs.broker import JobRef, enqueue_best_effort
from nestpoint.members import pii
from nestpoint.members.models import Child, Member
from nestpoint.members.service import (
    decrypt_name,
    decrypt_phone,
    get_member,
    local_today,
    stage_of,
)
from nestpoint.orders.models import Order
from nestpoint.plugins.manager import UNAVAILABLE, get_plugin_host
from nestpoint.points.models import PointAccount, PointEntry
from nestpoint.segments import service as segments
from nestpoint.tenancy.models import Store

CHUNK_SIZE = 1024 * 1024  # bytes of one export_chunks row (the last one may be smaller)
BATCH_SIZE = 1000  # rows read per transaction; progress is stored after each batch
RUN = JobRef("exports.run", queue_name="default")
REQUEST_SCOPE = "export"  # idempotency keys of POST /exports: the body's idempotency_key
MEMBER_DATA_SCOPE = "member_data_export"  # those of POST /members/{id}/data-exports
MEMBER_DATA = "member_data"
SEGMENT = "segment"  # the members of a saved segment, as it is when the job runs
_NEW_KEY = "nestpoint.exports.new"

KINDS = ("members", "children", "points_ledger", "orders")
PERSONAL = frozenset({"members", "children", SEGMENT})  # kinds masked without members:pii
# The scope reading the same data through the API needs (beside exports:read/write).
NEEDS = {
    "members": "members:read",
    "children": "members:read",
    "points_ledger": "members:read",
    "orders": "orders:read",
    MEMBER_DATA: "members:pii",  # one member's data in full
    SEGMENT: "members:read",
}
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
BOM = "\ufeff".encode()  # so Excel reads the CSV as UTF-8 (Chinese names)
# A cell starting with one of these is a formula to a spreadsheet: it gets a quote first.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-][0-9]{1,20}")


# ---------------------------------------------------------------------------- requests


def requester(actor: Actor) -> str:
    return f"{actor.kind}:{actor.key_id or actor.name}"[:100]


def check_allowed(actor: Actor, kind: str) -> None:
    """The key must be allowed to read the data it exports (403 naming ``kind``)."""
    needed = NEEDS[kind]
    if not actor.has(needed):
        raise Forbidden(
            f"an export of {kind} needs the {needed!r} scope",
            errors=[FieldError("kind", f"needs the {needed!r} scope")],
        )


def new_export(
    kind: str, fmt: str, *, masked: bool, requested_by: str, segment_code: str | None = None
) -> Export:
    """A queued job with every column set (its answer is made before it is written)."""
    return Export(
        segment_code=segment_code,
        id=new_id(),
        kind=kind,
        format=fmt,
        status="queued",
        masked=masked,
        requested_by=requested_by,
        rows_total=0,
        rows_done=0,
        size_bytes=0,
        chunks=0,
        sha256=None,
        error=None,
        created_at=utcnow(),
        started_at=None,
        finished_at=None,
    )


async def request_export(session: AsyncSession, data: ExportIn) -> Answer[ExportRead]:
    """Queue an export for a worker; idempotent by ``idempotency_key`` (a retry answers
    the first 202, the key with another request is a 409). Masked unless the key holds
    ``members:pii``; audited."""
    actor = current_actor()
    check_allowed(actor, data.kind)
    masked = data.kind in PERSONAL and not actor.has("members:pii")
    if data.segment_code is not None:
        await check_segment(session, data.segment_code)
    job = new_export(
        data.kind,
        data.format,
        masked=masked,
        requested_by=requester(actor),
        segment_code=data.segment_code,
    )
    body = ExportRead.model_validate(job)
    answer = Answer(202, body.model_dump(mode="json"), result=body)
    earlier = await idempotency.claim(
        session,
        REQUEST_SCOPE,
        data.idempotency_key,
        fingerprint(data),
        answer,
        field="idempotency_key",
    )
    if earlier is not None:
        return earlier
    add_export(session, job)
    await session.flush()
    session.info.setdefault(_NEW_KEY, []).append((require_tenant().tenant_id, job.id))
    return answer


async def check_segment(session: AsyncSession, code: str) -> None:
    """A segment the chain has, or a 422 naming ``segment_code``."""
    try:
        await segments.get_segment(session, code)
    except NotFound:
        raise Invalid.field("segment_code", f"no segment {code!r}") from None


async def request_member_data(
    session: AsyncSession, member_id: uuid.UUID, data: MemberDataExportIn
) -> Answer[ExportRead]:
    """Queue a copy of one member's data (JSON) for a worker: 404 for a member the chain
    does not have; idempotent by ``idempotency_key`` like :func:`request_export`. Audited
    on the member (``members.data_export_requested``, with the reason) and as an export."""
    actor = current_actor()
    check_allowed(actor, MEMBER_DATA)
    job = await member_data_job(session, member_id, data.reason, requester(actor))
    body = ExportRead.model_validate(job)
    answer = Answer(202, body.model_dump(mode="json"), result=body)
    earlier = await idempotency.claim(
        session,
        MEMBER_DATA_SCOPE,
        data.idempotency_key,
        fingerprint({"member_id": str(member_id), "reason": data.reason}),
        answer,
        field="idempotency_key",
    )
    if earlier is not None:
        return earlier
    await add_member_data_job(session, job)
    session.info.setdefault(_NEW_KEY, []).append((require_tenant().tenant_id, job.id))
    return answer


async def member_data_job(
    session: AsyncSession, member_id: uuid.UUID, reason: str, requested_by: str
) -> Export:
    """A queued ``member_data`` job (not yet added): 404 for a member the chain does not
    have, or no longer has (erased: there is nothing personal left to copy)."""
    member = await get_member(session, member_id)
    if member.status == "erased":
        raise NotFound("no such member")
    job = new_export(MEMBER_DATA, "json", masked=False, requested_by=requested_by)
    job.member_id, job.reason = member_id, reason
    return job


async def add_member_data_job(session: AsyncSession, job: Export) -> None:
    """Add the job, audited on the member with the reason."""
    add_export(session, job)
    record(
        session,
        "members.data_export_requested",
        "member",
        job.member_id,
        {"export_id": str(job.id), "reason": job.reason},
    )
    await session.flush()


def add_export(session: AsyncSession, job: Export) -> None:
    session.add(job)
    record(
        session,
        "exports.requested",
        "export",
        job.id,
        {"kind": job.kind, "format": job.format, "masked": job.masked}
        | ({"segment_code": job.segment_code} if job.segment_code else {}),
    )


def enqueue_new_after_commit(session: Session) -> None:
    """Session hook: hand the jobs this commit created to the workers (best effort: a lost
    one stays ``queued``; request it again with a new key)."""
    for tenant_id, export_id in session.info.pop(_NEW_KEY, []):
        enqueue_best_effort(RUN, str(tenant_id), str(export_id))


on_commit(enqueue_new_after_commit)


async def get_export(session: AsyncSession, export_id: uuid.UUID) -> Export:
    job = await session.scalar(select(Export).where(Export.id == export_id))
    if job is None:
        raise NotFound(f"no export {export_id}")
    return job


async def list_exports(session: AsyncSession, *, cursor: str | None, limit: int) -> Page[Export]:
    return await paginate(
        session, select(Export), (Export.created_at, Export.id), cursor=cursor, limit=limit
    )


async def recent_exports(session: AsyncSession, limit: int) -> list[Export]:
    """The chain's latest export jobs, newest first (the console's list)."""
    stmt = select(Export).order_by(Export.created_at.desc(), Export.id.desc()).limit(limit)
    return list((await session.scalars(stmt)).all())


def may_download(actor: Actor, job: Export) -> bool:
    """Whether :func:`downloadable` would hand ``actor`` this job's file once it is done."""
    if not actor.has(NEEDS[job.kind]):
        return False
    return job.kind not in PERSONAL or job.masked or actor.has("members:pii")


async def downloadable(session: AsyncSession, export_id: uuid.UUID) -> Export:
    """The finished export the current key may download: 409 before it is done; 403 when
    the key could not read its data (an unmasked one needs ``members:pii``)."""
    job = await get_export(session, export_id)
    actor = current_actor()
    check_allowed(actor, job.kind)
    if job.kind in PERSONAL and not job.masked and not actor.has("members:pii"):
        raise Forbidden("this export holds personal data in full: it needs `members:pii`")
    if job.status != "done":
        raise Conflict(f"export {export_id} is {job.status}, not done")
    record(session, "exports.downloaded", "export", job.id, {"kind": job.kind})
    if job.kind == MEMBER_DATA and job.member_id is not None:
        record(
            session,
            "members.data_export_downloaded",
            "member",
            job.member_id,
            {"export_id": str(job.id), "reason": job.reason},
        )
    return job


async def delete_export(session: AsyncSession, export_id: uuid.UUID) -> None:
    """Delete an export and its file (retention); a running one is 409."""
    job = await get_export(session, export_id)
    if job.status == "running":
        raise Conflict(f"export {export_id} is running")
    await session.execute(delete(ExportChunk).where(ExportChunk.export_id == export_id))
    await session.delete(job)
    record(session, "exports.deleted", "export", export_id, {"kind": job.kind})


def filename(job: Export) -> str:
    kind = f"segment-{job.segment_code}" if job.kind == SEGMENT else job.kind
    return f"{kind}-{job.created_at:%Y%m%d-%H%M%S}-{str(job.id)[:8]}.{job.format}"


def read_file(
    tenant_id: uuid.UUID, export_id: uuid.UUID, chunks: int, database: Database | None = None
) -> AsyncIterator[bytes]:
    """The file's chunks in order, each read in its own short transaction (a download of
    any size holds one chunk in memory)."""

    def chunk_at(seq: int) -> Any:
        return select(ExportChunk.data).where(
            ExportChunk.export_id == export_id, ExportChunk.seq == seq
        )

    return read_in_order(tenant_id, chunks, chunk_at, database)


# ---------------------------------------------------------------------------- cells


def _text(value: str) -> str:
    """Text a spreadsheet would run as a formula gets a leading quote; a plain signed number
    (a phone in E.164, ``+8613912345678``) is no formula and stays as it is."""
    if value.startswith(FORMULA_START) and not PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, int):
        return value
    return _text(str(value))


def xlsx_cell(value: Any) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, datetime | date):  # Excel keeps no zone: ISO 8601 text, in UTC
        return value.isoformat()
    return _text(ILLEGAL_CHARACTERS_RE.sub("", str(value)))


# ---------------------------------------------------------------------------- writers


class Writer(Protocol):
    size: int
    digest: Any

    def write(self, cells: list[Any]) -> None: ...

    def full_chunks(self) -> Iterator[bytes]: ...

    def finish(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


@dataclass
class CsvWriter:
    """UTF-8 with a BOM; rows go through ``csv.writer`` into a text buffer that is cut
    into chunks of exactly :data:`CHUNK_SIZE` bytes (the last one shorter)."""

    columns: Sequence[str]
    size: int = 0
    digest: Any = field(default_factory=hashlib.sha256)

    def __post_init__(self) -> None:
        self._text = io.StringIO()
        self._csv = csv.writer(self._text)
        self._pending = bytearray(BOM)
        self._csv.writerow(self.columns)

    def write(self, cells: list[Any]) -> None:
        self._csv.writerow([csv_cell(c) for c in cells])
        if self._text.tell() >= CHUNK_SIZE:
            self._drain()

    def _drain(self) -> None:
        self._pending += self._text.getvalue().encode("utf-8")
        self._text.seek(0)
        self._text.truncate()

    def _cut(self, size: int) -> bytes:
        data = bytes(self._pending[:size])
        del self._pending[:size]
        self.size += len(data)
        self.digest.update(data)
        return data

    def full_chunks(self) -> Iterator[bytes]:
        self._drain()
        while len(self._pending) >= CHUNK_SIZE:
            yield self._cut(CHUNK_SIZE)

    def finish(self) -> Iterator[bytes]:
        yield from self.full_chunks()
        if self._pending:
            yield self._cut(len(self._pending))

    def close(self) -> None:
        self._text.close()


@dataclass
class XlsxWriter:
    """openpyxl's write-only workbook (rows go to its temporary file, not memory); the
    saved file is copied into chunks at the end."""

    columns: Sequence[str]
    title: str
    size: int = 0
    digest: Any = field(default_factory=hashlib.sha256)

    def __post_init__(self) -> None:
        self._book = Workbook(write_only=True)
        self._sheet = self._book.create_sheet(self.title)
        self._sheet.append(list(self.columns))

    def write(self, cells: list[Any]) -> None:
        self._sheet.append([xlsx_cell(c) for c in cells])

    def full_chunks(self) -> Iterator[bytes]:
        return iter(())

    def finish(self) -> Iterator[bytes]:
        with tempfile.TemporaryFile() as saved:
            self._book.save(saved)
            saved.seek(0)
            while data := saved.read(CHUNK_SIZE):
                self.size += len(data)
                self.digest.update(data)
                yield data

    def close(self) -> None:
        self._book.close()


def make_writer(fmt: str, kind: str, columns: Sequence[str]) -> Writer:
    return CsvWriter(columns) if fmt == "csv" else XlsxWriter(columns, kind)


# ---------------------------------------------------------------------------- sources


@dataclass(frozen=True, slots=True)
class Facts:
    """What every row of one export is shown with."""

    tenant_id: uuid.UUID
    masked: bool
    today: date
    stores: dict[uuid.UUID, str]
    # A segment export: its members' ids (SELECT members.id), compiled when the job starts.
    segment: Any = None


Fetch = Callable[[AsyncSession, uuid.UUID | None, int], Awaitable[Sequence[Any]]]
Cells = Callable[[Any, Facts], list[Any]]


@dataclass(frozen=True, slots=True)
class Source:
    model: type[Any]
    columns: tuple[str, ...]
    fetch: Fetch
    cells: Cells


def _after(stmt: Any, key: Any, after: uuid.UUID | None, limit: int) -> Any:
    if after is not None:
        stmt = stmt.where(key > after)
    return stmt.order_by(key).limit(limit)


async def _members(
    session: AsyncSession, after: uuid.UUID | None, limit: int, *where: Any
) -> list[Any]:
    stmt = _after(select(Member).where(*where), Member.id, after, limit)
    members = list((await session.scalars(stmt)).all())
    balances: dict[uuid.UUID, int] = {}
    if members:
        rows = await session.execute(
            select(PointAccount.member_id, PointAccount.balance).where(
                PointAccount.member_id.in_([m.id for m in members])
            )
        )
        balances = dict(rows.all())
    return [(m, balances.get(m.id, 0)) for m in members]


def _member_cells(row: tuple[Member, int], facts: Facts) -> list[Any]:
    member, balance = row
    phone, name = decrypt_phone(member), decrypt_name(member)
    if facts.masked:
        phone, name = pii.mask_phone(phone), pii.mask_name(name) if name else name
    return [
        member.id,
        phone,
        name,
        member.gender,
        None if facts.masked else member.birthday,
        member.birthday.month if member.birthday else None,
        facts.stores.get(member.home_store_id) if member.home_store_id else None,
        member.join_channel,
        member.joined_at,
        member.tier_code,
        member.growth_value,
        balance,
        ";".join(member.tags),
        member.status,
    ]


async def _children(session: AsyncSession, after: uuid.UUID | None, limit: int) -> list[Any]:
    """Children with their member's id and data key (their nicknames are sealed under it)."""
    with_key = select(Child, Member.id, Member.data_key).join(
        Member, (Member.tenant_id == Child.tenant_id) & (Member.id == Child.member_id)
    )
    return [tuple(row) for row in await session.execute(_after(with_key, Child.id, after, limit))]


def _child_cells(row: tuple[Child, uuid.UUID, str | None], facts: Facts) -> list[Any]:
    child, member_id, data_key = row
    nickname = None
    if not facts.masked and child.nickname_enc is not None:
        cipher = pii.member_cipher(facts.tenant_id, member_id, data_key)
        context = pii.row_context(facts.tenant_id, "children", child.id)
        nickname = cipher.decrypt(child.nickname_enc, context=context)
    return [
        child.id,
        child.member_id,
        child.gender,
        stage_of(child.birth_date, facts.today, child.due_date),
        None if facts.masked else child.birth_date,
        None if facts.masked else child.due_date,
        nickname,
        child.created_at,
    ]


_LEDGER = (
    PointEntry.id,
    PointEntry.member_id,
    PointEntry.kind,
    PointEntry.amount,
    PointEntry.balance_after,
    PointEntry.cause_type,
    PointEntry.cause_id,
    PointEntry.reason,
    PointEntry.created_at,
)


async def _ledger(session: AsyncSession, after: uuid.UUID | None, limit: int) -> list[Any]:
    return list(
        (await session.execute(_after(select(*_LEDGER), PointEntry.id, after, limit))).all()
    )


def _ledger_cells(row: Any, facts: Facts) -> list[Any]:
    order_ref = row.cause_id if row.cause_type == "order" else None
    return [*row[:7], order_ref, row.reason, row.created_at]


_ORDER = (
    Order.id,
    Order.external_id,
    Order.channel,
    Order.store_id,
    Order.member_id,
    Order.status,
    Order.total_fen,
    Order.cash_fen,
    Order.discount_fen,
    Order.points_used,
    Order.points_value_fen,
    Order.points_earned,
    Order.refunded_fen,
    Order.paid_at,
)


async def _orders(session: AsyncSession, after: uuid.UUID | None, limit: int) -> list[Any]:
    return list((await session.execute(_after(select(*_ORDER), Order.id, after, limit))).all())


def _order_cells(row: Any, facts: Facts) -> list[Any]:
    cells = list(row)
    cells[3] = facts.stores.get(row.store_id, str(row.store_id))
    return cells


MEMBER_COLUMNS = (
    "id",
    "phone",
    "name",
    "gender",
    "birthday",
    "birthday_month",
    "home_store",
    "join_channel",
    "joined_at",
    "tier_code",
    "growth_value",
    "points_balance",
    "tags",
    "status",
)

SOURCES: dict[str, Source] = {
    "members": Source(Member, MEMBER_COLUMNS, _members, _member_cells),
    "children": Source(
        Child,
        ("id", "member_id", "gender", "stage", "birth_date", "due_date", "nickname", "created_at"),
        _children,
        _child_cells,
    ),
    "points_ledger": Source(
        PointEntry,
        (
            "id",
            "member_id",
            "kind",
            "amount",
            "balance_after",
            "cause_type",
            "cause_id",
            "order_ref",
            "reason",
            "created_at",
        ),
        _ledger,
        _ledger_cells,
    ),
    "orders": Source(
        Order,
        (
            "id",
            "external_id",
            "channel",
            "store",
            "member_id",
            "status",
            "total_fen",
            "cash_fen",
            "discount_fen",
            "points_used",
            "points_value_fen",
            "points_earned",
            "refunded_fen",
            "paid_at",
        ),
        _orders,
        _order_cells,
    ),
}


def segment_source(members: Any) -> Source:
    """The members of a segment (``members``: its compiled ``SELECT members.id``), with the
    columns of the ``members`` export; each batch reads the segment as it is then."""

    async def fetch(session: AsyncSession, after: uuid.UUID | None, limit: int) -> list[Any]:
        return await _members(session, after, limit, Member.id.in_(members))

    return Source(Member, MEMBER_COLUMNS, fetch, _member_cells)


# ---------------------------------------------------------------------------- running

Progress = Callable[[int, int], None]


async def _start(export_id: uuid.UUID, database: Database | None) -> tuple[Export, Facts] | None:
    """Claim the job (a finished one is left alone; a failed or interrupted one starts
    again from nothing), count its rows and gather what every row is shown with."""
    async with scoped_session(database) as session:
        job = await session.scalar(select(Export).where(Export.id == export_id).with_for_update())
        if job is None or job.status == "done":
            return None
        await session.execute(delete(ExportChunk).where(ExportChunk.export_id == export_id))
        segment = None
        if job.kind == MEMBER_DATA:
            total = 1  # one document
        elif job.kind == SEGMENT:
            try:
                segment = await segments.segment_statement(session, job.segment_code or "")
            except NotFound as exc:  # deleted since it was requested: nothing to run
                job.status, job.error, job.finished_at = "failed", exc.detail[:500], utcnow()
                record(session, "exports.failed", "export", job.id, {"error": exc.detail[:500]})
                return None
            total = await segments.count(session, segment)
        else:
            model = SOURCES[job.kind].model
            total = await session.scalar(select(func.count()).select_from(model)) or 0
        stores = dict((await session.execute(select(Store.id, Store.code))).all())
        today = await local_today(session)
        facts = Facts(require_tenant().tenant_id, job.masked, today, stores, segment)
        job.status, job.rows_total, job.rows_done = "running", total, 0
        job.started_at, job.finished_at, job.error = utcnow(), None, None
        job.size_bytes, job.chunks, job.sha256 = 0, 0, None
        return job, facts


async def _store_chunks(
    session: AsyncSession, export_id: uuid.UUID, chunks: Iterator[bytes], seq: int
) -> int:
    """Write the chunks one by one (flushed and forgotten: none stays in the session)."""
    for data in chunks:
        chunk = ExportChunk(export_id=export_id, seq=seq, data=data)
        session.add(chunk)
        await session.flush()
        session.expunge(chunk)
        seq += 1
    return seq


async def run_export(
    export_id: uuid.UUID, *, database: Database | None = None, progress: Progress | None = None
) -> None:
    """Run one export to its end (in the tenant's context, as the caller's actor): every
    row in batches, the file in chunks, ``rows_done`` after each batch; audited when done.
    A failure marks it ``failed`` (with the error) and is raised again."""
    started = await _start(export_id, database)
    if started is None:
        return
    job, facts = started
    if job.kind == MEMBER_DATA:
        await _run_member_data(job, facts, database, progress)
        return
    source = segment_source(facts.segment) if job.kind == SEGMENT else SOURCES[job.kind]
    writer = make_writer(job.format, job.kind, source.columns)
    done, seq, after = 0, 0, None
    try:
        while True:
            async with scoped_session(database) as session:
                rows = await source.fetch(session, after, BATCH_SIZE)
                for row in rows:
                    writer.write(source.cells(row, facts))
                done += len(rows)
                seq = await _store_chunks(session, export_id, writer.full_chunks(), seq)
                await session.execute(
                    update(Export).where(Export.id == export_id).values(rows_done=done)
                )
            if progress is not None:
                progress(done, max(job.rows_total, done))
            if len(rows) < BATCH_SIZE:
                break
            last = rows[-1]
            after = (last[0] if isinstance(last, tuple) else last).id
        async with scoped_session(database) as session:
            seq = await _store_chunks(session, export_id, writer.finish(), seq)
            await _finish(session, export_id, done, writer.size, seq, writer.digest.hexdigest())
    except Exception as exc:
        await _fail(export_id, f"{type(exc).__name__}: {exc}", database)
        raise
    finally:
        writer.close()


async def _run_member_data(
    job: Export, facts: Facts, database: Database | None, progress: Progress | None
) -> None:
    """One member's data as one JSON document: the core's sections in one transaction, then
    the plugins' parts (each plugin in its own session, isolated by the host), then the
    file's chunks and the job's end in a last transaction."""
    export_id, member_id = job.id, job.member_id
    try:
        if member_id is None:
            raise ValueError("a member_data export names no member")
        async with scoped_session(database) as session:
            core = await member_data.core_sections(session, facts.tenant_id, member_id, facts.today)
        plugins = await get_plugin_host().collect_member_data(
            facts.tenant_id, member_id, jsonable=member_data.is_jsonable
        )
        document: dict[str, Any] = {
            "format_version": member_data.FORMAT_VERSION,
            "generated_at": utcnow(),
            "tenant_id": facts.tenant_id,
            **core,
            "plugins": plugins,
        }
        data = member_data.encode({key: document[key] for key in member_data.SECTIONS})
        async with scoped_session(database) as session:
            chunks = await _store_chunks(session, export_id, pieces(data, CHUNK_SIZE), 0)
            unavailable = sorted(pid for pid, part in plugins.items() if part == UNAVAILABLE)
            await _finish(
                session,
                export_id,
                1,
                len(data),
                chunks,
                hashlib.sha256(data).hexdigest(),
                member_id=str(member_id),
                plugins_unavailable=unavailable,
            )
        if progress is not None:
            progress(1, 1)
    except Exception as exc:
        await _fail(export_id, f"{type(exc).__name__}: {exc}", database)
        raise


async def _finish(
    session: AsyncSession,
    export_id: uuid.UUID,
    rows: int,
    size: int,
    chunks: int,
    sha256: str,
    **audited: Any,
) -> None:
    """The job is done: its file's size, chunks and digest recorded, and audited."""
    row = await get_export(session, export_id)
    row.status, row.rows_done, row.rows_total = "done", rows, rows
    row.size_bytes, row.chunks, row.sha256 = size, chunks, sha256
    row.finished_at = utcnow()
    done = {"kind": row.kind, "format": row.format, "masked": row.masked, "rows": rows}
    done |= {"bytes": size, "requested_by": row.requested_by, **audited}
    record(session, "exports.done", "export", export_id, done)


async def _fail(export_id: uuid.UUID, error: str, database: Database | None) -> None:
    async with scoped_session(database) as session:
        await session.execute(delete(ExportChunk).where(ExportChunk.export_id == export_id))
        row = await get_export(session, export_id)
        row.status, row.error, row.finished_at = "failed", error[:500], utcnow()
        record(session, "exports.failed", "export", export_id, {"error": error[:500]})
