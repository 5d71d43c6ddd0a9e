"""Tables of members' rights: erasures, the retention policy and its runs (migration 0020)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, ForeignKeyConstraint, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.db.base import Base, TenantOwned, TenantScoped, utcnow


class MemberErasure(TenantScoped, Base):
    """That a member's personal data was erased: when, why, by whom and what went. It holds
    no personal data; one row per member (a second request answers with it)."""

    __tablename__ = "member_erasures"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "member_id"], ["members.tenant_id", "members.id"]),
        Index("ix_member_erasures_tenant_id_erased_at", "tenant_id", "erased_at"),
    )

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    source: Mapped[str] = mapped_column(String(16))  # "request" or "retention"
    reason: Mapped[str] = mapped_column(String(500))
    requested_by: Mapped[str] = mapped_column(String(100))
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    erased_at: Mapped[datetime] = mapped_column(default=utcnow)
    # {plugin id: what it erased}, filled in by the ``privacy.erase_in_plugins`` job.
    plugins: Mapped[dict[str, Any]] = mapped_column(default=dict)
    plugins_erased_at: Mapped[datetime | None] = mapped_column(default=None)


class PrivacyPolicy(TenantScoped, Base):
    """A chain's retention rules; no row, or ``None``, keeps data until asked to erase it."""

    __tablename__ = "privacy_policies"

    # Members with no order and no enrolment for this many years are erased.
    inactive_member_years: Mapped[int | None] = mapped_column(Integer, default=None)
    # A child's data is erased once the child is this old (by birth date).
    child_data_age_years: Mapped[int | None] = mapped_column(Integer, default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RetentionRun(TenantOwned, Base):
    """The report of one run of the retention rules."""

    __tablename__ = "retention_runs"
    __table_args__ = (Index("ix_retention_runs_tenant_id_started_at", "tenant_id", "started_at"),)

    run_on: Mapped[date] = mapped_column(Date)  # the chain's local date
    trigger: Mapped[str] = mapped_column(String(16))  # "daily", "api" or "cli"
    policy: Mapped[dict[str, Any]] = mapped_column(default=dict)
    members_erased: Mapped[int] = mapped_column(Integer, default=0)
    children_erased: Mapped[int] = mapped_column(Integer, default=0)
    member_ids: Mapped[list[str]] = mapped_column(default=list)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
