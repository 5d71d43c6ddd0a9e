"""The plugin's tables, tenant-owned with row-level security (see the migration).

* ``surveys``: a survey HQ wrote (its questions, audience, schedule). Its row is the lock
  that opening a round takes, so two openings never number a round twice nor open the
  month's scheduled round twice.
* ``survey_rounds``: one sending of a survey, with the questions, title and anonymity as
  they were when it opened (a survey changed later changes only later rounds). Invitations
  go out batch after batch; ``invite_cursor`` is the last member invited, so a batch run
  twice invites nobody twice.
* ``survey_invitations``: one per member and round: the SHA-256 of the member's personal
  link's token (never the token) and whether it was answered.
* ``survey_responses``: the answers, append-only. An anonymous round's carry no member and
  only the day they came in.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Index, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.plugins.api import Base, TenantOwned, utcnow


class Survey(TenantOwned, Base):
    __tablename__ = "surveys"
    __table_args__ = (UniqueConstraint("tenant_id", "code"),)

    code: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(1000), default="")
    questions: Mapped[list[dict[str, Any]]] = mapped_column(JSON(), default=list)
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False)
    audience: Mapped[dict[str, Any]] = mapped_column(default=dict)
    schedule: Mapped[dict[str, Any] | None] = mapped_column(JSON(), default=None)
    # Since when the schedule holds: a month's round opens only if its moment is after it.
    schedule_since: Mapped[datetime | None] = mapped_column(default=None)
    open_days: Mapped[int] = mapped_column(Integer, default=14)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SurveyRound(TenantOwned, Base):
    __tablename__ = "survey_rounds"
    __table_args__ = (
        UniqueConstraint("tenant_id", "survey_id", "number"),
        UniqueConstraint("tenant_id", "survey_id", "period"),
        Index("ix_survey_rounds_status", "tenant_id", "status"),
    )

    survey_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    number: Mapped[int] = mapped_column(Integer)
    period: Mapped[str | None] = mapped_column(String(7), default=None)  # "2026-12": scheduled
    title: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(1000), default="")
    questions: Mapped[list[dict[str, Any]]] = mapped_column(JSON(), default=list)
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False)
    audience: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="inviting")  # inviting|open|closed
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    closes_at: Mapped[datetime] = mapped_column()
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    invite_cursor: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    invited: Mapped[int] = mapped_column(Integer, default=0)


class SurveyInvitation(TenantOwned, Base):
    __tablename__ = "survey_invitations"
    __table_args__ = (
        UniqueConstraint("tenant_id", "round_id", "member_id"),
        UniqueConstraint("tenant_id", "token_hash"),
    )

    round_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    member_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    token_hash: Mapped[str] = mapped_column(String(64))
    responded: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SurveyResponse(TenantOwned, Base):
    __tablename__ = "survey_responses"
    __table_args__ = (
        UniqueConstraint("tenant_id", "round_id", "member_id"),  # NULLs (anonymous) differ
        Index("ix_survey_responses_round", "tenant_id", "round_id", "submitted_at"),
    )

    round_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    member_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), default=None)
    answers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tags: Mapped[list[str]] = mapped_column(default=list)  # the tags the answers set
    submitted_at: Mapped[datetime] = mapped_column(default=utcnow)
