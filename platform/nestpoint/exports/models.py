"""Tables of exports: the job, and its file in chunks.

Both belong to a tenant (``tenant_id`` leads every key; RLS on PostgreSQL). The file lives
in the database so that every API and worker replica reads what any worker wrote.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.db.base import Base, TenantOwned, TenantScoped, utcnow


class Export(TenantOwned, Base):
    """One export job: ``queued`` → ``running`` (``rows_done`` of ``rows_total``) →
    ``done`` (the file is in :class:`ExportChunk`) or ``failed`` (``error``)."""

    __tablename__ = "exports"
    __table_args__ = (Index("ix_exports_tenant_id_created_at", "tenant_id", "created_at"),)

    kind: Mapped[str] = mapped_column(String(16))
    format: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    masked: Mapped[bool] = mapped_column(Boolean, default=True)
    requested_by: Mapped[str] = mapped_column(String(100), default="")
    rows_total: Mapped[int] = mapped_column(BigInteger, default=0)
    rows_done: Mapped[int] = mapped_column(BigInteger, default=0)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    error: Mapped[str | None] = mapped_column(String(500), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # A ``member_data`` export (right of access and copy): whose data, and why it was asked.
    member_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    reason: Mapped[str | None] = mapped_column(String(500), default=None)
    # A ``segment`` export: the segment's code (its members when the job runs).
    segment_code: Mapped[str | None] = mapped_column(String(64), default=None)


class ExportChunk(TenantScoped, Base):
    """One piece of an export's file (``seq`` from 0), at most ``CHUNK_SIZE`` bytes."""

    __tablename__ = "export_chunks"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "export_id"], ["exports.tenant_id", "exports.id"]),
    )

    export_id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
