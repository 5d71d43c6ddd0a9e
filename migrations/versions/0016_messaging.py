"""Messaging: the chain's settings and templates, messages and their attempts.

Revision ID: 0016_messaging
Revises: 0015_plugin_secrets
Create Date: 2026-11-30 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.db.rls import isolate_and_grant

revision: str = "0016_messaging"
down_revision: str | None = "0015_plugin_secrets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def _tenant_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="RESTRICT")


def upgrade() -> None:
    op.create_table(
        "messaging_settings",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        _tenant_fk(),
        sa.PrimaryKeyConstraint("tenant_id"),
    )
    op.create_table(
        "message_templates",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("locale", sa.String(length=8), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        _tenant_fk(),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "key", "locale"),
    )
    op.create_table(
        "messages",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("message_key", sa.String(length=200), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("store_id", sa.Uuid(), nullable=True),
        sa.Column("purpose", sa.String(length=64), nullable=False),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("channel", sa.String(length=32), nullable=True),
        sa.Column("tried", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("not_before", _TS, nullable=False),
        sa.Column("lease_until", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("sent_at", _TS, nullable=True),
        sa.Column("delivered_at", _TS, nullable=True),
        _tenant_fk(),
        sa.ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "message_key"),
    )
    op.create_index(
        "ix_messages_tenant_id_member_id_created_at",
        "messages",
        ["tenant_id", "member_id", "created_at"],
    )
    op.create_index("ix_messages_tenant_id_created_at", "messages", ["tenant_id", "created_at"])
    op.create_index(
        "ix_messages_tenant_id_status_not_before", "messages", ["tenant_id", "status", "not_before"]
    )
    op.create_index(
        "ix_messages_tenant_id_provider_message_id",
        "messages",
        ["tenant_id", "provider_message_id"],
    )
    op.create_table(
        "message_attempts",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("detail", sa.String(length=200), nullable=False),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
        _tenant_fk(),
        sa.ForeignKeyConstraint(["tenant_id", "message_id"], ["messages.tenant_id", "messages.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
    )
    op.create_index(
        "ix_message_attempts_tenant_id_message_id", "message_attempts", ["tenant_id", "message_id"]
    )
    isolate_and_grant(
        {
            "messaging_settings": "SELECT, INSERT, UPDATE",
            "message_templates": "SELECT, INSERT, UPDATE, DELETE",
            # Delivery records change state but are never deleted (reach counts them).
            "messages": "SELECT, INSERT, UPDATE",
            "message_attempts": "SELECT, INSERT, UPDATE",
        }
    )


def downgrade() -> None:
    op.drop_table("message_attempts")
    op.drop_table("messages")
    op.drop_table("message_templates")
    op.drop_table("messaging_settings")
