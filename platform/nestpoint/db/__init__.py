"""Database access: models' base, engine and sessions, tenant scoping and RLS binding."""

from nestpoint.db.base import Base, TenantOwned, TenantScoped, UTCDateTime, new_id, utcnow
from nestpoint.db.session import Database, get_database, scoped_session

__all__ = [
    "Base",
    "Database",
    "TenantOwned",
    "TenantScoped",
    "UTCDateTime",
    "get_database",
    "new_id",
    "scoped_session",
    "utcnow",
]
