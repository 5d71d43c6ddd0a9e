"""Erasure: the application may unlink a member from their scans.

When a chain erases a member (``nestpoint_erase_member_data``), the member's scans keep
the product, the store and the time but lose the member, as a public look-up has none.

Revision ID: traceability_0002
Revises: traceability_0001
Create Date: 2026-12-15 11:00:00
"""

from collections.abc import Sequence

from nestpoint.plugins.api import rls

revision: str = "traceability_0002"
down_revision: str | None = "traceability_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    rls.grant(rls.app_role(), "traceability_scans", "UPDATE (member_id)")


def downgrade() -> None:
    pass  # a revoked UPDATE would only make erasure fail
