"""Built-in segments: each member's RFM values, scores and group, value circle and
lifecycle stage (recomputed by the daily ``segments.recompute`` job); a chain's thresholds.

Revision ID: 0023_builtin_segments
Revises: 0022_segments
Create Date: 2026-12-19 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.db.rls import isolate_and_grant

revision: str = "0023_builtin_segments"
down_revision: str | None = "0022_segments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def _tenant_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="RESTRICT")


def upgrade() -> None:
    op.create_table(
        "member_segments",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("recency_days", sa.Integer(), nullable=True),
        sa.Column("frequency", sa.Integer(), nullable=False),
        sa.Column("monetary_fen", sa.BigInteger(), nullable=False),
        sa.Column("r_score", sa.String(length=4), nullable=False),
        sa.Column("f_score", sa.String(length=4), nullable=False),
        sa.Column("m_score", sa.String(length=4), nullable=False),
        sa.Column("rfm_group", sa.String(length=32), nullable=False),
        sa.Column("value_circle", sa.String(length=32), nullable=False),
        sa.Column("lifecycle", sa.String(length=32), nullable=False),
        sa.Column("computed_on", sa.Date(), nullable=False),
        _tenant_fk(),
        sa.PrimaryKeyConstraint("tenant_id", "member_id"),
    )
    op.create_table(
        "segment_thresholds",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        _tenant_fk(),
        sa.PrimaryKeyConstraint("tenant_id"),
    )
    isolate_and_grant(
        {
            # Rewritten by each run; a member no longer active loses their row.
            "member_segments": "SELECT, INSERT, UPDATE, DELETE",
            "segment_thresholds": "SELECT, INSERT, UPDATE",
        }
    )


def downgrade() -> None:
    op.drop_table("segment_thresholds")
    op.drop_table("member_segments")
