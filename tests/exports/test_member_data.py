"""A member's right of access and copy: one member's data, whole and decrypted, as a JSON
export; nobody else's in it; members:pii needed to ask and to download; idempotent;
audited on the member with the reason; the plugins' parts (and a failing plugin's)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from loyalty.helpers import new_phone, order_body
from nestpoint.context import Actor, acting_as, tenant_context
from nestpoint.db.base import utcnow
from nestpoint.exports import member_data, service
from nestpoint.plugins.api import hookimpl
from nestpoint.plugins.manager import get_plugin_host

REASON = "PIPL access request #123"


async def _member(client: Any, tenant: Any, name: str = "王芳") -> dict[str, Any]:
    born = (utcnow() - timedelta(days=400)).date()
    body = {
        "phone": new_phone(),
        "name": name,
        "birthday": "1990-07-15",
        "tags": ["vip"],
        "guardian_consent": {"granted": True, "source": "pos"},
        "children": [{"nickname": "乐乐", "birth_date": born.isoformat()}],
        "consents": [{"channel": "sms", "granted": True, "source": "till"}],
        "identities": [{"kind": "pos_card", "value": f"CARD-{uuid.uuid4().hex[:8]}"}],
    }
    r = await client.post("/api/v1/members", json=body, headers=tenant.hq())
    assert r.status_code == 201, r.text
    return {**r.json(), "sent": body}


async def _ask(client: Any, headers: dict[str, str], member_id: str, key: str | None = None) -> Any:
    body = {"reason": REASON, "idempotency_key": key or uuid.uuid4().hex}
    return await client.post(
        f"/api/v1/members/{member_id}/data-exports", json=body, headers=headers
    )


async def _run(tenant: Any, export_id: str) -> None:
    with acting_as(Actor("system", name="tests")), tenant_context(tenant.id):
        await service.run_export(uuid.UUID(export_id))


async def _file(client: Any, headers: dict[str, str], export_id: str) -> tuple[bytes, Any]:
    r = await client.get(f"/api/v1/exports/{export_id}/file", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert 'filename="member_data-' in r.headers["content-disposition"]
    return bytes(r.content), json.loads(r.content.decode("utf-8"))


async def _key(client: Any, tenant: Any, scopes: list[str]) -> dict[str, str]:
    r = await client.post(
        "/api/v1/api-keys", json={"name": "privacy", "scopes": scopes}, headers=tenant.hq()
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


async def test_a_members_data_whole_and_nobody_elses(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    tenant, other_tenant = await make_tenant(), await make_tenant()
    hq = tenant.hq()
    for plugin_id in ("surveys", "traceability"):
        r = await client.put(
            f"/api/v1/tenant/plugins/{plugin_id}", json={"enabled": True}, headers=hq
        )
        assert r.status_code == 200, r.text
    member = await _member(client, tenant)
    other = await _member(client, tenant, "李小龙")
    stranger = await _member(client, other_tenant, "张伟")
    # An order and its refund, a points adjustment, a message.
    r = await client.post(
        "/api/v1/orders", json=order_body("ext-1", member={"id": member["id"]}), headers=hq
    )
    assert r.status_code == 201, r.text
    order = r.json()
    r = await client.post(
        "/api/v1/orders/pos/ext-1/refunds",
        json={"external_id": "refund-1"},
        headers=hq,
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/api/v1/members/{member['id']}/points/adjustments",
        json={"amount": 50, "reason": "goodwill", "idempotency_key": uuid.uuid4().hex},
        headers=hq,
    )
    assert r.status_code == 201, r.text
    message = {
        "message_key": "m1",
        "purpose": "points_expiring",
        "template": "points_expiring",
        "member_ids": [member["id"]],
        "params": {"secret_link": "https://x.example/abc"},
    }
    r = await client.post("/api/v1/messages", json=message, headers=hq)
    assert r.status_code == 202, r.text
    # The other member has an order and a message too: none of it may show.
    r = await client.post(
        "/api/v1/orders", json=order_body("ext-2", member={"id": other["id"]}), headers=hq
    )
    assert r.status_code == 201, r.text

    r = await _ask(client, hq, member["id"])
    assert r.status_code == 202, r.text
    job = r.json()
    assert (job["kind"], job["format"], job["status"]) == ("member_data", "json", "queued")
    assert (job["member_id"], job["reason"], job["masked"]) == (member["id"], REASON, False)
    await _run(tenant, job["id"])
    state = (await client.get(f"/api/v1/exports/{job['id']}", headers=hq)).json()
    assert (state["status"], state["rows_done"]) == ("done", 1), state
    raw, data = await _file(client, hq, job["id"])
    assert len(raw) == state["size_bytes"]

    assert list(data) == list(member_data.SECTIONS)
    assert data["format_version"] == member_data.FORMAT_VERSION
    profile = data["member"]
    assert (profile["id"], profile["phone"], profile["name"]) == (
        member["id"],
        member["phone"],
        "王芳",
    )
    assert "王芳".encode() in raw  # UTF-8, not \u escapes
    assert profile["birthday"] == "1990-07-15"
    assert profile["tags"] == ["vip"]
    assert profile["tier_code"] == member["tier_code"]
    [child] = data["children"]
    assert (child["nickname"], child["stage"]) == ("乐乐", "1-3y")
    assert data["consents"]["channels"] == [
        {"channel": "sms", "granted": True, "source": "till", "updated_at": ANY_TIME}
    ]
    assert data["consents"]["guardian_consent"]["source"] == "pos"
    assert [(i["kind"], i["value"]) for i in data["identities"]] == [
        ("pos_card", member["sent"]["identities"][0]["value"])
    ]
    points = data["points"]
    kinds = [e["kind"] for e in points["entries"]]
    assert "earn" in kinds
    assert any(e["amount"] == 50 and e["reason"] == "goodwill" for e in points["entries"])
    assert points["balance"] == points["entries"][-1]["balance_after"]
    assert points["lots"]
    assert all(lot["expires_at"] for lot in points["lots"])
    assert data["tier_history"]
    [exported] = data["orders"]
    assert (exported["id"], exported["external_id"]) == (order["id"], "ext-1")
    assert exported["lines"][0]["sku"] == "MILK-1"
    assert [(f["external_id"], f["amount_fen"]) for f in exported["refunds"]] == [
        ("refund-1", 10000)
    ]
    assert set(data["benefits"]) == {"entitlements", "uses"}
    [sent] = data["messages"]
    assert (sent["purpose"], sent["template"]) == ("points_expiring", "points_expiring")
    assert {"status", "channel", "created_at", "sent_at"} <= set(sent)
    assert "params" not in sent
    assert b"secret_link" not in raw
    assert data["plugins"]["surveys"]["responses"] == []
    assert data["plugins"]["traceability"] == {"scans": []}

    # Nobody else's data.
    text = raw.decode("utf-8")
    for someone in (other, stranger):
        assert someone["id"] not in text
        assert someone["phone"] not in text
    assert "李小龙" not in text
    assert "ext-2" not in text
    assert str(other_tenant.id) not in text

    # Audited: the request and the download, on the member, with the reason.
    r = await client.get("/api/v1/audit", params={"limit": 200}, headers=hq)
    on_member = [e for e in r.json()["items"] if e["subject_id"] == member["id"]]
    actions = {e["action"]: e for e in on_member}
    for action in ("members.data_export_requested", "members.data_export_downloaded"):
        assert actions[action]["subject_type"] == "member"
        assert actions[action]["changes"] == {"export_id": job["id"], "reason": REASON}


class _Anything:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(other)


ANY_TIME: Any = _Anything()


async def test_who_may_ask_and_what_is_refused(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    tenant, other_tenant = await make_tenant(), await make_tenant()
    member = await _member(client, tenant)
    stranger = await _member(client, other_tenant)
    hq = tenant.hq()

    # Another chain's member, and no member at all: 404.
    for member_id in (stranger["id"], str(uuid.uuid4())):
        r = await _ask(client, hq, member_id)
        assert r.status_code == 404, r.text
    # The reason is required, not blank, at most 500 characters.
    url = f"/api/v1/members/{member['id']}/data-exports"
    for body in (
        {"idempotency_key": "r1"},
        {"idempotency_key": "r1", "reason": "  "},
        {"idempotency_key": "r1", "reason": "x" * 501},
    ):
        r = await client.post(url, json=body, headers=hq)
        assert r.status_code in (400, 422), r.text
        assert [e["field"] for e in r.json()["errors"]] == ["reason"]

    # Without members:pii: neither the request nor the download of one.
    analyst = await _key(client, tenant, ["members:read", "exports:read", "exports:write"])
    r = await _ask(client, analyst, member["id"])
    assert r.status_code == 403, r.text
    r = await _ask(client, hq, member["id"], key="same")
    assert r.status_code == 202, r.text
    job = r.json()
    await _run(tenant, job["id"])
    r = await client.get(f"/api/v1/exports/{job['id']}/file", headers=analyst)
    assert r.status_code == 403, r.text
    privacy = await _key(client, tenant, ["members:pii", "exports:read", "exports:write"])
    _, data = await _file(client, privacy, job["id"])
    assert data["member"]["id"] == member["id"]
    # Another chain's HQ sees no such export.
    r = await client.get(f"/api/v1/exports/{job['id']}/file", headers=other_tenant.hq())
    assert r.status_code == 404, r.text

    # Idempotent: the same key answers the same job; with another request, 409.
    r = await _ask(client, hq, member["id"], key="same")
    assert (r.status_code, r.json()["id"]) == (202, job["id"])
    assert r.headers["idempotent-replayed"] == "true"
    body = {"reason": "another request", "idempotency_key": "same"}
    r = await client.post(url, json=body, headers=hq)
    assert r.status_code == 409, r.text
    assert r.json()["errors"][0]["field"] == "idempotency_key"
    r = await client.get("/api/v1/exports", headers=hq)
    assert [e["id"] for e in r.json()["items"]] == [job["id"]]


class _Broken:
    @hookimpl
    def nestpoint_collect_member_data(self, member_id: str) -> dict[str, Any]:
        raise RuntimeError("broken plugin")


class _NotJson:
    @hookimpl
    async def nestpoint_collect_member_data(self, member_id: str) -> Any:
        return {"what": object()}


async def test_a_failing_plugin_leaves_its_part_unavailable(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    host = get_plugin_host()
    host.register_plugin(_Broken(), "data-broken")
    host.register_plugin(_NotJson(), "data-not-json")
    try:
        tenant = await make_tenant()
        for plugin_id in ("data-broken", "data-not-json"):
            r = await client.put(
                f"/api/v1/tenant/plugins/{plugin_id}", json={"enabled": True}, headers=tenant.hq()
            )
            assert r.status_code == 200, r.text
        member = await _member(client, tenant)
        job = (await _ask(client, tenant.hq(), member["id"])).json()
        await _run(tenant, job["id"])
        await host.drain()
        _, data = await _file(client, tenant.hq(), job["id"])
        assert data["plugins"]["data-broken"] == {"error": "unavailable"}
        assert data["plugins"]["data-not-json"] == {"error": "unavailable"}
        assert data["member"]["id"] == member["id"]
        r = await client.get("/api/v1/tenant/plugin-failures", headers=tenant.hq())
        assert r.status_code == 200, r.text
        assert {f["plugin_id"] for f in r.json()["items"]} >= {"data-broken", "data-not-json"}
    finally:
        host.unregister("data-broken")
        host.unregister("data-not-json")
