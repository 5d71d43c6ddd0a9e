"""Declarative base and the ``TenantOwned`` mixin every tenant's table uses."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import JSON, DateTime, ForeignKey, MetaData, Table, Uuid
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware.

    SQLite keeps no zone, so values are normalised to UTC on the way in and tagged as UTC on
    the way out; PostgreSQL uses ``timestamptz``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass a timezone-aware value")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
        uuid.UUID: Uuid(),
    }


class TenantScoped:
    """Mixin for every tenant-owned table.

    ``tenant_id`` leads the primary key (and every unique and foreign key the table declares
    must include it) so the schema can be distributed by tenant. Queries are scoped to the
    context's tenant automatically (see ``nestpoint.db.session``), and on PostgreSQL row-level
    security enforces the same rule again. Tables with a natural key declare the rest of
    their primary key themselves; most use :class:`TenantOwned`, which adds an ``id``.
    """

    @declared_attr
    def tenant_id(cls) -> Mapped[uuid.UUID]:  # noqa: N805
        # sort_order puts tenant_id first in the table and so first in every primary key.
        return mapped_column(
            Uuid(),
            ForeignKey("tenants.id", ondelete="RESTRICT"),
            primary_key=True,
            sort_order=-100,
        )


class TenantOwned(TenantScoped):
    """A tenant-owned table whose primary key is ``(tenant_id, id)``."""

    @declared_attr
    def id(cls) -> Mapped[uuid.UUID]:  # noqa: N805
        return mapped_column(Uuid(), primary_key=True, default=new_id)


def tenant_owned_tables() -> list[str]:
    """Names of the tables whose rows belong to a tenant (used by migrations and tests)."""
    return sorted(
        str(mapper.local_table.name)  # type: ignore[attr-defined]
        for mapper in Base.registry.mappers
        if issubclass(mapper.class_, TenantScoped)
    )


def table_of(model: type[Base]) -> Table:
    """A model's Core table, typed (for set-based and bulk statements on hot paths)."""
    return cast(Table, model.__table__)
