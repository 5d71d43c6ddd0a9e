"""Wide integers: a member's growth value (成长值) is 64-bit.

Growth value accumulates over a member's whole life with the chain (one per yuan, plus
bonuses), and one order at the API's maximum adds 10^8: a 32-bit column overflowed on
PostgreSQL ("integer out of range", a 500 after the order was computed). Tier thresholds
stay 32-bit: the schema caps them at 10^9 (see nestpoint/limits.py).

SQLite's INTEGER already stores 64-bit values, and rebuilding ``members`` there (what a
batch alter does) would gain nothing, so only PostgreSQL is altered.

Revision ID: 0006_wide_integers
Revises: 0003_loyalty
Create Date: 2026-11-29 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_wide_integers"
down_revision: str | None = "0005_member_privacy"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if _postgresql():
        op.alter_column(
            "members",
            "growth_value",
            type_=sa.BigInteger(),
            existing_type=sa.Integer(),
            existing_nullable=False,
        )


def downgrade() -> None:
    if _postgresql():
        op.alter_column(
            "members",
            "growth_value",
            type_=sa.Integer(),
            existing_type=sa.BigInteger(),
            existing_nullable=False,
        )
