"""Erasure: the application may delete a member's invitations and responses.

When a chain erases a member (``nestpoint_erase_member_data``), the member's invitations
and named responses go: answers may be free text that identifies them. Responses stay
append-only otherwise (no UPDATE).

Revision ID: surveys_0002
Revises: surveys_0001
Create Date: 2026-12-15 11:00:00
"""

from collections.abc import Sequence

from nestpoint.plugins.api import rls

revision: str = "surveys_0002"
down_revision: str | None = "surveys_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("survey_invitations", "survey_responses"):
        rls.grant(rls.app_role(), table, "DELETE")


def downgrade() -> None:
    pass  # a revoked DELETE would only make erasure fail
