"""Loyalty core: members, children, consent, identities, orders, points ledger, tiers.

Revision ID: 0003_loyalty
Revises: 0001_foundation
Create Date: 2026-11-23 07:27:16.640650
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.db import rls

revision: str = "0003_loyalty"
down_revision: str | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "loyalty_programs",
        sa.Column("points_policy", sa.JSON(), nullable=False),
        sa.Column("earn_rules", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_loyalty_programs_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_loyalty_programs")),
        sa.UniqueConstraint("tenant_id", name=op.f("uq_loyalty_programs_tenant_id")),
    )
    op.create_table(
        "tier_definitions",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("earn_rate_percent", sa.Integer(), nullable=False),
        sa.Column("redeem_cap_percent", sa.Integer(), nullable=False),
        sa.Column("protection_days", sa.Integer(), nullable=False),
        sa.Column("benefits", sa.JSON(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_tier_definitions_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_tier_definitions")),
        sa.UniqueConstraint("tenant_id", "code", name=op.f("uq_tier_definitions_tenant_id_code")),
        sa.UniqueConstraint("tenant_id", "rank", name=op.f("uq_tier_definitions_tenant_id_rank")),
    )
    op.create_table(
        "members",
        sa.Column("phone_hash", sa.String(length=64), nullable=False),
        sa.Column("phone_enc", sa.Text(), nullable=False),
        sa.Column("name_enc", sa.Text(), nullable=True),
        sa.Column("gender", sa.String(length=8), nullable=False),
        sa.Column("birthday", sa.Date(), nullable=True),
        sa.Column("home_store_id", sa.Uuid(), nullable=True),
        sa.Column("join_channel", sa.String(length=16), nullable=False),
        sa.Column("join_store_id", sa.Uuid(), nullable=True),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("merged_into_id", sa.Uuid(), nullable=True),
        sa.Column("child_data_consent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("child_data_consent_source", sa.String(length=50), nullable=True),
        sa.Column("family_id", sa.Uuid(), nullable=True),
        sa.Column("tier_code", sa.String(length=32), nullable=True),
        sa.Column("growth_value", sa.Integer(), nullable=False),
        sa.Column("tier_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tier_protected_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_order_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "home_store_id"],
            ["stores.tenant_id", "stores.id"],
            name=op.f("fk_members_tenant_id_home_store_id_stores"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "join_store_id"],
            ["stores.tenant_id", "stores.id"],
            name=op.f("fk_members_tenant_id_join_store_id_stores"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_members_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_members")),
        sa.UniqueConstraint(
            "tenant_id", "phone_hash", name=op.f("uq_members_tenant_id_phone_hash")
        ),
    )
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.create_index(
            "ix_members_tenant_id_home_store_id", ["tenant_id", "home_store_id"], unique=False
        )
        batch_op.create_index(
            "ix_members_tenant_id_joined_at", ["tenant_id", "joined_at"], unique=False
        )

    op.create_table(
        "children",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("nickname", sa.String(length=50), nullable=False),
        sa.Column("gender", sa.String(length=8), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "member_id"],
            ["members.tenant_id", "members.id"],
            name=op.f("fk_children_tenant_id_member_id_members"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_children_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_children")),
    )
    with op.batch_alter_table("children", schema=None) as batch_op:
        batch_op.create_index(
            "ix_children_tenant_id_member_id", ["tenant_id", "member_id"], unique=False
        )

    op.create_table(
        "growth_entries",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("cause_id", sa.String(length=100), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "member_id"],
            ["members.tenant_id", "members.id"],
            name=op.f("fk_growth_entries_tenant_id_member_id_members"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_growth_entries_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_growth_entries")),
    )
    with op.batch_alter_table("growth_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_growth_entries_member", ["tenant_id", "member_id", "occurred_at"], unique=False
        )

    op.create_table(
        "member_consents",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=50), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "member_id"],
            ["members.tenant_id", "members.id"],
            name=op.f("fk_member_consents_tenant_id_member_id_members"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_member_consents_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_member_consents")),
        sa.UniqueConstraint(
            "tenant_id",
            "member_id",
            "channel",
            name=op.f("uq_member_consents_tenant_id_member_id_channel"),
        ),
    )
    op.create_table(
        "member_identities",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "member_id"],
            ["members.tenant_id", "members.id"],
            name=op.f("fk_member_identities_tenant_id_member_id_members"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_member_identities_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_member_identities")),
        sa.UniqueConstraint(
            "tenant_id", "kind", "value", name=op.f("uq_member_identities_tenant_id_kind_value")
        ),
    )
    with op.batch_alter_table("member_identities", schema=None) as batch_op:
        batch_op.create_index(
            "ix_member_identities_tenant_id_member_id", ["tenant_id", "member_id"], unique=False
        )

    op.create_table(
        "orders",
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("external_id", sa.String(length=100), nullable=False),
        sa.Column("store_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("total_fen", sa.BigInteger(), nullable=False),
        sa.Column("cash_fen", sa.BigInteger(), nullable=False),
        sa.Column("points_used", sa.BigInteger(), nullable=False),
        sa.Column("points_value_fen", sa.BigInteger(), nullable=False),
        sa.Column("coupons", sa.JSON(), nullable=False),
        sa.Column("points_earned", sa.BigInteger(), nullable=False),
        sa.Column("refunded_fen", sa.BigInteger(), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "member_id"],
            ["members.tenant_id", "members.id"],
            name=op.f("fk_orders_tenant_id_member_id_members"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "store_id"],
            ["stores.tenant_id", "stores.id"],
            name=op.f("fk_orders_tenant_id_store_id_stores"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_orders_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_orders")),
        sa.UniqueConstraint(
            "tenant_id",
            "channel",
            "external_id",
            name=op.f("uq_orders_tenant_id_channel_external_id"),
        ),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(
            "ix_orders_member", ["tenant_id", "member_id", "paid_at"], unique=False
        )
        batch_op.create_index("ix_orders_store", ["tenant_id", "store_id", "paid_at"], unique=False)

    op.create_table(
        "point_accounts",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("debt", sa.BigInteger(), nullable=False),
        sa.Column("held", sa.BigInteger(), nullable=False),
        sa.Column("lifetime_earned", sa.BigInteger(), nullable=False),
        sa.Column("earned_day", sa.String(length=10), nullable=False),
        sa.Column("earned_today", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "member_id"],
            ["members.tenant_id", "members.id"],
            name=op.f("fk_point_accounts_tenant_id_member_id_members"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_point_accounts_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "member_id", name=op.f("pk_point_accounts")),
    )
    op.create_table(
        "point_entries",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("lot_id", sa.Uuid(), nullable=True),
        sa.Column("cause_type", sa.String(length=16), nullable=False),
        sa.Column("cause_id", sa.String(length=100), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("idempotency_key", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "member_id"],
            ["members.tenant_id", "members.id"],
            name=op.f("fk_point_entries_tenant_id_member_id_members"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_point_entries_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_point_entries")),
        sa.UniqueConstraint(
            "tenant_id", "idempotency_key", name=op.f("uq_point_entries_tenant_id_idempotency_key")
        ),
    )
    with op.batch_alter_table("point_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_point_entries_cause", ["tenant_id", "cause_type", "cause_id"], unique=False
        )
        batch_op.create_index(
            "ix_point_entries_member", ["tenant_id", "member_id", "created_at"], unique=False
        )

    op.create_table(
        "point_holds",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("store_id", sa.Uuid(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("idempotency_key", sa.String(length=100), nullable=True),
        sa.Column("order_ref", sa.String(length=150), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "member_id"],
            ["members.tenant_id", "members.id"],
            name=op.f("fk_point_holds_tenant_id_member_id_members"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_point_holds_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_point_holds")),
        sa.UniqueConstraint(
            "tenant_id", "idempotency_key", name=op.f("uq_point_holds_tenant_id_idempotency_key")
        ),
    )
    with op.batch_alter_table("point_holds", schema=None) as batch_op:
        batch_op.create_index(
            "ix_point_holds_open", ["tenant_id", "status", "expires_at"], unique=False
        )

    op.create_table(
        "point_lots",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("line_no", sa.Integer(), nullable=True),
        sa.Column("earned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "member_id"],
            ["members.tenant_id", "members.id"],
            name=op.f("fk_point_lots_tenant_id_member_id_members"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_point_lots_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_point_lots")),
    )
    with op.batch_alter_table("point_lots", schema=None) as batch_op:
        batch_op.create_index("ix_point_lots_expiry", ["tenant_id", "expires_at"], unique=False)
        batch_op.create_index(
            "ix_point_lots_order_line", ["tenant_id", "order_id", "line_no"], unique=False
        )
        batch_op.create_index(
            "ix_point_lots_spendable", ["tenant_id", "member_id", "expires_at"], unique=False
        )

    op.create_table(
        "tier_changes",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("from_tier", sa.String(length=32), nullable=True),
        sa.Column("to_tier", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("growth_value", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "member_id"],
            ["members.tenant_id", "members.id"],
            name=op.f("fk_tier_changes_tenant_id_member_id_members"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_tier_changes_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_tier_changes")),
    )
    with op.batch_alter_table("tier_changes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tier_changes_member", ["tenant_id", "member_id", "changed_at"], unique=False
        )
        batch_op.create_index("ix_tier_changes_run", ["tenant_id", "run_id"], unique=False)

    op.create_table(
        "order_lines",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price_fen", sa.BigInteger(), nullable=False),
        sa.Column("paid_fen", sa.BigInteger(), nullable=False),
        sa.Column("points_earned", sa.BigInteger(), nullable=False),
        sa.Column("refunded_quantity", sa.Integer(), nullable=False),
        sa.Column("refunded_fen", sa.BigInteger(), nullable=False),
        sa.Column("points_reversed", sa.BigInteger(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "order_id"],
            ["orders.tenant_id", "orders.id"],
            name=op.f("fk_order_lines_tenant_id_order_id_orders"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_order_lines_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "order_id", "line_no", name=op.f("pk_order_lines")),
    )
    op.create_table(
        "point_hold_allocations",
        sa.Column("hold_id", sa.Uuid(), nullable=False),
        sa.Column("lot_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "hold_id"],
            ["point_holds.tenant_id", "point_holds.id"],
            name=op.f("fk_point_hold_allocations_tenant_id_hold_id_point_holds"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "lot_id"],
            ["point_lots.tenant_id", "point_lots.id"],
            name=op.f("fk_point_hold_allocations_tenant_id_lot_id_point_lots"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_point_hold_allocations_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "hold_id", "lot_id", name=op.f("pk_point_hold_allocations")
        ),
    )
    op.create_table(
        "refunds",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("external_id", sa.String(length=100), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("points_reversed", sa.BigInteger(), nullable=False),
        sa.Column("points_returned", sa.BigInteger(), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "order_id"],
            ["orders.tenant_id", "orders.id"],
            name=op.f("fk_refunds_tenant_id_order_id_orders"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_refunds_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_refunds")),
        sa.UniqueConstraint(
            "tenant_id",
            "order_id",
            "external_id",
            name=op.f("uq_refunds_tenant_id_order_id_external_id"),
        ),
    )

    grants = {
        "loyalty_programs": "SELECT, INSERT, UPDATE",
        "tier_definitions": "SELECT, INSERT, UPDATE, DELETE",
        "members": "SELECT, INSERT, UPDATE",
        "children": "SELECT, INSERT, UPDATE, DELETE",
        "member_consents": "SELECT, INSERT, UPDATE, DELETE",
        "member_identities": "SELECT, INSERT, UPDATE, DELETE",
        "orders": "SELECT, INSERT, UPDATE",
        "order_lines": "SELECT, INSERT, UPDATE",
        "refunds": "SELECT, INSERT",
        "point_accounts": "SELECT, INSERT, UPDATE",
        "point_lots": "SELECT, INSERT, UPDATE",
        # Ledgers are append-only for the application: no UPDATE, no DELETE.
        "point_entries": "SELECT, INSERT",
        "point_holds": "SELECT, INSERT, UPDATE",
        "point_hold_allocations": "SELECT, INSERT",
        "growth_entries": "SELECT, INSERT",
        "tier_changes": "SELECT, INSERT",
    }
    rls.isolate_and_grant(grants)


def downgrade() -> None:
    op.drop_table("refunds")
    op.drop_table("point_hold_allocations")
    op.drop_table("order_lines")
    with op.batch_alter_table("tier_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_tier_changes_run")
        batch_op.drop_index("ix_tier_changes_member")

    op.drop_table("tier_changes")
    with op.batch_alter_table("point_lots", schema=None) as batch_op:
        batch_op.drop_index("ix_point_lots_spendable")
        batch_op.drop_index("ix_point_lots_order_line")
        batch_op.drop_index("ix_point_lots_expiry")

    op.drop_table("point_lots")
    with op.batch_alter_table("point_holds", schema=None) as batch_op:
        batch_op.drop_index("ix_point_holds_open")

    op.drop_table("point_holds")
    with op.batch_alter_table("point_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_point_entries_member")
        batch_op.drop_index("ix_point_entries_cause")

    op.drop_table("point_entries")
    op.drop_table("point_accounts")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_store")
        batch_op.drop_index("ix_orders_member")

    op.drop_table("orders")
    with op.batch_alter_table("member_identities", schema=None) as batch_op:
        batch_op.drop_index("ix_member_identities_tenant_id_member_id")

    op.drop_table("member_identities")
    op.drop_table("member_consents")
    with op.batch_alter_table("growth_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_growth_entries_member")

    op.drop_table("growth_entries")
    with op.batch_alter_table("children", schema=None) as batch_op:
        batch_op.drop_index("ix_children_tenant_id_member_id")

    op.drop_table("children")
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_index("ix_members_tenant_id_joined_at")
        batch_op.drop_index("ix_members_tenant_id_home_store_id")

    op.drop_table("members")
    op.drop_table("tier_definitions")
    op.drop_table("loyalty_programs")
