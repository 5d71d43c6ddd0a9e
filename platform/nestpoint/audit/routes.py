"""HTTP routes of the audit context."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.api.deps import requires
from nestpoint.api.problems import problems
from nestpoint.audit.schemas import AuditEntryList, AuditEntryRead
from nestpoint.audit.service import list_entries


class AuditController(Controller):
    path = "/audit"
    tags = ["audit"]

    @get("/", guards=[requires("audit:read")], responses=problems(),
         summary="The tenant's audit trail, oldest first")
    async def list(
        self,
        db: AsyncSession,
        cursor: Annotated[str | None, Parameter(query="cursor", max_length=500)] = None,
        limit: Annotated[int, Parameter(query="limit", ge=1, le=200)] = 50,
    ) -> AuditEntryList:
        page = await list_entries(db, cursor=cursor, limit=limit)
        return AuditEntryList(items=[AuditEntryRead.model_validate(e) for e in page.items],
                              next_cursor=page.next_cursor)
