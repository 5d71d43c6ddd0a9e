"""Stored value (储值): rules, accounts, lots, the append-only ledger; orders' stored value.

Revision ID: 0027_wallet
Revises: 0026_referrals
Create Date: 2026-11-30 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.db.rls import isolate_and_grant

revision: str = "0027_wallet"
down_revision: str | None = "0026_referrals"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def _tenant_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="RESTRICT")


def _member_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"])


def upgrade() -> None:
    op.create_table(
        "wallet_rules",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("bonus_tiers", sa.JSON(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        _tenant_fk(),
        sa.PrimaryKeyConstraint("tenant_id"),
    )
    op.create_table(
        "wallet_accounts",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("principal_fen", sa.BigInteger(), nullable=False),
        sa.Column("bonus_fen", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        _tenant_fk(),
        _member_fk(),
        sa.PrimaryKeyConstraint("tenant_id", "member_id"),
    )
    op.create_table(
        "wallet_lots",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("bucket", sa.String(length=16), nullable=False),
        sa.Column("store_id", sa.Uuid(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=True),
        _tenant_fk(),
        _member_fk(),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
    )
    op.create_index(
        "ix_wallet_lots_member", "wallet_lots", ["tenant_id", "member_id", "bucket", "created_at"]
    )
    op.create_table(
        "wallet_entries",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("principal_fen", sa.BigInteger(), nullable=False),
        sa.Column("bonus_fen", sa.BigInteger(), nullable=False),
        sa.Column("principal_after", sa.BigInteger(), nullable=False),
        sa.Column("bonus_after", sa.BigInteger(), nullable=False),
        sa.Column("cause_type", sa.String(length=16), nullable=False),
        sa.Column("cause_id", sa.String(length=100), nullable=False),
        sa.Column("store_id", sa.Uuid(), nullable=True),
        sa.Column("tender", sa.String(length=16), nullable=True),
        sa.Column("idempotency_key", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        _tenant_fk(),
        _member_fk(),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
    )
    op.create_index(
        "ix_wallet_entries_member", "wallet_entries", ["tenant_id", "member_id", "created_at"]
    )
    op.create_index(
        "ix_wallet_entries_cause", "wallet_entries", ["tenant_id", "cause_type", "cause_id"]
    )
    with op.batch_alter_table("orders") as batch:
        batch.add_column(
            sa.Column("stored_value_fen", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("stored_value_bonus_fen", sa.BigInteger(), nullable=False, server_default="0")
        )
    isolate_and_grant(
        {
            "wallet_rules": "SELECT, INSERT, UPDATE",
            "wallet_accounts": "SELECT, INSERT, UPDATE",
            "wallet_lots": "SELECT, INSERT, UPDATE",
            "wallet_entries": "SELECT, INSERT",  # the ledger: append-only
        }
    )


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("stored_value_bonus_fen")
        batch.drop_column("stored_value_fen")
    op.drop_table("wallet_entries")
    op.drop_table("wallet_lots")
    op.drop_table("wallet_accounts")
    op.drop_table("wallet_rules")
