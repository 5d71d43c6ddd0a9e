"""The member API's WeChat phone login: whether a chain enrols an unknown phone.

* ``wechat_apps.enrol_by_phone``: a phone WeChat verified for the chain's mini-program
  (``getuserphonenumber``) that no member holds enrols a new member (true) or is answered
  404 ``wechat-phone-not-member`` (false, the default: the chain's backend enrols).

``member_phone_changes`` (migration 0035) already grants the application role DELETE, which
the retention job (``members.purge_phone_changes``) needs.

Revision ID: 0037_wechat_phone
Revises: 0036_analytics
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0037_wechat_phone"
down_revision: str | None = "0036_analytics"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("wechat_apps") as batch:
        batch.add_column(
            sa.Column("enrol_by_phone", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("wechat_apps") as batch:
        batch.drop_column("enrol_by_phone")
