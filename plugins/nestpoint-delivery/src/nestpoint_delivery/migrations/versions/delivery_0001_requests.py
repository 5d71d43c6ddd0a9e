"""Home delivery: requests, slot locks and the status history, tenant-owned with RLS.

Revision ID: delivery_0001
Revises:
Create Date: 2026-11-29 23:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.plugins.api import rls

revision: str = "delivery_0001"
down_revision: str | None = None
# The plugin's own branch, after the core's tenants table exists.
branch_labels: str | Sequence[str] | None = ("delivery",)
depends_on: str | Sequence[str] | None = "0001_foundation"

PRIVILEGES = {
    "delivery_requests": "SELECT, INSERT, UPDATE",
    "delivery_slots": "SELECT, INSERT, UPDATE",  # UPDATE: locked FOR UPDATE, never changed
    "delivery_status_changes": "SELECT, INSERT",  # append-only history
}


def upgrade() -> None:
    op.create_table(
        "delivery_requests",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("request_key", sa.String(length=100), nullable=False),
        sa.Column("store_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("order_ref", sa.String(length=150), nullable=False),
        sa.Column("address_enc", sa.Text(), nullable=False),
        sa.Column("slot_date", sa.Date(), nullable=False),
        sa.Column("slot", sa.String(length=32), nullable=False),
        sa.Column("install_guidance", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("fee_fen", sa.Integer(), nullable=False),
        sa.Column("benefit_use_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_delivery_requests_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_delivery_requests")),
        sa.UniqueConstraint(
            "tenant_id", "request_key", name=op.f("uq_delivery_requests_tenant_id_request_key")
        ),
    )
    op.create_table(
        "delivery_slots",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("store_id", sa.Uuid(), nullable=False),
        sa.Column("slot_date", sa.Date(), nullable=False),
        sa.Column("slot", sa.String(length=32), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_delivery_slots_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_delivery_slots")),
        sa.UniqueConstraint(
            "tenant_id",
            "store_id",
            "slot_date",
            "slot",
            name=op.f("uq_delivery_slots_tenant_id_store_id_slot_date_slot"),
        ),
    )
    op.create_table(
        "delivery_status_changes",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("from_status", sa.String(length=20), nullable=True),
        sa.Column("to_status", sa.String(length=20), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_delivery_status_changes_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_delivery_status_changes")),
    )
    op.create_index(
        "ix_delivery_requests_queue",
        "delivery_requests",
        ["tenant_id", "store_id", "slot_date", "status"],
        unique=False,
    )
    op.create_index(
        "ix_delivery_status_changes_request",
        "delivery_status_changes",
        ["tenant_id", "request_id"],
        unique=False,
    )
    rls.isolate_and_grant(PRIVILEGES)


def downgrade() -> None:
    for table in reversed(PRIVILEGES):
        op.drop_table(table)
