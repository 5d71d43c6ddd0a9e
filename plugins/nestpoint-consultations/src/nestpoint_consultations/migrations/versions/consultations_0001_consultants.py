"""Consultations: consultants, their exceptions, bookings and advisers, tenant-owned with RLS.

Revision ID: consultations_0001
Revises:
Create Date: 2026-11-30 00:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.plugins.api import rls

revision: str = "consultations_0001"
down_revision: str | None = None
# The plugin's own branch, after the core's tenants table exists.
branch_labels: str | Sequence[str] | None = ("consultations",)
depends_on: str | Sequence[str] | None = "0001_foundation"

PRIVILEGES = {
    "consultants": "SELECT, INSERT, UPDATE",
    "consultant_exceptions": "SELECT, INSERT, UPDATE",
    "consultations": "SELECT, INSERT, UPDATE",
    "member_advisers": "SELECT, INSERT, UPDATE",
}


def upgrade() -> None:
    op.create_table(
        "consultants",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("store_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("weekly", sa.JSON(), nullable=False),
        sa.Column("slot_minutes", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_consultants_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_consultants")),
        sa.UniqueConstraint("tenant_id", "code", name=op.f("uq_consultants_tenant_id_code")),
    )
    op.create_table(
        "consultant_exceptions",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("consultant_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("hours", sa.JSON(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_consultant_exceptions_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_consultant_exceptions")),
        sa.UniqueConstraint(
            "tenant_id",
            "consultant_id",
            "day",
            name=op.f("uq_consultant_exceptions_tenant_id_consultant_id_day"),
        ),
    )
    op.create_table(
        "consultations",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("request_key", sa.String(length=100), nullable=False),
        sa.Column("consultant_id", sa.Uuid(), nullable=False),
        sa.Column("store_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("fee_fen", sa.Integer(), nullable=False),
        sa.Column("benefit_use_id", sa.Uuid(), nullable=True),
        sa.Column("notes_enc", sa.Text(), nullable=True),
        sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_consultations_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_consultations")),
        sa.UniqueConstraint(
            "tenant_id", "request_key", name=op.f("uq_consultations_tenant_id_request_key")
        ),
    )
    op.create_table(
        "member_advisers",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("consultant_id", sa.Uuid(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_member_advisers_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_member_advisers")),
        sa.UniqueConstraint(
            "tenant_id", "member_id", name=op.f("uq_member_advisers_tenant_id_member_id")
        ),
    )
    op.create_index(
        "ix_consultations_consultant",
        "consultations",
        ["tenant_id", "consultant_id", "starts_at"],
        unique=False,
    )
    op.create_index(
        "ix_consultations_member",
        "consultations",
        ["tenant_id", "member_id", "starts_at"],
        unique=False,
    )
    rls.isolate_and_grant(PRIVILEGES)


def downgrade() -> None:
    for table in reversed(PRIVILEGES):
        op.drop_table(table)
