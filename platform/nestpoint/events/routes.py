"""HTTP routes of the events context: the tenant's outbox, for audit and debugging."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import QueryParameter

from nestpoint.api.deps import DEFAULT_LIMIT, CursorQuery, Db, LimitQuery, requires
from nestpoint.api.problems import problems
from nestpoint.events.schemas import EventList, EventRead
from nestpoint.events.service import list_events


class EventController(Controller):
    path = "/events"
    tags = ["events"]

    @get(
        "/",
        guards=[requires("events:read")],
        responses=problems(),
        summary="The tenant's domain events, oldest first, with delivery state",
        operation_id="listEvents",
        description=(
            "HQ key with `events:read`; cursor-paginated, filtered by `type` if given. For audit "
            "and debugging: consumers of events receive them through plugins and webhooks."
        ),
    )
    async def list(
        self,
        db: Db,
        cursor: CursorQuery = None,
        limit: LimitQuery = DEFAULT_LIMIT,
        type_: Annotated[str | None, QueryParameter(name="type", max_length=100)] = None,
    ) -> EventList:
        page = await list_events(db, cursor=cursor, limit=limit, type_=type_)
        return EventList(
            items=[EventRead.model_validate(e) for e in page.items], next_cursor=page.next_cursor
        )
