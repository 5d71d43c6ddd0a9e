"""Example plugin: the tier celebrations table, tenant-owned with row-level security.

Revision ID: example_0001
Revises:
Create Date: 2026-11-23 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.plugins.api import rls

revision: str = "example_0001"
down_revision: str | None = None
# The plugin's own branch, after the core's tenants table exists.
branch_labels: str | Sequence[str] | None = ("example",)
depends_on: str | Sequence[str] | None = "0001_foundation"


def upgrade() -> None:
    op.create_table(
        "example_tier_celebrations",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.String(length=100), nullable=False),
        sa.Column("store_id", sa.Uuid(), nullable=True),
        sa.Column("from_tier", sa.String(length=50), nullable=True),
        sa.Column("to_tier", sa.String(length=50), nullable=False),
        sa.Column("message", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_example_tier_celebrations_tenant_id_tenants",
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_example_tier_celebrations"),
        sa.UniqueConstraint(
            "tenant_id", "event_id", name="uq_example_tier_celebrations_tenant_id_event_id"
        ),
    )
    rls.isolate_tenant_table("example_tier_celebrations")
    rls.grant(rls.app_role(), "example_tier_celebrations", "SELECT, INSERT")


def downgrade() -> None:
    op.drop_table("example_tier_celebrations")
