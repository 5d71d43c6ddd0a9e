"""The outbox's per-tenant index is in the relay's (and the event listing's) full order.

The relay claims a tenant's oldest pending events, ``ORDER BY occurred_at, id``, and the
event listing pages in the same order. The index held ``(tenant_id, occurred_at)`` only:
events that share a moment (those of one transaction; in the benchmark's ceiling replay,
tens of thousands) had to be sorted by id on every claim, on disk when the group was
large. ``(tenant_id, occurred_at, id)`` serves both in order; it replaces the old index,
so an order writes no extra index entry.

Revision ID: 0009_outbox_order_index
Revises: 0008_plugin_enabled_at
Create Date: 2026-11-29 22:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_outbox_order_index"
down_revision: str | None = "0008_plugin_enabled_at"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_outbox_events_tenant_id_occurred_at", table_name="outbox_events")
    op.create_index(
        "ix_outbox_events_tenant_id_occurred_at_id",
        "outbox_events",
        ["tenant_id", "occurred_at", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_events_tenant_id_occurred_at_id", table_name="outbox_events")
    op.create_index(
        "ix_outbox_events_tenant_id_occurred_at", "outbox_events", ["tenant_id", "occurred_at"]
    )
