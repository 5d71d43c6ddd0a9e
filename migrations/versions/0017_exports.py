"""Exports: the jobs and their files in chunks.

Revision ID: 0017_exports
Revises: 0016_messaging
Create Date: 2026-12-07 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.db.rls import isolate_and_grant

revision: str = "0017_exports"
down_revision: str | None = "0016_messaging"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def _tenant_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="RESTRICT")


def upgrade() -> None:
    op.create_table(
        "exports",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("masked", sa.Boolean(), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("rows_total", sa.BigInteger(), nullable=False),
        sa.Column("rows_done", sa.BigInteger(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("started_at", _TS, nullable=True),
        sa.Column("finished_at", _TS, nullable=True),
        _tenant_fk(),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
    )
    op.create_index("ix_exports_tenant_id_created_at", "exports", ["tenant_id", "created_at"])
    op.create_table(
        "export_chunks",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("export_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        _tenant_fk(),
        sa.ForeignKeyConstraint(["tenant_id", "export_id"], ["exports.tenant_id", "exports.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "export_id", "seq"),
    )
    isolate_and_grant(
        {
            # An export and its file are deleted by HQ when no longer needed (retention).
            "exports": "SELECT, INSERT, UPDATE, DELETE",
            "export_chunks": "SELECT, INSERT, DELETE",
        }
    )


def downgrade() -> None:
    op.drop_table("export_chunks")
    op.drop_table("exports")
