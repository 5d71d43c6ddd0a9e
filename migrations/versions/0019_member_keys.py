"""Members' data keys (crypto-shredding): ``members.data_key``, and the till's lookup with it.

Each member's personal data is sealed under a random key of its own, kept on the member row
wrapped by the keyring (``nestpoint.members.pii.MemberCipher``): erasing a member deletes
the key. Rows from before have no key and stay readable under the keyring;
``nestpoint members rotate-keys`` gives them one. ``nestpoint_lookup_member`` (0007) returns
the member's columns, so it is made again with ``data_key`` among them (a function's result
type cannot change in place: dropped, then created).

Revision ID: 0019_member_keys
Revises: 0018_member_data_exports
Create Date: 2026-12-15 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_member_keys"
down_revision: str | None = "0018_member_data_exports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DROP = "DROP FUNCTION IF EXISTS nestpoint_lookup_member(uuid, uuid, text)"

FUNCTION = """
CREATE OR REPLACE FUNCTION nestpoint_lookup_member(
    p_tenant uuid, p_store uuid, p_phone_hash text
) RETURNS TABLE (
    id uuid, phone_enc text, name_enc text, gender varchar, birthday date,
    home_store_id uuid, join_channel varchar, join_store_id uuid, joined_at timestamptz,
    tags json, status varchar, merged_into_id uuid, tier_code varchar, growth_value bigint,
    child_data_consent_at timestamptz, data_key text,
    part text, ref uuid, text_1 text, text_2 text, date_1 date, date_2 date, flag boolean,
    at timestamptz, number bigint
)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
#variable_conflict use_column
BEGIN
    PERFORM set_config('nestpoint.tenant_id', p_tenant::text, true),
            set_config('nestpoint.store_id', coalesce(p_store::text, ''), true);
    RETURN QUERY
    SELECT m.id, m.phone_enc, m.name_enc, m.gender, m.birthday, m.home_store_id,
           m.join_channel, m.join_store_id, m.joined_at, m.tags, m.status, m.merged_into_id,
           m.tier_code, m.growth_value, m.child_data_consent_at, m.data_key,
           p.part, p.ref, p.text_1, p.text_2, p.date_1, p.date_2, p.flag, p.at, p.number
    FROM members m
    LEFT JOIN LATERAL (
        SELECT 'child'::text AS part, c.id AS ref, c.nickname_enc::text AS text_1,
               c.gender::text AS text_2, c.birth_date AS date_1, c.due_date AS date_2,
               NULL::boolean AS flag, c.created_at AS at, NULL::bigint AS number
        FROM children c WHERE c.tenant_id = m.tenant_id AND c.member_id = m.id
        UNION ALL
        SELECT 'identity', i.id, i.kind::text, i.value_enc::text, NULL, NULL, NULL,
               i.created_at, NULL
        FROM member_identities i WHERE i.tenant_id = m.tenant_id AND i.member_id = m.id
        UNION ALL
        SELECT 'consent', NULL, k.channel::text, k.source::text, NULL, NULL, k.granted,
               k.updated_at, NULL
        FROM member_consents k WHERE k.tenant_id = m.tenant_id AND k.member_id = m.id
        UNION ALL
        SELECT 'balance', NULL, NULL, NULL, NULL, NULL, NULL, a.updated_at, a.balance
        FROM point_accounts a WHERE a.tenant_id = m.tenant_id AND a.member_id = m.id
    ) p ON true
    WHERE m.tenant_id = p_tenant AND m.phone_hash = p_phone_hash;
END
$$
"""


def upgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.add_column(sa.Column("data_key", sa.Text(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(DROP)
        op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(DROP)
    with op.batch_alter_table("members") as batch:
        batch.drop_column("data_key")
    if op.get_bind().dialect.name == "postgresql":  # 0007's function, without the key
        op.execute(FUNCTION.replace(" data_key text,", "").replace(", m.data_key", ""))
