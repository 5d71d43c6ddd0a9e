"""Franchise settlement: the chain's rule, monthly periods and their lines; a closed period
and its lines are immutable (a trigger on PostgreSQL and SQLite alike); an index to read one
chain's month of benefit uses (the points ledger's is 0036's ``ix_point_entries_created``).

Revision ID: 0034_settlement
Revises: 0033_member_api
Create Date: 2026-11-30 22:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.db.rls import isolate_and_grant

revision: str = "0034_settlement"
down_revision: str | None = "0033_member_api"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
_MESSAGE = "a closed settlement period is immutable"

# What the application may do: rules are set, periods computed (draft rows updated) and
# closed, draft lines replaced (deleted and inserted). The triggers refuse any UPDATE or
# DELETE of a closed period or a closed line, whoever runs it.
_POSTGRES = [
    f"""
    CREATE FUNCTION nestpoint_settlement_closed() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{_MESSAGE}' USING ERRCODE = 'integrity_constraint_violation';
    END $$
    """,
    """
    CREATE TRIGGER settlement_periods_closed BEFORE UPDATE OR DELETE ON settlement_periods
    FOR EACH ROW WHEN (OLD.status = 'closed') EXECUTE FUNCTION nestpoint_settlement_closed()
    """,
    """
    CREATE TRIGGER settlement_lines_closed BEFORE UPDATE OR DELETE ON settlement_lines
    FOR EACH ROW WHEN (OLD.closed) EXECUTE FUNCTION nestpoint_settlement_closed()
    """,
]
_SQLITE = [
    f"""
    CREATE TRIGGER settlement_periods_closed_{verb.lower()} BEFORE {verb} ON settlement_periods
    FOR EACH ROW WHEN OLD.status = 'closed' BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END
    """
    for verb in ("UPDATE", "DELETE")
] + [
    f"""
    CREATE TRIGGER settlement_lines_closed_{verb.lower()} BEFORE {verb} ON settlement_lines
    FOR EACH ROW WHEN OLD.closed BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END
    """
    for verb in ("UPDATE", "DELETE")
]


def upgrade() -> None:
    op.create_table(
        "settlement_rules",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("point_value_fen", sa.Integer(), nullable=False),
        sa.Column("benefit_fee_fen", sa.BigInteger(), nullable=False),
        sa.Column("benefit_fees", sa.JSON(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("tenant_id"),
    )
    op.create_table(
        "settlement_periods",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("starts_at", _TS, nullable=False),
        sa.Column("ends_at", _TS, nullable=False),
        sa.Column("point_value_fen", sa.Integer(), nullable=False),
        sa.Column("computed_at", _TS, nullable=False),
        sa.Column("closed_at", _TS, nullable=True),
        sa.Column("closed_by", sa.String(100), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "month"),
    )
    op.create_table(
        "settlement_lines",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("period_id", sa.Uuid(), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("origin_month", sa.String(7), nullable=False),
        sa.Column("store_id", sa.Uuid(), nullable=True),
        sa.Column("store_code", sa.String(32), nullable=False),
        sa.Column("store_kind", sa.String(16), nullable=False),
        sa.Column("settles", sa.Boolean(), nullable=False),
        sa.Column("points_issued", sa.BigInteger(), nullable=False),
        sa.Column("points_redeemed", sa.BigInteger(), nullable=False),
        sa.Column("points_expired", sa.BigInteger(), nullable=False),
        sa.Column("benefit_uses", sa.BigInteger(), nullable=False),
        sa.Column("uses_by_benefit", sa.JSON(), nullable=False),
        sa.Column("issued_fen", sa.BigInteger(), nullable=False),
        sa.Column("redeemed_fen", sa.BigInteger(), nullable=False),
        sa.Column("expired_fen", sa.BigInteger(), nullable=False),
        sa.Column("benefits_fen", sa.BigInteger(), nullable=False),
        sa.Column("net_fen", sa.BigInteger(), nullable=False),
        sa.Column("closed", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "period_id"], ["settlement_periods.tenant_id", "settlement_periods.id"]
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
    )
    op.create_index(
        "ix_settlement_lines_period",
        "settlement_lines",
        ["tenant_id", "period_id", "store_code"],
    )
    op.create_index("ix_benefit_uses_settlement", "benefit_uses", ["tenant_id", "created_at"])
    for statement in _POSTGRES if op.get_bind().dialect.name == "postgresql" else _SQLITE:
        op.execute(statement)
    isolate_and_grant(
        {
            "settlement_rules": "SELECT, INSERT, UPDATE",
            "settlement_periods": "SELECT, INSERT, UPDATE",
            "settlement_lines": "SELECT, INSERT, DELETE",
        }
    )


def downgrade() -> None:
    op.drop_index("ix_benefit_uses_settlement", table_name="benefit_uses")
    op.drop_table("settlement_lines")
    op.drop_table("settlement_periods")
    op.drop_table("settlement_rules")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION nestpoint_settlement_closed()")
