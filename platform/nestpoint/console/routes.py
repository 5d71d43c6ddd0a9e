"""HTTP routes of the console's users: HQ manages who signs in to the console.

The console's pages themselves are in ``pages.py`` (HTML, under ``/console/``).
"""

from __future__ import annotations

import uuid

from litestar import Controller, get, patch, post
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.api.deps import DEFAULT_LIMIT, CursorQuery, Db, LimitQuery, hq_only, requires
from nestpoint.api.problems import problems
from nestpoint.console import service
from nestpoint.console.models import ConsoleUser
from nestpoint.console.schemas import (
    ConsoleUserCreate,
    ConsoleUserCreated,
    ConsoleUserList,
    ConsoleUserRead,
    ConsoleUserUpdate,
)


async def user_read(
    db: AsyncSession, user: ConsoleUser, codes: dict[uuid.UUID, str] | None = None
) -> ConsoleUserRead:
    codes = codes if codes is not None else await service.user_store_codes(db)
    return ConsoleUserRead(
        id=user.id,
        login=user.login,
        role=user.role,
        store_code=codes.get(user.store_id) if user.store_id else None,
        locale=user.locale,
        created_at=user.created_at,
        updated_at=user.updated_at,
        disabled_at=user.disabled_at,
        last_login_at=user.last_login_at,
    )


class ConsoleUserController(Controller):
    """HQ manages the console's users: HQ staff, store managers and clerks."""

    path = "/console-users"
    tags = ["console users"]
    guards = [hq_only]

    @post(
        "/",
        guards=[requires("console:write")],
        responses=problems(409, 422),
        summary="Create a console user (a made password is in the response, once)",
        operation_id="createConsoleUser",
        description=(
            "HQ key with `console:write`. A store role (`store_manager`, `store_clerk`) names "
            "its store; an HQ role (`hq_admin`, `hq_analyst`) none (422 naming `store_code`). "
            "A taken login is 409. Without `password`, one is made and shown this once."
        ),
    )
    async def create(self, db: Db, data: JSONBody[ConsoleUserCreate]) -> ConsoleUserCreated:
        user, made = await service.create_user(db, data)
        read = await user_read(db, user)
        return ConsoleUserCreated(**read.model_dump(), password=made)

    @get(
        "/",
        guards=[requires("console:read")],
        responses=problems(),
        summary="List console users",
        operation_id="listConsoleUsers",
        description="HQ key with `console:read`; by login, cursor-paginated. Never a password.",
    )
    async def list_users(
        self, db: Db, cursor: CursorQuery = None, limit: LimitQuery = DEFAULT_LIMIT
    ) -> ConsoleUserList:
        page = await service.list_users(db, cursor=cursor, limit=limit)
        codes = await service.user_store_codes(db)
        return ConsoleUserList(
            items=[await user_read(db, u, codes) for u in page.items],
            next_cursor=page.next_cursor,
        )

    @patch(
        "/{user_id:uuid}",
        guards=[requires("console:write")],
        responses=problems(404, 422),
        summary="Change a console user's role, store, locale or state; reset their password",
        operation_id="updateConsoleUser",
        description=(
            "HQ key with `console:write`; only the fields sent change, audited with the user "
            "before and after. Disabling, a new role or store, or `reset_password` ends the "
            "user's sessions; a reset password is in the response, once."
        ),
    )
    async def update(
        self, db: Db, user_id: FromPath[uuid.UUID], data: JSONBody[ConsoleUserUpdate]
    ) -> ConsoleUserCreated:
        user, made = await service.update_user(db, user_id, data)
        read = await user_read(db, user)
        return ConsoleUserCreated(**read.model_dump(), password=made)
