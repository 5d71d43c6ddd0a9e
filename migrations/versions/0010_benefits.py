"""Benefits: the catalog, bundles, bundle grants, entitlements and the uses ledger.

``benefit_uses`` is append-only for the application role (SELECT, INSERT), like the points
ledger; a use is reversed by a new row that names it (unique ``reverses_id``).

Revision ID: 0010_benefits
Revises: 0009_outbox_order_index
Create Date: 2026-11-29 23:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.db import rls

revision: str = "0010_benefits"
down_revision: str | None = "0009_outbox_order_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PRIVILEGES = {
    "benefits": "SELECT, INSERT, UPDATE",
    "benefit_bundles": "SELECT, INSERT, UPDATE",
    "bundle_grants": "SELECT, INSERT, UPDATE",  # a merge moves them
    "entitlements": "SELECT, INSERT, UPDATE",
    "benefit_uses": "SELECT, INSERT",
}


def upgrade() -> None:
    op.create_table(
        "benefits",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("type_key", sa.String(length=100), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("child_stages", sa.JSON(), nullable=False),
        sa.Column("exchange_points", sa.Integer(), nullable=True),
        sa.Column("stock", sa.Integer(), nullable=True),
        sa.Column("per_member_limit", sa.Integer(), nullable=True),
        sa.Column("quota", sa.Integer(), nullable=False),
        sa.Column("tier_quotas", sa.JSON(), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("valid_days", sa.Integer(), nullable=True),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column("on_lapse", sa.String(length=8), nullable=False),
        sa.Column("store_codes", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_benefits_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_benefits")),
        sa.UniqueConstraint("tenant_id", "code", name=op.f("uq_benefits_tenant_id_code")),
    )
    op.create_table(
        "benefit_bundles",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("trigger", sa.String(length=24), nullable=False),
        sa.Column("within_days", sa.Integer(), nullable=False),
        sa.Column("benefit_codes", sa.JSON(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("valid_days", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_benefit_bundles_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_benefit_bundles")),
        sa.UniqueConstraint("tenant_id", "code", name=op.f("uq_benefit_bundles_tenant_id_code")),
    )
    op.create_table(
        "bundle_grants",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("bundle_id", sa.Uuid(), nullable=False),
        sa.Column("child_id", sa.Uuid(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "bundle_id"],
            ["benefit_bundles.tenant_id", "benefit_bundles.id"],
            name=op.f("fk_bundle_grants_tenant_id_bundle_id_benefit_bundles"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "member_id"],
            ["members.tenant_id", "members.id"],
            name=op.f("fk_bundle_grants_tenant_id_member_id_members"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_bundle_grants_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_bundle_grants")),
        sa.UniqueConstraint(
            "tenant_id",
            "member_id",
            "bundle_id",
            "child_id",
            name=op.f("uq_bundle_grants_tenant_id_member_id_bundle_id_child_id"),
        ),
    )
    op.create_table(
        "entitlements",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("benefit_id", sa.Uuid(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("source_ref", sa.String(length=150), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("points_paid", sa.Integer(), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lapsed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "benefit_id"],
            ["benefits.tenant_id", "benefits.id"],
            name=op.f("fk_entitlements_tenant_id_benefit_id_benefits"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "member_id"],
            ["members.tenant_id", "members.id"],
            name=op.f("fk_entitlements_tenant_id_member_id_members"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_entitlements_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_entitlements")),
        sa.UniqueConstraint(
            "tenant_id",
            "member_id",
            "benefit_id",
            "source",
            "source_ref",
            name=op.f("uq_entitlements_tenant_id_member_id_benefit_id_source_source_ref"),
        ),
    )
    op.create_table(
        "benefit_uses",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("entitlement_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("benefit_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("period_key", sa.String(length=10), nullable=False),
        sa.Column("store_id", sa.Uuid(), nullable=True),
        sa.Column("reference", sa.String(length=150), nullable=False),
        sa.Column("reverses_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "entitlement_id"],
            ["entitlements.tenant_id", "entitlements.id"],
            name=op.f("fk_benefit_uses_tenant_id_entitlement_id_entitlements"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_benefit_uses_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_benefit_uses")),
        sa.UniqueConstraint(
            "tenant_id", "reverses_id", name=op.f("uq_benefit_uses_tenant_id_reverses_id")
        ),
    )
    op.create_index(
        "ix_entitlements_expiry",
        "entitlements",
        ["tenant_id", "status", "expires_at"],
        unique=False,
    )
    op.create_index(
        "ix_benefit_uses_member",
        "benefit_uses",
        ["tenant_id", "member_id", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_benefit_uses_period",
        "benefit_uses",
        ["tenant_id", "entitlement_id", "period_key"],
        unique=False,
    )
    rls.isolate_and_grant(PRIVILEGES)


def downgrade() -> None:
    for table in reversed(PRIVILEGES):
        op.drop_table(table)
