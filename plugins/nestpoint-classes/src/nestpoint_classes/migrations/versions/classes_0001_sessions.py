"""Parent-child classes: sessions, bookings and the per-child locks, tenant-owned with RLS.

Revision ID: classes_0001
Revises:
Create Date: 2026-11-30 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.plugins.api import rls

revision: str = "classes_0001"
down_revision: str | None = None
# The plugin's own branch, after the core's tenants table exists.
branch_labels: str | Sequence[str] | None = ("classes",)
depends_on: str | Sequence[str] | None = "0001_foundation"

PRIVILEGES = {
    "class_sessions": "SELECT, INSERT, UPDATE",
    "class_bookings": "SELECT, INSERT, UPDATE",
    "class_child_locks": "SELECT, INSERT, UPDATE",  # UPDATE: locked FOR UPDATE, never changed
}


def upgrade() -> None:
    op.create_table(
        "class_sessions",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("store_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("room", sa.String(length=50), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("stages", sa.JSON(), nullable=False),
        sa.Column("price_fen", sa.Integer(), nullable=False),
        sa.Column("opens_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_class_sessions_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_class_sessions")),
        sa.UniqueConstraint("tenant_id", "code", name=op.f("uq_class_sessions_tenant_id_code")),
    )
    op.create_table(
        "class_bookings",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("request_key", sa.String(length=100), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("child_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("fee_fen", sa.Integer(), nullable=False),
        sa.Column("benefit_use_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_class_bookings_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_class_bookings")),
        sa.UniqueConstraint(
            "tenant_id", "request_key", name=op.f("uq_class_bookings_tenant_id_request_key")
        ),
    )
    op.create_table(
        "class_child_locks",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("child_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_class_child_locks_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_class_child_locks")),
        sa.UniqueConstraint(
            "tenant_id", "child_id", name=op.f("uq_class_child_locks_tenant_id_child_id")
        ),
    )
    op.create_index(
        "ix_class_sessions_store_time",
        "class_sessions",
        ["tenant_id", "store_id", "starts_at"],
        unique=False,
    )
    op.create_index(
        "ix_class_bookings_child",
        "class_bookings",
        ["tenant_id", "child_id", "status"],
        unique=False,
    )
    op.create_index(
        "ix_class_bookings_session",
        "class_bookings",
        ["tenant_id", "session_id", "status", "created_at"],
        unique=False,
    )
    rls.isolate_and_grant(PRIVILEGES)


def downgrade() -> None:
    for table in reversed(PRIVILEGES):
        op.drop_table(table)
