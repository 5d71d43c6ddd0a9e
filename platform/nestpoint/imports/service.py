"""Imports of a legacy system's data: read a file, check every row, then write all or none.

One job reads one file (CSV or XLSX) of one kind: ``members``, ``children``, ``balances``
(opening points balances), ``orders`` (history) or ``tags``. It runs in **one transaction**:

1. every row is read through the column mapping and checked on its own (phones through
   ``pii.normalize_phone``, dates, numbers, store codes); good rows are *staged* in batches
   into a temporary table of the transaction (PostgreSQL: ``COPY`` through asyncpg's
   ``copy_records_to_table`` on the raw connection; SQLite: ``executemany``);
2. set-based checks against the file itself and the chain run on the staged rows (the same
   phone or legacy id twice in the file, a member a row names that the chain does not have,
   children of members without the guardian's consent, ...);
3. any bad row: the transaction is rolled back (nothing is written) and the job is
   ``invalid`` with its row report (CSV: row, field, problem; every bad row and why);
   else set-based ``INSERT ... SELECT`` merges write the rows, and the job is ``done`` in
   the same transaction.

Re-runs are idempotent: members are matched by their phone's lookup hash, children by
their legacy id (``import_keys``), balances by their legacy reference (the ledger entry's
cause), orders by channel and external id; rows already there are skipped (counted in
``rows_skipped``), tags are added to a member's set. A job killed halfway left nothing (its
transaction never committed) and simply runs again from the start.

The API process only creates the job (and stores the uploaded file in ``import_chunks``
until the job ends); a worker (``imports.run``) or the CLI (reading the file from disk)
runs it. Reading and per-row checks live in :mod:`nestpoint.imports.files`; the staging
tables, set-based checks and merges of each kind in :mod:`nestpoint.imports.staging`.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import (
    Table,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from nestpoint.audit.service import record
from nestpoint.context import Actor, current_actor, require_tenant
from nestpoint.db import Database, scoped_session
from nestpoint.db.base import new_id, table_of, utcnow
from nestpoint.db.chunks import pieces, read_in_order
from nestpoint.db.pagination import Page, paginate
from nestpoint.db.session import on_commit
from nestpoint.errors import Conflict, FieldError, Forbidden, Invalid, NotFound
from nestpoint.idempotency import service as idempotency
from nestpoint.idempotency.service import Answer, fingerprint
from nestpoint.imports.files import (
    CHUNK_SIZE,
    Facts,
    FileProblem,
    Row,
    Sheet,
    cell_text,
    count_rows,
    mapped,
    open_sheet,
    resolve_mapping,
)
from nestpoint.imports.models import Import, ImportChunk
from nestpoint.imports.schemas import (
    MAX_API_FILE_BYTES,
    ImportIn,
    ImportPreview,
    ImportPreviewIn,
    ImportRead,
    PreviewRow,
    RowProblem,
)
from nestpoint.imports.staging import (
    CHECKS,
    EXTRAS,
    MERGES,
    PREPARE,
    STAGES,
    analyze,
    copy_rows,
    create_temporary,
    drop_temporary,
    is_postgres,
    seal_members,
)
from nestpoint.jobs.broker import JobRef, enqueue_best_effort
from nestpoint.loyalty.service import get_program
from nestpoint.tenancy.models import Store

BATCH_SIZE = 5000  # rows staged per round trip; progress is reported after each batch
PREVIEW_ROWS = 20
RUN = JobRef("imports.run", queue_name="default")
REQUEST_SCOPE = "import"  # idempotency keys of POST /imports: the body's idempotency_key
_NEW_KEY = "nestpoint.imports.new"
REPORT_HEADER = ("row", "field", "problem")
BOM = "\ufeff".encode()
# The scope writing the same data through the API needs (beside imports:write).
NEEDS = {
    "members": "members:write",
    "children": "members:write",
    "tags": "members:write",
    "balances": "points:write",
    "orders": "orders:write",
}


# ---------------------------------------------------------------------------- requests


def requester(actor: Actor) -> str:
    return f"{actor.kind}:{actor.key_id or actor.name}"[:100]


def check_allowed(actor: Actor, kind: str) -> None:
    """The key must be allowed to write what it imports (403 naming ``kind``)."""
    needed = NEEDS[kind]
    if not actor.has(needed):
        raise Forbidden(
            f"an import of {kind} needs the {needed!r} scope",
            errors=[FieldError("kind", f"needs the {needed!r} scope")],
        )


def decode_content(content: str) -> bytes:
    try:
        data = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid.field("content", "not base64") from None
    if len(data) > MAX_API_FILE_BYTES:
        raise Invalid.field("content", f"larger than {MAX_API_FILE_BYTES} bytes: use the CLI")
    return data


async def _facts(session: AsyncSession, import_id: uuid.UUID, requested_by: str) -> Facts:
    program = await get_program(session)
    now = utcnow()
    codes = await session.execute(select(Store.code, Store.id))
    stores: dict[str, uuid.UUID] = {code: store_id for code, store_id in codes.all()}  # noqa: C416
    return Facts(
        tenant_id=require_tenant().tenant_id,
        import_id=import_id,
        zone=program.zone,
        today=now.astimezone(program.zone).date(),
        now=now,
        stores=stores,
        entry_tier=program.entry_tier.code,
        requested_by=requested_by,
    )


def _problem_list(
    sheet: Sheet, columns: dict[str, int], kind: str, facts: Facts, limit: int
) -> tuple[list[PreviewRow], list[RowProblem]]:
    rows: list[PreviewRow] = []
    problems: list[RowProblem] = []
    try:
        for row_no, cells in sheet.rows:
            values = mapped(cells, columns)
            row = Row(values, facts)
            PREPARE[kind](row)
            rows.append(
                PreviewRow(row=row_no, values={k: cell_text(v) or None for k, v in values.items()})
            )
            problems += [RowProblem(row=row_no, field=f, problem=p) for f, p in row.problems]
            if len(rows) >= limit:
                break
    except FileProblem as exc:
        problems.append(RowProblem(row=exc.row, field="file", problem=exc.problem))
    return rows, problems


async def preview_file(
    session: AsyncSession, kind: str, fmt: str, file: IO[bytes], mapping: dict[str, str] | None
) -> ImportPreview:
    """The file's header, the mapping, the first rows as mapped and their problems; writes
    nothing. A file that cannot be read, or whose columns miss a required field, is
    :class:`Invalid` naming ``content`` or ``mapping.<field>``."""
    sheet = open_sheet(file, fmt)
    columns = resolve_mapping(kind, sheet.header, mapping)
    facts = await _facts(session, uuid.uuid4(), requester(current_actor()))
    rows, problems = _problem_list(sheet, columns, kind, facts, PREVIEW_ROWS)
    used = set(columns.values())
    return ImportPreview(
        kind=kind,
        header=sheet.header,
        mapping={name: sheet.header[i] for name, i in columns.items()},
        unmapped=[h for i, h in enumerate(sheet.header) if h and i not in used],
        rows=rows,
        problems=problems,
    )


async def preview(session: AsyncSession, data: ImportPreviewIn) -> ImportPreview:
    check_allowed(current_actor(), data.kind)
    return await preview_file(
        session, data.kind, data.format, io.BytesIO(decode_content(data.content)), data.mapping
    )


def new_import(
    kind: str,
    fmt: str,
    *,
    requested_by: str,
    mapping: dict[str, str],
    file_name: str = "",
    size: int = 0,
    sha256: str = "",
) -> Import:
    """A queued job with every column set (its answer is made before it is written)."""
    return Import(
        id=new_id(),
        kind=kind,
        format=fmt,
        file_name=file_name[:200],
        mapping=mapping,
        status="queued",
        requested_by=requested_by,
        size_bytes=size,
        sha256=sha256,
        chunks=0,
        rows_total=0,
        rows_done=0,
        rows_imported=0,
        rows_skipped=0,
        rows_bad=0,
        report_chunks=0,
        report_bytes=0,
        error=None,
        created_at=utcnow(),
        started_at=None,
        finished_at=None,
    )


def check_file(
    kind: str, fmt: str, file: IO[bytes], mapping: dict[str, str] | None
) -> dict[str, str]:
    """The file opens and its columns give every required field: the mapping it will be
    read with (our field → the file's column)."""
    sheet = open_sheet(file, fmt)
    columns = resolve_mapping(kind, sheet.header, mapping)
    return {name: sheet.header[i] for name, i in columns.items()}


async def request_import(session: AsyncSession, data: ImportIn) -> Answer[ImportRead]:
    """Queue an import of an uploaded file for a worker; the file's header and mapping are
    checked now (422 naming ``content`` or ``mapping.<field>``), its rows by the job.
    Idempotent by ``idempotency_key`` (a retry answers the first 202, the key with another
    request is a 409); audited."""
    actor = current_actor()
    check_allowed(actor, data.kind)
    content = decode_content(data.content)
    mapping = check_file(data.kind, data.format, io.BytesIO(content), data.mapping)
    digest = hashlib.sha256(content).hexdigest()
    job = new_import(
        data.kind,
        data.format,
        requested_by=requester(actor),
        mapping=mapping,
        file_name=data.file_name,
        size=len(content),
        sha256=digest,
    )
    body = ImportRead.model_validate(job)
    answer = Answer(202, body.model_dump(mode="json"), result=body)
    request = {
        "kind": data.kind,
        "format": data.format,
        "mapping": data.mapping,
        "file_name": data.file_name,
        "sha256": digest,
    }
    earlier = await idempotency.claim(
        session,
        REQUEST_SCOPE,
        data.idempotency_key,
        fingerprint(request),
        answer,
        field="idempotency_key",
    )
    if earlier is not None:
        return earlier
    add_import(session, job)
    await session.flush()
    job.chunks = await _store_chunks(session, job.id, "file", pieces(content, CHUNK_SIZE), 0)
    session.info.setdefault(_NEW_KEY, []).append((require_tenant().tenant_id, job.id))
    return answer


def add_import(session: AsyncSession, job: Import) -> None:
    session.add(job)
    record(
        session,
        "imports.requested",
        "import",
        job.id,
        {"kind": job.kind, "format": job.format, "file": job.file_name, "sha256": job.sha256},
    )


def enqueue_new_after_commit(session: Session) -> None:
    """Session hook: hand the jobs this commit created to the workers (best effort: a lost
    one stays ``queued`` and the sweep sends it again)."""
    for tenant_id, import_id in session.info.pop(_NEW_KEY, []):
        enqueue_best_effort(RUN, str(tenant_id), str(import_id))


on_commit(enqueue_new_after_commit)


async def get_import(session: AsyncSession, import_id: uuid.UUID) -> Import:
    job = await session.scalar(select(Import).where(Import.id == import_id))
    if job is None:
        raise NotFound(f"no import {import_id}")
    return job


async def list_imports(session: AsyncSession, *, cursor: str | None, limit: int) -> Page[Import]:
    return await paginate(
        session, select(Import), (Import.created_at, Import.id), cursor=cursor, limit=limit
    )


async def report_of(session: AsyncSession, import_id: uuid.UUID) -> Import:
    """The job whose row report may be read: 409 until it has one (done or invalid)."""
    job = await get_import(session, import_id)
    if job.status not in ("done", "invalid"):
        raise Conflict(f"import {import_id} is {job.status}: its report comes when it ends")
    record(session, "imports.report_downloaded", "import", job.id, {"kind": job.kind})
    return job


def report_name(job: Import) -> str:
    return f"import-{job.kind}-{job.created_at:%Y%m%d-%H%M%S}-{str(job.id)[:8]}-report.csv"


def read_chunks(
    tenant_id: uuid.UUID,
    import_id: uuid.UUID,
    part: str,
    chunks: int,
    database: Database | None = None,
) -> AsyncIterator[bytes]:
    """A file's or report's chunks in order, each in its own short transaction."""

    def chunk_at(seq: int) -> Any:
        return select(ImportChunk.data).where(
            ImportChunk.import_id == import_id, ImportChunk.part == part, ImportChunk.seq == seq
        )

    return read_in_order(tenant_id, chunks, chunk_at, database)


async def _store_chunks(
    session: AsyncSession, import_id: uuid.UUID, part: str, chunks: Iterator[bytes], seq: int
) -> int:
    for data in chunks:
        chunk = ImportChunk(import_id=import_id, part=part, seq=seq, data=data)
        session.add(chunk)
        await session.flush()
        session.expunge(chunk)
        seq += 1
    return seq


# ---------------------------------------------------------------------------- running

Progress = Callable[[int, int], None]


class _Refused(Exception):
    """Some rows are bad: the transaction rolls back, nothing is written."""


@dataclass
class Report:
    """The row report (CSV, UTF-8 with a BOM): written to a temporary file as problems come."""

    file: IO[bytes] = field(default_factory=lambda: tempfile.TemporaryFile())  # noqa: SIM115
    bad_rows: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._text = io.TextIOWrapper(self.file, encoding="utf-8", newline="", write_through=True)
        self.file.write(BOM)
        self._csv = csv.writer(self._text)
        self._csv.writerow(REPORT_HEADER)

    def add(self, problems: Sequence[tuple[int, str, str]]) -> None:
        for row_no, name, problem in problems:
            self.bad_rows.add(row_no)
            self._csv.writerow((row_no, name, problem))

    def chunks(self) -> Iterator[bytes]:
        self._text.flush()
        self.file.seek(0)
        while data := self.file.read(CHUNK_SIZE):
            yield data

    def close(self) -> None:
        self._text.close()


async def _claim(import_id: uuid.UUID, database: Database | None) -> Import | None:
    """Take the job (a finished one, done or invalid, is left alone; a failed or
    interrupted one starts again: it wrote nothing)."""
    async with scoped_session(database) as session:
        job = await session.scalar(select(Import).where(Import.id == import_id).with_for_update())
        if job is None or job.status in ("done", "invalid"):
            return None
        await session.execute(
            delete(ImportChunk).where(
                ImportChunk.import_id == import_id, ImportChunk.part == "report"
            )
        )
        job.status, job.rows_done, job.rows_bad = "running", 0, 0
        job.started_at, job.finished_at, job.error = utcnow(), None, None
        job.report_chunks, job.report_bytes = 0, 0
        return job


@contextmanager
def _opened(job: Import, source: Path | None, spool: Path) -> Iterator[IO[bytes]]:
    with (source or spool).open("rb") as file:
        yield file


async def _spool(job: Import, path: Path, database: Database | None) -> None:
    """The uploaded file, from its chunks to a local temporary file."""
    with path.open("wb") as out:
        async for data in read_chunks(job.tenant_id, job.id, "file", job.chunks, database):
            out.write(data)


async def _set_progress(
    import_id: uuid.UUID, done: int, total: int, database: Database | None
) -> None:
    async with scoped_session(database) as session:
        await session.execute(
            update(Import).where(Import.id == import_id).values(rows_done=done, rows_total=total)
        )


async def run_import(
    import_id: uuid.UUID,
    *,
    database: Database | None = None,
    progress: Progress | None = None,
    source: Path | None = None,
) -> None:
    """Run one import to its end (in the tenant's context): ``done``, or ``invalid`` with
    its row report, nothing written. ``source`` is a local file (the CLI); else the uploaded
    one. Any other failure marks it ``failed`` (with the error) and is raised again: it wrote
    nothing, and running it again starts over."""
    job = await _claim(import_id, database)
    if job is None:
        return
    report = Report()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            spool = Path(tmp) / "file"
            if source is None:
                await _spool(job, spool, database)
            with _opened(job, source, spool) as file:
                total = count_rows(file, job.format)
                file.seek(0)
                await _set_progress(import_id, 0, total, database)
                if progress is not None:
                    progress(0, total)
                try:
                    await _run(job, file, total, report, database, progress)
                except _Refused:
                    await _finish_invalid(job, report, database)
    except Exception as exc:
        await _fail(import_id, f"{type(exc).__name__}: {exc}", database)
        raise
    finally:
        report.close()


async def _run(
    job: Import,
    file: IO[bytes],
    total: int,
    report: Report,
    database: Database | None,
    progress: Progress | None,
) -> None:
    kind, stage = job.kind, STAGES[job.kind]
    try:
        sheet = open_sheet(file, job.format)
        columns = resolve_mapping(kind, sheet.header, job.mapping)
    except Invalid as exc:
        report.add([(1, e.field, e.message) for e in exc.errors] or [(1, "content", str(exc))])
        raise _Refused from None
    async with scoped_session(database) as session:
        conn = await session.connection()
        postgres = is_postgres(conn)
        if not await _first_run(conn, job.id):
            return
        facts = await _facts(session, job.id, job.requested_by)
        extras = EXTRAS.get(kind, ())
        for table in (stage, *extras):
            await create_temporary(conn, table)
        batch: list[dict[str, Any]] = []
        seen = 0
        try:
            for row_no, cells in sheet.rows:
                seen += 1
                row = Row(mapped(cells, columns), facts)
                prepared = PREPARE[kind](row)
                if prepared is None:
                    report.add([(row_no, f, p) for f, p in row.problems])
                else:
                    prepared["row_no"] = row_no
                    batch.append(prepared)
                if len(batch) >= BATCH_SIZE:
                    await _stage_batch(conn, stage, batch)
                    batch = []
                    await _progressed(job.id, seen, max(total, seen), postgres, database, progress)
        except FileProblem as exc:
            report.add([(exc.row, "file", exc.problem)])
        await _stage_batch(conn, stage, batch)
        await _progressed(job.id, seen, seen, postgres, database, progress)
        for table in (stage, *extras):
            await analyze(conn, table)
        if seen == 0 and not report.bad_rows:
            report.add([(1, "content", "the file has a header but no rows")])
        report.add(await CHECKS[kind](conn, facts))
        if report.bad_rows:
            await drop_temporary(conn, stage, *extras)
            raise _Refused
        imported, skipped = await MERGES[kind](conn, facts)
        await drop_temporary(conn, stage, *extras)
        await _drop_file(session, job.id)
        job_row = await get_import(session, job.id)
        job_row.chunks = 0
        job_row.report_chunks = await _store_chunks(session, job.id, "report", report.chunks(), 0)
        job_row.report_bytes = report.file.tell()
        job_row.status, job_row.rows_total, job_row.rows_done = "done", seen, seen
        job_row.rows_imported, job_row.rows_skipped, job_row.rows_bad = imported, skipped, 0
        job_row.finished_at = utcnow()
        record(
            session,
            "imports.done",
            "import",
            job.id,
            {
                "kind": kind,
                "rows": seen,
                "imported": imported,
                "skipped": skipped,
                "sha256": job.sha256,
                "requested_by": job.requested_by,
            },
        )


async def _first_run(conn: AsyncConnection, import_id: uuid.UUID) -> bool:
    """Runs of one job take turns (a retry may overlap a run the broker thought lost): on
    PostgreSQL a transaction-level advisory lock on the job; SQLite's transactions already
    run one at a time. False when another run finished it meanwhile."""
    if is_postgres(conn):
        key = int.from_bytes(import_id.bytes[:8], "big", signed=True)
        await conn.execute(select(func.pg_advisory_xact_lock(key)))
    status = await conn.scalar(
        select(table_of(Import).c.status).where(
            table_of(Import).c.tenant_id == require_tenant().tenant_id,
            table_of(Import).c.id == import_id,
        )
    )
    return status not in ("done", "invalid")


async def _drop_file(session: AsyncSession, import_id: uuid.UUID) -> None:
    """The uploaded file holds personal data in clear: it goes once the job has ended."""
    await session.execute(
        delete(ImportChunk).where(ImportChunk.import_id == import_id, ImportChunk.part == "file")
    )


async def _stage_batch(conn: AsyncConnection, stage: Table, batch: list[dict[str, Any]]) -> None:
    if not batch:
        return
    if stage is STAGES["members"]:
        await seal_members(conn, batch)
    await copy_rows(conn, stage, batch)


async def _progressed(
    import_id: uuid.UUID,
    done: int,
    total: int,
    postgres: bool,
    database: Database | None,
    progress: Progress | None,
) -> None:
    # On SQLite the import's transaction holds the database's one write lock: its progress
    # is told to the caller only.
    if postgres:
        await _set_progress(import_id, done, total, database)
    if progress is not None:
        progress(done, total)


async def _finish_invalid(job: Import, report: Report, database: Database | None) -> None:
    async with scoped_session(database) as session:
        row = await get_import(session, job.id)
        if row.status in ("done", "invalid"):  # another run ended it first
            return
        await _drop_file(session, job.id)
        row.chunks = 0
        row.report_chunks = await _store_chunks(session, job.id, "report", report.chunks(), 0)
        row.report_bytes = report.file.tell()
        row.status, row.rows_bad = "invalid", len(report.bad_rows)
        row.rows_imported, row.rows_skipped = 0, 0
        row.finished_at = utcnow()
        record(
            session,
            "imports.invalid",
            "import",
            job.id,
            {"kind": job.kind, "bad_rows": len(report.bad_rows), "sha256": job.sha256},
        )


async def _fail(import_id: uuid.UUID, error: str, database: Database | None) -> None:
    async with scoped_session(database) as session:
        row = await get_import(session, import_id)
        if row.status in ("done", "invalid"):  # another run ended it first
            return
        row.status, row.error, row.finished_at = "failed", error[:500], utcnow()
        record(session, "imports.failed", "import", import_id, {"error": error[:500]})
