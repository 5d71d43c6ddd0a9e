"""The console's people: users (login, argon2 password hash, role, store, locale) and
their server-side sessions (the cookie's token hashed, the CSRF token, expiry and idle).

Revision ID: 0032_console
Revises: 0031_wallet_topups
Create Date: 2026-11-30 22:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.db.rls import isolate_and_grant

revision: str = "0032_console"
down_revision: str | None = "0031_wallet_topups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
_ROLES = "('hq_admin', 'hq_analyst', 'store_manager', 'store_clerk')"
_STORE_ROLES = "('store_manager', 'store_clerk')"


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("login", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("store_id", sa.Uuid(), nullable=True),
        sa.Column("locale", sa.String(16), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("disabled_at", _TS, nullable=True),
        sa.Column("last_login_at", _TS, nullable=True),
        sa.CheckConstraint(f"role IN {_ROLES}", name=op.f("ck_console_users_role")),
        sa.CheckConstraint(
            f"(role IN {_STORE_ROLES}) = (store_id IS NOT NULL)",
            name=op.f("ck_console_users_store_binding"),
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "store_id"], ["stores.tenant_id", "stores.id"], ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "login"),
    )
    op.create_table(
        "console_sessions",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("last_seen_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("ended_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "user_id"], ["console_users.tenant_id", "console_users.id"]
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "token_hash"),
    )
    op.create_index("ix_console_sessions_user", "console_sessions", ["tenant_id", "user_id"])
    # Users are disabled, never deleted (the audit trail names them); sessions end, and a
    # periodic job deletes those long expired (console.purge_sessions_all).
    isolate_and_grant(
        {
            "console_users": "SELECT, INSERT, UPDATE",
            "console_sessions": "SELECT, INSERT, UPDATE, DELETE",
        }
    )


def downgrade() -> None:
    op.drop_table("console_sessions")
    op.drop_table("console_users")
