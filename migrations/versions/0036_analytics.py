"""Analytics: an index for the points ledger's entries of a period.

* ``ix_point_entries_created``: the chain's ledger entries by time (the points redemption
  rate reads the entries of a period; ``ix_point_entries_member`` leads with the member and
  ``ix_point_entries_cause`` with the cause). Orders of a period use ``ix_orders_paid``
  (migration 0035), ``ix_orders_store`` with a store and ``ix_orders_member`` per member.

Nothing is materialised: every figure is computed from orders, their lines and the ledger
when asked (docs/analytics.md).

Revision ID: 0036_analytics
Revises: 0035_member_changes
Create Date: 2026-11-30 22:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0036_analytics"
down_revision: str | None = "0035_member_changes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_point_entries_created", "point_entries", ["tenant_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_point_entries_created", table_name="point_entries")
