"""Segments: a chain's saved rule trees; exports of a segment.

Revision ID: 0022_segments
Revises: 0021_imports
Create Date: 2026-12-18 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.db.rls import isolate_and_grant

revision: str = "0022_segments"
down_revision: str | None = "0021_imports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("rule", sa.JSON(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "code"),
    )
    # An export of a segment names it (the rows are the segment as it is when the job runs).
    with op.batch_alter_table("exports") as batch:
        batch.add_column(sa.Column("segment_code", sa.String(length=64), nullable=True))
    isolate_and_grant({"segments": "SELECT, INSERT, UPDATE, DELETE"})


def downgrade() -> None:
    with op.batch_alter_table("exports") as batch:
        batch.drop_column("segment_code")
    op.drop_table("segments")
