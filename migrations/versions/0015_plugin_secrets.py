"""Plugin credentials: ``plugin_secrets`` (write-only through the API, sealed at rest).

Revision ID: 0015_plugin_secrets
Revises: 0014_daily_runs
Create Date: 2026-11-30 08:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.db.rls import isolate_and_grant

revision: str = "0015_plugin_secrets"
down_revision: str | None = "0014_daily_runs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "plugin_secrets",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("plugin_id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value_enc", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("tenant_id", "plugin_id", "name"),
    )
    isolate_and_grant({"plugin_secrets": "SELECT, INSERT, UPDATE, DELETE"})


def downgrade() -> None:
    op.drop_table("plugin_secrets")
