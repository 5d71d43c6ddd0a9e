"""The plugin's routes.

Staff routes, under ``/api/v1/plugins/traceability/`` (an API key): imports, batches and
their reports, unit codes, members' scans. Public routes, under
``/public/<tenant-slug>/traceability/`` (no key, limited per client address): a code's
look-up and the report of its batch.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from litestar import Request, Response, get, post, put
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, JSONBody, PathParameter, QueryParameter
from litestar.status_codes import HTTP_200_OK

from nestpoint.plugins.api import Db, Invalid, Plugin, problems
from nestpoint_traceability import service
from nestpoint_traceability.openapi import BINARY, CSV, csv_upload, operation
from nestpoint_traceability.schemas import (
    BatchPage,
    BatchRead,
    CheckIn,
    ImportIn,
    ImportRead,
    LookupRead,
    MemberScanIn,
    MemberScanRead,
    ReportInfo,
    ScanRead,
    UnitCodesIn,
    UnitCodesRead,
)

REPLAYED_HEADER = "Idempotent-Replayed"
KEY_PATTERN = r"^[A-Za-z0-9._:-]{8,100}$"
ENCODINGS = ("utf-8", "gb18030")
CodePath = Annotated[str, PathParameter(max_length=64, description="A batch or unit code.")]
DOCUMENT_TYPES = dict.fromkeys(service.DOCUMENT_TYPES, BINARY)
CREATED = "Created; a retry with the same `idempotency_key` answers the same body with "
CREATED += f"`{REPLAYED_HEADER}: true`."


def _created(model: Any, status: int, body: dict[str, Any], replayed: bool) -> Response[Any]:
    headers = {REPLAYED_HEADER: "true"} if replayed else {}
    return Response(model.model_validate(body), status_code=status, headers=headers)


def _document(document: service.Document) -> Response[bytes]:
    """A stored document, served so that a browser shows it and never runs it."""
    return Response(
        document.content,
        media_type=document.content_type,
        headers={
            "Content-Disposition": f'inline; filename="{document.filename}"',
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox; default-src 'none'",
            "ETag": f'"{document.sha256}"',
        },
    )


def _csv(text: str, filename: str) -> Response[str]:
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# ------------------------------------------------------------------ imports


@post(
    "/imports",
    summary="Import batches from a CSV text: every row, or none",
    operation_id="importTraceabilityBatches",
    responses=problems(409),
    response_description=CREATED,
    description=(
        "HQ key. `csv` holds the file: a header (`sku,batch_no,product_name,production_date,"
        "expiry_date,origin`), then one batch per row. Every row is checked first (required "
        "cells, dates, expiry after production, a production date not in the future, "
        "duplicates in the file and against the chain's batches); one bad row and nothing is "
        "imported: the 422 lists every problem, each named `csv.row.<row>.<column>` (the "
        "header is row 1, as a spreadsheet numbers it). Idempotent by `idempotency_key`."
    ),
)
async def import_text(plugin: Plugin, db: Db, data: JSONBody[ImportIn]) -> Response[ImportRead]:
    status, body, replayed = await service.import_csv(db, plugin, data.idempotency_key, data.csv)
    return _created(ImportRead, status, body, replayed)


def _form(data: dict[str, Any]) -> tuple[UploadFile, str, str]:
    unknown = sorted(set(data) - {"file", "idempotency_key", "encoding"})
    if unknown:
        raise Invalid.field(str(unknown[0])[:50], "unknown field")
    upload = data.get("file")
    if not isinstance(upload, UploadFile):
        raise Invalid.field("file", "send one CSV file in the form field 'file'")
    key = data.get("idempotency_key")
    if not isinstance(key, str) or not re.match(KEY_PATTERN, key):
        raise Invalid.field("idempotency_key", f"required, matching {KEY_PATTERN}")
    encoding = data.get("encoding", "utf-8")
    if encoding not in ENCODINGS:
        raise Invalid.field("encoding", f"one of {', '.join(ENCODINGS)}")
    return upload, key, str(encoding)


@post(
    "/imports/upload",
    summary="Import batches from an uploaded CSV file: every row, or none",
    operation_id="uploadTraceabilityBatches",
    responses=problems(409),
    response_description=CREATED,
    operation_class=operation(
        request={"multipart/form-data": csv_upload(KEY_PATTERN)},
        request_description="The CSV file and the idempotency key, as a form.",
    ),
    description=(
        "HQ key. The same import as `POST /imports`, from a file (`multipart/form-data`: "
        "`file`, `idempotency_key`, and `encoding`, `utf-8` or `gb18030`). Problems are named "
        "`file.row.<row>.<column>`; bytes that are not text in the encoding are a 422 naming "
        "`file`. A retry of the same file with the same key answers the first import."
    ),
)
async def import_file(
    plugin: Plugin,
    db: Db,
    data: Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)],
) -> Response[ImportRead]:
    upload, key, encoding = _form(data)
    text = service.decode_upload(await upload.read(), encoding, "file")
    status, body, replayed = await service.import_csv(db, plugin, key, text, field="file")
    return _created(ImportRead, status, body, replayed)


@post(
    "/imports/check",
    status_code=HTTP_200_OK,
    summary="Check a CSV without importing it: its problems as a CSV report",
    operation_id="checkTraceabilityBatches",
    operation_class=operation(
        answer={"text/csv": CSV},
        answer_description="`row,column,problem` for each problem; only the header row when "
        "the file would import.",
    ),
    description=(
        "HQ key. The same checks as an import, nothing written: a report to open in a "
        "spreadsheet next to the file."
    ),
)
async def check(plugin: Plugin, db: Db, data: JSONBody[CheckIn]) -> Response[str]:
    return _csv(await service.check_report(db, plugin, data.csv), "batches-check.csv")


# ------------------------------------------------------------------ batches and reports


@get(
    "/batches",
    summary="The chain's batches, by SKU and batch number",
    operation_id="listTraceabilityBatches",
    description="HQ and store keys. Filter by `sku` or by `import_id`; a page at a time.",
)
async def list_batches(
    plugin: Plugin,
    db: Db,
    sku: Annotated[str | None, QueryParameter(name="sku", max_length=64)] = None,
    import_id: Annotated[uuid.UUID | None, QueryParameter(name="import_id")] = None,
    limit: Annotated[int, QueryParameter(name="limit", ge=1, le=200)] = 50,
    cursor: Annotated[str | None, QueryParameter(name="cursor", max_length=500)] = None,
) -> BatchPage:
    return await service.list_batches(
        db, plugin, sku=sku, import_id=import_id, limit=limit, cursor=cursor
    )


@get(
    "/batches/{batch_id:uuid}",
    summary="One batch, with its report's details and how many unit codes it has",
    operation_id="getTraceabilityBatch",
    description="HQ and store keys.",
)
async def get_batch(plugin: Plugin, db: Db, batch_id: FromPath[uuid.UUID]) -> BatchRead:
    return await service.get_batch(db, plugin, batch_id)


@put(
    "/batches/{batch_id:uuid}/report",
    status_code=HTTP_200_OK,
    summary="Upload the batch's quality inspection report (质检报告)",
    operation_id="putTraceabilityReport",
    request_max_body_size=service.MAX_REPORT_BYTES,
    responses=problems(404, 422),
    operation_class=operation(
        request=DOCUMENT_TYPES,
        request_description="The document itself, its type in `Content-Type` (at most 5 MiB).",
    ),
    description=(
        "HQ key. The body is the document (PDF, JPEG, PNG or WebP, at most 5 MiB), sent with "
        "its `Content-Type`; its bytes must be of that type. Uploading again replaces it "
        "(the same document again changes nothing). Anyone who scans one of the batch's codes "
        "may read it."
    ),
)
async def put_report(
    plugin: Plugin, db: Db, batch_id: FromPath[uuid.UUID], request: Request[Any, Any, Any]
) -> ReportInfo:
    body = await request.body()
    return await service.put_report(db, plugin, batch_id, request.headers.get("content-type"), body)


@get(
    "/batches/{batch_id:uuid}/report",
    summary="Download the batch's inspection report",
    operation_id="getTraceabilityReport",
    operation_class=operation(answer=DOCUMENT_TYPES, answer_description="The document."),
    description="HQ and store keys. 404 when the batch has no report yet.",
)
async def get_report(plugin: Plugin, db: Db, batch_id: FromPath[uuid.UUID]) -> Response[bytes]:
    return _document(await service.report_document(db, batch_id))


# ------------------------------------------------------------------ unit codes


@post(
    "/batches/{batch_id:uuid}/unit-codes",
    summary="Make unit codes for a batch (one print run)",
    operation_id="createTraceabilityUnitCodes",
    responses=problems(409),
    response_description=CREATED,
    description=(
        "HQ key. Makes `count` (1-1000) random codes, one per unit of the batch, and answers "
        "them with the URL to print as each one's QR code. Idempotent by `idempotency_key`: "
        "a retry answers the same codes, never new ones."
    ),
)
async def make_unit_codes(
    plugin: Plugin, db: Db, batch_id: FromPath[uuid.UUID], data: JSONBody[UnitCodesIn]
) -> Response[UnitCodesRead]:
    status, body, replayed = await service.make_unit_codes(db, plugin, batch_id, data)
    return _created(UnitCodesRead, status, body, replayed)


@get(
    "/batches/{batch_id:uuid}/unit-codes.csv",
    summary="A batch's unit codes as CSV, for the label printer",
    operation_id="exportTraceabilityUnitCodes",
    operation_class=operation(
        answer={"text/csv": CSV},
        answer_description="`code,url,sku,batch_no,product_name,expiry_date`, one code a row.",
    ),
    description="HQ key. All the batch's codes, or one print run's (`print_run`).",
)
async def export_unit_codes(
    plugin: Plugin,
    db: Db,
    batch_id: FromPath[uuid.UUID],
    print_run: Annotated[uuid.UUID | None, QueryParameter(name="print_run")] = None,
) -> Response[str]:
    return _csv(*await service.unit_codes_csv(db, plugin, batch_id, print_run))


# ------------------------------------------------------------------ scans


@post(
    "/scans",
    summary="Record a member's scan of a code (from the chain's mini-program back end)",
    operation_id="createTraceabilityScan",
    responses=problems(409),
    response_description=CREATED,
    description=(
        "HQ or store key (a store key records its store). Answers what the public look-up "
        "does (the batch's facts and, for a unit code, the counterfeit hint) and records the "
        "scan with the member; raises `traceability.scanned`. 404 for an unknown member or "
        "code. Idempotent by `idempotency_key`: a retry is not a second scan."
    ),
)
async def member_scan(
    plugin: Plugin, db: Db, data: JSONBody[MemberScanIn]
) -> Response[MemberScanRead]:
    status, body, replayed = await service.member_scan(db, plugin, data)
    return _created(MemberScanRead, status, body, replayed)


@get(
    "/codes/{code:str}/scans",
    summary="A code's scans, newest first (to look into a counterfeit report)",
    operation_id="listTraceabilityScans",
    description="HQ key. Each scan: when, public or by a member (which), at which store.",
)
async def code_scans(
    plugin: Plugin,
    db: Db,
    code: CodePath,
    limit: Annotated[int, QueryParameter(name="limit", ge=1, le=200)] = 50,
) -> list[ScanRead]:
    return await service.code_scans(db, plugin, code, limit)


# ------------------------------------------------------------------ public (no key)


@get(
    "/codes/{code:str}",
    summary="Look a scanned code up: the product's batch, its report, the counterfeit hint",
    operation_id="lookUpTraceabilityCode",
    description=(
        "No API key: what a QR code on a product opens (`/public/<chain>/traceability/"
        "codes/<code>`). Answers the batch's facts (product, SKU, batch, dates, origin, the "
        "inspection report's link) and, for a unit code, whether this is its first scan "
        "(genuine) or how often and since when it was scanned before, with a warning from "
        "the chain's threshold on. Every look-up is recorded as a scan (without who made "
        "it). Never a member's data. Limited per client address."
    ),
)
async def look_up(plugin: Plugin, db: Db, code: CodePath) -> LookupRead:
    return await service.public_lookup(db, plugin, code)


@get(
    "/codes/{code:str}/report",
    summary="The inspection report of a scanned code's batch",
    operation_id="getTraceabilityPublicReport",
    operation_class=operation(answer=DOCUMENT_TYPES, answer_description="The document."),
    description=(
        "No API key: the link a look-up answers. Not a scan. 404 when the code is unknown "
        "or its batch has no report."
    ),
)
async def public_report(plugin: Plugin, db: Db, code: CodePath) -> Response[bytes]:
    return _document(await service.public_report(db, code))


HANDLERS = (
    import_text,
    import_file,
    check,
    list_batches,
    get_batch,
    put_report,
    get_report,
    make_unit_codes,
    export_unit_codes,
    member_scan,
    code_scans,
)
PUBLIC_HANDLERS = (look_up, public_report)
