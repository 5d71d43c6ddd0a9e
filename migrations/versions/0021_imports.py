"""Imports: the jobs, their files and row reports in chunks, and legacy keys.

Revision ID: 0021_imports
Revises: 0020_privacy
Create Date: 2026-12-16 09:00:00

Rows are staged in temporary tables of the importing transaction (PostgreSQL cannot ``COPY``
into a table under row-level security), so no staging table is made here.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.db.rls import isolate_and_grant

revision: str = "0021_imports"
down_revision: str | None = "0020_privacy"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def _tenant_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="RESTRICT")


def upgrade() -> None:
    op.create_table(
        "imports",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("file_name", sa.String(length=200), nullable=False),
        sa.Column("mapping", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("rows_total", sa.BigInteger(), nullable=False),
        sa.Column("rows_done", sa.BigInteger(), nullable=False),
        sa.Column("rows_imported", sa.BigInteger(), nullable=False),
        sa.Column("rows_skipped", sa.BigInteger(), nullable=False),
        sa.Column("rows_bad", sa.BigInteger(), nullable=False),
        sa.Column("report_chunks", sa.Integer(), nullable=False),
        sa.Column("report_bytes", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("started_at", _TS, nullable=True),
        sa.Column("finished_at", _TS, nullable=True),
        _tenant_fk(),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
    )
    op.create_index("ix_imports_tenant_id_created_at", "imports", ["tenant_id", "created_at"])
    op.create_table(
        "import_chunks",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("import_id", sa.Uuid(), nullable=False),
        sa.Column("part", sa.String(length=8), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        _tenant_fk(),
        sa.ForeignKeyConstraint(["tenant_id", "import_id"], ["imports.tenant_id", "imports.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "import_id", "part", "seq"),
    )
    op.create_table(
        "import_keys",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ref", sa.String(length=100), nullable=False),
        sa.Column("target_id", sa.Uuid(), nullable=False),
        sa.Column("import_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        _tenant_fk(),
        sa.PrimaryKeyConstraint("tenant_id", "kind", "ref"),
    )
    isolate_and_grant(
        {
            "imports": "SELECT, INSERT, UPDATE, DELETE",
            "import_chunks": "SELECT, INSERT, DELETE",
            "import_keys": "SELECT, INSERT",
        }
    )


def downgrade() -> None:
    op.drop_table("import_keys")
    op.drop_table("import_chunks")
    op.drop_table("imports")
