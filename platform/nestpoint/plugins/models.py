"""Tables of the plugin platform: enablement, per-plugin deliveries, and failures.

All three belong to a tenant (``tenant_id`` leads every key, RLS on PostgreSQL).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.db.base import Base, TenantOwned, TenantScoped, utcnow


class PluginEnablement(TenantOwned, Base):
    """One plugin's setting for a chain (``store_id`` null) or for one store.

    The chain row: ``enabled`` turns the plugin on for every store (a store row may still
    turn it off there), ``allow_store_opt_in`` lets store keys enable and configure it for
    their own store, ``config`` is the chain's configuration. A store row: ``enabled`` for
    that store, ``config`` overriding the chain's field by field. No row: off.

    ``enabled_at``: since when the row has kept the plugin on without a break (``None``
    while off). A store row made while the chain's was on carries the chain's moment on.
    The relay delivers an event only to plugins enabled since before it happened.
    """

    __tablename__ = "plugin_enablements"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "store_id"], ["stores.tenant_id", "stores.id"], ondelete="RESTRICT"
        ),
        # One chain row and one row per store for each plugin (NULLs are distinct in a plain
        # unique constraint, so the chain row has its own partial index).
        Index(
            "uq_plugin_enablements_chain",
            "tenant_id",
            "plugin_id",
            unique=True,
            postgresql_where=text("store_id IS NULL"),
            sqlite_where=text("store_id IS NULL"),
        ),
        Index(
            "uq_plugin_enablements_store",
            "tenant_id",
            "plugin_id",
            "store_id",
            unique=True,
            postgresql_where=text("store_id IS NOT NULL"),
            sqlite_where=text("store_id IS NOT NULL"),
        ),
    )

    plugin_id: Mapped[str] = mapped_column(String(100))
    store_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    allow_store_opt_in: Mapped[bool] = mapped_column(Boolean, default=False)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    enabled_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str] = mapped_column(String(100), default="")


class PluginDelivery(TenantOwned, Base):
    """A plugin's hook took an event: it is not called again for that event on a retry.

    Written only for events that needed a retry (when every plugin succeeds at once the
    event is simply published), so the table stays small.
    """

    __tablename__ = "plugin_deliveries"
    __table_args__ = (UniqueConstraint("tenant_id", "event_id", "plugin_id", "hook"),)

    event_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    plugin_id: Mapped[str] = mapped_column(String(100))
    hook: Mapped[str] = mapped_column(String(100))
    delivered_at: Mapped[datetime] = mapped_column(default=utcnow)


class PluginFailure(TenantOwned, Base):
    """One failed hook call of one plugin for one tenant (append-only)."""

    __tablename__ = "plugin_failures"
    __table_args__ = (
        Index(
            "ix_plugin_failures_tenant_id_plugin_id_occurred_at",
            "tenant_id",
            "plugin_id",
            "occurred_at",
        ),
        Index("ix_plugin_failures_tenant_id_occurred_at", "tenant_id", "occurred_at"),
    )

    plugin_id: Mapped[str] = mapped_column(String(100))
    hook: Mapped[str] = mapped_column(String(100))
    store_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    event_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    event_type: Mapped[str | None] = mapped_column(String(100), default=None)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    # timeout | error
    kind: Mapped[str] = mapped_column(String(16), default="error")
    error: Mapped[str] = mapped_column(Text, default="")
    # True when the event will not be retried for this plugin any more.
    final: Mapped[bool] = mapped_column(Boolean, default=False)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)


class PluginSecret(TenantScoped, Base):
    """A chain's credential for one plugin (an SMTP password, an SMS gateway's key).

    Write-only through the API: ``value_enc`` is sealed with the core's keys, bound to the
    tenant, the plugin and the secret's name (``pii.row_context``), and no answer, log or
    event ever carries the value; the plugin reads it with
    :func:`nestpoint.plugins.api.plugin_secret`.
    """

    __tablename__ = "plugin_secrets"

    plugin_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value_enc: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str] = mapped_column(String(100), default="")
