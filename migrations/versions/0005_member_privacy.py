"""Member privacy: children's nicknames and identity values encrypted; member sharing per chain.

``children.nickname`` becomes ``nickname_enc`` and ``member_identities.value`` becomes
``value_enc`` (AES-GCM, ``members.pii``) with ``value_hash`` (keyed hash) for lookup and
uniqueness. Existing rows are encrypted here, tenant by tenant (RLS is forced, even for the
owner, so each tenant's rows are read under its own setting). ``tenants.members_shared_with``
lists the store kinds whose keys see every member of the chain.

Revision ID: 0005_member_privacy
Revises: 0003_loyalty
Create Date: 2026-11-29 15:00:00
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_member_privacy"
down_revision: str | None = "0004_idempotency"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tenant_ids() -> list[uuid.UUID]:
    """Typed, so that each id reads as a UUID on both databases (ciphertexts are bound to it)."""
    tenants = sa.table("tenants", sa.column("id", sa.Uuid()))
    return list(op.get_bind().execute(sa.select(tenants.c.id)).scalars())


def _as_tenant(tenant_id: uuid.UUID | str) -> None:
    """Bind RLS to one tenant for the rest of the migration's transaction (PostgreSQL)."""
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.execute(
            sa.text("SELECT set_config('nestpoint.tenant_id', :t, true)"), {"t": str(tenant_id)}
        )


def _encrypt_existing_rows() -> None:
    from nestpoint.members import pii

    bind = op.get_bind()
    children = sa.table(
        "children",
        sa.column("tenant_id", sa.Uuid()),
        sa.column("id", sa.Uuid()),
        sa.column("nickname", sa.String()),
        sa.column("nickname_enc", sa.Text()),
    )
    identities = sa.table(
        "member_identities",
        sa.column("tenant_id", sa.Uuid()),
        sa.column("id", sa.Uuid()),
        sa.column("kind", sa.String()),
        sa.column("value", sa.String()),
        sa.column("value_hash", sa.String()),
        sa.column("value_enc", sa.Text()),
    )
    for tenant_id in _tenant_ids():
        _as_tenant(tenant_id)
        rows = bind.execute(
            sa.select(children.c.id, children.c.nickname).where(
                children.c.tenant_id == tenant_id, children.c.nickname != ""
            )
        ).all()
        for row in rows:
            sealed = pii.keyring().encrypt(
                row.nickname, context=pii.row_context(tenant_id, "children", row.id)
            )
            bind.execute(
                children.update()
                .where(children.c.tenant_id == tenant_id, children.c.id == row.id)
                .values(nickname_enc=sealed)
            )
        rows = bind.execute(
            sa.select(identities.c.id, identities.c.kind, identities.c.value).where(
                identities.c.tenant_id == tenant_id
            )
        ).all()
        for row in rows:
            context = pii.row_context(tenant_id, "member_identities", row.id)
            bind.execute(
                identities.update()
                .where(identities.c.tenant_id == tenant_id, identities.c.id == row.id)
                .values(
                    value_hash=pii.identity_hash(row.kind, row.value),
                    value_enc=pii.keyring().encrypt(row.value, context=context),
                )
            )
    _as_tenant("")


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "members_shared_with",
                sa.JSON(),
                nullable=False,
                server_default=sa.text("'[\"direct\"]'"),
            )
        )
    with op.batch_alter_table("children", schema=None) as batch_op:
        batch_op.add_column(sa.Column("nickname_enc", sa.Text(), nullable=True))
    with op.batch_alter_table("member_identities", schema=None) as batch_op:
        batch_op.add_column(sa.Column("value_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("value_enc", sa.Text(), nullable=True))

    _encrypt_existing_rows()

    with op.batch_alter_table("children", schema=None) as batch_op:
        batch_op.drop_column("nickname")
    with op.batch_alter_table("member_identities", schema=None) as batch_op:
        batch_op.drop_constraint("uq_member_identities_tenant_id_kind_value", type_="unique")
        batch_op.drop_column("value")
        batch_op.alter_column("value_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("value_enc", existing_type=sa.Text(), nullable=False)
        batch_op.create_unique_constraint(
            "uq_member_identities_tenant_id_kind_value_hash", ["tenant_id", "kind", "value_hash"]
        )


def downgrade() -> None:
    """Structure only: the encrypted values are not decrypted back into clear columns."""
    with op.batch_alter_table("member_identities", schema=None) as batch_op:
        batch_op.drop_constraint("uq_member_identities_tenant_id_kind_value_hash", type_="unique")
        batch_op.add_column(
            sa.Column("value", sa.String(length=128), nullable=False, server_default="")
        )
        batch_op.drop_column("value_enc")
        batch_op.drop_column("value_hash")
    with op.batch_alter_table("children", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("nickname", sa.String(length=50), nullable=False, server_default="")
        )
        batch_op.drop_column("nickname_enc")
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("members_shared_with")
