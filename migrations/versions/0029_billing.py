"""The platform bills its tenants: plans with limits, subscriptions, usage.

Revision ID: 0029_billing
Revises: 0028_payments
Create Date: 2026-11-30 17:20:00
"""

from collections.abc import Sequence

revision: str = "0029_billing"
down_revision: str | None = "0028_payments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
