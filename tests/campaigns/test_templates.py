"""Every ready play, end to end on a controlled clock: instantiated through the API,
activated, run by the job that drives it (the tick: schedules and events; the daily job:
dates), granting the member it is for and no one else, once."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from dateutil.relativedelta import relativedelta

from campaigns.helpers import coupon_template, grants, message_template
from nestpoint.campaigns import jobs
from nestpoint.campaigns.templates import PLAYS
from nestpoint.jobs.tenants import run_for_tenant
from segments.helpers import CONSENT, enrol, line, local_today, order

ZONE = ZoneInfo("Asia/Shanghai")
URL = "/api/v1/campaigns"


def _local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=ZONE).astimezone(UTC)


def _next(today: date, test: Any) -> date:
    day = today + timedelta(days=1)
    while not test(day):
        day += timedelta(days=1)
    return day


def _child(**dates: date) -> dict[str, Any]:
    return {
        "guardian_consent": CONSENT,
        "children": [{k: v.isoformat() for k, v in dates.items()}],
    }


# play: (the target's enrolment, the other member's, extra values)
TODAY = local_today()
PEOPLE: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "birthday_month": ({"birthday": TODAY.replace(year=1990, day=1).isoformat()}, {}),
    "milestone_hospital_bag": (_child(due_date=TODAY + timedelta(days=40)), {}),
    "milestone_newborn_welcome": (_child(birth_date=TODAY - timedelta(days=1)), {}),
    "milestone_100_days": (_child(birth_date=TODAY - timedelta(days=100)), {}),
    "milestone_first_birthday": (_child(birth_date=TODAY - relativedelta(months=12)), {}),
    "milestone_formula_6m": (_child(birth_date=TODAY - relativedelta(months=6)), {}),
    "milestone_formula_36m": (_child(birth_date=TODAY - relativedelta(months=36)), {}),
}


async def _tick(tenant_id: Any, now: datetime) -> None:
    async def go(session: Any) -> None:
        await jobs.tick(session, now)
        await jobs.run_date_triggers(session, now)

    await run_for_tenant(tenant_id, go, name="test")


@pytest.mark.parametrize("key", [p.key for p in PLAYS])
async def test_each_play_runs_end_to_end(client: Any, make_tenant: Any, key: str) -> None:
    t = await make_tenant()
    await coupon_template(t.id, "c20")
    await message_template(client, t, "hello")
    r = await client.put(
        "/api/v1/benefits/double",
        json={
            "name": "双倍积分",
            "type": "core.points_multiplier",
            "options": {"multiplier_percent": 200},
            "quota": 100,
            "period": "month",
        },
        headers=t.hq(),
    )
    assert r.status_code == 200, r.text
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "code": "play",
        "coupon_template": "c20",
        "message_template": "hello",
        "benefit_code": "double",
        "holdout_percent": 0,
    }
    if key == "festival_618":
        values |= {
            "starts_at": (now + timedelta(days=1)).isoformat(),
            "ends_at": (now + timedelta(days=3)).isoformat(),
        }
    if key == "recruitment_week":
        values["starts_at"] = (now - timedelta(minutes=1)).isoformat()
    r = await client.post(f"{URL}/templates/{key}/instantiate", json=values, headers=t.hq())
    assert r.status_code == 201, r.text
    assert (await client.post(f"{URL}/play/activate", headers=t.hq())).status_code == 200
    cid = r.json()["id"]

    target_body, other_body = PEOPLE.get(key, ({}, {}))
    target = await enrol(client, t, **target_body)
    other = await enrol(client, t, **other_body)
    at = now + timedelta(minutes=2)  # events settled
    expected_key: str
    if key == "first_purchase_gift":
        await order(client, t, target, [line("feeding", 10000)])
        expected_key = "first_purchase"
        expected = {target}
    elif key == "recruitment_week":
        expected_key, expected = "joined", {target, other}
    elif key == "member_day":
        day = _next(TODAY, lambda d: d.day == 18)
        at, expected_key = _local(day, 9, 5), f"run:{day.year}-{day.month:02d}"
        expected = {target, other}
    elif key == "festival_618":
        at, expected_key, expected = now + timedelta(days=1, minutes=1), "once", {target, other}
    elif key == "silent_reactivation":
        await order(client, t, other, [line("feeding", 10000)])
        day = _next(TODAY, lambda d: d.isoweekday() == 1)
        year, week, _ = day.isocalendar()
        at, expected_key, expected = _local(day, 10, 5), f"run:{year}-W{week:02d}", {target}
    else:
        at, expected_key, expected = _local(TODAY, 8, 5), "", {target}
    if at < now + timedelta(minutes=2):
        at = now + timedelta(minutes=2)  # after the enrolments' events settled

    await _tick(t.id, at)
    await _tick(t.id, at + timedelta(minutes=1))

    rows = await grants(t.id, uuid.UUID(cid))
    assert {str(g.member_id) for g in rows} == expected
    assert {g.status for g in rows} == {"granted"}
    assert len(rows) == len(expected)
    if expected_key:
        assert {g.trigger_key for g in rows} == {expected_key}
    assert all(o["outcome"] == "done" for g in rows for o in g.outcomes), rows[0].outcomes
