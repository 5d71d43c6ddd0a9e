"""The console's exports page (HQ): long exports run as jobs, with their progress.

A user chooses a kind and a format and starts a job through the exports service
(``nestpoint.exports.service.request_export``) as their own actor, so the API's rules apply
unchanged: personal data is masked without ``members:pii`` (an analyst's export is masked
exactly as an API key's without it), the request is audited and idempotent (the form's
hidden reference is the job's ``idempotency_key``: a double submit starts one job). A worker
runs the job (``exports.run``). While a job is queued or running its row polls for its
progress every second (htmx); a finished one offers its file, streamed from its chunks
through the console's session.

HQ only: an export is of the whole chain's data (the service has no store scope), so a
store role may not open the page.
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Request, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Stream, Template
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.api.deps import Db
from nestpoint.console import service
from nestpoint.console.pages import allow, form_of, new_reference, render, validated
from nestpoint.console.web import Me, _, environment, me_of
from nestpoint.context import current_actor, require_tenant
from nestpoint.errors import Invalid, NotFound
from nestpoint.exports import service as exports
from nestpoint.exports.schemas import ExportIn
from nestpoint.segments import service as segments

PAGE = "exports"
# The kinds a user may start here, in the form's order (one member's data has its own
# request, with a reason: POST /api/v1/members/{id}/data-exports).
KINDS = ("members", "children", "points_ledger", "orders", exports.SEGMENT)
FORMATS = ("csv", "xlsx")
LISTED = 50  # the latest jobs shown
RUNNING = ("queued", "running")  # a row in these states polls for its progress


def kind_labels() -> dict[str, str]:
    return {
        "members": _("Members"),
        "children": _("Children"),
        "points_ledger": _("Points ledger"),
        "orders": _("Orders"),
        exports.SEGMENT: _("Members of a segment"),
        exports.MEMBER_DATA: _("One member's data"),
    }


def status_labels() -> dict[str, str]:
    return {
        "queued": _("Queued"),
        "running": _("Running"),
        "done": _("Done"),
        "failed": _("Failed"),
    }


async def _requesters(db: AsyncSession) -> dict[str, str]:
    """Who asked, as the list shows it: a console user's login (else the raw requester)."""
    users = (await service.list_users(db, cursor=None, limit=200)).items
    return {f"tenant:{u.id}": u.login for u in users}


async def _exports_page(db: AsyncSession, me: Me, status: int = 200, **extra: Any) -> Template:
    actor = current_actor()
    jobs = await exports.recent_exports(db, LISTED)
    codes = (await segments.list_segments(db, cursor=None, limit=200)).items
    return render(
        "exports.html",
        me,
        status,
        jobs=jobs,
        kinds=[k for k in KINDS if k != exports.SEGMENT or codes],
        formats=FORMATS,
        segments=codes,
        reference=new_reference(),
        chosen=extra.pop("chosen", "members"),
        requesters=await _requesters(db),
        downloadable={j.id for j in jobs if exports.may_download(actor, j)},
        errors=extra.pop("errors", {}),
        **extra,
    )


@get("/exports", name="console:exports")
async def exports_page(
    request: Request[Any, Any, Any], db: Db, kind: FromQuery[str] = ""
) -> Template:
    """The form (``?kind=`` preselects a kind: the links of other pages) and the jobs."""
    me = me_of(request.scope)
    allow(me, PAGE)
    return await _exports_page(db, me, chosen=kind if kind in KINDS else "members")


@post("/exports", name="console:exports-start", status_code=200)
async def exports_start(request: Request[Any, Any, Any], db: Db) -> Template:
    """Start a job through the exports service (masked, audited, idempotent by the form's
    reference); the page answers with the job at the top of the list."""
    me = me_of(request.scope)
    allow(me, PAGE)
    form = await form_of(request)
    kind = form.get("kind", "")
    try:
        data = validated(
            ExportIn,
            {
                "kind": kind,
                "format": form.get("format", "csv"),
                "idempotency_key": form.get("reference", ""),
                "segment_code": (form.get("segment_code") or None)
                if kind == exports.SEGMENT
                else None,
            },
        )
        answer = await exports.request_export(db, data)
    except Invalid as exc:
        errors = {e.field: e.message for e in exc.errors} or {"form": exc.detail}
        chosen = kind if kind in KINDS else "members"
        return await _exports_page(db, me, 422, errors=errors, chosen=chosen)
    return await _exports_page(
        db, me, started=answer.body["id"], replayed=answer.replayed, chosen=data.kind
    )


def _export_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise NotFound(_("No such export")) from None


@get("/exports/{export_id:str}/row", name="console:exports-row")
async def exports_row(
    request: Request[Any, Any, Any], db: Db, export_id: FromPath[str]
) -> Template:
    """One job's row: what a running job's row polls for (it stops once the job ends)."""
    me = me_of(request.scope)
    allow(me, PAGE)
    job = await exports.get_export(db, _export_id(export_id))
    return render(
        "partials/export_row.html",
        me,
        job=job,
        requesters=await _requesters(db),
        downloadable={job.id} if exports.may_download(current_actor(), job) else set(),
    )


@get("/exports/{export_id:str}/file", name="console:exports-file")
async def exports_file(request: Request[Any, Any, Any], db: Db, export_id: FromPath[str]) -> Stream:
    """The finished file, chunk by chunk, as ``GET /api/v1/exports/{id}/file`` streams it
    (the same checks: 409 before it is done, 403 for data the user may not read; audited)."""
    me = me_of(request.scope)
    allow(me, PAGE)
    job = await exports.downloadable(db, _export_id(export_id))
    return Stream(
        exports.read_file(require_tenant().tenant_id, job.id, job.chunks),
        media_type=exports.MEDIA_TYPES[job.format],
        headers={
            "Content-Disposition": f'attachment; filename="{exports.filename(job)}"',
            "Content-Length": str(job.size_bytes),
        },
    )


environment().globals["export_kind_labels"] = kind_labels
environment().globals["export_status_labels"] = status_labels
