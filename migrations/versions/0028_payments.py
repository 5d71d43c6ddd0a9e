"""Stripe payments: the chain's Stripe account, payments and refunds, the webhook events received.

Revision ID: 0028_payments
Revises: 0027_wallet
Create Date: 2026-11-30 17:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.db.rls import app_role, grant, isolate_and_grant

revision: str = "0028_payments"
down_revision: str | None = "0027_wallet"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
# An event's raw body is never rewritten: the application may update only its state.
EVENT_RIGHTS = "SELECT, INSERT, UPDATE (status, attempts, note, applied_at)"


def _tenant_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="RESTRICT")


def _event_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("object_id", sa.String(255), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("note", sa.String(300), nullable=False),
        sa.Column("received_at", _TS, nullable=False),
        sa.Column("applied_at", _TS, nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "stripe_accounts",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("secret_key_enc", sa.Text(), nullable=False),
        sa.Column("webhook_secret_enc", sa.Text(), nullable=False),
        sa.Column("publishable_key", sa.String(255), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
        _tenant_fk(),
        sa.PrimaryKeyConstraint("tenant_id"),
    )
    op.create_table(
        "stripe_customers",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.String(255), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        _tenant_fk(),
        sa.PrimaryKeyConstraint("tenant_id", "member_id"),
    )
    op.create_table(
        "payments",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=True),
        sa.Column("store_id", sa.Uuid(), nullable=True),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("payment_method", sa.String(255), nullable=True),
        sa.Column("description", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("stripe_payment_intent", sa.String(255), nullable=True),
        sa.Column("failure", sa.String(300), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", _TS, nullable=True),
        sa.Column("refunded_fen", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("settled_at", _TS, nullable=True),
        _tenant_fk(),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "purpose", "subject_id", name="uq_payments_subject"),
    )
    op.create_index("ix_payments_intent", "payments", ["tenant_id", "stripe_payment_intent"])
    op.create_index("ix_payments_status", "payments", ["tenant_id", "status", "created_at"])
    op.create_table(
        "payment_refunds",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("cause", sa.String(100), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("stripe_refund", sa.String(255), nullable=True),
        sa.Column("failure", sa.String(300), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("settled_at", _TS, nullable=True),
        _tenant_fk(),
        sa.ForeignKeyConstraint(["tenant_id", "payment_id"], ["payments.tenant_id", "payments.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "payment_id", "cause", name="uq_payment_refunds_cause"),
    )
    op.create_index(
        "ix_payment_refunds_status", "payment_refunds", ["tenant_id", "status", "created_at"]
    )
    op.create_table(
        "stripe_events",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        *_event_columns(),
        _tenant_fk(),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "event_id", name="uq_stripe_events_event"),
    )
    op.create_index("ix_stripe_events_object", "stripe_events", ["tenant_id", "object_id"])
    op.create_index(
        "ix_stripe_events_status", "stripe_events", ["tenant_id", "status", "received_at"]
    )
    op.create_table(
        "platform_stripe_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        *_event_columns(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", name="uq_platform_stripe_events_event"),
    )
    op.create_index("ix_platform_stripe_events_object", "platform_stripe_events", ["object_id"])
    op.create_index(
        "ix_platform_stripe_events_status", "platform_stripe_events", ["status", "received_at"]
    )
    isolate_and_grant(
        {
            "stripe_accounts": "SELECT, INSERT, UPDATE",
            "stripe_customers": "SELECT, INSERT",
            "payments": "SELECT, INSERT, UPDATE",
            "payment_refunds": "SELECT, INSERT, UPDATE",
            "stripe_events": EVENT_RIGHTS,
        }
    )
    grant(app_role(), "platform_stripe_events", EVENT_RIGHTS)


def downgrade() -> None:
    op.drop_table("platform_stripe_events")
    op.drop_table("stripe_events")
    op.drop_table("payment_refunds")
    op.drop_table("payments")
    op.drop_table("stripe_customers")
    op.drop_table("stripe_accounts")
