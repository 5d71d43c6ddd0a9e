"""Campaigns: campaigns, their exactly-once grants, the event triggers' outbox cursor.

Revision ID: 0025_campaigns
Revises: 0024_coupons
Create Date: 2026-11-30 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.db.rls import isolate_and_grant

revision: str = "0025_campaigns"
down_revision: str | None = "0024_coupons"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def _tenant_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="RESTRICT")


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("schedule", sa.JSON(), nullable=False),
        sa.Column("audience", sa.JSON(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("budget_points", sa.BigInteger(), nullable=True),
        sa.Column("budget_coupons", sa.Integer(), nullable=True),
        sa.Column("spent_points", sa.BigInteger(), nullable=False),
        sa.Column("spent_coupons", sa.Integer(), nullable=False),
        sa.Column("cap_points_per_member", sa.BigInteger(), nullable=True),
        sa.Column("cap_coupons_per_member", sa.Integer(), nullable=True),
        sa.Column("cap_grants_per_member", sa.Integer(), nullable=True),
        sa.Column("starts_at", _TS, nullable=True),
        sa.Column("ends_at", _TS, nullable=True),
        sa.Column("goal", sa.JSON(), nullable=False),
        sa.Column("holdout_percent", sa.Integer(), nullable=False),
        sa.Column("holdout_seed", sa.String(length=32), nullable=False),
        sa.Column("last_run_key", sa.String(length=64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        _tenant_fk(),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "code"),
    )
    op.create_table(
        "campaign_grants",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("trigger_key", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("coupons", sa.Integer(), nullable=False),
        sa.Column("outcomes", sa.JSON(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        _tenant_fk(),
        sa.ForeignKeyConstraint(
            ["tenant_id", "campaign_id"], ["campaigns.tenant_id", "campaigns.id"]
        ),
        sa.ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "campaign_id", "member_id", "trigger_key"),
    )
    op.create_index(
        "ix_campaign_grants_status", "campaign_grants", ["tenant_id", "campaign_id", "status"]
    )
    op.create_table(
        "campaign_event_cursors",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("occurred_at", _TS, nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        _tenant_fk(),
        sa.PrimaryKeyConstraint("tenant_id"),
    )
    isolate_and_grant(
        {
            "campaigns": "SELECT, INSERT, UPDATE",
            "campaign_grants": "SELECT, INSERT, UPDATE",
            "campaign_event_cursors": "SELECT, INSERT, UPDATE",
        }
    )


def downgrade() -> None:
    op.drop_table("campaign_event_cursors")
    op.drop_table("campaign_grants")
    op.drop_table("campaigns")
