"""HTTP routes of exports under ``/api/v1/exports``: translate HTTP to service calls."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, Response, delete, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, PathParameter
from litestar.response import Stream

from nestpoint.api.answers import answered
from nestpoint.api.deps import DEFAULT_LIMIT, CursorQuery, Db, LimitQuery, hq_only, requires
from nestpoint.api.problems import problems
from nestpoint.context import require_tenant
from nestpoint.exports import service
from nestpoint.exports.schemas import ExportIn, ExportList, ExportRead, MemberDataExportIn

ExportIdPath = Annotated[uuid.UUID, PathParameter(name="export_id")]
MemberIdPath = Annotated[uuid.UUID, PathParameter(name="member_id")]


class ExportController(Controller):
    """Exports of members, children, points ledgers and orders to CSV or XLSX (HQ)."""

    path = "/exports"
    tags = ["exports"]

    @post(
        "/",
        guards=[requires("exports:write"), hq_only],
        responses=problems(403, 409, 422),
        status_code=202,
        summary=(
            "Export members, children, a points ledger, orders or a segment (queued; run by "
            "workers)"
        ),
        operation_id="requestExport",
        description=(
            "HQ key with `exports:write` and the scope reading the data needs (`members:read`"
            " or `orders:read`). Kind `segment` exports the members of the saved segment "
            "`segment_code` (the columns of `members`) as it is when the job runs; an unknown "
            "code is a 422. Personal data is masked unless the key holds `members:pii`. "
            "Idempotent by `idempotency_key`: a retry replays the first 202 "
            "(`Idempotent-Replayed: true`); the key with another request is 409. Audited."
        ),
    )
    async def request(self, db: Db, data: JSONBody[ExportIn]) -> Response[ExportRead]:
        return answered(await service.request_export(db, data), ExportRead)

    @get(
        "/",
        guards=[requires("exports:read"), hq_only],
        responses=problems(),
        summary="Export jobs, oldest first",
        operation_id="listExports",
        description="Cursor-paginated.",
    )
    async def list(
        self, db: Db, cursor: CursorQuery = None, limit: LimitQuery = DEFAULT_LIMIT
    ) -> ExportList:
        page = await service.list_exports(db, cursor=cursor, limit=limit)
        return ExportList(
            items=[ExportRead.model_validate(e) for e in page.items], next_cursor=page.next_cursor
        )

    @get(
        "/{export_id:uuid}",
        guards=[requires("exports:read"), hq_only],
        responses=problems(404),
        summary="One export job: status and progress",
        operation_id="getExport",
        description="`rows_done` of `rows_total` while it runs; size and SHA-256 once done.",
    )
    async def detail(self, db: Db, export_id: ExportIdPath) -> ExportRead:
        return ExportRead.model_validate(await service.get_export(db, export_id))

    @get(
        "/{export_id:uuid}/file",
        guards=[requires("exports:read"), hq_only],
        responses={
            200: ResponseSpec(
                data_container=bytes,
                media_type="application/octet-stream",
                description="The file (text/csv, XLSX or, for `member_data`, JSON), streamed.",
                generate_examples=False,
            ),
            **problems(404, 409),
        },
        summary="Download a finished export",
        operation_id="downloadExport",
        description=(
            "Streamed chunk by chunk with a `Content-Disposition` file name; 409 before it is "
            "done. An unmasked export, and any `member_data` export, needs `members:pii`. "
            "Audited (a `member_data` download also on the member, with the reason)."
        ),
    )
    async def file(self, db: Db, export_id: ExportIdPath) -> Stream:
        job = await service.downloadable(db, export_id)
        return Stream(
            service.read_file(require_tenant().tenant_id, job.id, job.chunks),
            media_type=service.MEDIA_TYPES[job.format],
            headers={
                "Content-Disposition": f'attachment; filename="{service.filename(job)}"',
                "Content-Length": str(job.size_bytes),
            },
        )

    @delete(
        "/{export_id:uuid}",
        guards=[requires("exports:write"), hq_only],
        responses=problems(404, 409),
        status_code=204,
        summary="Delete an export and its file (retention)",
        operation_id="deleteExport",
        description="409 while it runs. Audited.",
    )
    async def remove(self, db: Db, export_id: ExportIdPath) -> None:
        await service.delete_export(db, export_id)


class MemberDataExportController(Controller):
    """A member's right of access and copy: all their data as one JSON file (HQ)."""

    path = "/members/{member_id:uuid}/data-exports"
    tags = ["exports", "members"]

    @post(
        "/",
        guards=[requires("exports:write"), requires("members:pii"), hq_only],
        responses=problems(403, 404, 409, 422),
        status_code=202,
        summary="Export one member's data as JSON (access and copy; queued, run by workers)",
        operation_id="requestMemberDataExport",
        description=(
            "HQ key with `exports:write` and `members:pii`. `reason` (1-500 characters, e.g. "
            "`PIPL access request #123`) is required and audited with the request and every "
            "download. The job is an export of kind `member_data`, format `json`: follow it "
            "and download it through `/exports/{export_id}` and `/exports/{export_id}/file`. "
            "404 for a member the chain does not have. Idempotent by `idempotency_key`, like "
            "`POST /exports`."
        ),
    )
    async def request(
        self, db: Db, member_id: MemberIdPath, data: JSONBody[MemberDataExportIn]
    ) -> Response[ExportRead]:
        return answered(await service.request_member_data(db, member_id, data), ExportRead)
