"""Traceability rules: importing batches, reports, unit codes, scans and the counterfeit hint.

* An import checks every row first (``csvfile``), then the batches already in the chain, and
  writes all rows or none; the answer to a bad file names every bad row and column.
* Codes are random: a batch's (``B`` + 12 characters, printed on every package of the
  batch) and a unit's (``U`` + 20 characters: 100 bits, so a code cannot be guessed; only
  copied from a genuine package).
* A scan of a unit code locks the code's row, counts its earlier scans and appends its own,
  so two scans at the same moment never both count as the first. The hint is derived from
  the scans: the first is genuine; later ones say how often and when the code was scanned
  before, and warn from the chain's threshold (``counterfeit_warning_scans``) on.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
import json
import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from nestpoint.plugins.api import (
    Conflict,
    FieldError,
    Invalid,
    NotFound,
    PluginContext,
    chain_now,
    emit_event,
    member_facts,
    public_path,
    remember,
    replayed,
    utcnow,
)
from nestpoint_traceability import csvfile
from nestpoint_traceability.models import TraceBatch, TraceReport, TraceScan, TraceUnitCode
from nestpoint_traceability.schemas import (
    Authenticity,
    BatchPage,
    BatchRead,
    ImportedBatch,
    ImportRead,
    Kind,
    LookupRead,
    MemberScanIn,
    MemberScanRead,
    ReportInfo,
    ReportLink,
    ScanRead,
    Source,
    TraceabilityConfig,
    UnitCode,
    UnitCodesIn,
    UnitCodesRead,
)

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base 32: no I, L, O, U
UNIT_CODE = re.compile(r"^U[0-9A-HJKMNP-TV-Z]{20}$")
BATCH_CODE = re.compile(r"^B[0-9A-HJKMNP-TV-Z]{12}$")
MAX_REPORT_BYTES = 5 * 1024 * 1024
# The documents a report may be, and how each one's bytes begin.
DOCUMENT_TYPES: dict[str, tuple[str, tuple[bytes, ...]]] = {
    "application/pdf": ("pdf", (b"%PDF-",)),
    "image/jpeg": ("jpg", (b"\xff\xd8\xff",)),
    "image/png": ("png", (b"\x89PNG\r\n\x1a\n",)),
    "image/webp": ("webp", (b"RIFF",)),
}


def config_of(plugin: PluginContext) -> TraceabilityConfig:
    return TraceabilityConfig.model_validate(plugin.config)


def _hq(plugin: PluginContext, what: str) -> None:
    if plugin.store_id is not None:
        raise Invalid.field("store", f"{what} is the chain's: use an HQ key")


def new_code(prefix: str, length: int) -> str:
    return prefix + "".join(secrets.choice(ALPHABET) for _ in range(length))


def normalise_code(code: str) -> str:
    return code.strip().upper()


def safe_filename(*parts: str) -> str:
    return "-".join(re.sub(r"[^A-Za-z0-9._-]+", "_", part) for part in parts)[:150]


@dataclass(frozen=True, slots=True)
class Links:
    """The public links of a chain's codes (see the configuration)."""

    prefix: str  # public_base_url + /public/<slug>/traceability
    template: str

    def scan(self, code: str) -> str:
        return self.template.replace("{code}", code) if self.template else self.lookup(code)

    def lookup(self, code: str) -> str:
        return f"{self.prefix}/codes/{code}"

    def report(self, code: str) -> str:
        return f"{self.prefix}/codes/{code}/report"


async def links(db: AsyncSession, plugin: PluginContext) -> Links:
    config = config_of(plugin)
    return Links(config.public_base_url + await public_path(db, plugin), config.scan_url_template)


# ------------------------------------------------------------------ imports


def _refusal(
    problems: Sequence[csvfile.Problem], field: str, rows: Sequence[csvfile.BatchRow]
) -> Invalid:
    bad = {p.row for p in problems if p.row is not None and p.row > 1}
    if any(p.row == 1 for p in problems):
        detail = "the header row is not right"
    elif bad:
        total = len(bad | {r.row for r in rows})
        detail = f"{len(bad)} bad row{'s' if len(bad) > 1 else ''} of {total}"
    else:
        detail = problems[0].message
    return Invalid(
        f"{detail}; nothing was imported",
        errors=[FieldError(p.field(field), p.message) for p in problems],
    )


async def _already_imported(
    db: AsyncSession, rows: list[csvfile.BatchRow]
) -> list[csvfile.Problem]:
    skus = sorted({r.sku for r in rows})
    existing: set[tuple[str, str]] = set()
    for start in range(0, len(skus), 500):
        found = await db.execute(
            select(TraceBatch.sku, TraceBatch.batch_no).where(
                TraceBatch.sku.in_(skus[start : start + 500])
            )
        )
        existing.update((sku, batch_no) for sku, batch_no in found.all())
    return [
        csvfile.Problem(r.row, "batch_no", f"sku {r.sku} batch {r.batch_no} is already imported")
        for r in rows
        if (r.sku, r.batch_no) in existing
    ]


async def check_file(
    db: AsyncSession, text: str
) -> tuple[list[csvfile.BatchRow], list[csvfile.Problem]]:
    """The file's batches and every problem, the batches already imported included."""
    today = (await chain_now(db)).date()
    rows, problems = csvfile.check(text, today)
    if rows and not any(p.row in (None, 1) for p in problems):
        problems = csvfile.ordered([*problems, *await _already_imported(db, rows)])
    return rows, problems


async def import_csv(
    db: AsyncSession, plugin: PluginContext, key: str, text: str, *, field: str = "csv"
) -> tuple[int, dict[str, Any], bool]:
    """Import every batch of the file or none: (status, body, replayed)."""
    _hq(plugin, "importing batches")
    request = {"csv_sha256": hashlib.sha256(text.encode()).hexdigest()}
    earlier = await replayed(db, plugin, key, request)
    if earlier is not None:
        return *earlier, True
    rows, problems = await check_file(db, text)
    if problems:
        raise _refusal(problems, field, rows)
    import_id = uuid.uuid4()
    batches = [
        TraceBatch(
            id=uuid.uuid4(),
            sku=r.sku,
            batch_no=r.batch_no,
            product_name=r.product_name,
            production_date=r.production_date,
            expiry_date=r.expiry_date,
            origin=r.origin,
            scan_code=new_code("B", 12),
            import_id=import_id,
        )
        for r in rows
    ]
    db.add_all(batches)
    try:
        await db.flush()
    except IntegrityError as exc:  # the same batch imported by a request running alongside
        raise Conflict(
            "a batch of this file was imported at the same moment by another request; "
            "nothing was imported (send the file again to see which)",
            errors=[FieldError(field, "imported at the same moment")],
        ) from exc
    urls = await links(db, plugin)
    body = ImportRead(
        import_id=import_id,
        rows=len(batches),
        batches=[
            ImportedBatch(
                id=b.id,
                sku=b.sku,
                batch_no=b.batch_no,
                scan_code=b.scan_code,
                scan_url=urls.scan(b.scan_code),
            )
            for b in batches
        ],
    )
    await remember(db, plugin, key, request, 201, body)
    return 201, body.model_dump(mode="json"), False


async def check_report(db: AsyncSession, plugin: PluginContext, text: str) -> str:
    """The problems of a file as CSV (only the header row when it would import)."""
    _hq(plugin, "importing batches")
    _, problems = await check_file(db, text)
    return csvfile.report(problems)


def decode_upload(raw: bytes, encoding: str, field: str) -> str:
    """An uploaded file's text; a 422 naming ``field`` for bytes of another encoding."""
    try:
        return raw.decode("utf-8-sig" if encoding == "utf-8" else encoding)
    except UnicodeDecodeError as exc:
        hint = " (a file saved by Excel in Chinese is often gb18030: say encoding=gb18030)"
        raise Invalid.field(
            field,
            f"not valid {encoding} at byte {exc.start}" + (hint if encoding == "utf-8" else ""),
        ) from None


# ------------------------------------------------------------------ batches and reports


async def _batch(db: AsyncSession, batch_id: uuid.UUID, *, lock: bool = False) -> TraceBatch:
    stmt = select(TraceBatch).where(TraceBatch.id == batch_id)
    if lock:
        stmt = stmt.with_for_update()
    row = await db.scalar(stmt)
    if row is None:
        raise NotFound("no such batch")
    return row


async def _report_infos(
    db: AsyncSession, batch_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, ReportInfo]:
    if not batch_ids:
        return {}
    rows = await db.execute(
        select(
            TraceReport.batch_id,
            TraceReport.content_type,
            TraceReport.size,
            TraceReport.sha256,
            TraceReport.uploaded_at,
        ).where(TraceReport.batch_id.in_(batch_ids))
    )
    return {
        batch_id: ReportInfo(content_type=ct, size=size, sha256=sha, uploaded_at=at)
        for batch_id, ct, size, sha, at in rows.all()
    }


async def _unit_counts(db: AsyncSession, batch_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    if not batch_ids:
        return {}
    rows = await db.execute(
        select(TraceUnitCode.batch_id, func.count())
        .where(TraceUnitCode.batch_id.in_(batch_ids))
        .group_by(TraceUnitCode.batch_id)
    )
    return {batch_id: int(n) for batch_id, n in rows.all()}


async def _reads(
    db: AsyncSession, plugin: PluginContext, batches: Sequence[TraceBatch]
) -> list[BatchRead]:
    ids = [b.id for b in batches]
    reports, counts = await _report_infos(db, ids), await _unit_counts(db, ids)
    urls = await links(db, plugin)
    return [
        BatchRead(
            id=b.id,
            sku=b.sku,
            batch_no=b.batch_no,
            product_name=b.product_name,
            production_date=b.production_date,
            expiry_date=b.expiry_date,
            origin=b.origin,
            scan_code=b.scan_code,
            scan_url=urls.scan(b.scan_code),
            import_id=b.import_id,
            created_at=b.created_at,
            report=reports.get(b.id),
            unit_codes=counts.get(b.id, 0),
        )
        for b in batches
    ]


async def get_batch(db: AsyncSession, plugin: PluginContext, batch_id: uuid.UUID) -> BatchRead:
    return (await _reads(db, plugin, [await _batch(db, batch_id)]))[0]


def _cursor(batch: TraceBatch) -> str:
    raw = json.dumps([batch.sku, batch.batch_no], ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(cursor: str) -> tuple[str, str]:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        value = None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise Invalid.field("query.cursor", "not a cursor this API gave")
    return value[0], value[1]


async def list_batches(
    db: AsyncSession,
    plugin: PluginContext,
    *,
    sku: str | None,
    import_id: uuid.UUID | None,
    limit: int,
    cursor: str | None,
) -> BatchPage:
    """Batches by SKU and batch number, a page at a time."""
    stmt = select(TraceBatch).order_by(TraceBatch.sku, TraceBatch.batch_no).limit(limit + 1)
    if sku is not None:
        stmt = stmt.where(TraceBatch.sku == sku)
    if import_id is not None:
        stmt = stmt.where(TraceBatch.import_id == import_id)
    if cursor is not None:
        after_sku, after_no = _after(cursor)
        stmt = stmt.where(
            or_(
                TraceBatch.sku > after_sku,
                and_(TraceBatch.sku == after_sku, TraceBatch.batch_no > after_no),
            )
        )
    rows = list((await db.scalars(stmt)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return BatchPage(
        items=await _reads(db, plugin, rows), next_cursor=_cursor(rows[-1]) if more else None
    )


def _document_type(content_type: str | None, body: bytes) -> str:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in DOCUMENT_TYPES:
        raise Invalid.field(
            "header.content-type",
            f"a report is one of {', '.join(DOCUMENT_TYPES)} (got {media_type[:60] or 'none'})",
        )
    if not body:
        raise Invalid.field("body", "the document is empty")
    if len(body) > MAX_REPORT_BYTES:
        raise Invalid.field("body", f"larger than {MAX_REPORT_BYTES} bytes")
    _, magic = DOCUMENT_TYPES[media_type]
    webp_ok = media_type != "image/webp" or body[8:12] == b"WEBP"
    if not body.startswith(magic) or not webp_ok:
        raise Invalid.field("body", f"the bytes are not a {media_type} document")
    return media_type


async def put_report(
    db: AsyncSession,
    plugin: PluginContext,
    batch_id: uuid.UUID,
    content_type: str | None,
    body: bytes,
) -> ReportInfo:
    """Store (or replace) the batch's inspection report; the same document again is a
    no-op."""
    _hq(plugin, "a batch's inspection report")
    media_type = _document_type(content_type, body)
    batch = await _batch(db, batch_id, lock=True)
    digest = hashlib.sha256(body).hexdigest()
    row = await db.scalar(select(TraceReport).where(TraceReport.batch_id == batch.id))
    if row is None:
        row = TraceReport(batch_id=batch.id)
        db.add(row)
    if row.sha256 != digest or row.content_type != media_type:
        row.content, row.content_type, row.size, row.sha256 = body, media_type, len(body), digest
        row.uploaded_at = utcnow()
    await db.flush()
    return ReportInfo(
        content_type=row.content_type, size=row.size, sha256=row.sha256, uploaded_at=row.uploaded_at
    )


@dataclass(frozen=True, slots=True)
class Document:
    content: bytes
    content_type: str
    sha256: str
    filename: str


async def _document(db: AsyncSession, batch: TraceBatch) -> Document:
    row = await db.scalar(
        select(TraceReport)
        .where(TraceReport.batch_id == batch.id)
        .options(undefer(TraceReport.content))
    )
    if row is None:
        raise NotFound("this batch has no inspection report yet")
    extension, _ = DOCUMENT_TYPES.get(row.content_type, ("bin", ()))
    name = safe_filename("report", batch.sku, batch.batch_no) + f".{extension}"
    return Document(row.content, row.content_type, row.sha256, name)


async def report_document(db: AsyncSession, batch_id: uuid.UUID) -> Document:
    return await _document(db, await _batch(db, batch_id))


# ------------------------------------------------------------------ unit codes


async def make_unit_codes(
    db: AsyncSession, plugin: PluginContext, batch_id: uuid.UUID, data: UnitCodesIn
) -> tuple[int, dict[str, Any], bool]:
    """Make ``count`` codes for the batch (one print run): (status, body, replayed)."""
    _hq(plugin, "making unit codes")
    batch = await _batch(db, batch_id, lock=True)
    request = {"batch_id": str(batch.id), "count": data.count}
    earlier = await replayed(db, plugin, data.idempotency_key, request)
    if earlier is not None:
        return *earlier, True
    run = uuid.uuid4()
    codes = [
        TraceUnitCode(batch_id=batch.id, code=new_code("U", 20), print_run_id=run)
        for _ in range(data.count)
    ]
    db.add_all(codes)
    try:
        await db.flush()
    except IntegrityError as exc:  # 100 random bits twice: never, but never a 500 either
        raise Conflict("a code was made twice; send the request again") from exc
    urls = await links(db, plugin)
    body = UnitCodesRead(
        batch_id=batch.id,
        print_run_id=run,
        count=len(codes),
        codes=[UnitCode(code=c.code, url=urls.scan(c.code)) for c in codes],
    )
    await remember(db, plugin, data.idempotency_key, request, 201, body)
    return 201, body.model_dump(mode="json"), False


async def unit_codes_csv(
    db: AsyncSession, plugin: PluginContext, batch_id: uuid.UUID, print_run: uuid.UUID | None
) -> tuple[str, str]:
    """The batch's unit codes (one print run's, or all) as CSV for the label printer:
    (text, file name)."""
    _hq(plugin, "a batch's unit codes")
    batch = await _batch(db, batch_id)
    stmt = (
        select(TraceUnitCode.code)
        .where(TraceUnitCode.batch_id == batch.id)
        .order_by(TraceUnitCode.created_at, TraceUnitCode.code)
    )
    if print_run is not None:
        stmt = stmt.where(TraceUnitCode.print_run_id == print_run)
    urls = await links(db, plugin)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["code", "url", "sku", "batch_no", "product_name", "expiry_date"])
    for code in (await db.scalars(stmt)).all():
        writer.writerow(
            [
                code,
                urls.scan(code),
                batch.sku,
                batch.batch_no,
                _safe(batch.product_name),
                batch.expiry_date.isoformat(),
            ]
        )
    return out.getvalue(), safe_filename("unit-codes", batch.sku, batch.batch_no) + ".csv"


def _safe(cell: str) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula (CSV injection)."""
    return "'" + cell if cell[:1] in ("=", "+", "-", "@") else cell


# ------------------------------------------------------------------ scans


@dataclass(frozen=True, slots=True)
class Resolved:
    code: str
    kind: Kind
    batch: TraceBatch
    unit: TraceUnitCode | None


async def resolve(db: AsyncSession, code: str, *, lock: bool = False) -> Resolved:
    """The batch (and unit) a code belongs to; 404 for a code the chain never made."""
    code = normalise_code(code)
    if UNIT_CODE.match(code):
        stmt = select(TraceUnitCode).where(TraceUnitCode.code == code)
        if lock:  # scans of one code are counted one after the other
            stmt = stmt.with_for_update()
        unit = await db.scalar(stmt)
        if unit is not None:
            return Resolved(code, "unit", await _batch(db, unit.batch_id), unit)
    elif BATCH_CODE.match(code):
        batch = await db.scalar(select(TraceBatch).where(TraceBatch.scan_code == code))
        if batch is not None:
            return Resolved(code, "batch", batch, None)
    raise NotFound("no product of this chain has this code")


def _local(moment: datetime, zone: tzinfo | None) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def authenticity(
    scans_before: int,
    first: datetime | None,
    last: datetime | None,
    config: TraceabilityConfig,
    zone: tzinfo | None,
) -> Authenticity:
    """The counterfeit hint of a unit code scanned ``scans_before`` times before."""
    if scans_before == 0 or first is None or last is None:
        return Authenticity(
            verdict="genuine",
            first_scan=True,
            scans_before=0,
            first_scanned_at=None,
            last_scanned_at=None,
            warning=False,
            message="首次查询，正品。 First scan of this code: genuine.",
        )
    when = _local(first, zone)
    warning = scans_before >= config.counterfeit_warning_scans
    if warning:
        message = (
            f"谨防假冒：此码已被查询 {scans_before} 次，首次查询于 {when}。 Beware of "
            f"counterfeits: this code was scanned {scans_before} times before, first at {when}."
        )
    else:
        message = (
            f"此码已被查询 {scans_before} 次，首次查询于 {when}。 This code was scanned "
            f"{scans_before} times before, first at {when}."
        )
    return Authenticity(
        verdict="counterfeit_warning" if warning else "scanned_before",
        first_scan=False,
        scans_before=scans_before,
        first_scanned_at=first,
        last_scanned_at=last,
        warning=warning,
        message=message,
    )


async def record_scan(
    db: AsyncSession,
    plugin: PluginContext,
    found: Resolved,
    *,
    source: Source,
    member_id: uuid.UUID | None = None,
) -> tuple[LookupRead, TraceScan]:
    """Append the scan (after counting the code's earlier ones) and answer the facts."""
    config = config_of(plugin)
    now_local = await chain_now(db)
    hint: Authenticity | None = None
    if found.unit is not None:
        count, first, last = (
            await db.execute(
                select(
                    func.count(), func.min(TraceScan.scanned_at), func.max(TraceScan.scanned_at)
                ).where(TraceScan.code == found.code)
            )
        ).one()
        hint = authenticity(int(count), first, last, config, now_local.tzinfo)
    batch = found.batch
    scan = TraceScan(
        code=found.code,
        kind=found.kind,
        batch_id=batch.id,
        scanned_at=utcnow(),
        member_id=member_id,
        store_id=plugin.store_id,
        source=source,
    )
    db.add(scan)
    await db.flush()
    if hint is not None and hint.scans_before == config.counterfeit_warning_scans:
        # The first scan past the threshold: once per code.
        emit_event(
            db,
            plugin,
            "counterfeit_suspected",
            "traceability_batch",
            batch.id,
            {
                "code": found.code,
                "batch_id": str(batch.id),
                "sku": batch.sku,
                "batch_no": batch.batch_no,
                "scans": hint.scans_before + 1,
                "first_scanned_at": hint.first_scanned_at.isoformat()
                if hint.first_scanned_at
                else None,
                "source": source,
            },
        )
    report = (await _report_infos(db, [batch.id])).get(batch.id)
    urls = await links(db, plugin)
    read = LookupRead(
        code=found.code,
        kind=found.kind,
        product_name=batch.product_name,
        sku=batch.sku,
        batch_no=batch.batch_no,
        production_date=batch.production_date,
        expiry_date=batch.expiry_date,
        expired=batch.expiry_date < now_local.date(),
        origin=batch.origin,
        has_report=report is not None,
        report=None
        if report is None
        else ReportLink(**report.model_dump(), url=urls.report(found.code)),
        authenticity=hint,
        scanned_at=scan.scanned_at,
    )
    return read, scan


async def public_lookup(db: AsyncSession, plugin: PluginContext, code: str) -> LookupRead:
    """Anyone's scan: recorded without a member; the facts and the hint, nothing else."""
    found = await resolve(db, code, lock=True)
    read, _ = await record_scan(db, plugin, found, source="public")
    return read


async def public_report(db: AsyncSession, code: str) -> Document:
    """The inspection report of the batch a code belongs to (not a scan)."""
    return await _document(db, (await resolve(db, code)).batch)


async def member_scan(
    db: AsyncSession, plugin: PluginContext, data: MemberScanIn
) -> tuple[int, dict[str, Any], bool]:
    """A member's scan, from the chain's mini-program back end: recorded with the member
    (and the store of a store key); (status, body, replayed)."""
    facts = await member_facts(db, data.member_id)  # 404 for a member the chain lacks
    found = await resolve(db, data.code, lock=True)
    request = data.model_dump(mode="json", exclude={"idempotency_key"})
    earlier = await replayed(db, plugin, data.idempotency_key, request)
    if earlier is not None:
        return *earlier, True
    read, scan = await record_scan(db, plugin, found, source="member", member_id=facts.member_id)
    body = MemberScanRead(
        **read.model_dump(), scan_id=scan.id, batch_id=found.batch.id, member_id=facts.member_id
    )
    hint = read.authenticity
    emit_event(
        db,
        plugin,
        "scanned",
        "member",
        facts.member_id,
        {
            "member_id": str(facts.member_id),
            "scan_id": str(scan.id),
            "kind": found.kind,
            "batch_id": str(found.batch.id),
            "sku": found.batch.sku,
            "batch_no": found.batch.batch_no,
            "verdict": hint.verdict if hint else None,
            "scans_before": hint.scans_before if hint else None,
        },
    )
    await remember(db, plugin, data.idempotency_key, request, 201, body)
    return 201, body.model_dump(mode="json"), False


async def code_scans(
    db: AsyncSession, plugin: PluginContext, code: str, limit: int
) -> list[ScanRead]:
    """A code's scans, newest first (HQ: to look into a counterfeit report)."""
    _hq(plugin, "a code's scan history")
    found = await resolve(db, code)
    rows = await db.scalars(
        select(TraceScan)
        .where(TraceScan.code == found.code)
        .order_by(TraceScan.scanned_at.desc(), TraceScan.id)
        .limit(limit)
    )
    return [
        ScanRead(
            id=s.id,
            code=s.code,
            kind=s.kind,
            batch_id=s.batch_id,
            scanned_at=s.scanned_at,
            source=s.source,
            member_id=s.member_id,
            store_id=s.store_id,
        )
        for s in rows.all()
    ]


async def member_data(db: AsyncSession, member_id: uuid.UUID) -> dict[str, Any]:
    """What the plugin keeps about one member, for their data export: their scans (the
    mini-program's, recorded with the member), oldest first, with the product scanned.
    Public look-ups carry no member and are not theirs to list."""
    rows = (
        await db.execute(
            select(TraceScan, TraceBatch)
            .join(TraceBatch, TraceBatch.id == TraceScan.batch_id)
            .where(TraceScan.member_id == member_id)
            .order_by(TraceScan.scanned_at, TraceScan.id)
        )
    ).all()
    return {
        "scans": [
            {
                "id": scan.id,
                "code": scan.code,
                "kind": scan.kind,
                "sku": batch.sku,
                "batch_no": batch.batch_no,
                "product_name": batch.product_name,
                "store_id": scan.store_id,
                "scanned_at": scan.scanned_at,
            }
            for scan, batch in rows
        ]
    }


async def erase_member(db: AsyncSession, member_id: uuid.UUID) -> dict[str, int]:
    """An erased member: their scans keep product, store and time, and lose the member (as
    a public look-up has none)."""
    result = await db.execute(
        update(TraceScan).where(TraceScan.member_id == member_id).values(member_id=None)
    )
    return {"scans": int(getattr(result, "rowcount", 0) or 0)}
