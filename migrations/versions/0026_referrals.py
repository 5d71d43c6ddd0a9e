"""Referrals and friend assists: a chain's rules, members' codes, referrals, assists.

Revision ID: 0026_referrals
Revises: 0025_campaigns
Create Date: 2026-11-30 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.db.rls import isolate_and_grant

revision: str = "0026_referrals"
down_revision: str | None = "0025_campaigns"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def _tenant_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="RESTRICT")


def _member_fk(column: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["tenant_id", column], ["members.tenant_id", "members.id"])


def upgrade() -> None:
    op.create_table(
        "referral_settings",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("inviter_points", sa.Integer(), nullable=False),
        sa.Column("invitee_points", sa.Integer(), nullable=False),
        sa.Column("inviter_coupon", sa.String(length=64), nullable=True),
        sa.Column("invitee_coupon", sa.String(length=64), nullable=True),
        sa.Column("min_order_fen", sa.BigInteger(), nullable=False),
        sa.Column("join_window_days", sa.Integer(), nullable=False),
        sa.Column("purchase_window_days", sa.Integer(), nullable=False),
        sa.Column("max_rewards_per_month", sa.Integer(), nullable=True),
        sa.Column("farm_limit_per_day", sa.Integer(), nullable=False),
        sa.Column("assist_goal", sa.Integer(), nullable=False),
        sa.Column("assist_days", sa.Integer(), nullable=False),
        sa.Column("assist_points", sa.Integer(), nullable=False),
        sa.Column("assist_coupon", sa.String(length=64), nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
        _tenant_fk(),
        sa.PrimaryKeyConstraint("tenant_id"),
    )
    op.create_table(
        "referral_codes",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        _tenant_fk(),
        _member_fk("member_id"),
        sa.PrimaryKeyConstraint("tenant_id", "member_id"),
        sa.UniqueConstraint("tenant_id", "code"),
    )
    op.create_table(
        "referrals",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("inviter_id", sa.Uuid(), nullable=False),
        sa.Column("invitee_id", sa.Uuid(), nullable=False),
        sa.Column("device_hash", sa.String(length=64), nullable=True),
        sa.Column("store_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("bound_at", _TS, nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("rewarded_at", _TS, nullable=True),
        sa.Column("inviter_points", sa.Integer(), nullable=False),
        sa.Column("invitee_points", sa.Integer(), nullable=False),
        sa.Column("inviter_coupon_id", sa.Uuid(), nullable=True),
        sa.Column("invitee_coupon_id", sa.Uuid(), nullable=True),
        _tenant_fk(),
        _member_fk("inviter_id"),
        _member_fk("invitee_id"),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "invitee_id"),
    )
    op.create_index("ix_referrals_status", "referrals", ["tenant_id", "status", "bound_at"])
    op.create_index("ix_referrals_inviter", "referrals", ["tenant_id", "inviter_id", "bound_at"])
    op.create_index("ix_referrals_device", "referrals", ["tenant_id", "device_hash"])
    op.create_table(
        "assists",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("goal", sa.Integer(), nullable=False),
        sa.Column("helpers", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("idempotency_key", sa.String(length=100), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("completed_at", _TS, nullable=True),
        sa.Column("reward_points", sa.Integer(), nullable=False),
        sa.Column("reward_coupon_id", sa.Uuid(), nullable=True),
        _tenant_fk(),
        _member_fk("member_id"),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
    )
    op.create_index("ix_assists_member", "assists", ["tenant_id", "member_id", "status"])
    op.create_table(
        "assist_helpers",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("assist_id", sa.Uuid(), nullable=False),
        sa.Column("helper_id", sa.Uuid(), nullable=False),
        sa.Column("device_hash", sa.String(length=64), nullable=True),
        sa.Column("helped_at", _TS, nullable=False),
        _tenant_fk(),
        sa.ForeignKeyConstraint(["tenant_id", "assist_id"], ["assists.tenant_id", "assists.id"]),
        _member_fk("helper_id"),
        sa.PrimaryKeyConstraint("tenant_id", "assist_id", "helper_id"),
    )
    isolate_and_grant(
        {
            "referral_settings": "SELECT, INSERT, UPDATE",
            "referral_codes": "SELECT, INSERT",
            "referrals": "SELECT, INSERT, UPDATE",
            "assists": "SELECT, INSERT, UPDATE",
            "assist_helpers": "SELECT, INSERT, UPDATE",  # an erasure forgets the device
        }
    )


def downgrade() -> None:
    op.drop_table("assist_helpers")
    op.drop_table("assists")
    op.drop_table("referrals")
    op.drop_table("referral_codes")
    op.drop_table("referral_settings")
