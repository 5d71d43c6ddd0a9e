"""Tables of the tenancy context.

``tenants`` and ``platform_keys`` are platform tables: the operator's registry, with no
``tenant_id`` and no RLS. ``stores`` and ``api_keys`` belong to a tenant.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKeyConstraint,
    Index,
    String,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.db.base import Base, TenantOwned, new_id, utcnow

STORE_KINDS = ("direct", "franchise")
KEY_KINDS = ("tenant", "store")


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    locale: Mapped[str] = mapped_column(String(16), default="zh-CN")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Store kinds whose keys see every member of the chain; other stores' keys see only the
    # members whose home store they are (and serve anyone at the till by exact phone or card).
    members_shared_with: Mapped[list[str]] = mapped_column(JSON, default=lambda: ["direct"])
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PlatformKey(Base):
    __tablename__ = "platform_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    key_prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)


class Store(TenantOwned, Base):
    __tablename__ = "stores"
    __table_args__ = (
        UniqueConstraint("tenant_id", "code"),
        CheckConstraint(f"kind IN {STORE_KINDS}", name="kind"),
    )

    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default="direct")
    format: Mapped[str] = mapped_column(String(32), default="community")
    region: Mapped[str] = mapped_column(String(100), default="")
    address: Mapped[str] = mapped_column(String(500), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ApiKey(TenantOwned, Base):
    """An HQ key (``kind='tenant'``) or a till key bound to one store (``kind='store'``).

    Only a SHA-256 of the key is kept: keys are 256-bit random secrets, so a fast hash is
    enough and keeps authentication cheap on the till's hot path.
    """

    __tablename__ = "api_keys"
    __table_args__ = (
        UniqueConstraint("tenant_id", "key_hash"),
        ForeignKeyConstraint(
            ["tenant_id", "store_id"], ["stores.tenant_id", "stores.id"], ondelete="RESTRICT"
        ),
        CheckConstraint(f"kind IN {KEY_KINDS}", name="kind"),
        CheckConstraint("(kind = 'store') = (store_id IS NOT NULL)", name="store_binding"),
        Index("ix_api_keys_tenant_id_store_id", "tenant_id", "store_id"),
    )

    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    store_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    key_prefix: Mapped[str] = mapped_column(String(24))
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100), default="")
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
