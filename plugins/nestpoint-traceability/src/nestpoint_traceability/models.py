"""The plugin's tables, tenant-owned with row-level security (see the migration).

* ``traceability_batches``: one production batch of a product (SKU + batch number, unique
  in the chain), its dates and origin, and the batch's own scan code (printed on every
  package of the batch). Written by a CSV import, never changed.
* ``traceability_reports``: the batch's quality inspection report (质检报告), the document
  itself (bytes, content type, size, SHA-256); uploading again replaces it.
* ``traceability_unit_codes``: unguessable codes, one per unit (a tin of formula), made on
  request for a batch in print runs. The row is the lock a scan takes before it counts the
  code's earlier scans.
* ``traceability_scans``: every scan of a code, append-only (the application role may only
  insert and read): public look-ups and members' scans. The counterfeit hint is derived
  from them, never stored.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import Date, Index, Integer, LargeBinary, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.plugins.api import Base, TenantOwned, utcnow


class TraceBatch(TenantOwned, Base):
    __tablename__ = "traceability_batches"
    __table_args__ = (
        UniqueConstraint("tenant_id", "sku", "batch_no"),
        UniqueConstraint("tenant_id", "scan_code"),
        Index("ix_traceability_batches_import", "tenant_id", "import_id"),
    )

    sku: Mapped[str] = mapped_column(String(64))
    batch_no: Mapped[str] = mapped_column(String(64))
    product_name: Mapped[str] = mapped_column(String(200))
    production_date: Mapped[date] = mapped_column(Date)
    expiry_date: Mapped[date] = mapped_column(Date)
    origin: Mapped[str] = mapped_column(String(200))
    scan_code: Mapped[str] = mapped_column(String(24))
    import_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TraceReport(TenantOwned, Base):
    __tablename__ = "traceability_reports"
    __table_args__ = (UniqueConstraint("tenant_id", "batch_id"),)

    batch_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    # Loaded only when the document itself is served.
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    uploaded_at: Mapped[datetime] = mapped_column(default=utcnow)


class TraceUnitCode(TenantOwned, Base):
    __tablename__ = "traceability_unit_codes"
    __table_args__ = (
        UniqueConstraint("tenant_id", "code"),
        Index("ix_traceability_unit_codes_batch", "tenant_id", "batch_id", "print_run_id"),
    )

    batch_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    code: Mapped[str] = mapped_column(String(24))
    print_run_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TraceScan(TenantOwned, Base):
    __tablename__ = "traceability_scans"
    __table_args__ = (Index("ix_traceability_scans_code", "tenant_id", "code", "scanned_at"),)

    code: Mapped[str] = mapped_column(String(24))
    kind: Mapped[str] = mapped_column(String(8))  # unit | batch
    batch_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    scanned_at: Mapped[datetime] = mapped_column(default=utcnow)
    member_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    store_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    source: Mapped[str] = mapped_column(String(8))  # public | member
