"""An index on entitlements by benefit: an exchange's stock counts that benefit's exchanges.

Without it the count scanned every entitlement of the tenant, on the till's call (``GET
/members/{id}/benefits``) and on every exchange: the benchmark's ceiling was 373 tps.

Revision ID: 0012_entitlements_benefit_index
Revises: 0011_idempotency_scope
Create Date: 2026-11-30 01:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012_entitlements_benefit_index"
down_revision: str | None = "0011_idempotency_scope"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_entitlements_benefit", "entitlements", ["tenant_id", "benefit_id", "source"]
    )


def downgrade() -> None:
    op.drop_index("ix_entitlements_benefit", table_name="entitlements")
