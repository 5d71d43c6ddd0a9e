"""Date sanity rules (members.dates): birthdays, birth and due dates, overdue births, paid_at."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from dateutil.relativedelta import relativedelta
from sqlalchemy import update

from loyalty.helpers import order_body
from loyalty.support import all_pages, member
from nestpoint.context import tenant_context
from nestpoint.db import scoped_session
from nestpoint.errors import Invalid
from nestpoint.members import dates
from nestpoint.members.models import Child
from nestpoint.members.service import stage_of
from nestpoint.orders.schemas import check_paid_at

CONSENT = {"granted": True, "source": "pos"}
D = date(2026, 6, 15)


# ------------------------------------------------------------------ the rules, alone


@pytest.mark.parametrize(
    ("rule", "value", "ok"),
    [
        (dates.check_birthday, D, True),
        (dates.check_birthday, date(1900, 1, 1), True),
        (dates.check_birthday, D + timedelta(days=1), False),
        (dates.check_birthday, date(1899, 12, 31), False),
        (dates.check_birth_date, D, True),
        (dates.check_birth_date, D - relativedelta(years=18) + timedelta(days=1), True),
        (dates.check_birth_date, D - relativedelta(years=18), False),
        (dates.check_birth_date, D + timedelta(days=1), False),
        (dates.check_due_date, D + timedelta(days=300), True),
        (dates.check_due_date, D + timedelta(days=301), False),
        (dates.check_due_date, D - timedelta(days=14), True),
        (dates.check_due_date, D - timedelta(days=15), False),
    ],
)
def test_date_rules(rule, value, ok):  # type: ignore[no-untyped-def]
    if ok:
        rule(value, D, "f")
        return
    with pytest.raises(Invalid) as refused:
        rule(value, D, "f")
    assert [e.field for e in refused.value.errors] == ["f"]


def test_a_birth_long_before_the_due_date_is_refused():
    dates.check_birth_against_due(D - timedelta(weeks=20), D, "birth_date")
    dates.check_birth_against_due(D + timedelta(weeks=3), D, "birth_date")  # late is normal
    with pytest.raises(Invalid):
        dates.check_birth_against_due(D - timedelta(weeks=20, days=1), D, "birth_date")


def test_a_pregnancy_past_two_weeks_is_birth_overdue():
    assert stage_of(None, D, D) == "pregnant"
    assert stage_of(None, D, D - timedelta(days=14)) == "pregnant"
    assert stage_of(None, D, D - timedelta(days=15)) == "birth_overdue"
    assert stage_of(D - timedelta(days=30), D, D - timedelta(days=400)) == "0-6m"


def test_paid_at_allows_only_clock_skew():
    now = datetime(2026, 6, 15, 12, tzinfo=UTC)
    check_paid_at(now - timedelta(days=30), now)
    check_paid_at(now + timedelta(minutes=5), now)
    with pytest.raises(Invalid) as refused:
        check_paid_at(now + timedelta(minutes=5, seconds=1), now)
    assert refused.value.errors[0].field == "paid_at"


# ------------------------------------------------------------------ through the API


def _today() -> date:
    return datetime.now(UTC).date()


async def _refused(r, field: str) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [field]


async def test_impossible_member_and_child_dates_are_refused(
    client, make_tenant, enrol, row_counts
):
    t = await make_tenant()
    today = _today()
    future = (today + timedelta(days=400)).isoformat()
    before = await row_counts(t.id)
    cases = [
        ({"birthday": "2099-01-01"}, "birthday"),
        ({"birthday": "1899-12-31"}, "birthday"),
        ({"children": [{"birth_date": future}]}, "children.0.birth_date"),
        ({"children": [{"due_date": future}]}, "children.0.due_date"),
        (
            {"children": [{"due_date": (today - timedelta(days=365)).isoformat()}]},
            "children.0.due_date",
        ),
    ]
    for extra, field in cases:
        body = {"phone": "13900000000", "guardian_consent": CONSENT} | extra
        await _refused(await client.post("/api/v1/members", json=body, headers=t.hq()), field)
    assert await row_counts(t.id) == before

    created = await enrol(t.hq(), guardian_consent=CONSENT)
    url = f"/api/v1/members/{created['id']}"
    await _refused(await client.patch(url, json={"birthday": future}, headers=t.hq()), "birthday")
    await _refused(
        await client.post(f"{url}/children", json={"birth_date": future}, headers=t.hq()),
        "birth_date",
    )
    await _refused(
        await client.post(f"{url}/children", json={"due_date": future}, headers=t.hq()),
        "due_date",
    )
    assert (await member(client, t.hq(), created["id"]))["children"] == []


async def test_a_recorded_birth_must_be_plausible(client, make_tenant, enrol):
    t = await make_tenant()
    today = _today()
    due = today + timedelta(days=250)
    created = await enrol(
        t.hq(), guardian_consent=CONSENT, children=[{"due_date": due.isoformat()}]
    )
    url = f"/api/v1/members/{created['id']}/children/{created['children'][0]['id']}/birth"
    tomorrow = (today + timedelta(days=1)).isoformat()
    await _refused(
        await client.post(url, json={"birth_date": tomorrow}, headers=t.hq()), "birth_date"
    )
    # 250 days before the due date is not a birth but a mistake.
    await _refused(
        await client.post(url, json={"birth_date": today.isoformat()}, headers=t.hq()), "birth_date"
    )
    assert (await member(client, t.hq(), created["id"]))["children"][0]["stage"] == "pregnant"


async def test_an_overdue_pregnancy_shows_until_the_birth_is_recorded(client, make_tenant, enrol):
    t = await make_tenant()
    today = _today()
    created = await enrol(
        t.hq(),
        guardian_consent=CONSENT,
        children=[{"due_date": (today + timedelta(days=5)).isoformat()}],
    )
    (pregnancy,) = created["children"]
    # Three weeks later (moved in the database: the API refuses such a due date today).
    due = today - timedelta(days=16)
    with tenant_context(t.id):
        async with scoped_session() as session:
            await session.execute(
                update(Child).where(Child.id == uuid.UUID(pregnancy["id"])).values(due_date=due)
            )
            await session.commit()
    assert (await member(client, t.hq(), created["id"]))["children"][0]["stage"] == "birth_overdue"
    overdue = await all_pages(client, "/api/v1/members", t.hq(), stage="birth_overdue")
    pregnant = await all_pages(client, "/api/v1/members", t.hq(), stage="pregnant")
    assert created["id"] in [m["id"] for m in overdue]
    assert created["id"] not in [m["id"] for m in pregnant]

    url = f"/api/v1/members/{created['id']}/children/{pregnancy['id']}/birth"
    born = (today - timedelta(days=18)).isoformat()
    r = await client.post(url, json={"birth_date": born}, headers=t.hq())
    assert r.status_code == 200, r.text
    assert r.json()["stage"] == "0-6m"
    overdue = await all_pages(client, "/api/v1/members", t.hq(), stage="birth_overdue")
    assert created["id"] not in [m["id"] for m in overdue]


async def test_an_order_paid_in_the_future_is_refused(client, make_tenant, row_counts):
    t = await make_tenant()
    before = await row_counts(t.id)
    body = order_body()
    body["paid_at"] = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = await client.post("/api/v1/orders", json=body, headers=t.hq())
    await _refused(r, "paid_at")
    assert await row_counts(t.id) == before
    body["paid_at"] = (datetime.now(UTC) + timedelta(minutes=2)).isoformat()  # clock skew
    r = await client.post("/api/v1/orders", json=body, headers=t.hq())
    assert r.status_code == 201, r.text
