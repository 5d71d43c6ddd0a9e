"""The points ledger.

* ``point_entries`` is the ledger: append-only (the application role may only INSERT and
  SELECT it). Every movement has a kind, a signed amount, the balance after, and its cause.
* ``point_lots`` are the credits: each earn (or returned redemption) is a lot with earned-at,
  available-at (the pending period) and expires-at. Spending consumes lots soonest-to-expire
  first; ``remaining`` is what is left of a lot.
* ``point_accounts`` hold the running totals per member, so a balance is one row read:
  ``balance == sum(entries.amount) == sum(lots.remaining) - debt`` (tested as invariants).
  ``debt`` is clawback the member owes after a refund reversed points already spent; later
  earnings repay it first, and so does every path that puts points back into lots: while
  there is debt no lot has points left, so ``balance == -debt``.
* ``merged_into_id`` marks the account of a member merged away: a till that waited on its
  lock sees the mark and follows it to the target (see ``lock_account``).
* ``point_holds`` reserve points at the till (scan) until capture (payment) or release
  (cancel or timeout); ``point_hold_allocations`` record which lots a hold took.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal, get_args

from sqlalchemy import (
    BigInteger,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.db.base import Base, TenantOwned, TenantScoped, utcnow

# ------------------------------------------------------------------ the ledger's vocabulary
# One set of words for services, bulk writes, jobs and schemas (the columns stay strings).

# ``earn`` is an order line's; ``bonus`` is points the programme gives (a bundle's welcome
# points), never tied to a line, so a refund never takes it back.
# ``migration`` is an opening balance brought over from a legacy system by an import
# (``nestpoint.imports``), with the legacy lot's original expiry.
EntryKind = Literal[
    "earn",
    "redeem",
    "hold",
    "release",
    "expire",
    "reverse",
    "adjust",
    "transfer",
    "bonus",
    "migration",
]
ENTRY_KINDS: tuple[EntryKind, ...] = get_args(EntryKind)
# What caused an entry; ``cause_id`` names it (an order, refund, hold, run or member id; a
# benefit exchange's entitlement; a bundle grant).
CauseType = Literal[
    "order",
    "refund",
    "hold",
    "adjust",
    "transfer",
    "merge",
    "expiry",
    "exchange",
    "bundle",
    "import",  # cause_id: the legacy system's reference of the opening balance
    "campaign",  # cause_id: "<campaign id>:<trigger key>" (a campaign's grant)
    "referral",  # cause_id: "<referral or assist id>:<side>" (a referral's reward)
]
CAUSE_TYPES: tuple[CauseType, ...] = get_args(CauseType)
# Where a lot's points came from.
LotSource = Literal["earn", "return", "adjust", "transfer", "migration"]
HoldStatus = Literal["held", "captured", "released"]
HOLD_STATUSES: tuple[HoldStatus, ...] = get_args(HoldStatus)


class PointAccount(TenantScoped, Base):
    """Running totals of one member (primary key: tenant and member)."""

    __tablename__ = "point_accounts"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
    )

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    debt: Mapped[int] = mapped_column(BigInteger, default=0)
    held: Mapped[int] = mapped_column(BigInteger, default=0)
    lifetime_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    # Points earned on ``earned_day`` (tenant-local date, ISO), for the per-day cap.
    earned_day: Mapped[str] = mapped_column(String(10), default="")
    earned_today: Mapped[int] = mapped_column(BigInteger, default=0)
    merged_into_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    # Set when the member was erased (migration 0020): the account takes no new business.
    # On the account row, which every till transaction locks first, so a sale racing the
    # erasure sees it once the erasure commits.
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PointLot(TenantOwned, Base):
    __tablename__ = "point_lots"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        Index("ix_point_lots_spendable", "tenant_id", "member_id", "expires_at"),
        Index("ix_point_lots_expiry", "tenant_id", "expires_at"),
        Index("ix_point_lots_order_line", "tenant_id", "order_id", "line_no"),
    )

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    amount: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(16))  # a LotSource
    order_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    line_no: Mapped[int | None] = mapped_column(Integer, default=None)
    earned_at: Mapped[datetime] = mapped_column(default=utcnow)
    available_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Far future for "never": keeps ordering and the expiry index simple.
    expires_at: Mapped[datetime] = mapped_column()


class PointEntry(TenantOwned, Base):
    __tablename__ = "point_entries"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        Index("ix_point_entries_member", "tenant_id", "member_id", "created_at"),
        Index("ix_point_entries_cause", "tenant_id", "cause_type", "cause_id"),
        Index("ix_point_entries_created", "tenant_id", "created_at"),  # analytics, by period
    )

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    kind: Mapped[str] = mapped_column(String(16))  # an EntryKind
    amount: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    lot_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    cause_type: Mapped[str] = mapped_column(String(16))  # a CauseType
    cause_id: Mapped[str] = mapped_column(String(100))
    line_no: Mapped[int | None] = mapped_column(Integer, default=None)
    reason: Mapped[str] = mapped_column(String(200), default="")
    actor: Mapped[str] = mapped_column(String(100), default="")
    # Set for requests a client may retry (adjustments, transfers): unique per tenant.
    idempotency_key: Mapped[str | None] = mapped_column(String(100), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PointHold(TenantOwned, Base):
    __tablename__ = "point_holds"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        Index("ix_point_holds_open", "tenant_id", "status", "expires_at"),
        Index("ix_point_holds_member", "tenant_id", "member_id", "created_at"),
        Index("ix_point_holds_store", "tenant_id", "store_id", "created_at"),
    )

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    store_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="held")  # a HoldStatus
    idempotency_key: Mapped[str | None] = mapped_column(String(100), default=None)
    order_ref: Mapped[str | None] = mapped_column(String(150), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)


class PointHoldAllocation(TenantScoped, Base):
    __tablename__ = "point_hold_allocations"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "hold_id"], ["point_holds.tenant_id", "point_holds.id"]),
        ForeignKeyConstraint(["tenant_id", "lot_id"], ["point_lots.tenant_id", "point_lots.id"]),
    )

    hold_id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    lot_id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    amount: Mapped[int] = mapped_column(BigInteger)
