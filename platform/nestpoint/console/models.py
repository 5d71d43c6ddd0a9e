"""Tables of the console: its human users and their server-side sessions."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKeyConstraint, Index, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.db.base import Base, TenantOwned, utcnow

ROLES = ("hq_admin", "hq_analyst", "store_manager", "store_clerk")
STORE_ROLES = ("store_manager", "store_clerk")


class ConsoleUser(TenantOwned, Base):
    """A person who signs in to the console: HQ staff, a store's manager or clerk.

    Only an argon2 hash of the password is kept. A store role is bound to one store
    (``store_id``); an HQ role to none. A disabled user cannot sign in and their sessions end.
    """

    __tablename__ = "console_users"
    __table_args__ = (
        UniqueConstraint("tenant_id", "login"),
        ForeignKeyConstraint(
            ["tenant_id", "store_id"], ["stores.tenant_id", "stores.id"], ondelete="RESTRICT"
        ),
        CheckConstraint(f"role IN {ROLES}", name="role"),
        CheckConstraint(f"(role IN {STORE_ROLES}) = (store_id IS NOT NULL)", name="store_binding"),
    )

    login: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    store_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    locale: Mapped[str | None] = mapped_column(String(16), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(default=None)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)


class ConsoleSession(TenantOwned, Base):
    """A signed-in browser. The cookie holds ``<tenant id hex>.<random token>``; this row
    keeps only the token's SHA-256, the CSRF token of the session's forms, and its clocks
    (an absolute expiry and the last request, for the idle timeout)."""

    __tablename__ = "console_sessions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "token_hash"),
        ForeignKeyConstraint(
            ["tenant_id", "user_id"], ["console_users.tenant_id", "console_users.id"]
        ),
        Index("ix_console_sessions_user", "tenant_id", "user_id"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    token_hash: Mapped[str] = mapped_column(String(64))
    csrf_token: Mapped[str] = mapped_column(String(64))
    client: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
