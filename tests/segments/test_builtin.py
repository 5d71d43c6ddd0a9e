"""Built-in segments: members with controlled order histories, the set-based recomputation,
each member in exactly the expected RFM group, value circle and lifecycle stage; the
chain's thresholds (API, audit) change the groups from the next run; a second run writes the
same rows; rules over the new fields; the listing of the built-in groups."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, get_args

from sqlalchemy import select, update

from nestpoint.audit.models import AuditEntry
from nestpoint.context import tenant_context
from nestpoint.db import scoped_session
from nestpoint.jobs.tenants import run_for_tenant
from nestpoint.members.models import Member
from nestpoint.segments import builtin
from nestpoint.segments.jobs import RecomputeResult, recompute
from nestpoint.segments.models import MemberSegment
from segments.helpers import backdate_joined, enrol, line, local_today, order

BUILTIN = "/api/v1/segments/builtin"
THRESHOLDS = "/api/v1/segments/thresholds"


@dataclass(frozen=True)
class Expected:
    rfm_group: str
    value_circle: str
    lifecycle: str
    recency_days: int | None
    frequency: int
    monetary_fen: int


# name: (days since joining, [(days ago, fen)], expected with the default thresholds)
HISTORIES: dict[str, tuple[int, list[tuple[int, int]], Expected]] = {
    "value": (
        400,
        [(1, 10000), (20, 10000), (40, 10000)],
        Expected("important_value", "potential", "stable", 1, 3, 30000),
    ),
    "winback": (
        400,
        [(30, 10000), (60, 10000), (100, 10000)],
        Expected("important_winback", "potential", "stable", 30, 3, 30000),
    ),
    "development": (
        400,
        [(0, 25000)],
        Expected("important_development", "none", "growing", 0, 1, 25000),
    ),
    "retention": (
        400,
        [(200, 30000)],
        Expected("important_retention", "none", "silent", 200, 1, 30000),
    ),
    "general_value": (
        400,
        [(2, 1000), (5, 1000), (14, 1000)],
        Expected("general_value", "potential", "stable", 2, 3, 3000),
    ),
    # The last order exactly 15 days ago: R is low (recent means fewer than 15 days).
    "general_winback": (
        400,
        [(15, 1000), (50, 1000), (300, 1000)],
        Expected("general_winback", "potential", "stable", 15, 3, 3000),
    ),
    "general_development": (
        400,
        [(3, 1000)],
        Expected("general_development", "none", "growing", 3, 1, 1000),
    ),
    "general_retention": (
        400,
        [(120, 1000)],
        Expected("general_retention", "none", "silent", 120, 1, 1000),
    ),
    # Over 5,000 yuan in the year: core, whatever else holds.
    "core": (
        400,
        [(10, 300000), (200, 220000)],
        Expected("important_development", "core", "growing", 10, 2, 520000),
    ),
    # Ordered, but not in the last 12 months.
    "churn": (
        400,
        [(400, 5000)],
        Expected("general_retention", "churn_warning", "silent", 400, 0, 0),
    ),
    "never_old": (400, [], Expected("no_orders", "churn_warning", "silent", None, 0, 0)),
    "welcome": (10, [(0, 1000)], Expected("general_development", "none", "welcome", 0, 1, 1000)),
    "welcome_none": (0, [], Expected("no_orders", "none", "welcome", None, 0, 0)),
    # Joined 10 days ago but ordered twice already: growing, and a repurchase.
    "quick": (
        10,
        [(0, 1000), (2, 1000)],
        Expected("general_development", "potential", "growing", 0, 2, 2000),
    ),
}


async def _population(client: Any, tenant: Any) -> dict[str, str]:
    ids: dict[str, str] = {}
    for name, (joined, orders, _) in HISTORIES.items():
        member = await enrol(client, tenant)
        for days_ago, fen in orders:
            await order(client, tenant, member, [line("feeding", fen)], days_ago=days_ago)
        if joined:
            await backdate_joined(tenant.id, member, joined)
        ids[name] = member
    return ids


async def _run(tenant_id: uuid.UUID) -> RecomputeResult:
    return await run_for_tenant(tenant_id, recompute, name="test")


async def _rows(tenant_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    with tenant_context(tenant_id):
        async with scoped_session() as session:
            rows = (await session.scalars(select(MemberSegment))).all()
            keys = [c.key for c in MemberSegment.__table__.columns]
            return {str(r.member_id): {k: getattr(r, k) for k in keys} for r in rows}


def _by_name(rows: dict[str, dict[str, Any]], ids: dict[str, str]) -> dict[str, Expected]:
    return {
        name: Expected(
            rows[member]["rfm_group"],
            rows[member]["value_circle"],
            rows[member]["lifecycle"],
            rows[member]["recency_days"],
            rows[member]["frequency"],
            rows[member]["monetary_fen"],
        )
        for name, member in ids.items()
    }


async def _preview(client: Any, tenant: Any, rule: Any) -> set[str]:
    r = await client.post("/api/v1/segments/preview", json={"rule": rule}, headers=tenant.hq())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == len(body["sample"])
    return {m["id"] for m in body["sample"]}


async def test_each_member_is_in_the_expected_groups(client: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    ids = await _population(client, tenant)

    result = await _run(tenant.id)
    assert result.computed_on == local_today()
    assert result.members == len(HISTORIES)

    rows = await _rows(tenant.id)
    assert set(rows) == set(ids.values())
    assert _by_name(rows, ids) == {name: h[2] for name, h in HISTORIES.items()}
    value = rows[ids["value"]]
    assert (value["r_score"], value["f_score"], value["m_score"]) == ("high", "high", "high")
    winback = rows[ids["general_winback"]]
    assert (winback["r_score"], winback["f_score"], winback["m_score"]) == ("low", "high", "low")
    assert {r["computed_on"] for r in rows.values()} == {local_today()}


async def test_a_second_run_writes_the_same_rows_and_drops_inactive_members(
    client: Any, make_tenant: Any
) -> None:
    tenant = await make_tenant()
    ids = await _population(client, tenant)
    await _run(tenant.id)
    first = await _rows(tenant.id)
    await _run(tenant.id)
    assert await _rows(tenant.id) == first

    # A member merged away loses their row on the next run.
    with tenant_context(tenant.id):
        async with scoped_session() as session:
            await session.execute(
                update(Member).where(Member.id == uuid.UUID(ids["value"])).values(status="merged")
            )
    result = await _run(tenant.id)
    assert result.removed == 1
    after = await _rows(tenant.id)
    assert set(after) == set(first) - {ids["value"]}


async def test_thresholds_change_the_groups_from_the_next_run(
    client: Any, make_tenant: Any
) -> None:
    tenant = await make_tenant()
    ids = await _population(client, tenant)
    await _run(tenant.id)

    r = await client.get(THRESHOLDS, headers=tenant.hq())
    assert r.status_code == 200, r.text
    defaults = r.json()
    assert (defaults["recency_days"], defaults["frequency_orders"]) == (15, 3)
    assert (defaults["monetary_fen"], defaults["core_fen"]) == (20000, 500000)

    changed = {"recency_days": 45, "monetary_fen": 1000, "core_fen": 25000, "silent_days": 150}
    r = await client.put(THRESHOLDS, json=changed, headers=tenant.hq())
    assert r.status_code == 200, r.text
    assert r.json() == defaults | changed
    r = await client.get(THRESHOLDS, headers=tenant.hq())
    assert r.json() == defaults | changed
    # Again: nothing changes, nothing more is audited.
    r = await client.put(THRESHOLDS, json=changed, headers=tenant.hq())
    assert r.status_code == 200, r.text
    with tenant_context(tenant.id):
        async with scoped_session() as session:
            audited = (
                await session.scalars(
                    select(AuditEntry).where(AuditEntry.action == "segments.thresholds_changed")
                )
            ).all()
    assert len(audited) == 1
    assert audited[0].changes["after"]["recency_days"] == 45

    # Not before the next run.
    assert _by_name(await _rows(tenant.id), ids)["winback"].rfm_group == "important_winback"
    await _run(tenant.id)
    groups = _by_name(await _rows(tenant.id), ids)
    assert groups["winback"].rfm_group == "important_value"  # 30 days < 45
    assert groups["general_winback"].rfm_group == "important_value"  # 3,000 fen >= 1,000
    assert groups["general_value"].rfm_group == "important_value"
    assert groups["development"].value_circle == "none"  # 25,000 fen is not over 25,000
    assert groups["value"].value_circle == "core"  # 30,000 fen > 25,000
    assert groups["general_retention"].lifecycle == "growing"  # 120 days < 150
    assert groups["retention"].lifecycle == "silent"  # 200 days


async def test_thresholds_are_checked_and_need_scopes(client: Any, make_tenant: Any) -> None:
    tenant = await make_tenant()
    r = await client.put(THRESHOLDS, json={"recency_days": 0}, headers=tenant.hq())
    assert r.status_code in (400, 422), r.text
    r = await client.put(THRESHOLDS, json={"shoe_size": 3}, headers=tenant.hq())
    assert r.status_code in (400, 422), r.text
    r = await client.post(
        "/api/v1/api-keys",
        json={"name": "reader", "scopes": ["segments:read"]},
        headers=tenant.hq(),
    )
    assert r.status_code == 201, r.text
    reader = {"Authorization": f"Bearer {r.json()['key']}"}
    assert (await client.get(THRESHOLDS, headers=reader)).status_code == 200
    assert (await client.get(BUILTIN, headers=reader)).status_code == 200
    r = await client.put(THRESHOLDS, json={}, headers=reader)
    assert r.status_code == 403, r.text
    # The routes' own names cannot be a custom segment's code (the path is theirs; a
    # manifest's [[segments]] is refused by the service).
    r = await client.put(
        "/api/v1/segments/builtin",
        json={"name": "x", "rule": {"field": "tag", "op": "has", "value": "vip"}},
        headers=tenant.hq(),
    )
    assert r.status_code == 405, r.text


async def test_rules_and_the_listing_read_the_builtin_segments(
    client: Any, make_tenant: Any
) -> None:
    tenant = await make_tenant()
    ids = await _population(client, tenant)

    r = await client.get(BUILTIN, headers=tenant.hq())
    assert r.status_code == 200, r.text
    assert r.json()["computed_on"] is None
    assert {g["count"] for g in r.json()["items"]} == {0}
    rfm = {"field": "rfm_group", "op": "in", "value": ["important_value", "important_winback"]}
    assert await _preview(client, tenant, rfm) == set()  # not computed yet: in no group

    await _run(tenant.id)
    assert await _preview(client, tenant, rfm) == {ids["value"], ids["winback"]}
    churn = {"field": "value_circle", "op": "in", "value": ["churn_warning"]}
    assert await _preview(client, tenant, churn) == {ids["churn"], ids["never_old"]}
    welcome = {"field": "lifecycle", "op": "in", "value": ["welcome"]}
    assert await _preview(client, tenant, welcome) == {ids["welcome"], ids["welcome_none"]}
    mixed = {
        "all": [
            {"field": "value_circle", "op": "in", "value": ["potential"]},
            {"not": {"field": "lifecycle", "op": "in", "value": ["stable"]}},
        ]
    }
    assert await _preview(client, tenant, mixed) == {ids["quick"]}
    bad = {"field": "lifecycle", "op": "in", "value": ["asleep"]}
    r = await client.post("/api/v1/segments/preview", json={"rule": bad}, headers=tenant.hq())
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"].startswith("rule.value")

    r = await client.get(BUILTIN, headers=tenant.hq())
    body = r.json()
    assert body["computed_on"] == local_today().isoformat()
    counts = {(g["kind"], g["code"]): g["count"] for g in body["items"]}
    for kind in ("rfm_group", "value_circle", "lifecycle"):
        assert sum(n for (k, _), n in counts.items() if k == kind) == len(HISTORIES)
    assert counts["rfm_group", "important_value"] == 1
    assert counts["rfm_group", "no_orders"] == 2
    assert counts["value_circle", "potential"] == 5
    assert counts["lifecycle", "silent"] == 4
    assert len([k for k in counts if k[0] == "rfm_group"]) == 9
    labels = {g["code"]: g["label"] for g in body["items"]}
    assert labels["important_value"] == {"en": "Important value", "zh": "重要价值"}
    assert labels["churn_warning"]["zh"] == "流失预警圈"


def test_the_rule_language_knows_every_builtin_code() -> None:
    assert set(get_args(builtin.RfmGroup)) == set(builtin.RFM_CODES)
    assert set(get_args(builtin.ValueCircle)) == set(builtin.VALUE_CIRCLES)
    assert set(get_args(builtin.Lifecycle)) == set(builtin.LIFECYCLES)
    assert {(r, f, m) for _, _, (r, f, m) in builtin.RFM_GROUPS.values()} == {
        (r, f, m) for r in (True, False) for f in (True, False) for m in (True, False)
    }
