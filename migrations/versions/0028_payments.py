"""Stripe payments: the chain's Stripe account, payments and refunds, the webhook events received.

Revision ID: 0028_payments
Revises: 0027_wallet
Create Date: 2026-11-30 17:20:00
"""

from collections.abc import Sequence

revision: str = "0028_payments"
down_revision: str | None = "0027_wallet"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
