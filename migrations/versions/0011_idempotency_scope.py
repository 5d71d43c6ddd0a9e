"""Idempotency scopes are up to 64 characters: a plugin's keys live in ``plugin:<id>``.

Revision ID: 0011_idempotency_scope
Revises: 0010_benefits
Create Date: 2026-11-30 00:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_idempotency_scope"
down_revision: str | None = "0010_benefits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.alter_column("scope", existing_type=sa.String(length=16), type_=sa.String(length=64))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.alter_column("scope", existing_type=sa.String(length=64), type_=sa.String(length=16))
