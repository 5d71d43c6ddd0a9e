"""Product traceability: batches, inspection reports, unit codes and scans, with RLS.

Revision ID: traceability_0001
Revises:
Create Date: 2026-11-30 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.plugins.api import rls

revision: str = "traceability_0001"
down_revision: str | None = None
# The plugin's own branch, after the core's tenants table exists.
branch_labels: str | Sequence[str] | None = ("traceability",)
depends_on: str | Sequence[str] | None = "0001_foundation"

PRIVILEGES = {
    "traceability_batches": "SELECT, INSERT, UPDATE",  # UPDATE: locked FOR UPDATE only
    "traceability_reports": "SELECT, INSERT, UPDATE",  # a new upload replaces the document
    "traceability_unit_codes": "SELECT, INSERT, UPDATE",  # UPDATE: locked FOR UPDATE only
    "traceability_scans": "SELECT, INSERT",  # append-only
}


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"],
        ["tenants.id"],
        name=op.f(f"fk_{table}_tenant_id_tenants"),
        ondelete="RESTRICT",
    )


def upgrade() -> None:
    op.create_table(
        "traceability_batches",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("batch_no", sa.String(length=64), nullable=False),
        sa.Column("product_name", sa.String(length=200), nullable=False),
        sa.Column("production_date", sa.Date(), nullable=False),
        sa.Column("expiry_date", sa.Date(), nullable=False),
        sa.Column("origin", sa.String(length=200), nullable=False),
        sa.Column("scan_code", sa.String(length=24), nullable=False),
        sa.Column("import_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        _tenant_fk("traceability_batches"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_traceability_batches")),
        sa.UniqueConstraint(
            "tenant_id",
            "sku",
            "batch_no",
            name=op.f("uq_traceability_batches_tenant_id_sku_batch_no"),
        ),
        sa.UniqueConstraint(
            "tenant_id", "scan_code", name=op.f("uq_traceability_batches_tenant_id_scan_code")
        ),
    )
    op.create_index(
        "ix_traceability_batches_import",
        "traceability_batches",
        ["tenant_id", "import_id"],
        unique=False,
    )
    op.create_table(
        "traceability_reports",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("batch_id", sa.Uuid(), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        _tenant_fk("traceability_reports"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_traceability_reports")),
        sa.UniqueConstraint(
            "tenant_id", "batch_id", name=op.f("uq_traceability_reports_tenant_id_batch_id")
        ),
    )
    op.create_table(
        "traceability_unit_codes",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("batch_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=24), nullable=False),
        sa.Column("print_run_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        _tenant_fk("traceability_unit_codes"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_traceability_unit_codes")),
        sa.UniqueConstraint(
            "tenant_id", "code", name=op.f("uq_traceability_unit_codes_tenant_id_code")
        ),
    )
    op.create_index(
        "ix_traceability_unit_codes_batch",
        "traceability_unit_codes",
        ["tenant_id", "batch_id", "print_run_id"],
        unique=False,
    )
    op.create_table(
        "traceability_scans",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=24), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("batch_id", sa.Uuid(), nullable=False),
        sa.Column("scanned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=True),
        sa.Column("store_id", sa.Uuid(), nullable=True),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        _tenant_fk("traceability_scans"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_traceability_scans")),
    )
    op.create_index(
        "ix_traceability_scans_code",
        "traceability_scans",
        ["tenant_id", "code", "scanned_at"],
        unique=False,
    )
    rls.isolate_and_grant(PRIVILEGES)


def downgrade() -> None:
    for table in reversed(PRIVILEGES):
        op.drop_table(table)
