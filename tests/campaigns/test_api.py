"""Stage 4: the campaigns API (HQ keys with campaigns:read / campaigns:write): create
(idempotent by code), the problems naming each bad field, states, the ready templates and
their instantiation, results; and one play end to end through the API and the jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from campaigns.helpers import coupon_template, message_template
from nestpoint.audit.models import AuditEntry
from nestpoint.campaigns import jobs, service
from nestpoint.campaigns.schemas import CampaignSpec
from nestpoint.campaigns.templates import PLAYS
from nestpoint.jobs.tenants import run_for_tenant
from segments.helpers import enrol, line, order

URL = "/api/v1/campaigns"


def _body(code: str = "welcome", **extra: Any) -> dict[str, Any]:
    return {
        "code": code,
        "name": "Welcome",
        "kind": "first_purchase_gift",
        "schedule": {"kind": "triggered", "on": "first_purchase"},
        "actions": [{"type": "grant_points", "points": 200}],
        "holdout_percent": 10,
        **extra,
    }


def _fields(r: Any) -> list[str]:
    return [e["field"] for e in r.json()["errors"]]


async def test_create_is_idempotent_by_code(client: Any, make_tenant: Any) -> None:
    t = await make_tenant()

    first = await client.post(URL, json=_body(), headers=t.hq())
    again = await client.post(URL, json=_body(), headers=t.hq())
    other = await client.post(URL, json=_body(name="Other"), headers=t.hq())

    assert first.status_code == 201, first.text
    assert (again.status_code, again.json()) == (201, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 409
    assert _fields(other) == ["code"]
    read = first.json()
    assert (read["status"], read["kind"], read["holdout_percent"]) == (
        "draft",
        "first_purchase_gift",
        10,
    )
    r = await client.get(f"{URL}/welcome", headers=t.hq())
    assert (r.status_code, r.json()["id"]) == (200, read["id"])
    r = await client.get(URL, headers=t.hq())
    assert [c["code"] for c in r.json()["items"]] == ["welcome"]


async def test_problems_name_the_field(client: Any, make_tenant: Any) -> None:
    t = await make_tenant()
    cases = [
        (_body(audience={"segment": "nope"}), 422, ["audience.segment"]),
        (
            _body(audience={"rule": {"all": [{"field": "shoe_size", "op": "in", "value": []}]}}),
            422,
            ["audience.rule.all.0.field"],
        ),
        (
            _body(actions=[{"type": "issue_coupon", "template_code": "nope"}]),
            422,
            ["actions.0.template_code"],
        ),
        (
            _body(
                actions=[
                    {"type": "grant_points", "points": 1},
                    {"type": "send_message", "template": "nope"},
                ]
            ),
            422,
            ["actions.1.template"],
        ),
        (
            _body(actions=[{"type": "grant_benefit", "benefit_code": "nope"}]),
            422,
            ["actions.0.benefit_code"],
        ),
        (_body(code="templates"), 422, ["code"]),
        (_body(holdout_percent=60), 400, ["holdout_percent"]),
        (_body(actions=[]), 400, ["actions"]),
        (_body(schedule={"kind": "recurring", "every": "weekly"}), 422, ["schedule.recurring"]),
        (
            _body(actions=[{"type": "grant_points", "points": 0}]),
            400,
            ["actions.0.grant_points.points"],
        ),
        (_body(starts_at="2027-01-02T00:00:00Z", ends_at="2027-01-01T00:00:00Z"), 422, ["ends_at"]),
    ]
    for sent, status, fields in cases:
        r = await client.post(URL, json=sent, headers=t.hq())
        assert r.status_code == status, (sent, r.text)
        assert _fields(r) == fields, r.text
    assert (await client.get(URL, headers=t.hq())).json()["items"] == []


async def test_keys_need_the_scopes_and_hq(client: Any, make_tenant: Any) -> None:
    t = await make_tenant(("S1",))
    r = await client.post(
        "/api/v1/api-keys",
        json={"name": "reader", "kind": "tenant", "scopes": ["campaigns:read"]},
        headers=t.hq(),
    )
    assert r.status_code == 201, r.text
    reader = {"Authorization": f"Bearer {r.json()['key']}"}

    assert (await client.get(URL, headers=reader)).status_code == 200
    assert (await client.post(URL, json=_body(), headers=reader)).status_code == 403
    assert (await client.get(URL, headers=t.store("S1"))).status_code == 403


async def test_states_and_audit(client: Any, make_tenant: Any) -> None:
    t = await make_tenant()
    assert (await client.post(URL, json=_body(), headers=t.hq())).status_code == 201

    for _ in range(2):
        r = await client.post(f"{URL}/welcome/activate", headers=t.hq())
        assert (r.status_code, r.json()["status"]) == (200, "scheduled")
    r = await client.post(f"{URL}/welcome/cancel", headers=t.hq())
    assert (r.status_code, r.json()["status"]) == (200, "cancelled")
    assert (await client.post(f"{URL}/welcome/activate", headers=t.hq())).status_code == 409
    assert (await client.post(f"{URL}/nope/activate", headers=t.hq())).status_code == 404
    assert (await client.get(f"{URL}/nope", headers=t.hq())).status_code == 404

    async def actions(session: Any) -> list[str]:
        rows = await session.scalars(
            select(AuditEntry.action)
            .where(AuditEntry.action.like("campaigns.%"))
            .order_by(AuditEntry.occurred_at)
        )
        return list(rows.all())

    assert await run_for_tenant(t.id, actions, name="test") == [
        "campaigns.created",
        "campaigns.activated",
        "campaigns.cancelled",
    ]


async def test_templates_list_every_play_and_instantiate(client: Any, make_tenant: Any) -> None:
    t = await make_tenant()
    r = await client.get(f"{URL}/templates", headers=t.hq())
    assert r.status_code == 200
    keys = [item["key"] for item in r.json()["items"]]
    assert keys == [p.key for p in PLAYS]
    assert {
        "first_purchase_gift",
        "recruitment_week",
        "birthday_month",
        "member_day",
        "festival_618",
        "silent_reactivation",
        "milestone_hospital_bag",
        "milestone_newborn_welcome",
        "milestone_100_days",
        "milestone_first_birthday",
        "milestone_formula_6m",
        "milestone_formula_36m",
    } == set(keys)

    r = await client.post(
        f"{URL}/templates/birthday_month/instantiate", json={"code": "bday"}, headers=t.hq()
    )
    assert r.status_code == 422
    assert _fields(r) == ["benefit_code", "coupon_template"]
    r = await client.post(
        f"{URL}/templates/nope/instantiate", json={"code": "bday"}, headers=t.hq()
    )
    assert r.status_code == 404

    await coupon_template(t.id, "bday20")
    await message_template(client, t, "win_back")
    sent = {"code": "winback", "coupon_template": "bday20", "message_template": "win_back"}
    r = await client.post(
        f"{URL}/templates/silent_reactivation/instantiate", json=sent, headers=t.hq()
    )
    again = await client.post(
        f"{URL}/templates/silent_reactivation/instantiate", json=sent, headers=t.hq()
    )
    assert r.status_code == 201, r.text
    assert (again.status_code, again.json()) == (201, r.json())
    made = r.json()
    assert (made["kind"], made["template"], made["holdout_percent"]) == (
        "reactivation",
        "silent_reactivation",
        10,
    )
    assert made["audience"] == {"rule": {"field": "last_order_days_ago", "op": "gte", "value": 90}}
    assert [a["type"] for a in made["actions"]] == ["issue_coupon", "send_message"]


async def test_a_first_purchase_gift_end_to_end(client: Any, make_tenant: Any) -> None:
    t = await make_tenant()
    await coupon_template(t.id, "next20")
    r = await client.post(
        f"{URL}/templates/first_purchase_gift/instantiate",
        json={"code": "fp", "coupon_template": "next20", "holdout_percent": 0},
        headers=t.hq(),
    )
    assert r.status_code == 201, r.text
    got_id = r.json()["id"]
    assert (await client.post(f"{URL}/fp/activate", headers=t.hq())).status_code == 200
    buyer = await enrol(client, t)
    await order(client, t, buyer, [line("feeding", 10000)])
    await order(client, t, buyer, [line("feeding", 10000)])

    async def tick(session: Any) -> None:
        await jobs.tick(session, datetime.now(UTC) + timedelta(minutes=2))

    await run_for_tenant(t.id, tick, name="test")
    await run_for_tenant(t.id, tick, name="test")

    r = await client.get(f"{URL}/fp/results", headers=t.hq())
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["reach"], got["points_granted"], got["coupons_issued"]) == (1, 200, 1)
    assert (got["treated"]["members"], got["treated"]["orders"]) == (1, 2)
    assert got["attainment"]["metric"] == "reach"
    r = await client.get(f"/api/v1/members/{buyer}/points/entries", headers=t.hq())
    assert r.status_code == 200, r.text
    bonus = [e for e in r.json()["items"] if e["cause_type"] == "campaign"]
    assert [(e["kind"], e["amount"]) for e in bonus] == [("bonus", 200)]
    assert bonus[0]["cause_id"] == f"{got_id}:first_purchase"


async def test_a_manifest_spec_creates_then_leaves_the_campaign(
    client: Any, make_tenant: Any
) -> None:
    t = await make_tenant()
    spec = CampaignSpec.model_validate(_body("from-manifest"))

    async def apply(session: Any) -> list[str]:
        return await service.apply_spec(session, spec)

    assert await run_for_tenant(t.id, apply, name="test") == ["create", "activate"]
    assert await run_for_tenant(t.id, apply, name="test") == []
    r = await client.get(f"{URL}/from-manifest", headers=t.hq())
    assert (r.status_code, r.json()["status"]) == (200, "scheduled")
