"""Dependencies and guards shared by every context's routes."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Annotated, Any

from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler
from litestar.params import QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.context import current_actor
from nestpoint.db import get_database
from nestpoint.errors import Forbidden


async def provide_session() -> AsyncGenerator[AsyncSession, None]:
    """One session per request; it commits if the handler succeeds (before the response is
    sent, so a failed commit is an error response), and rolls back otherwise.

    Never both: once the commit succeeded the request's change is made, and nothing after it
    (after-commit work is isolated in ``nestpoint.db.session.on_commit``) may turn it into
    an error or a rollback.
    """
    async with get_database().session() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        if session.in_transaction():  # a handler that used no session has nothing to commit
            await session.commit()


# Guards are coroutines: Litestar runs a plain function guard in a worker thread, which costs
# a thread hand-off on every request for a check that takes microseconds.
Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


def requires(scope: str) -> Guard:
    """Guard: the key must carry ``scope`` (platform keys pass only platform guards)."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        actor = current_actor()
        if actor.kind not in ("tenant", "store") or not actor.has(scope):
            raise Forbidden(f"this operation needs the {scope!r} scope on a tenant or store key")

    return guard


async def platform_only(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    if current_actor().kind != "platform":
        raise Forbidden("this operation needs a platform key")


async def hq_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    if current_actor().kind != "tenant":
        raise Forbidden("this operation needs an HQ (tenant) key")


async def member_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """The member API (``/api/v1/me/...``) acts for the member of the token, never for a key."""
    if current_actor().kind != "member" or current_actor().key_id is None:
        raise Forbidden("this operation needs a member token (POST /api/v1/member-tokens)")


# Parameter types every route uses, declared once.
Db = NamedDependency[AsyncSession]
CursorQuery = Annotated[
    str | None,
    QueryParameter(
        name="cursor",
        max_length=500,
        required=False,
        description="The next_cursor of the previous page.",
    ),
]
LimitQuery = Annotated[
    int, QueryParameter(name="limit", ge=1, le=200, description="Page size (1-200).")
]
DEFAULT_LIMIT = 50
