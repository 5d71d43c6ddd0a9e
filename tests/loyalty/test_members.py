"""Members through the API: phones, PII at rest, lookups, children, consents, merges."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil.relativedelta import relativedelta
from sqlalchemy import select, text

from loyalty.helpers import new_phone, order_body
from loyalty.support import (
    all_pages,
    audit,
    balances,
    events,
    member,
    post_order,
    refund,
    without_ids,
)
from nestpoint.context import tenant_context
from nestpoint.db import scoped_session
from nestpoint.orders.models import Order

# ------------------------------------------------------------------ phones


@pytest.mark.parametrize("phone", ["12345678901", "1381234567", "138123456789", "not-a-phone"])
async def test_invalid_phone_is_refused_naming_phone(client, make_tenant, row_counts, phone):
    t = await make_tenant()
    before = await row_counts(t.id)
    r = await client.post("/api/v1/members", json={"phone": phone}, headers=t.hq())
    assert r.status_code in (400, 422), r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert any(e["field"].endswith("phone") for e in r.json()["errors"]), r.json()
    assert await row_counts(t.id) == before


async def test_phone_is_unique_per_tenant_only(client, make_tenant, enrol):
    t, other = await make_tenant(), await make_tenant()
    phone = new_phone()
    await enrol(t.hq(), phone=phone)
    # The same number in another form is the same phone.
    r = await client.post(
        "/api/v1/members",
        json={"phone": f"+86 {phone[:3]} {phone[3:7]} {phone[7:]}"},
        headers=t.hq(),
    )
    assert r.status_code == 409, r.text
    assert r.json()["errors"][0]["field"] == "phone"
    # Another chain may enrol the same parent.
    again = await enrol(other.hq(), phone=phone)
    assert again["phone"] == f"+86{phone}"


async def test_pii_is_not_stored_in_clear(client, make_tenant, enrol):
    t = await make_tenant()
    phone, name = new_phone(), f"李小萌{uuid.uuid4().hex[:6]}"
    created = await enrol(t.hq(), phone=phone, name=name)
    assert created["name"] == name
    with tenant_context(t.id):
        async with scoped_session() as session:
            rows = (await session.execute(text("SELECT * FROM members"))).mappings().all()
    assert rows, "the member is visible to its tenant"
    seen = [str(value) for row in rows for value in row.values() if value is not None]
    assert not [v for v in seen if phone in v], "the phone's digits are stored in clear"
    assert not [v for v in seen if name in v], "the name is stored in clear"
    # Nor do they leak into the audit trail or the events relayed to plugins and webhooks.
    r = await client.patch(
        f"/api/v1/members/{created['id']}", json={"name": name + "二"}, headers=t.hq()
    )
    assert r.status_code == 200
    with tenant_context(t.id):
        async with scoped_session() as session:
            for table in ("audit_entries", "outbox_events"):
                rows = (await session.execute(text(f"SELECT * FROM {table}"))).mappings().all()
                assert rows
                for row in rows:
                    dump = " ".join(str(v) for v in row.values())
                    assert phone not in dump, (table, dump)
                    assert name not in dump, (table, dump)
    # ... yet the API gives both back to a key that may see them.
    r = await client.get(f"/api/v1/members/{created['id']}", headers=t.hq())
    assert r.json()["phone"] == f"+86{phone}"
    assert r.json()["name"] == name + "二"


async def test_store_key_sees_a_masked_phone_hq_the_full_one(client, make_tenant, enrol, till):
    t = await make_tenant()
    phone = new_phone()
    created = await enrol(t.hq(), phone=phone)
    till_key = await till(t)
    for url in (f"/api/v1/members/{created['id']}", f"/api/v1/members/lookup?phone={phone}"):
        shown = (await client.get(url, headers=till_key)).json()["phone"]
        assert phone not in shown
        assert shown == f"+86 {phone[:3]}****{phone[-4:]}"
        assert (await client.get(url, headers=t.hq())).json()["phone"] == f"+86{phone}"
    listed = await all_pages(client, "/api/v1/members", till_key)
    assert [m["phone"] for m in listed if m["id"] == created["id"]] == [
        f"+86 {phone[:3]}****{phone[-4:]}"
    ]
    # Enrolling at the till answers with the masked phone too.
    r = await client.post("/api/v1/members", json={"phone": new_phone()}, headers=till_key)
    assert r.status_code == 201
    assert "****" in r.json()["phone"]


# ------------------------------------------------------------------ lookups


async def test_lookup_by_phone_in_any_format(client, make_tenant, enrol):
    t = await make_tenant()
    phone = new_phone()
    created = await enrol(t.hq(), phone=phone)
    await enrol(t.hq())  # someone else
    spaced = f"{phone[:3]} {phone[3:7]} {phone[7:]}"
    for form in (phone, f"+86{phone}", f"+86 {spaced}", spaced, f"0086{phone}", f"+86-{phone}"):
        r = await client.get("/api/v1/members/lookup", params={"phone": form}, headers=t.hq())
        assert r.status_code == 200, (form, r.text)
        assert r.json()["id"] == created["id"], form
    r = await client.get("/api/v1/members/lookup", params={"phone": new_phone()}, headers=t.hq())
    assert r.status_code == 404
    r = await client.get("/api/v1/members/lookup", params={"phone": "123"}, headers=t.hq())
    assert r.status_code in (400, 422)


async def test_lookup_does_not_cross_tenants(client, make_tenant, enrol):
    t, other = await make_tenant(), await make_tenant()
    phone = new_phone()
    await enrol(t.hq(), phone=phone)
    r = await client.get("/api/v1/members/lookup", params={"phone": phone}, headers=other.hq())
    assert r.status_code == 404


async def test_lookup_by_each_identity_kind(client, make_tenant, enrol):
    t = await make_tenant()
    kinds = ["pos_card", "mall_user", "mp_openid", "mp_unionid", "app_user"]
    token = uuid.uuid4().hex[:10]
    first = await enrol(
        t.hq(), identities=[{"kind": k, "value": f"{k}-{token}"} for k in kinds[:3]]
    )
    second = await enrol(t.hq())
    for k in kinds[3:]:
        r = await client.post(
            f"/api/v1/members/{second['id']}/identities",
            json={"kind": k, "value": f"{k}-{token}"},
            headers=t.hq(),
        )
        assert r.status_code == 204, r.text
    owners = dict.fromkeys(kinds[:3], first["id"]) | dict.fromkeys(kinds[3:], second["id"])
    for kind, owner in owners.items():
        r = await client.get(
            "/api/v1/members/lookup",
            params={"identity_kind": kind, "identity_value": f"{kind}-{token}"},
            headers=t.hq(),
        )
        assert r.status_code == 200, r.text
        assert r.json()["id"] == owner, kind
    # The same value under another kind is a different identity.
    r = await client.get(
        "/api/v1/members/lookup",
        params={"identity_kind": "app_user", "identity_value": f"pos_card-{token}"},
        headers=t.hq(),
    )
    assert r.status_code == 404
    # An identity belongs to one member.
    r = await client.post(
        f"/api/v1/members/{second['id']}/identities",
        json={"kind": "pos_card", "value": f"pos_card-{token}"},
        headers=t.hq(),
    )
    assert r.status_code == 409
    assert without_ids((await member(client, t.hq(), second["id"]))["identities"]) == [
        {"kind": k, "value": f"{k}-{token}"} for k in sorted(kinds[3:])
    ]


# ------------------------------------------------------------------ children


async def test_children_need_the_guardians_consent(client, make_tenant, enrol, row_counts):
    t = await make_tenant()
    today = datetime.now(UTC).date()
    child = {"nickname": "豆豆", "birth_date": (today - timedelta(days=100)).isoformat()}
    before = await row_counts(t.id)
    r = await client.post(
        "/api/v1/members", json={"phone": new_phone(), "children": [child]}, headers=t.hq()
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "children"
    # Consent explicitly refused is no consent either.
    r = await client.post(
        "/api/v1/members",
        json={
            "phone": new_phone(),
            "children": [child],
            "guardian_consent": {"granted": False, "source": "pos"},
        },
        headers=t.hq(),
    )
    assert r.status_code == 422, r.text
    assert await row_counts(t.id) == before

    created = await enrol(t.hq())
    before = await row_counts(t.id)
    r = await client.post(f"/api/v1/members/{created['id']}/children", json=child, headers=t.hq())
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "guardian_consent"
    assert await row_counts(t.id) == before
    assert (await member(client, t.hq(), created["id"]))["children"] == []

    r = await client.patch(
        f"/api/v1/members/{created['id']}",
        json={"guardian_consent": {"granted": True, "source": "mini_program"}},
        headers=t.hq(),
    )
    assert r.status_code == 200, r.text
    assert r.json()["guardian_consent"] is True
    r = await client.post(f"/api/v1/members/{created['id']}/children", json=child, headers=t.hq())
    assert r.status_code == 201, r.text
    assert [c["nickname"] for c in (await member(client, t.hq(), created["id"]))["children"]] == [
        "豆豆"
    ]


async def test_child_needs_exactly_one_of_birth_and_due_date(client, make_tenant, enrol):
    t = await make_tenant()
    created = await enrol(t.hq(), guardian_consent={"granted": True, "source": "pos"})
    today = datetime.now(UTC).date().isoformat()
    for body in ({"nickname": "x"}, {"birth_date": today, "due_date": today}):
        r = await client.post(
            f"/api/v1/members/{created['id']}/children", json=body, headers=t.hq()
        )
        assert r.status_code in (400, 422), r.text


async def test_child_stage_follows_the_dates(client, make_tenant, enrol):
    t = await make_tenant()
    # The tenant's local date (stages turn over at its midnight), not UTC's: from 16:00 UTC
    # it is already tomorrow in Shanghai.
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    ago = {  # stage -> birth date
        "0-6m": today - relativedelta(months=2),
        "6-12m": today - relativedelta(months=8),
        "1-3y": today - relativedelta(months=20),
        "3-6y": today - relativedelta(years=4),
        "older": today - relativedelta(years=7),
    }
    edges = {  # the first day of each stage, and the day before it
        "6-12m": today - relativedelta(months=6),
        "1-3y": today - relativedelta(months=12),
        "3-6y": today - relativedelta(months=36),
        "older": today - relativedelta(months=72),
    }
    before_edge = {
        "0-6m": edges["6-12m"] + timedelta(days=1),
        "6-12m": edges["1-3y"] + timedelta(days=1),
        "1-3y": edges["3-6y"] + timedelta(days=1),
        "3-6y": edges["older"] + timedelta(days=1),
    }
    children = [{"nickname": f"a {s}", "birth_date": d.isoformat()} for s, d in ago.items()]
    children += [{"nickname": f"e {s}", "birth_date": d.isoformat()} for s, d in edges.items()]
    children += [
        {"nickname": f"b {s}", "birth_date": d.isoformat()} for s, d in before_edge.items()
    ]
    children.append(
        {"nickname": "p pregnant", "due_date": (today + timedelta(days=60)).isoformat()}
    )
    created = await enrol(
        t.hq(), children=children[:10], guardian_consent={"granted": True, "source": "pos"}
    )
    for child in children[10:]:
        r = await client.post(
            f"/api/v1/members/{created['id']}/children", json=child, headers=t.hq()
        )
        assert r.status_code == 201, r.text
    got = {
        c["nickname"]: c["stage"] for c in (await member(client, t.hq(), created["id"]))["children"]
    }
    assert got == {c["nickname"]: c["nickname"].split(" ")[1] for c in children}

    # The member listing filters by the same stages.
    for stage in ("pregnant", "0-6m", "6-12m", "1-3y", "3-6y", "older"):
        listed = await all_pages(client, "/api/v1/members", t.hq(), stage=stage)
        assert created["id"] in [m["id"] for m in listed], stage
    toddler = await enrol(
        t.hq(),
        children=[{"birth_date": ago["1-3y"].isoformat()}],
        guardian_consent={"granted": True, "source": "pos"},
    )
    for stage, present in {"1-3y": True, "0-6m": False, "pregnant": False}.items():
        listed = await all_pages(client, "/api/v1/members", t.hq(), stage=stage)
        assert (toddler["id"] in [m["id"] for m in listed]) is present, stage


async def test_recording_a_birth_turns_a_pregnancy_into_a_newborn(client, make_tenant, enrol):
    t = await make_tenant()
    today = datetime.now(UTC).date()
    due = today + timedelta(days=10)
    created = await enrol(
        t.hq(),
        children=[{"nickname": "宝宝", "due_date": due.isoformat()}],
        guardian_consent={"granted": True, "source": "pos"},
    )
    (pregnancy,) = created["children"]
    assert pregnancy["stage"] == "pregnant"
    born = today - timedelta(days=2)
    url = f"/api/v1/members/{created['id']}/children/{pregnancy['id']}/birth"
    r = await client.post(
        url, json={"birth_date": born.isoformat(), "gender": "female"}, headers=t.hq()
    )
    assert r.status_code == 200, r.text
    child = r.json()
    assert child["stage"] == "0-6m"
    assert child["birth_date"] == born.isoformat()
    assert child["gender"] == "female"
    assert child["due_date"] == due.isoformat()
    (shown,) = (await member(client, t.hq(), created["id"]))["children"]
    assert shown["stage"] == "0-6m"

    emitted = [
        e
        for e in await events(client, t.hq(), "child.born")
        if e["payload"]["child_id"] == pregnancy["id"]
    ]
    assert len(emitted) == 1
    assert emitted[0]["payload"]["member_id"] == created["id"]
    assert emitted[0]["payload"]["birth_date"] == born.isoformat()
    # A retry of the same birth changes nothing and emits nothing more.
    r = await client.post(url, json={"birth_date": born.isoformat()}, headers=t.hq())
    assert r.status_code == 200
    # A different birth date for the same child is a conflict.
    r = await client.post(url, json={"birth_date": today.isoformat()}, headers=t.hq())
    assert r.status_code == 409
    assert (
        len(
            [
                e
                for e in await events(client, t.hq(), "child.born")
                if e["payload"]["child_id"] == pregnancy["id"]
            ]
        )
        == 1
    )


# ------------------------------------------------------------------ consents


async def test_consents_are_per_channel(client, make_tenant, enrol):
    t = await make_tenant()
    created = await enrol(t.hq(), consents=[{"channel": "sms", "granted": True, "source": "pos"}])
    assert [(c["channel"], c["granted"]) for c in created["consents"]] == [("sms", True)]
    url = f"/api/v1/members/{created['id']}/consents"
    r = await client.put(
        url,
        json=[
            {"channel": "wecom", "granted": True, "source": "wecom"},
            {"channel": "email", "granted": False, "source": "mall"},
        ],
        headers=t.hq(),
    )
    assert r.status_code == 204, r.text
    r = await client.put(
        url, json=[{"channel": "sms", "granted": False, "source": "sms-stop"}], headers=t.hq()
    )
    assert r.status_code == 204, r.text
    shown = {
        c["channel"]: (c["granted"], c["source"])
        for c in (await member(client, t.hq(), created["id"]))["consents"]
    }
    assert shown == {
        "sms": (False, "sms-stop"),
        "wecom": (True, "wecom"),
        "email": (False, "mall"),
    }
    changes = [
        e
        for e in await audit(client, t.hq(), "consent.changed")
        if e["subject_id"] == created["id"]
    ]
    assert len(changes) == 3  # the unchanged channels left no trace
    r = await client.put(
        url, json=[{"channel": "fax", "granted": True, "source": "x"}], headers=t.hq()
    )
    assert r.status_code in (400, 422)


# ------------------------------------------------------------------ merge


async def test_merge_moves_everything_to_the_target(client, make_tenant, enrol, set_program):
    t = await make_tenant()
    await set_program(t.hq(), points={"pending_days": 0})
    today = datetime.now(UTC).date()
    token = uuid.uuid4().hex[:8]
    target = await enrol(t.hq(), tags=["vip"])
    source_phone = new_phone()
    source = await enrol(
        t.hq(),
        phone=source_phone,
        tags=["online"],
        guardian_consent={"granted": True, "source": "mall"},
        children=[{"nickname": "小米", "birth_date": (today - timedelta(days=40)).isoformat()}],
        identities=[{"kind": "mall_user", "value": f"mall-{token}"}],
    )
    target_order = await post_order(client, t.hq(), order_body(member={"id": target["id"]}))
    source_order = await post_order(client, t.hq(), order_body(member={"id": source["id"]}))
    earned = target_order["points_earned"] + source_order["points_earned"]
    assert earned == 200

    r = await client.post(
        f"/api/v1/members/{target['id']}/merge",
        json={"source_member_id": source["id"]},
        headers=t.hq(),
    )
    assert r.status_code == 200, r.text
    merged = r.json()
    assert merged["id"] == target["id"]
    assert merged["points_balance"] == earned
    assert merged["growth_value"] == 200
    assert [c["nickname"] for c in merged["children"]] == ["小米"]
    assert merged["guardian_consent"] is True
    assert {"kind": "mall_user", "value": f"mall-{token}"} in without_ids(merged["identities"])
    assert merged["tags"] == ["online", "vip"]

    tombstone = await member(client, t.hq(), source["id"])
    assert tombstone["status"] == "merged"
    assert tombstone["merged_into_id"] == target["id"]
    assert tombstone["children"] == []
    assert (await balances(client, t.hq(), source["id"]))["member_id"] == target["id"]
    assert (await balances(client, t.hq(), target["id"]))["balance"] == earned
    assert (await balances(client, t.hq(), target["id"]))["available"] == earned

    # Old references lead to the target: phone, identity, and the id at the till.
    r = await client.get("/api/v1/members/lookup", params={"phone": source_phone}, headers=t.hq())
    assert r.json()["id"] == target["id"]
    r = await client.get(
        "/api/v1/members/lookup",
        params={"identity_kind": "mall_user", "identity_value": f"mall-{token}"},
        headers=t.hq(),
    )
    assert r.json()["id"] == target["id"]
    later = await post_order(client, t.hq(), order_body(member={"id": source["id"]}))
    assert later["member_id"] == target["id"]
    later = await post_order(client, t.hq(), order_body(member={"phone": source_phone}))
    assert later["member_id"] == target["id"]

    # The source's order is now the target's: its refund reverses the target's points.
    before = (await balances(client, t.hq(), target["id"]))["balance"]
    r = await refund(client, t.hq(), source_order, {"external_id": "r1"})
    assert r.status_code == 201, r.text
    assert r.json()["points_reversed"] == source_order["points_earned"]
    after = await balances(client, t.hq(), target["id"])
    assert after["balance"] == before - source_order["points_earned"]
    with tenant_context(t.id):
        async with scoped_session() as session:
            owners = (
                await session.scalars(
                    select(Order.member_id).where(Order.external_id == source_order["external_id"])
                )
            ).all()
    assert owners == [uuid.UUID(target["id"])]

    merged_events = [
        e
        for e in await events(client, t.hq(), "member.merged")
        if e["payload"]["member_id"] == target["id"]
    ]
    assert len(merged_events) == 1
    assert merged_events[0]["payload"]["source_member_id"] == source["id"]
    assert merged_events[0]["payload"]["points_moved"] == source_order["points_earned"]
    trail = [
        e for e in await audit(client, t.hq(), "member.merged") if e["subject_id"] == target["id"]
    ]
    assert len(trail) == 1
    assert trail[0]["changes"]["source_member_id"] == source["id"]

    # Merging again, or into itself, is refused; the till may not merge.
    r = await client.post(
        f"/api/v1/members/{target['id']}/merge",
        json={"source_member_id": source["id"]},
        headers=t.hq(),
    )
    assert r.status_code == 409
    r = await client.post(
        f"/api/v1/members/{target['id']}/merge",
        json={"source_member_id": target["id"]},
        headers=t.hq(),
    )
    assert r.status_code == 422


async def test_store_key_cannot_merge(client, make_tenant, enrol, till):
    t = await make_tenant()
    a, b = await enrol(t.hq()), await enrol(t.hq())
    r = await client.post(
        f"/api/v1/members/{a['id']}/merge",
        json={"source_member_id": b["id"]},
        headers=await till(t),
    )
    assert r.status_code == 403
    assert (await member(client, t.hq(), b["id"]))["status"] == "active"
