"""API additions: the listings' indexes, a member's phone changed with a one-time code.

* ``ix_orders_paid``: the chain's orders newest first, and by local day, without a store or
  member (``ix_orders_store`` and ``ix_orders_member`` serve those filters);
* ``ix_refunds_created``: refunds newest first and by day;
* ``ix_point_holds_member`` and ``ix_point_holds_store``: holds of a member or a store, newest
  first (``ix_point_holds_open`` leads with the status, for the timeout job);
* ``member_phone_changes``: a phone change awaiting its code (only the code's keyed hash);
* ``messages.sealed``: a message's address and secret variables (the code to a new phone),
  sealed under the member's key and wiped once the message settles.

Revision ID: 0035_member_changes
Revises: 0034_settlement
Create Date: 2026-11-30 22:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.db.rls import isolate_and_grant

revision: str = "0035_member_changes"
down_revision: str | None = "0034_settlement"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
_INDEXES = (
    ("ix_orders_paid", "orders", ["tenant_id", "paid_at"]),
    ("ix_refunds_created", "refunds", ["tenant_id", "created_at"]),
    ("ix_point_holds_member", "point_holds", ["tenant_id", "member_id", "created_at"]),
    ("ix_point_holds_store", "point_holds", ["tenant_id", "store_id", "created_at"]),
)


def upgrade() -> None:
    for name, table, columns in _INDEXES:
        op.create_index(name, table, columns)
    op.create_table(
        "member_phone_changes",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("new_phone_hash", sa.String(64), nullable=False),
        sa.Column("new_phone_enc", sa.Text(), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=True),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("resolved_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
    )
    op.create_index(
        "ix_member_phone_changes_member",
        "member_phone_changes",
        ["tenant_id", "member_id", "created_at"],
    )
    isolate_and_grant({"member_phone_changes": "SELECT, INSERT, UPDATE, DELETE"})
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("sealed", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("sealed")
    op.drop_table("member_phone_changes")
    for name, table, _ in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
