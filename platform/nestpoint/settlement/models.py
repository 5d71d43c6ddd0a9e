"""Franchise settlement (加盟结算): the chain's rule and its monthly periods.

* ``settlement_rules``: one row per chain (none: the defaults): the value of a point in
  fen, the fee HQ pays a franchisee per benefit use it fulfils, and fees per benefit.
* ``settlement_periods``: one row per chain and month (``2026-11``), ``draft`` while it
  may be computed again, ``closed`` once HQ closed it. A closed row is never updated nor
  deleted: a trigger refuses it on PostgreSQL and SQLite alike (migration
  ``0034_settlement``).
* ``settlement_lines``: per period, one line per store and one for HQ (``store_id`` null)
  and per month the figures come from (``origin_month``: the period's own month, or an
  earlier closed month whose ledger got an entry after it closed). Draft lines are replaced
  by each computation; closed lines (``closed`` true) are immutable like their period.

Money in integer fen, points in points (docs/settlement.md).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.benefits.models import BenefitUse
from nestpoint.db.base import Base, TenantOwned, TenantScoped, utcnow

PeriodStatus = Literal["draft", "closed"]


class SettlementRulesRow(TenantScoped, Base):
    """A chain's settlement rule (one row per tenant; none: the defaults)."""

    __tablename__ = "settlement_rules"

    point_value_fen: Mapped[int] = mapped_column(Integer, default=1)
    benefit_fee_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    # {benefit code: fen per use}, overriding ``benefit_fee_fen`` for those benefits.
    benefit_fees: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SettlementPeriod(TenantOwned, Base):
    __tablename__ = "settlement_periods"
    __table_args__ = (UniqueConstraint("tenant_id", "month"),)

    month: Mapped[str] = mapped_column(String(7))  # 2026-11, the chain's calendar
    status: Mapped[str] = mapped_column(String(8), default="draft")  # a PeriodStatus
    starts_at: Mapped[datetime] = mapped_column()  # the month's first instant, in UTC
    ends_at: Mapped[datetime] = mapped_column()
    # The rule the figures were computed under.
    point_value_fen: Mapped[int] = mapped_column(Integer)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    closed_by: Mapped[str] = mapped_column(String(100), default="")


class SettlementLine(TenantOwned, Base):
    __tablename__ = "settlement_lines"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "period_id"], ["settlement_periods.tenant_id", "settlement_periods.id"]
        ),
        Index("ix_settlement_lines_period", "tenant_id", "period_id", "store_code"),
    )

    period_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    month: Mapped[str] = mapped_column(String(7))
    origin_month: Mapped[str] = mapped_column(String(7))
    store_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)  # None: HQ
    store_code: Mapped[str] = mapped_column(String(32), default="")
    store_kind: Mapped[str] = mapped_column(String(16), default="")  # "" for HQ
    settles: Mapped[bool] = mapped_column(Boolean, default=False)
    points_issued: Mapped[int] = mapped_column(BigInteger, default=0)
    points_redeemed: Mapped[int] = mapped_column(BigInteger, default=0)
    points_expired: Mapped[int] = mapped_column(BigInteger, default=0)
    benefit_uses: Mapped[int] = mapped_column(BigInteger, default=0)
    # {benefit code: net uses}: what ``benefit_uses`` counts, so a late use is priced by code.
    uses_by_benefit: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    issued_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    redeemed_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    expired_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    benefits_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    net_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    closed: Mapped[bool] = mapped_column(Boolean, default=False)


# A month of the ledgers is read by time: the points ledger by ``ix_point_entries_created``
# (points/models.py), the benefit uses by this index (migration 0034).
Index("ix_benefit_uses_settlement", BenefitUse.tenant_id, BenefitUse.created_at)
