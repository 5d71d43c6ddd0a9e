"""Members' rights: erasures, the retention policy and its runs.

Revision ID: 0020_privacy
Revises: 0019_member_keys
Create Date: 2026-12-15 10:00:00

``member_erasures`` is the record that a member's personal data was erased (when, why, by
whom, what went; then what each plugin erased), kept so that a second request answers the
same and the chain can show it; it holds no personal data. ``privacy_policies`` holds a
chain's retention rules (none by default) and ``retention_runs`` the report of each run of
them. An erased member's points account is closed (``point_accounts.closed_at``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.db.rls import isolate_and_grant

revision: str = "0020_privacy"
down_revision: str | None = "0019_member_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def _tenant_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="RESTRICT")


def upgrade() -> None:
    # An erased member's points account takes no new business (see PointAccount.closed_at).
    with op.batch_alter_table("point_accounts") as batch:
        batch.add_column(sa.Column("closed_at", _TS, nullable=True))
    op.create_table(
        "member_erasures",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("erased_at", _TS, nullable=False),
        sa.Column("plugins", sa.JSON(), nullable=False),
        sa.Column("plugins_erased_at", _TS, nullable=True),
        _tenant_fk(),
        sa.ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "member_id"),
    )
    op.create_index(
        "ix_member_erasures_tenant_id_erased_at", "member_erasures", ["tenant_id", "erased_at"]
    )
    op.create_table(
        "privacy_policies",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("inactive_member_years", sa.Integer(), nullable=True),
        sa.Column("child_data_age_years", sa.Integer(), nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
        _tenant_fk(),
        sa.PrimaryKeyConstraint("tenant_id"),
    )
    op.create_table(
        "retention_runs",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("run_on", sa.Date(), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("members_erased", sa.Integer(), nullable=False),
        sa.Column("children_erased", sa.Integer(), nullable=False),
        sa.Column("member_ids", sa.JSON(), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
        _tenant_fk(),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
    )
    op.create_index(
        "ix_retention_runs_tenant_id_started_at", "retention_runs", ["tenant_id", "started_at"]
    )
    isolate_and_grant(
        {
            # The record is written once; only the plugins' part is filled in after.
            "member_erasures": "SELECT, INSERT, UPDATE",
            "privacy_policies": "SELECT, INSERT, UPDATE",
            "retention_runs": "SELECT, INSERT, UPDATE",
        }
    )


def downgrade() -> None:
    op.drop_table("retention_runs")
    op.drop_table("privacy_policies")
    op.drop_table("member_erasures")
    with op.batch_alter_table("point_accounts") as batch:
        batch.drop_column("closed_at")
