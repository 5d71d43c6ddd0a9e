"""Paid membership (付费会员): plans, memberships and their periods.

Revision ID: 0030_paid_membership
Revises: 0029_billing
Create Date: 2026-11-30 17:20:00
"""

from collections.abc import Sequence

revision: str = "0030_paid_membership"
down_revision: str | None = "0029_billing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
