"""Members' data exports (right of access and copy): the member and the reason on the job.

Revision ID: 0018_member_data_exports
Revises: 0017_exports
Create Date: 2026-12-14 09:00:00

Two nullable columns on ``exports``, set only for a ``member_data`` export; the table's
row-level security and grants stay as ``0017_exports`` made them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_member_data_exports"
down_revision: str | None = "0017_exports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("exports") as batch:
        batch.add_column(sa.Column("member_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("reason", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("exports") as batch:
        batch.drop_column("reason")
        batch.drop_column("member_id")
