"""Retention: a chain's rules erase inactive members and grown children's data, by a job,
with a report; a preview first; nothing without rules; nothing twice."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

from dateutil.relativedelta import relativedelta
from sqlalchemy import select, update

from loyalty.helpers import new_phone
from nestpoint.context import Actor, acting_as, tenant_context
from nestpoint.db import scoped_session
from nestpoint.db.base import utcnow
from nestpoint.members.models import Child, Member
from nestpoint.privacy import retention
from nestpoint.privacy.models import RetentionRun

CONSENT = {"granted": True, "source": "pos"}


async def _enrol(client: Any, tenant: Any, **extra: Any) -> str:
    body = {"phone": new_phone(), "name": "会员"} | extra
    r = await client.post("/api/v1/members", json=body, headers=tenant.hq())
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _set(tenant_id: uuid.UUID, model: Any, row_id: str, **values: Any) -> None:
    with tenant_context(tenant_id):
        async with scoped_session() as session:
            await session.execute(
                update(model).where(model.id == uuid.UUID(row_id)).values(**values)
            )


async def _runs(tenant_id: uuid.UUID) -> list[RetentionRun]:
    with tenant_context(tenant_id):
        async with scoped_session() as session:
            return list((await session.scalars(select(RetentionRun))).all())


async def test_the_rules_erase_what_is_due_with_a_report(client, make_tenant, worker) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant()
    hq = t.hq()
    now = utcnow()
    long_ago = now - relativedelta(years=4)
    gone = await _enrol(client, t)
    await _set(t.id, Member, gone, joined_at=long_ago)
    bought_lately = await _enrol(client, t)
    await _set(
        t.id, Member, bought_lately, joined_at=long_ago, last_order_at=now - timedelta(days=300)
    )
    fresh = await _enrol(client, t)
    young = (now - timedelta(days=100)).date().isoformat()
    parent = await _enrol(
        client,
        t,
        guardian_consent=CONSENT,
        children=[
            {"nickname": "大宝", "birth_date": young},
            {"nickname": "小宝", "birth_date": young},
        ],
    )
    r = await client.get(f"/api/v1/members/{parent}", headers=hq)
    grown, little = r.json()["children"]
    await _set(t.id, Child, grown["id"], birth_date=(now - relativedelta(years=15)).date())

    # No rules yet: nothing is due, and the daily job writes no report.
    r = await client.get("/api/v1/privacy/policy", headers=hq)
    assert r.json() == {"inactive_member_years": None, "child_data_age_years": None}
    r = await client.get("/api/v1/privacy/retention-preview", headers=hq)
    assert r.json() == {"members": 0, "children": 0}
    await retention.apply(t.id)
    assert await _runs(t.id) == []

    rules = {"inactive_member_years": 3, "child_data_age_years": 14}
    r = await client.put("/api/v1/privacy/policy", json=rules, headers=hq)
    assert r.status_code == 200
    assert r.json() == rules
    r = await client.put("/api/v1/privacy/policy", json={"inactive_member_years": 0}, headers=hq)
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == "inactive_member_years"
    r = await client.get("/api/v1/privacy/retention-preview", headers=hq)
    assert r.json() == {"members": 1, "children": 1}

    r = await client.post("/api/v1/privacy/retention-runs", headers=hq)
    assert r.status_code == 202, r.text
    run = r.json()
    assert (run["trigger"], run["policy"], run["finished_at"]) == ("api", rules, None)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run = (await client.get(f"/api/v1/privacy/retention-runs/{run['id']}", headers=hq)).json()
        if run["finished_at"]:
            break
        await asyncio.sleep(0.1)
    assert (run["members_erased"], run["children_erased"], run["member_ids"]) == (1, 1, [gone])

    assert (await client.get(f"/api/v1/members/{gone}", headers=hq)).status_code == 404
    r = await client.get(f"/api/v1/members/{gone}/erasure", headers=hq)
    assert (r.json()["source"], r.json()["reason"]) == (
        "retention",
        "retention: inactive for 3 years",
    )
    for kept in (bought_lately, fresh, parent):
        assert (await client.get(f"/api/v1/members/{kept}", headers=hq)).status_code == 200
    r = await client.get(f"/api/v1/members/{parent}", headers=hq)
    assert [c["id"] for c in r.json()["children"]] == [little["id"]]

    # Again (the daily job, the CLI's path): nothing left to erase, a report that says so.
    with acting_as(Actor("system", name="tests")), tenant_context(t.id):
        again = await retention.run(await retention.start("cli"))
    assert (again.members_erased, again.children_erased) == (0, 0)
    await retention.apply(t.id)
    runs = await _runs(t.id)
    assert sorted(r.trigger for r in runs) == ["api", "cli", "daily"]
    r = await client.get("/api/v1/privacy/retention-runs", headers=hq)
    assert [item["members_erased"] for item in r.json()["items"]] == [1, 0, 0]


async def test_only_hq_sets_the_rules(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant()
    rules = {"inactive_member_years": 5, "child_data_age_years": None}
    r = await client.put("/api/v1/privacy/policy", json=rules, headers=t.store("S1"))
    assert r.status_code == 403
    r = await client.post("/api/v1/privacy/retention-runs", headers=t.store("S1"))
    assert r.status_code == 403
    r = await client.put("/api/v1/privacy/policy", json=rules, headers=t.hq())
    assert r.status_code == 200
    r = await client.get("/api/v1/audit", params={"limit": 100}, headers=t.hq())
    [changed] = [e for e in r.json()["items"] if e["action"] == "privacy.policy_changed"]
    assert changed["changes"]["after"] == rules
