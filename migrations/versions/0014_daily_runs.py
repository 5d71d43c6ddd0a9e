"""Daily jobs run at each chain's local time: ``daily_runs`` records what was enqueued.

The tier evaluation and the expiring-points announcement used to run at a fixed UTC time
for every chain; ``jobs.enqueue_due`` now claims one row per tenant, job and local date
(``nestpoint.jobs.daily``) before it enqueues the job.

Revision ID: 0014_daily_runs
Revises: 0013_order_benefits
Create Date: 2026-11-30 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.db.rls import isolate_and_grant

revision: str = "0014_daily_runs"
down_revision: str | None = "0013_order_benefits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "daily_runs",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("tenant_id", "job", "local_date"),
    )
    # Claimed, never changed: old rows may be pruned by an operator (no DELETE needed here).
    isolate_and_grant({"daily_runs": "SELECT, INSERT"})


def downgrade() -> None:
    op.drop_table("daily_runs")
