"""A plugin setting records since when it has been on (``plugin_enablements.enabled_at``).

An event goes to the plugins that were enabled for its tenant and store when it happened,
not when it is relayed: the relay compares the setting's ``enabled_at`` with the event's
``occurred_at``. Rows that are on today count from their last change (``updated_at``).

Revision ID: 0008_plugin_enabled_at
Revises: 0007_member_lookup (depends on 0002_plugins)
Create Date: 2026-11-29 21:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_plugin_enabled_at"
down_revision: str | None = "0007_member_lookup"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "0002_plugins"  # the table it alters


def upgrade() -> None:
    with op.batch_alter_table("plugin_enablements") as batch:
        batch.add_column(sa.Column("enabled_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE plugin_enablements SET enabled_at = updated_at WHERE enabled")


def downgrade() -> None:
    with op.batch_alter_table("plugin_enablements") as batch:
        batch.drop_column("enabled_at")
