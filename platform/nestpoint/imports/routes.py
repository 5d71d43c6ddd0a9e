"""HTTP routes of imports under ``/api/v1/imports``: translate HTTP to service calls."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, PathParameter
from litestar.response import Stream

from nestpoint.api.answers import answered
from nestpoint.api.deps import DEFAULT_LIMIT, CursorQuery, Db, LimitQuery, hq_only, requires
from nestpoint.api.problems import problems
from nestpoint.context import require_tenant
from nestpoint.imports import service
from nestpoint.imports.schemas import (
    MAX_CONTENT_CHARS,
    ImportIn,
    ImportList,
    ImportPreview,
    ImportPreviewIn,
    ImportRead,
)

ImportIdPath = Annotated[uuid.UUID, PathParameter(name="import_id")]
# A request carries the file, base64 in JSON: room for the largest one the API takes.
MAX_REQUEST_BYTES = MAX_CONTENT_CHARS + 64 * 1024


class ImportController(Controller):
    """Imports of a legacy system's members, children, balances, orders and tags (HQ)."""

    path = "/imports"
    tags = ["imports"]

    @post(
        "/preview",
        guards=[requires("imports:write"), hq_only],
        responses=problems(403, 422),
        status_code=200,
        request_max_body_size=MAX_REQUEST_BYTES,
        summary="Preview a file: its columns, the mapping and the first rows as mapped",
        operation_id="previewImport",
        description=(
            "Writes nothing. The file (CSV or XLSX, base64 in `content`) is read through the "
            "mapping (our field → the file's column; fields left out are found by their usual "
            "header names) and its first rows are checked on their own. 422 naming `content` "
            "for a file that cannot be read, `mapping.<field>` for a column that is missing."
        ),
    )
    async def preview(self, db: Db, data: JSONBody[ImportPreviewIn]) -> ImportPreview:
        return await service.preview(db, data)

    @post(
        "/",
        guards=[requires("imports:write"), hq_only],
        responses=problems(403, 409, 422),
        status_code=202,
        request_max_body_size=MAX_REQUEST_BYTES,
        summary="Import a file of members, children, balances, orders or tags (queued)",
        operation_id="requestImport",
        description=(
            "HQ key with `imports:write` and the scope writing the data needs (`members:write`,"
            " `points:write` or `orders:write`). The header and mapping are checked now (422);"
            " every row by the job, which then writes all rows or none (`invalid`, with a row"
            " report). Idempotent by `idempotency_key`: a retry replays the first 202 "
            "(`Idempotent-Replayed: true`); the key with another request is 409. Audited."
        ),
    )
    async def request(self, db: Db, data: JSONBody[ImportIn]) -> Response[ImportRead]:
        return answered(await service.request_import(db, data), ImportRead)

    @get(
        "/",
        guards=[requires("imports:read"), hq_only],
        responses=problems(),
        summary="Import jobs, oldest first",
        operation_id="listImports",
        description="Cursor-paginated.",
    )
    async def list(
        self, db: Db, cursor: CursorQuery = None, limit: LimitQuery = DEFAULT_LIMIT
    ) -> ImportList:
        page = await service.list_imports(db, cursor=cursor, limit=limit)
        return ImportList(
            items=[ImportRead.model_validate(i) for i in page.items], next_cursor=page.next_cursor
        )

    @get(
        "/{import_id:uuid}",
        guards=[requires("imports:read"), hq_only],
        responses=problems(404),
        summary="One import job: status and progress",
        operation_id="getImport",
        description=(
            "`rows_done` of `rows_total` while it runs; `rows_imported`, `rows_skipped` "
            "(already there) once done; `rows_bad` when `invalid`."
        ),
    )
    async def detail(self, db: Db, import_id: ImportIdPath) -> ImportRead:
        return ImportRead.model_validate(await service.get_import(db, import_id))

    @get(
        "/{import_id:uuid}/report",
        guards=[requires("imports:read"), hq_only],
        responses={
            200: ResponseSpec(
                data_container=bytes,
                media_type="text/csv",
                description="The row report: `row`, `field`, `problem` (CSV, UTF-8).",
                generate_examples=False,
            ),
            **problems(404, 409),
        },
        summary="Download an import's row report",
        operation_id="downloadImportReport",
        description="Every bad row and why; only a header when every row was good. 409 "
        "until the job has ended (`done` or `invalid`). Audited.",
    )
    async def report(self, db: Db, import_id: ImportIdPath) -> Stream:
        job = await service.report_of(db, import_id)
        return Stream(
            service.read_chunks(require_tenant().tenant_id, job.id, "report", job.report_chunks),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{service.report_name(job)}"',
                "Content-Length": str(job.report_bytes),
            },
        )
