"""Tables of imports: the job, its file and row report in chunks, and the legacy keys.

All belong to a tenant (``tenant_id`` leads every key; RLS on PostgreSQL). The uploaded file
and the row report live in the database so that every API and worker replica reads what
any other wrote. Rows are staged in temporary tables of the importing transaction
(``service``), never here.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.db.base import Base, TenantOwned, TenantScoped, utcnow


class Import(TenantOwned, Base):
    """One import job: ``queued`` → ``running`` (``rows_done`` of ``rows_total``) → ``done``
    (every row imported or skipped as already there), ``invalid`` (nothing written; the
    row report says why) or ``failed`` (``error``; run again, it starts over)."""

    __tablename__ = "imports"
    __table_args__ = (Index("ix_imports_tenant_id_created_at", "tenant_id", "created_at"),)

    kind: Mapped[str] = mapped_column(String(16))
    format: Mapped[str] = mapped_column(String(8))
    file_name: Mapped[str] = mapped_column(String(200), default="")
    mapping: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    requested_by: Mapped[str] = mapped_column(String(100), default="")
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    chunks: Mapped[int] = mapped_column(Integer, default=0)  # of the file (0: a local file)
    rows_total: Mapped[int] = mapped_column(BigInteger, default=0)
    rows_done: Mapped[int] = mapped_column(BigInteger, default=0)
    rows_imported: Mapped[int] = mapped_column(BigInteger, default=0)
    rows_skipped: Mapped[int] = mapped_column(BigInteger, default=0)
    rows_bad: Mapped[int] = mapped_column(BigInteger, default=0)
    report_chunks: Mapped[int] = mapped_column(Integer, default=0)
    report_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(String(500), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class ImportChunk(TenantScoped, Base):
    """One piece of an import's file (``part='file'``) or row report (``part='report'``)."""

    __tablename__ = "import_chunks"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "import_id"], ["imports.tenant_id", "imports.id"]),
    )

    import_id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    part: Mapped[str] = mapped_column(String(8), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ImportKey(TenantScoped, Base):
    """A legacy system's id of a member or a child, and the row it became here: a second
    run of a file finds its rows by these and skips them; children, balances, orders and
    tags name their member by its legacy id through them."""

    __tablename__ = "import_keys"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # member | child
    ref: Mapped[str] = mapped_column(String(100), primary_key=True)
    target_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    import_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
