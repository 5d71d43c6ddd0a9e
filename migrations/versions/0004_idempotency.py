"""One idempotency mechanism: the idempotency_keys table replaces the per-table request
hashes and unique keys; merged-away points accounts carry a mark.

Existing orders and refunds are copied into the key table, so a till retrying across the
upgrade still gets its first answer.

Revision ID: 0004_idempotency
Revises: 0003_loyalty
Create Date: 2026-11-29 15:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.db import rls
from nestpoint.db.sql import uuid_text_sql

revision: str = "0004_idempotency"
down_revision: str | None = "0003_loyalty"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_idempotency_keys_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "scope", "key", name=op.f("pk_idempotency_keys")),
    )
    with rls.owner_sees_all_rows("orders", "refunds"):
        _copy_order_and_refund_answers()
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("request_hash")
    with op.batch_alter_table("refunds") as batch:
        batch.drop_column("request_hash")
        batch.drop_column("response")
    with op.batch_alter_table("point_entries") as batch:
        batch.drop_constraint("uq_point_entries_tenant_id_idempotency_key", type_="unique")
    with op.batch_alter_table("point_holds") as batch:
        batch.drop_constraint("uq_point_holds_tenant_id_idempotency_key", type_="unique")
    with op.batch_alter_table("point_accounts") as batch:
        batch.add_column(sa.Column("merged_into_id", sa.Uuid(), nullable=True))
    # Accounts of members merged before this revision are marked too.
    with rls.owner_sees_all_rows("point_accounts", "members"):
        _mark_merged_accounts()
    rls.isolate_tenant_table("idempotency_keys")
    # Answers are written once and never changed: no UPDATE, no DELETE for the application.
    rls.grant(rls.app_role(), "idempotency_keys", "SELECT, INSERT")


def _mark_merged_accounts() -> None:
    op.execute(
        "UPDATE point_accounts SET merged_into_id = (SELECT m.merged_into_id FROM members m"
        " WHERE m.tenant_id = point_accounts.tenant_id AND m.id = point_accounts.member_id)"
        " WHERE EXISTS (SELECT 1 FROM members m WHERE m.tenant_id = point_accounts.tenant_id"
        " AND m.id = point_accounts.member_id AND m.status = 'merged')"
    )


def _copy_order_and_refund_answers() -> None:
    op.execute(
        "INSERT INTO idempotency_keys"
        " (tenant_id, scope, key, request_hash, status_code, response, created_at)"
        " SELECT tenant_id, 'order', channel || '/' || external_id, request_hash, 201,"
        " response, created_at FROM orders"
    )
    order_id = uuid_text_sql(op.get_bind().dialect.name, "r.order_id")
    op.execute(
        "INSERT INTO idempotency_keys"
        " (tenant_id, scope, key, request_hash, status_code, response, created_at)"
        f" SELECT r.tenant_id, 'refund', {order_id} || '/' || r.external_id,"
        " r.request_hash, 201, r.response, r.created_at FROM refunds r"
    )


def downgrade() -> None:
    with op.batch_alter_table("point_accounts") as batch:
        batch.drop_column("merged_into_id")
    with op.batch_alter_table("point_holds") as batch:
        batch.create_unique_constraint(
            "uq_point_holds_tenant_id_idempotency_key", ["tenant_id", "idempotency_key"]
        )
    with op.batch_alter_table("point_entries") as batch:
        batch.create_unique_constraint(
            "uq_point_entries_tenant_id_idempotency_key", ["tenant_id", "idempotency_key"]
        )
    with op.batch_alter_table("refunds") as batch:
        batch.add_column(
            sa.Column("request_hash", sa.String(64), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("response", sa.JSON(), nullable=False, server_default="{}"))
    with op.batch_alter_table("orders") as batch:
        batch.add_column(
            sa.Column("request_hash", sa.String(64), nullable=False, server_default="")
        )
    op.drop_table("idempotency_keys")
