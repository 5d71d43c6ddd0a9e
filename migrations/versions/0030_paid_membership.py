"""Paid membership (付费会员): plans, memberships and their periods.

Revision ID: 0030_paid_membership
Revises: 0029_billing
Create Date: 2026-11-30 17:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.db.rls import isolate_and_grant

revision: str = "0030_paid_membership"
down_revision: str | None = "0029_billing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def _tenant_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="RESTRICT")


def upgrade() -> None:
    op.create_table(
        "paid_plans",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("trial_days", sa.Integer(), nullable=True),
        sa.Column("price_fen", sa.BigInteger(), nullable=False),
        sa.Column("benefits", sa.JSON(), nullable=False),
        sa.Column("stacks_with_tier", sa.Boolean(), nullable=False),
        sa.Column("retain_tier", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        _tenant_fk(),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "code"),
    )
    op.create_table(
        "paid_membership_settings",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("grace_days", sa.Integer(), nullable=False),
        sa.Column("reminder_days", sa.Integer(), nullable=False),
        sa.Column("retry_days", sa.Integer(), nullable=False),
        sa.Column("refund_rule", sa.String(length=16), nullable=False),
        sa.Column("full_refund_days", sa.Integer(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        _tenant_fk(),
        sa.PrimaryKeyConstraint("tenant_id"),
    )
    op.create_table(
        "paid_memberships",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("plan_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("auto_renew", sa.Boolean(), nullable=False),
        sa.Column("payment_method", sa.String(length=255), nullable=True),
        sa.Column("store_id", sa.Uuid(), nullable=True),
        sa.Column("period_start", _TS, nullable=True),
        sa.Column("period_end", _TS, nullable=True),
        sa.Column("grace_until", _TS, nullable=True),
        sa.Column("next_attempt_at", _TS, nullable=True),
        sa.Column("reminded_for", _TS, nullable=True),
        sa.Column("current_charge_id", sa.Uuid(), nullable=True),
        sa.Column("protected_before", _TS, nullable=True),
        sa.Column("protected_until", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("activated_at", _TS, nullable=True),
        sa.Column("ended_at", _TS, nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
        _tenant_fk(),
        sa.ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        sa.ForeignKeyConstraint(
            ["tenant_id", "plan_id"], ["paid_plans.tenant_id", "paid_plans.id"]
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
    )
    op.create_index(
        "ix_paid_memberships_member", "paid_memberships", ["tenant_id", "member_id", "created_at"]
    )
    op.create_index(
        "ix_paid_memberships_due", "paid_memberships", ["tenant_id", "status", "period_end"]
    )
    op.create_index(
        "ix_paid_memberships_store", "paid_memberships", ["tenant_id", "store_id", "created_at"]
    )
    op.create_table(
        "paid_membership_charges",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("membership_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("plan_id", sa.Uuid(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=True),
        sa.Column("store_id", sa.Uuid(), nullable=True),
        sa.Column("period_start", _TS, nullable=True),
        sa.Column("period_end", _TS, nullable=True),
        sa.Column("refunded_fen", sa.BigInteger(), nullable=False),
        sa.Column("failure", sa.String(length=200), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("settled_at", _TS, nullable=True),
        _tenant_fk(),
        sa.ForeignKeyConstraint(
            ["tenant_id", "membership_id"], ["paid_memberships.tenant_id", "paid_memberships.id"]
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
    )
    op.create_index(
        "ix_paid_membership_charges_membership",
        "paid_membership_charges",
        ["tenant_id", "membership_id", "created_at"],
    )
    op.create_index(
        "ix_paid_membership_charges_payment", "paid_membership_charges", ["tenant_id", "payment_id"]
    )
    isolate_and_grant(
        {
            "paid_plans": "SELECT, INSERT, UPDATE",
            "paid_membership_settings": "SELECT, INSERT, UPDATE",
            "paid_memberships": "SELECT, INSERT, UPDATE",
            "paid_membership_charges": "SELECT, INSERT, UPDATE",
        }
    )


def downgrade() -> None:
    op.drop_table("paid_membership_charges")
    op.drop_table("paid_memberships")
    op.drop_table("paid_membership_settings")
    op.drop_table("paid_plans")
