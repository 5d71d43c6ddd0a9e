"""Stored value: top-ups paid through Stripe (credited when the payment succeeds), and the
chain's bonus validity.

Revision ID: 0031_wallet_topups
Revises: 0030_paid_membership
Create Date: 2026-11-30 18:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.db.rls import isolate_and_grant

revision: str = "0031_wallet_topups"
down_revision: str | None = "0030_paid_membership"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "wallet_topups",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("store_id", sa.Uuid(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("bonus_fen", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=True),
        sa.Column("idempotency_key", sa.String(100), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("settled_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
    )
    op.create_index(
        "ix_wallet_topups_member", "wallet_topups", ["tenant_id", "member_id", "created_at"]
    )
    isolate_and_grant({"wallet_topups": "SELECT, INSERT, UPDATE"})
    with op.batch_alter_table("wallet_rules") as batch:
        batch.add_column(sa.Column("bonus_valid_days", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("wallet_rules") as batch:
        batch.drop_column("bonus_valid_days")
    op.drop_table("wallet_topups")
