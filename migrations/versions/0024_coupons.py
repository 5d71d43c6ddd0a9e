"""Coupons: templates, issued coupons, their append-only ledger.

Revision ID: 0024_coupons
Revises: 0023_builtin_segments
Create Date: 2026-12-20 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.db.rls import isolate_and_grant

revision: str = "0024_coupons"
down_revision: str | None = "0023_builtin_segments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def _tenant_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="RESTRICT")


def upgrade() -> None:
    op.create_table(
        "coupon_templates",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("threshold_fen", sa.BigInteger(), nullable=False),
        sa.Column("amount_off_fen", sa.BigInteger(), nullable=True),
        sa.Column("percent_off", sa.Integer(), nullable=True),
        sa.Column("max_off_fen", sa.BigInteger(), nullable=True),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("skus", sa.JSON(), nullable=False),
        sa.Column("gift_sku", sa.String(length=64), nullable=True),
        sa.Column("stock", sa.Integer(), nullable=True),
        sa.Column("issued", sa.Integer(), nullable=False),
        sa.Column("per_member_limit", sa.Integer(), nullable=True),
        sa.Column("valid_from", _TS, nullable=True),
        sa.Column("valid_until", _TS, nullable=True),
        sa.Column("valid_days", sa.Integer(), nullable=True),
        sa.Column("store_codes", sa.JSON(), nullable=False),
        sa.Column("stackable", sa.Boolean(), nullable=False),
        sa.Column("points_price", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        _tenant_fk(),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "code"),
    )
    op.create_table(
        "coupons",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("template_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("valid_from", _TS, nullable=False),
        sa.Column("valid_until", _TS, nullable=False),
        sa.Column("cause_type", sa.String(length=16), nullable=False),
        sa.Column("cause_id", sa.String(length=128), nullable=False),
        sa.Column("issued_at", _TS, nullable=False),
        sa.Column("hold_id", sa.Uuid(), nullable=True),
        sa.Column("hold_store_id", sa.Uuid(), nullable=True),
        sa.Column("held_until", _TS, nullable=True),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("amount_fen", sa.BigInteger(), nullable=True),
        sa.Column("redeemed_at", _TS, nullable=True),
        _tenant_fk(),
        sa.ForeignKeyConstraint(
            ["tenant_id", "template_id"], ["coupon_templates.tenant_id", "coupon_templates.id"]
        ),
        sa.ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.UniqueConstraint("tenant_id", "code"),
        sa.UniqueConstraint("tenant_id", "template_id", "member_id", "cause_type", "cause_id"),
    )
    op.create_index("ix_coupons_member", "coupons", ["tenant_id", "member_id", "status"])
    op.create_index("ix_coupons_order", "coupons", ["tenant_id", "order_id"])
    op.create_index("ix_coupons_cause", "coupons", ["tenant_id", "cause_type", "cause_id"])
    op.create_table(
        "coupon_events",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("coupon_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("store_id", sa.Uuid(), nullable=True),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        _tenant_fk(),
        sa.ForeignKeyConstraint(["tenant_id", "coupon_id"], ["coupons.tenant_id", "coupons.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
    )
    op.create_index(
        "ix_coupon_events_coupon", "coupon_events", ["tenant_id", "coupon_id", "created_at"]
    )
    isolate_and_grant(
        {
            "coupon_templates": "SELECT, INSERT, UPDATE",
            "coupons": "SELECT, INSERT, UPDATE",
            "coupon_events": "SELECT, INSERT",  # the ledger: append-only
        }
    )


def downgrade() -> None:
    op.drop_table("coupon_events")
    op.drop_table("coupons")
    op.drop_table("coupon_templates")
