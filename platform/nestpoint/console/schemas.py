"""API shapes of the console's users (``/api/v1/console-users``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from nestpoint.schemas import Strict
from nestpoint.tenancy.schemas import Locale, StoreCode

Role = Literal["hq_admin", "hq_analyst", "store_manager", "store_clerk"]
LOGIN = r"^[a-z0-9][a-z0-9._@-]{1,63}$"
Login = Annotated[str, StringConstraints(pattern=LOGIN, max_length=64)]
MIN_PASSWORD = 10
Password = Annotated[str, StringConstraints(min_length=MIN_PASSWORD, max_length=200)]


class ConsoleUserCreate(Strict):
    login: Login = Field(description="Lower-case letters, digits and `._@-`, 2-64 long.")
    role: Role
    store_code: StoreCode | None = Field(
        None, description="The store of a store role (store_manager, store_clerk); none for HQ."
    )
    locale: Locale | None = Field(None, description="Unset: the chain's locale.")
    password: Password | None = Field(
        None, description="At least 10 characters. Omit it: one is made and shown once."
    )


class ConsoleUserUpdate(Strict):
    role: Role | None = None
    store_code: StoreCode | None = Field(None, description="Moves a store role to this store.")
    locale: Locale | None = None
    disabled: bool | None = Field(
        None, description="true: the user can no longer sign in and their sessions end."
    )
    reset_password: bool = Field(
        False, description="true: a new password is made, shown once, and the sessions end."
    )


class ConsoleUserRead(BaseModel):
    id: uuid.UUID
    login: str
    role: str
    store_code: str | None
    locale: str | None
    created_at: datetime
    updated_at: datetime
    disabled_at: datetime | None
    last_login_at: datetime | None


class ConsoleUserCreated(ConsoleUserRead):
    password: str | None = Field(
        None, description="The password made for the user (shown this once), if one was made."
    )


class ConsoleUserList(BaseModel):
    items: list[ConsoleUserRead]
    next_cursor: str | None
