"""Row-level security and roles, as migration operations (PostgreSQL only; no-ops elsewhere).

The model: migrations run as the owner role, which owns every table. The application
connects as ``app_role``: it owns nothing, has no BYPASSRLS, and gets only the rights each
table grants it. Every tenant-owned table has RLS enabled *and forced* (so even the owner is
bound), with one policy comparing ``tenant_id`` with the transaction-local setting
``nestpoint.tenant_id``. No setting, or an empty one, matches no row: fail closed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from alembic import op

from nestpoint.settings import get_settings

CURRENT_TENANT_FUNCTION = """
CREATE OR REPLACE FUNCTION nestpoint_current_tenant() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT NULLIF(current_setting('nestpoint.tenant_id', true), '')::uuid
$$
"""


def _is_postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _quote(identifier: str) -> str:
    return op.get_bind().dialect.identifier_preparer.quote(identifier)


def create_app_role(role: str) -> None:
    """Create the application's login role if it does not exist: no superuser, no bypass."""
    if not _is_postgres():
        return
    quoted = _quote(role)
    op.execute(
        f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                CREATE ROLE {quoted} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
            END IF;
        END $$
        """
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {quoted}")
    op.execute(CURRENT_TENANT_FUNCTION)
    op.execute(f"GRANT EXECUTE ON FUNCTION nestpoint_current_tenant() TO {quoted}")


def isolate_tenant_table(table: str) -> None:
    """Enable and force RLS on a tenant-owned table, with the tenant policy."""
    if not _is_postgres():
        return
    quoted = _quote(table)
    op.execute(f"ALTER TABLE {quoted} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {quoted} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {quoted} "
        "USING (tenant_id = nestpoint_current_tenant()) "
        "WITH CHECK (tenant_id = nestpoint_current_tenant())"
    )


def grant(role: str, table: str, privileges: str = "SELECT, INSERT, UPDATE, DELETE") -> None:
    """Grant the application role exactly these rights on a table."""
    if not _is_postgres():
        return
    op.execute(f"GRANT {privileges} ON {_quote(table)} TO {_quote(role)}")


def isolate_and_grant(privileges: Mapping[str, str], role: str | None = None) -> None:
    """Each tenant-owned table of ``privileges`` (table -> e.g. ``"SELECT, INSERT"``)
    isolated by tenant and granted exactly those rights to the application role (a
    migration's last step; the role is ``app_role()`` unless named)."""
    role = role or app_role()
    for table, rights in privileges.items():
        isolate_tenant_table(table)
        grant(role, table, rights)


def app_role() -> str:
    """The application role's name, as passed by ``nestpoint migrate`` (settings)."""
    return str(op.get_context().config.attributes.get("app_role") or get_settings().app_role)  # type: ignore[union-attr]


@contextmanager
def owner_sees_all_rows(*tables: str) -> Iterator[None]:
    """For a data migration: the owner reads and writes every tenant's rows of ``tables``
    (RLS is forced, so even the owner is bound by default), forced again afterwards."""
    if not _is_postgres():
        yield
        return
    for table in tables:
        op.execute(f"ALTER TABLE {_quote(table)} NO FORCE ROW LEVEL SECURITY")
    yield
    for table in tables:
        op.execute(f"ALTER TABLE {_quote(table)} FORCE ROW LEVEL SECURITY")
