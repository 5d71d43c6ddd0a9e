"""The stored-value ledger (储值): money a member paid in advance, in fen.

* ``wallet_entries`` is the ledger, append-only (the application role may only INSERT and
  SELECT it). Every movement has a kind, signed amounts split into principal (money the
  member paid) and bonus (money the chain gave, 储值赠送), the balances after, its cause,
  the store, and the client's idempotency key where one was given.
* ``wallet_lots`` are the credits: a top-up's principal, its bonus, a refund's return, an
  adjustment; each with the store it came in at and ``remaining``. Spending takes principal
  lots first (oldest first), bonus lots last.
* ``wallet_accounts`` hold the running totals per member, principal and bonus apart, so a
  balance is one row read: ``principal == sum(entries.principal_fen) == sum(principal lots'
  remaining)``, the same for bonus, and neither below zero (tested as invariants).
* ``wallet_rules`` are a chain's bonus rules: tiers of top-up thresholds and their bonus.

Every change locks the member's points account first, then the wallet account: the one lock
order of the ledgers (docs/guarantees.md).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import JSON, BigInteger, ForeignKeyConstraint, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.db.base import Base, TenantOwned, TenantScoped, utcnow

# ``topup``: principal paid in; ``bonus``: the top-up's bonus; ``spend``: an order paid with
# it; ``refund``: an order's refund gave it back; ``expire``: bonus past its date (reserved:
# no chain rule expires bonus yet); ``adjust``: HQ by hand; ``transfer``: a member merge.
WalletEntryKind = Literal["topup", "bonus", "spend", "refund", "expire", "adjust", "transfer"]
WALLET_ENTRY_KINDS: tuple[WalletEntryKind, ...] = get_args(WalletEntryKind)
# What caused an entry; ``cause_id`` names it (the top-up entry, the order, the refund, the
# adjustment, the merged member).
WalletCause = Literal["topup", "order", "refund", "adjust", "merge", "expiry"]
WALLET_CAUSES: tuple[WalletCause, ...] = get_args(WalletCause)
# How a top-up was paid: cash at the till, or through Stripe (card, Alipay, WeChat Pay: a
# payment method the member's device made; credited once the payment succeeds).
Tender = Literal["cash", "stripe"]
TENDERS: tuple[Tender, ...] = get_args(Tender)
Bucket = Literal["principal", "bonus"]


class WalletRulesRow(TenantScoped, Base):
    """A chain's stored-value rules (one row per tenant; none: no bonus)."""

    __tablename__ = "wallet_rules"

    # [{"threshold_fen": 100000, "bonus_fen": 10000}, ...], thresholds rising.
    bonus_tiers: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    bonus_valid_days: Mapped[int | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WalletAccount(TenantScoped, Base):
    """Running totals of one member's stored value (primary key: tenant and member)."""

    __tablename__ = "wallet_accounts"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
    )

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    principal_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    bonus_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WalletLot(TenantOwned, Base):
    __tablename__ = "wallet_lots"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        Index("ix_wallet_lots_member", "tenant_id", "member_id", "bucket", "created_at"),
    )

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    bucket: Mapped[str] = mapped_column(String(16))  # a Bucket
    store_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    amount: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)  # bonus only; None: never


class WalletEntry(TenantOwned, Base):
    __tablename__ = "wallet_entries"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        Index("ix_wallet_entries_member", "tenant_id", "member_id", "created_at"),
        Index("ix_wallet_entries_cause", "tenant_id", "cause_type", "cause_id"),
    )

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    kind: Mapped[str] = mapped_column(String(16))  # a WalletEntryKind
    principal_fen: Mapped[int] = mapped_column(BigInteger)  # signed
    bonus_fen: Mapped[int] = mapped_column(BigInteger)  # signed
    principal_after: Mapped[int] = mapped_column(BigInteger)
    bonus_after: Mapped[int] = mapped_column(BigInteger)
    cause_type: Mapped[str] = mapped_column(String(16))  # a WalletCause
    cause_id: Mapped[str] = mapped_column(String(100))
    store_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    tender: Mapped[str | None] = mapped_column(String(16), default=None)  # top-ups: a Tender
    idempotency_key: Mapped[str | None] = mapped_column(String(100), default=None)
    reason: Mapped[str] = mapped_column(String(200), default="")
    actor: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


TopupStatus = Literal["pending", "credited", "failed"]


class WalletTopup(TenantOwned, Base):
    """A top-up paid through Stripe: asked for, then credited once when the payment
    succeeds (its id is the ``topup`` entry's id), or failed. Cash top-ups are credited at
    once and need no row here."""

    __tablename__ = "wallet_topups"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        Index("ix_wallet_topups_member", "tenant_id", "member_id", "created_at"),
    )

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    store_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    # The bonus the chain's rules promised when the member paid (a rule changed before the
    # payment succeeded does not take it back).
    bonus_fen: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # a TopupStatus
    payment_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    idempotency_key: Mapped[str] = mapped_column(String(100))
    actor: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column(default=None)
