"""Tables of messaging: the chain's settings and templates, every message and its attempts.

All belong to a tenant (``tenant_id`` leads every key; RLS on PostgreSQL).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.db.base import Base, TenantOwned, TenantScoped, utcnow


class MessagingSettingsRow(TenantScoped, Base):
    """The chain's messaging settings (``MessagingSettings``), one row per tenant; none
    means the defaults."""

    __tablename__ = "messaging_settings"

    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class MessageTemplate(TenantOwned, Base):
    """The chain's own wording of a template in one locale (the built-in one otherwise)."""

    __tablename__ = "message_templates"
    __table_args__ = (UniqueConstraint("tenant_id", "key", "locale"),)

    key: Mapped[str] = mapped_column(String(64))
    locale: Mapped[str] = mapped_column(String(8))
    subject: Mapped[str] = mapped_column(String(200), default="")
    body: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Message(TenantOwned, Base):
    """One message to one member: its delivery record.

    ``status``: ``queued`` → ``sending`` (a worker holds it until ``lease_until``) → ``sent``
    (the provider took it) → ``delivered`` (the provider confirmed it); or ``suppressed``
    (never sent: ``reason`` says why) or ``failed`` (every channel tried; ``reason``).
    ``message_key`` makes it idempotent: the same key is the same message, sent once.
    ``tried``: the channels given up on, in order.
    """

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("tenant_id", "message_key"),
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        Index("ix_messages_tenant_id_member_id_created_at", "tenant_id", "member_id", "created_at"),
        Index("ix_messages_tenant_id_created_at", "tenant_id", "created_at"),
        Index("ix_messages_tenant_id_status_not_before", "tenant_id", "status", "not_before"),
        Index("ix_messages_tenant_id_provider_message_id", "tenant_id", "provider_message_id"),
    )

    message_key: Mapped[str] = mapped_column(String(200))
    member_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    store_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    purpose: Mapped[str] = mapped_column(String(64))
    template: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    reason: Mapped[str | None] = mapped_column(String(64), default=None)
    channel: Mapped[str | None] = mapped_column(String(32), default=None)
    tried: Mapped[list[str]] = mapped_column(default=list)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    provider_message_id: Mapped[str | None] = mapped_column(String(200), default=None)
    not_before: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    # A message to an address that is not (yet) the member's, with variables not to be kept:
    # a verification code to a new phone. JSON ``{"to": ..., "params": {...}}`` sealed under
    # the member's key (row context "messages"); sent on a phone channel only, without the
    # consent, quiet hours and cap of marketing, and wiped once the message settles.
    sealed: Mapped[str | None] = mapped_column(Text, default=None)


class MessageAttempt(TenantOwned, Base):
    """One call of a connector for a message: written before the call (``outcome`` null),
    completed after it. A row left without an outcome is a send whose result nobody knows
    (the worker died): the pipeline never repeats it on a connector that cannot dedupe."""

    __tablename__ = "message_attempts"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "message_id"], ["messages.tenant_id", "messages.id"]),
        Index("ix_message_attempts_tenant_id_message_id", "tenant_id", "message_id"),
    )

    message_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    channel: Mapped[str] = mapped_column(String(32))
    number: Mapped[int] = mapped_column(Integer)
    # accepted | delivered | retry | refused | interrupted
    outcome: Mapped[str | None] = mapped_column(String(16), default=None)
    detail: Mapped[str] = mapped_column(String(200), default="")
    provider_message_id: Mapped[str | None] = mapped_column(String(200), default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
