"""Surveys: surveys, rounds, invitations and responses, tenant-owned with RLS.

Revision ID: surveys_0001
Revises:
Create Date: 2026-11-30 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nestpoint.plugins.api import rls

revision: str = "surveys_0001"
down_revision: str | None = None
# The plugin's own branch, after the core's tenants table exists.
branch_labels: str | Sequence[str] | None = ("surveys",)
depends_on: str | Sequence[str] | None = "0001_foundation"

PRIVILEGES = {
    "surveys": "SELECT, INSERT, UPDATE",
    "survey_rounds": "SELECT, INSERT, UPDATE",
    "survey_invitations": "SELECT, INSERT, UPDATE",  # UPDATE: answered, once
    "survey_responses": "SELECT, INSERT",  # append-only
}


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"],
        ["tenants.id"],
        name=op.f(f"fk_{table}_tenant_id_tenants"),
        ondelete="RESTRICT",
    )


def upgrade() -> None:
    op.create_table(
        "surveys",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=False),
        sa.Column("questions", sa.JSON(), nullable=False),
        sa.Column("anonymous", sa.Boolean(), nullable=False),
        sa.Column("audience", sa.JSON(), nullable=False),
        sa.Column("schedule", sa.JSON(), nullable=True),
        sa.Column("schedule_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("open_days", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        _tenant_fk("surveys"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_surveys")),
        sa.UniqueConstraint("tenant_id", "code", name=op.f("uq_surveys_tenant_id_code")),
    )
    op.create_table(
        "survey_rounds",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("survey_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=True),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=False),
        sa.Column("questions", sa.JSON(), nullable=False),
        sa.Column("anonymous", sa.Boolean(), nullable=False),
        sa.Column("audience", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("invite_cursor", sa.Uuid(), nullable=True),
        sa.Column("invited", sa.Integer(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        _tenant_fk("survey_rounds"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_survey_rounds")),
        sa.UniqueConstraint(
            "tenant_id",
            "survey_id",
            "number",
            name=op.f("uq_survey_rounds_tenant_id_survey_id_number"),
        ),
        sa.UniqueConstraint(
            "tenant_id",
            "survey_id",
            "period",
            name=op.f("uq_survey_rounds_tenant_id_survey_id_period"),
        ),
    )
    op.create_index(
        "ix_survey_rounds_status", "survey_rounds", ["tenant_id", "status"], unique=False
    )
    op.create_table(
        "survey_invitations",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("round_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("responded", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        _tenant_fk("survey_invitations"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_survey_invitations")),
        sa.UniqueConstraint(
            "tenant_id",
            "round_id",
            "member_id",
            name=op.f("uq_survey_invitations_tenant_id_round_id_member_id"),
        ),
        sa.UniqueConstraint(
            "tenant_id", "token_hash", name=op.f("uq_survey_invitations_tenant_id_token_hash")
        ),
    )
    op.create_table(
        "survey_responses",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("round_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=True),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        _tenant_fk("survey_responses"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_survey_responses")),
        sa.UniqueConstraint(
            "tenant_id",
            "round_id",
            "member_id",
            name=op.f("uq_survey_responses_tenant_id_round_id_member_id"),
        ),
    )
    op.create_index(
        "ix_survey_responses_round",
        "survey_responses",
        ["tenant_id", "round_id", "submitted_at"],
        unique=False,
    )
    rls.isolate_and_grant(PRIVILEGES)


def downgrade() -> None:
    for table in reversed(PRIVILEGES):
        op.drop_table(table)
