"""Orders record the pricing benefits that discounted them; tier changes indexed by time.

* ``orders.discount_fen`` and ``order_lines.benefit_code`` / ``discount_fen``: what the
  member's benefits (会员价, 会员日) took off, per line (``benefits.pricing``).
* ``ix_tier_changes_time``: the benefits' 5-minute sync reads the tier changes since its
  last run; without it that was a scan of the tenant's changes.

Revision ID: 0013_order_benefits
Revises: 0012_entitlements_benefit_index
Create Date: 2026-11-30 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_order_benefits"
down_revision: str | None = "0012_entitlements_benefit_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "orders", sa.Column("discount_fen", sa.BigInteger(), nullable=False, server_default="0")
    )
    op.add_column(
        "order_lines",
        sa.Column("benefit_code", sa.String(length=64), nullable=False, server_default=""),
    )
    op.add_column(
        "order_lines",
        sa.Column("discount_fen", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_index("ix_tier_changes_time", "tier_changes", ["tenant_id", "changed_at"])


def downgrade() -> None:
    op.drop_index("ix_tier_changes_time", table_name="tier_changes")
    with op.batch_alter_table("order_lines") as batch:
        batch.drop_column("discount_fen")
        batch.drop_column("benefit_code")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("discount_fen")
