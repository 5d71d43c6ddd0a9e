"""The till's lookup by phone as one statement: ``nestpoint_lookup_member``.

A lookup at the till used four round trips (BEGIN with the tenant binding, the member, its
children, identities, consents and balance, COMMIT). This function binds the tenant inside
the statement and returns the member with those parts in one: it sets
``nestpoint.tenant_id`` and ``nestpoint.store_id`` local to the call's transaction (the
statement's own, when it runs outside one), then reads, so row-level security checks every
row against the caller's tenant as always. It runs as its caller (SECURITY INVOKER): the
app role, bound by RLS.

One row per part (a member always has its balance part), each carrying the member's
columns; the columns are those of ``MEMBER_LOOKUP`` in ``nestpoint/members/service.py``,
which a test compares with this function's rows. PostgreSQL only: SQLite runs the same
reads as statements.

Revision ID: 0007_member_lookup
Revises: 0006_wide_integers
Create Date: 2026-11-29 19:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_member_lookup"
down_revision: str | None = "0006_wide_integers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTION = """
CREATE OR REPLACE FUNCTION nestpoint_lookup_member(
    p_tenant uuid, p_store uuid, p_phone_hash text
) RETURNS TABLE (
    id uuid, phone_enc text, name_enc text, gender varchar, birthday date,
    home_store_id uuid, join_channel varchar, join_store_id uuid, joined_at timestamptz,
    tags json, status varchar, merged_into_id uuid, tier_code varchar, growth_value bigint,
    child_data_consent_at timestamptz,
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
           m.tier_code, m.growth_value, m.child_data_consent_at,
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
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS nestpoint_lookup_member(uuid, uuid, text)")
