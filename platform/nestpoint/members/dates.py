"""Sanity rules for the dates of a member and their children (pure functions; docs/members.md).

``today`` is the tenant's local date. Each rule raises ``Invalid`` naming the field.
"""

from __future__ import annotations

from datetime import date, timedelta

from dateutil.relativedelta import relativedelta

from nestpoint.errors import Invalid

EARLIEST_BIRTHDAY = date(1900, 1, 1)
# A child of a mother-and-baby programme is under 18.
CHILD_MAX_AGE = relativedelta(years=18)
# A pregnancy lasts about 40 weeks: a due date is at most ~10 months ahead.
DUE_DATE_MAX_AHEAD = timedelta(days=300)
# Past 42 weeks of pregnancy (two weeks after the due date) the birth has almost surely
# happened: the pregnancy shows as ``birth_overdue`` until the birth is recorded, and a
# pregnancy is not accepted with a due date already that far past.
OVERDUE_AFTER = timedelta(weeks=2)
# The most premature births come about 18 weeks before the due date.
BIRTH_MAX_BEFORE_DUE = timedelta(weeks=20)


def check_birthday(birthday: date | None, today: date, field: str = "birthday") -> None:
    """A member's birthday: not in the future, not before 1900."""
    if birthday is None:
        return
    if birthday > today:
        raise Invalid.field(field, f"a birthday cannot be in the future (today is {today})")
    if birthday < EARLIEST_BIRTHDAY:
        raise Invalid.field(field, f"a birthday cannot be before {EARLIEST_BIRTHDAY}")


def check_birth_date(birth_date: date, today: date, field: str = "birth_date") -> None:
    """A child's birth date: not in the future, and less than 18 years ago."""
    if birth_date > today:
        raise Invalid.field(field, f"a birth date cannot be in the future (today is {today})")
    if birth_date <= today - CHILD_MAX_AGE:
        raise Invalid.field(field, "a child's birth date is less than 18 years ago")


def check_due_date(due_date: date, today: date, field: str = "due_date") -> None:
    """A pregnancy's due date: at most 300 days ahead, at most two weeks past."""
    if due_date > today + DUE_DATE_MAX_AHEAD:
        raise Invalid.field(
            field, f"a due date is at most {DUE_DATE_MAX_AHEAD.days} days ahead (today is {today})"
        )
    if due_date < today - OVERDUE_AFTER:
        raise Invalid.field(
            field,
            f"a due date more than {OVERDUE_AFTER.days} days past: record the child with its"
            " birth_date instead",
        )


def check_birth_against_due(birth_date: date, due_date: date | None, field: str) -> None:
    """A recorded birth is at most 20 weeks before the pregnancy's due date."""
    if due_date is not None and birth_date < due_date - BIRTH_MAX_BEFORE_DUE:
        raise Invalid.field(
            field,
            f"a birth more than {BIRTH_MAX_BEFORE_DUE.days // 7} weeks before the due date"
            f" ({due_date}) is not plausible",
        )


def is_overdue(due_date: date, today: date) -> bool:
    return due_date < today - OVERDUE_AFTER
