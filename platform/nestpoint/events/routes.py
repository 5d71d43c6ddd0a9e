"""HTTP routes of the events context: the tenant's outbox, for audit and debugging."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.api.deps import requires
from nestpoint.api.problems import problems
from nestpoint.events.schemas import EventList, EventRead
from nestpoint.events.service import list_events


class EventController(Controller):
    path = "/events"
    tags = ["events"]

    @get("/", guards=[requires("events:read")], responses=problems(),
         summary="The tenant's domain events, oldest first, with delivery state")
    async def list(
        self,
        db: AsyncSession,
        cursor: Annotated[str | None, Parameter(query="cursor", max_length=500)] = None,
        limit: Annotated[int, Parameter(query="limit", ge=1, le=200)] = 50,
        type_: Annotated[str | None, Parameter(query="type", max_length=100)] = None,
    ) -> EventList:
        page = await list_events(db, cursor=cursor, limit=limit, type_=type_)
        return EventList(items=[EventRead.model_validate(e) for e in page.items],
                         next_cursor=page.next_cursor)
