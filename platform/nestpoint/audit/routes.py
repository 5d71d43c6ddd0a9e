"""HTTP routes of the audit context."""

from __future__ import annotations

from litestar import Controller, get

from nestpoint.api.deps import DEFAULT_LIMIT, CursorQuery, Db, LimitQuery, requires
from nestpoint.api.problems import problems
from nestpoint.audit.schemas import AuditEntryList, AuditEntryRead
from nestpoint.audit.service import list_entries


class AuditController(Controller):
    path = "/audit"
    tags = ["audit"]

    @get(
        "/",
        guards=[requires("audit:read")],
        responses=problems(),
        summary="The tenant's audit trail, oldest first",
        operation_id="listAuditEntries",
        description=(
            "HQ key with `audit:read`; cursor-paginated. Entries hold no phone number, name, "
            "child's nickname or card number."
        ),
    )
    async def list(
        self,
        db: Db,
        cursor: CursorQuery = None,
        limit: LimitQuery = DEFAULT_LIMIT,
    ) -> AuditEntryList:
        page = await list_entries(db, cursor=cursor, limit=limit)
        return AuditEntryList(
            items=[AuditEntryRead.model_validate(e) for e in page.items],
            next_cursor=page.next_cursor,
        )
