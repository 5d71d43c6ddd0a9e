"""Imports every model so ``Base.metadata`` is complete (Alembic and tests use this)."""

from nestpoint.audit.models import AuditEntry
from nestpoint.db.base import Base
from nestpoint.events.models import OutboxEvent
from nestpoint.tenancy.models import ApiKey, PlatformKey, Store, Tenant

metadata = Base.metadata

__all__ = ["ApiKey", "AuditEntry", "OutboxEvent", "PlatformKey", "Store", "Tenant", "metadata"]
