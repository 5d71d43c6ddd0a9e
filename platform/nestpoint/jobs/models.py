"""Tables of the jobs foundation: the daily jobs' runs, per tenant and local date."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, String
from sqlalchemy.orm import Mapped, mapped_column

from nestpoint.db.base import Base, TenantScoped, utcnow


class DailyRun(TenantScoped, Base):
    """A daily job claimed for one tenant and one of its local dates.

    ``jobs.enqueue_due`` inserts the row and enqueues the job in the same transaction, so a
    job is enqueued once per local day however often the check runs, and a day the scheduler
    missed (it was down over the chain's night) is caught up when it comes back.
    """

    __tablename__ = "daily_runs"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    local_date: Mapped[date] = mapped_column(Date, primary_key=True)
    enqueued_at: Mapped[datetime] = mapped_column(default=utcnow)
