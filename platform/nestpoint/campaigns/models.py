"""Tables of campaigns: a chain's campaigns, the grants they made, the event cursor.

* ``campaigns``: one play (``kind``) with its schedule, audience, actions, budget and caps,
  window, goal and holdout share (JSON documents checked by ``campaigns.schemas``).
  ``spent_points`` and ``spent_coupons`` are the budget used so far: reserved by a
  conditional ``UPDATE ... WHERE spent + n <= budget`` under the campaign row's lock, so
  concurrent runs never pass the budget.
* ``campaign_grants``: one row per member and trigger (``trigger_key``: ``once``, a
  recurring period ``run:2026-11``, an event's ``joined``, a child's
  ``child_months:6:<child id>``...). Its unique key ``(tenant, campaign, member,
  trigger_key)`` makes every grant exactly once, also when a job is retried or two run at
  once: the row is written in the transaction that makes the grant's effects. ``status``:
  ``granted`` (the actions ran; ``points`` and ``coupons`` say what they gave), ``holdout``
  (the member is in the control share: nothing given, kept so results can compare),
  ``over_budget`` or ``capped`` (nothing given).
* ``campaign_event_cursors``: per tenant, the last outbox event the event triggers read.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.db.base import Base, TenantOwned, TenantScoped, utcnow

CampaignStatus = Literal["draft", "scheduled", "running", "ended", "cancelled"]
CAMPAIGN_STATUSES: tuple[CampaignStatus, ...] = get_args(CampaignStatus)
GrantStatus = Literal["granted", "holdout", "over_budget", "capped"]
GRANT_STATUSES: tuple[GrantStatus, ...] = get_args(GrantStatus)


class Campaign(TenantOwned, Base):
    __tablename__ = "campaigns"
    __table_args__ = (UniqueConstraint("tenant_id", "code"),)

    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))  # a schemas.Kind
    template: Mapped[str] = mapped_column(String(64), default="")  # made from (or "")
    status: Mapped[str] = mapped_column(String(16), default="draft")  # a CampaignStatus
    schedule: Mapped[dict[str, Any]] = mapped_column(JSON)
    audience: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    actions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    budget_points: Mapped[int | None] = mapped_column(BigInteger, default=None)
    budget_coupons: Mapped[int | None] = mapped_column(Integer, default=None)
    spent_points: Mapped[int] = mapped_column(BigInteger, default=0)
    spent_coupons: Mapped[int] = mapped_column(Integer, default=0)
    cap_points_per_member: Mapped[int | None] = mapped_column(BigInteger, default=None)
    cap_coupons_per_member: Mapped[int | None] = mapped_column(Integer, default=None)
    cap_grants_per_member: Mapped[int | None] = mapped_column(Integer, default=None)
    starts_at: Mapped[datetime | None] = mapped_column(default=None)
    ends_at: Mapped[datetime | None] = mapped_column(default=None)
    goal: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    holdout_percent: Mapped[int] = mapped_column(Integer, default=0)
    holdout_seed: Mapped[str] = mapped_column(String(32))
    # The last scheduled run made (a one-off's ``once``, a recurring period's key).
    last_run_key: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CampaignGrant(TenantOwned, Base):
    __tablename__ = "campaign_grants"
    __table_args__ = (
        UniqueConstraint("tenant_id", "campaign_id", "member_id", "trigger_key"),
        ForeignKeyConstraint(["tenant_id", "campaign_id"], ["campaigns.tenant_id", "campaigns.id"]),
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        Index("ix_campaign_grants_status", "tenant_id", "campaign_id", "status"),
    )

    campaign_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    member_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    trigger_key: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # a GrantStatus
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    coupons: Mapped[int] = mapped_column(Integer, default=0)
    # What each action did: [{"type": "issue_coupon", "outcome": "issued", ...}, ...]
    outcomes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CampaignEventCursor(TenantScoped, Base):
    """How far the event triggers have read the tenant's outbox (``occurred_at``, ``id``)."""

    __tablename__ = "campaign_event_cursors"

    occurred_at: Mapped[datetime] = mapped_column()
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
