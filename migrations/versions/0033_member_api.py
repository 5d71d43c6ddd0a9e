"""The member API: member tokens (only their hashes) and the chain's WeChat mini-program
(appid, AppSecret sealed) for the login-code exchange.

Revision ID: 0033_member_api
Revises: 0032_console
Create Date: 2026-11-30 22:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.db.rls import isolate_and_grant

revision: str = "0033_member_api"
down_revision: str | None = "0032_console"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "member_tokens",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("token_prefix", sa.String(16), nullable=False),
        sa.Column("issued_via", sa.String(16), nullable=False),
        sa.Column("issued_by", sa.String(100), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "token_hash", name="uq_member_tokens_hash"),
    )
    op.create_index(
        "ix_member_tokens_member", "member_tokens", ["tenant_id", "member_id", "expires_at"]
    )
    op.create_index("ix_member_tokens_expires", "member_tokens", ["tenant_id", "expires_at"])
    op.create_table(
        "wechat_apps",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("appid", sa.String(64), nullable=False),
        sa.Column("secret_enc", sa.Text(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("tenant_id"),
    )
    # Expired tokens are deleted by `nestpoint member-tokens purge`.
    isolate_and_grant(
        {
            "member_tokens": "SELECT, INSERT, UPDATE, DELETE",
            "wechat_apps": "SELECT, INSERT, UPDATE",
        }
    )


def downgrade() -> None:
    op.drop_table("wechat_apps")
    op.drop_table("member_tokens")
