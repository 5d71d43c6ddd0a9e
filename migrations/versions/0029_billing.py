"""The platform bills its tenants: plans with limits, subscriptions, usage.

Platform tables (like ``tenants``): no RLS (the tenant they are about is ``chain_id``, as a
``tenant_id`` column means a row-level-isolated table here); the app role may select,
insert and update them, never delete; the warnings are append-only. The default plans are
seeded here (the operator changes them with ``PUT /api/v1/billing/plans/{code}`` or
``nestpoint billing plans set``).

Revision ID: 0029_billing
Revises: 0028_payments
Create Date: 2026-11-30 17:20:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from nestpoint.db.rls import app_role, grant

revision: str = "0029_billing"
down_revision: str | None = "0028_payments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)

# code, name, monthly price (fen), members, stores, plugins, messages a month (None: unlimited)
DEFAULT_PLANS = (
    ("starter", "Starter 起步版", 69_900, 5_000, 5, 5, 10_000),
    ("growth", "Growth 成长版", 299_900, 50_000, 30, 10, 100_000),
    ("enterprise", "Enterprise 企业版", 1_999_900, None, None, None, None),
)


def upgrade() -> None:
    plans = op.create_table(
        "billing_plans",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("price_fen", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("max_members", sa.BigInteger(), nullable=True),
        sa.Column("max_stores", sa.Integer(), nullable=True),
        sa.Column("max_plugins", sa.Integer(), nullable=True),
        sa.Column("max_messages", sa.BigInteger(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.CheckConstraint("price_fen >= 0", name=op.f("ck_billing_plans_price")),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_billing_plans")),
    )
    op.create_table(
        "billing_subscriptions",
        sa.Column("chain_id", sa.Uuid(), nullable=False),
        sa.Column("plan_code", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("current_period_start", _TS, nullable=True),
        sa.Column("current_period_end", _TS, nullable=True),
        sa.Column("paid_through", _TS, nullable=True),
        sa.Column("failed_through", _TS, nullable=True),
        sa.Column("state_event_at", sa.BigInteger(), nullable=False),
        sa.Column("stripe_customer_id", sa.String(length=64), nullable=True),
        sa.Column("stripe_subscription_id", sa.String(length=64), nullable=True),
        sa.Column("stripe_plan_id", sa.String(length=100), nullable=True),
        sa.Column("sync_state", sa.String(length=16), nullable=False),
        sa.Column("sync_intent", sa.Uuid(), nullable=False),
        sa.Column("sync_attempts", sa.Integer(), nullable=False),
        sa.Column("sync_error", sa.String(length=500), nullable=False),
        sa.Column("requested_at", _TS, nullable=False),
        sa.Column("synced_at", _TS, nullable=True),
        sa.Column("canceled_at", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.CheckConstraint(
            "status IN ('trialing', 'active', 'past_due', 'canceled')",
            name=op.f("ck_billing_subscriptions_status"),
        ),
        sa.CheckConstraint(
            "sync_state IN ('pending', 'synced')", name=op.f("ck_billing_subscriptions_sync_state")
        ),
        sa.ForeignKeyConstraint(
            ["chain_id"],
            ["tenants.id"],
            ondelete="RESTRICT",
            name=op.f("fk_billing_subscriptions_chain_id_tenants"),
        ),
        sa.ForeignKeyConstraint(
            ["plan_code"],
            ["billing_plans.code"],
            ondelete="RESTRICT",
            name=op.f("fk_billing_subscriptions_plan_code_billing_plans"),
        ),
        sa.PrimaryKeyConstraint("chain_id", name=op.f("pk_billing_subscriptions")),
        sa.UniqueConstraint(
            "stripe_subscription_id", name=op.f("uq_billing_subscriptions_stripe_subscription_id")
        ),
    )
    op.create_index(
        "ix_billing_subscriptions_sync", "billing_subscriptions", ["sync_state", "requested_at"]
    )
    op.create_table(
        "billing_usage",
        sa.Column("chain_id", sa.Uuid(), nullable=False),
        sa.Column("members", sa.BigInteger(), nullable=False),
        sa.Column("stores", sa.Integer(), nullable=False),
        sa.Column("plugins", sa.Integer(), nullable=False),
        sa.Column("messages", sa.BigInteger(), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("refreshed_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["chain_id"],
            ["tenants.id"],
            ondelete="RESTRICT",
            name=op.f("fk_billing_usage_chain_id_tenants"),
        ),
        sa.PrimaryKeyConstraint("chain_id", name=op.f("pk_billing_usage")),
    )
    op.create_table(
        "billing_warnings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("chain_id", sa.Uuid(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("limit_name", sa.String(length=16), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("limit_value", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.CheckConstraint("threshold IN (80, 100)", name=op.f("ck_billing_warnings_threshold")),
        sa.ForeignKeyConstraint(
            ["chain_id"],
            ["tenants.id"],
            ondelete="RESTRICT",
            name=op.f("fk_billing_warnings_chain_id_tenants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_warnings")),
        sa.UniqueConstraint(
            "chain_id",
            "period",
            "limit_name",
            "threshold",
            name=op.f("uq_billing_warnings_chain_id_period_limit_name_threshold"),
        ),
    )
    now = datetime.now(UTC)
    op.bulk_insert(
        plans,
        [
            {
                "code": code,
                "name": name,
                "price_fen": price,
                "currency": "CNY",
                "max_members": members,
                "max_stores": stores,
                "max_plugins": plugins,
                "max_messages": messages,
                "active": True,
                "created_at": now,
                "updated_at": now,
            }
            for code, name, price, members, stores, plugins, messages in DEFAULT_PLANS
        ],
    )
    role = app_role()
    grant(role, "billing_plans", "SELECT, INSERT, UPDATE")
    grant(role, "billing_subscriptions", "SELECT, INSERT, UPDATE")
    grant(role, "billing_usage", "SELECT, INSERT, UPDATE")
    grant(role, "billing_warnings", "SELECT, INSERT")  # append-only


def downgrade() -> None:
    op.drop_table("billing_warnings")
    op.drop_table("billing_usage")
    op.drop_index("ix_billing_subscriptions_sync", table_name="billing_subscriptions")
    op.drop_table("billing_subscriptions")
    op.drop_table("billing_plans")
