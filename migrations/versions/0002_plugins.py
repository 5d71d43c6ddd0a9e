"""Plugin platform: per-chain and per-store enablement, per-plugin deliveries, failures.

Revision ID: 0002_plugins
Revises: 0001_foundation
Create Date: 2026-11-23 07:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.db import rls

revision: str = "0002_plugins"
down_revision: str | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"],
        ["tenants.id"],
        name=op.f(f"fk_{table}_tenant_id_tenants"),
        ondelete="RESTRICT",
    )


def upgrade() -> None:
    op.create_table(
        "plugin_enablements",
        sa.Column("plugin_id", sa.String(length=100), nullable=False),
        sa.Column("store_id", sa.Uuid(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("allow_store_opt_in", sa.Boolean(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "store_id"],
            ["stores.tenant_id", "stores.id"],
            name=op.f("fk_plugin_enablements_tenant_id_store_id_stores"),
            ondelete="RESTRICT",
        ),
        _tenant_fk("plugin_enablements"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_plugin_enablements")),
    )
    op.create_index(
        "uq_plugin_enablements_chain",
        "plugin_enablements",
        ["tenant_id", "plugin_id"],
        unique=True,
        postgresql_where=sa.text("store_id IS NULL"),
        sqlite_where=sa.text("store_id IS NULL"),
    )
    op.create_index(
        "uq_plugin_enablements_store",
        "plugin_enablements",
        ["tenant_id", "plugin_id", "store_id"],
        unique=True,
        postgresql_where=sa.text("store_id IS NOT NULL"),
        sqlite_where=sa.text("store_id IS NOT NULL"),
    )

    op.create_table(
        "plugin_deliveries",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("plugin_id", sa.String(length=100), nullable=False),
        sa.Column("hook", sa.String(length=100), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        _tenant_fk("plugin_deliveries"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_plugin_deliveries")),
        sa.UniqueConstraint(
            "tenant_id",
            "event_id",
            "plugin_id",
            "hook",
            name=op.f("uq_plugin_deliveries_tenant_id_event_id_plugin_id_hook"),
        ),
    )

    op.create_table(
        "plugin_failures",
        sa.Column("plugin_id", sa.String(length=100), nullable=False),
        sa.Column("hook", sa.String(length=100), nullable=False),
        sa.Column("store_id", sa.Uuid(), nullable=True),
        sa.Column("event_id", sa.Uuid(), nullable=True),
        sa.Column("event_type", sa.String(length=100), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        _tenant_fk("plugin_failures"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_plugin_failures")),
    )
    op.create_index(
        "ix_plugin_failures_tenant_id_plugin_id_occurred_at",
        "plugin_failures",
        ["tenant_id", "plugin_id", "occurred_at"],
    )
    op.create_index(
        "ix_plugin_failures_tenant_id_occurred_at",
        "plugin_failures",
        ["tenant_id", "occurred_at"],
    )

    role = rls.app_role()
    for table in ("plugin_enablements", "plugin_deliveries", "plugin_failures"):
        rls.isolate_tenant_table(table)
    rls.grant(role, "plugin_enablements", "SELECT, INSERT, UPDATE, DELETE")
    rls.grant(role, "plugin_deliveries", "SELECT, INSERT")
    # Failures are append-only for the application.
    rls.grant(role, "plugin_failures", "SELECT, INSERT")


def downgrade() -> None:
    op.drop_index("ix_plugin_failures_tenant_id_occurred_at", table_name="plugin_failures")
    op.drop_index(
        "ix_plugin_failures_tenant_id_plugin_id_occurred_at", table_name="plugin_failures"
    )
    op.drop_table("plugin_failures")
    op.drop_table("plugin_deliveries")
    op.drop_index("uq_plugin_enablements_store", table_name="plugin_enablements")
    op.drop_index("uq_plugin_enablements_chain", table_name="plugin_enablements")
    op.drop_table("plugin_enablements")
