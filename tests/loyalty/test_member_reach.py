"""Which members a store key reaches: its own, unless the chain shares members with its kind.

A franchise store (by default) lists, reads and changes only the members whose home store it
is; for any other member every member route answers 404 exactly as for no member. At the till
it still serves anyone by exact phone or card, with the masked view.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from loyalty.helpers import new_phone, order_body
from loyalty.support import all_pages, member, post_order, without_ids
from nestpoint.context import Actor, acting_as
from nestpoint.db import scoped_session
from nestpoint.errors import Invalid
from nestpoint.tenancy import manifest as manifests

TODAY = datetime.now(UTC).date()
CONSENT = {"granted": True, "source": "pos"}


@dataclass
class Chain:
    tenant: Any
    franchise: dict[str, str]  # till key of franchise store F1 (default scopes)
    direct: dict[str, str]  # till key of direct store S1
    own: dict[str, Any]  # a member whose home store is F1
    buddy: dict[str, Any]  # another F1 member
    other: dict[str, Any]  # a member whose home store is S1
    other_phone: str
    other_card: str


@pytest.fixture
def chain(client, make_tenant, enrol, till):  # type: ignore[no-untyped-def]
    async def make() -> Chain:
        t = await make_tenant()
        r = await client.post(
            "/api/v1/stores",
            json={"code": "F1", "name": "加盟店", "kind": "franchise"},
            headers=t.hq(),
        )
        assert r.status_code == 201, r.text
        franchise, direct = await till(t, "F1"), await till(t, "S1")
        kids = [
            {"nickname": "豆豆", "birth_date": (TODAY - timedelta(days=100)).isoformat()},
            {"nickname": "宝宝", "due_date": (TODAY + timedelta(days=40)).isoformat()},
        ]
        own = await enrol(franchise, guardian_consent=CONSENT, children=kids)
        buddy = await enrol(franchise)
        phone, card = new_phone(), f"6222{uuid.uuid4().hex[:12]}"
        other = await enrol(
            direct,
            phone=phone,
            birthday="1991-03-08",
            guardian_consent=CONSENT,
            children=kids,
            identities=[{"kind": "pos_card", "value": card}],
        )
        return Chain(t, franchise, direct, own, buddy, other, phone, card)

    return make


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


# Every member route a store key may call: (method, path, body, status inside its reach).
# {m}: the member; {c}: its child; {p}: its pregnancy; {f}: a member of the key's store.
STORE_ROUTES = [
    ("get", "/members/{m}", None, 200),
    ("patch", "/members/{m}", {"name": "改名", "birthday": "1990-01-01"}, 200),
    (
        "patch",
        "/members/{m}",
        {"guardian_consent": {"granted": False, "source": "wecom"}},
        200,
    ),
    ("post", "/members/{m}/children", {"nickname": "三宝", "birth_date": str(TODAY)}, 201),
    ("patch", "/members/{m}/children/{c}", {"nickname": "改"}, 200),
    ("post", "/members/{m}/children/{p}/birth", {"birth_date": str(TODAY)}, 200),
    ("put", "/members/{m}/consents", [{"channel": "sms", "granted": True, "source": "pos"}], 204),
    ("post", "/members/{m}/identities", {"kind": "app_user", "value": "app-{m}"}, 204),
    ("post", "/members/{m}/family", {"member_id": "{f}"}, 204),
    ("get", "/members/{m}/points", None, 200),
    ("get", "/members/{m}/points/entries", None, 200),
    ("get", "/members/{m}/tier-history", None, 200),
]
ROUTE_NAMES = [
    "get",
    "update",
    "withdraw-guardian-consent",
    "add-child",
    "update-child",
    "record-birth",
    "set-consents",
    "add-identity",
    "link-family",
    "points",
    "points-entries",
    "tier-history",
]
assert len(ROUTE_NAMES) == len(STORE_ROUTES)
# Routes no store key may call: 403 whatever the member, so they reveal nothing either.
HQ_ROUTES = [
    ("post", "/members/{m}/merge", {"source_member_id": "{f}"}),
    (
        "post",
        "/members/{m}/points/adjustments",
        {"amount": 5, "reason": "x", "idempotency_key": "k"},
    ),
    (
        "post",
        "/members/{m}/points/transfers",
        {"to_member_id": "{f}", "amount": 1, "idempotency_key": "k"},
    ),
    ("post", "/members/{m}/growth", {"amount": 5, "reason": "x", "idempotency_key": "k"}),
]


def _ids(subject: dict[str, Any], friend: dict[str, Any]) -> dict[str, str]:
    child, pregnancy = subject["children"]
    return {"m": subject["id"], "c": child["id"], "p": pregnancy["id"], "f": friend["id"]}


async def _call(client, headers, method, path, body, ids):  # type: ignore[no-untyped-def]
    kwargs = {"json": _fill(body, ids)} if body is not None else {}
    return await client.request(method, "/api/v1" + _fill(path, ids), headers=headers, **kwargs)


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    STORE_ROUTES,
    ids=ROUTE_NAMES,
)
async def test_franchise_key_gets_404_for_members_outside_its_reach(
    client, chain, method, path, body, status
):
    c = await chain()
    hq_view_before = await member(client, c.tenant.hq(), c.other["id"])
    unknown = {"m": str(uuid.uuid4()), "c": str(uuid.uuid4()), "p": str(uuid.uuid4())}
    r = await _call(client, c.franchise, method, path, body, _ids(c.other, c.buddy))
    assert r.status_code == 404, r.text
    # Exactly the answer for a member that does not exist: existence does not leak.
    missing = await _call(client, c.franchise, method, path, body, _ids(c.other, c.buddy) | unknown)
    assert missing.status_code == 404
    for field in ("type", "title", "detail", "errors"):
        assert r.json()[field] == missing.json()[field], field
    assert await member(client, c.tenant.hq(), c.other["id"]) == hq_view_before
    # The same route works for the store's own member, and for any member with a direct key.
    r = await _call(client, c.franchise, method, path, body, _ids(c.own, c.buddy))
    assert r.status_code == status, r.text
    r = await _call(client, c.direct, method, path, body, _ids(c.other, c.own))
    assert r.status_code == status, r.text


async def test_family_needs_both_members_in_reach(client, chain):
    c = await chain()
    r = await client.post(
        f"/api/v1/members/{c.own['id']}/family",
        json={"member_id": c.other["id"]},
        headers=c.franchise,
    )
    assert r.status_code == 404, r.text
    assert (await member(client, c.tenant.hq(), c.own["id"]))["id"] == c.own["id"]


@pytest.mark.parametrize(("method", "path", "body"), HQ_ROUTES, ids=[p for _, p, _ in HQ_ROUTES])
async def test_hq_member_routes_refuse_store_keys_alike(client, chain, method, path, body):
    c = await chain()
    for subject in (c.own, c.other):
        r = await _call(client, c.franchise, method, path, body, _ids(subject, c.buddy))
        assert r.status_code == 403, r.text


async def test_franchise_key_lists_only_its_own_members(client, chain):
    c = await chain()
    listed = {m["id"] for m in await all_pages(client, "/api/v1/members", c.franchise)}
    assert listed == {c.own["id"], c.buddy["id"]}
    for params in ({"home_store": "S1"}, {"stage": "0-6m", "home_store": "S1"}):
        assert await all_pages(client, "/api/v1/members", c.franchise, **params) == []
    staged = await all_pages(client, "/api/v1/members", c.franchise, stage="pregnant")
    assert [m["id"] for m in staged] == [c.own["id"]]
    # A direct store (shared by default) and HQ list everyone.
    for headers in (c.direct, c.tenant.hq()):
        listed = {m["id"] for m in await all_pages(client, "/api/v1/members", headers)}
        assert {c.own["id"], c.buddy["id"], c.other["id"]} <= listed


async def test_till_serves_any_member_by_exact_phone_or_card_masked(client, chain, till):
    c = await chain()
    card = {"identity_kind": "pos_card", "identity_value": c.other_card}
    for params in ({"phone": c.other_phone}, card):
        r = await client.get("/api/v1/members/lookup", params=params, headers=c.franchise)
        assert r.status_code == 200, r.text
        shown = r.json()
        assert shown["id"] == c.other["id"]
        assert shown["phone"] == f"+86 {c.other_phone[:3]}****{c.other_phone[-4:]}"
        assert shown["name"] == "王*"
        assert shown["birthday"] is None
        assert shown["birthday_month"] == 3
        assert without_ids(shown["identities"]) == [
            {"kind": "pos_card", "value": "****" + c.other_card[-4:]}
        ]
        assert [
            (k["nickname"], k["birth_date"], k["due_date"], k["stage"]) for k in shown["children"]
        ] == [
            ("", None, None, "0-6m"),
            ("", None, None, "pregnant"),
        ]
        assert isinstance(shown["points_balance"], int)
    # Even a franchise key with members:pii sees only the masked view of another store's member.
    r = await client.post(
        "/api/v1/api-keys",
        headers=c.tenant.hq(),
        json={
            "name": "franchise manager",
            "kind": "store",
            "store_code": "F1",
            "scopes": ["members:read", "members:pii"],
        },
    )
    assert r.status_code == 201, r.text
    manager = {"Authorization": f"Bearer {r.json()['key']}"}
    r = await client.get("/api/v1/members/lookup", params=card, headers=manager)
    assert r.json()["phone"] != f"+86{c.other_phone}"
    assert r.json()["children"][0]["birth_date"] is None
    # ... and the full view of its own.
    r = await client.get(f"/api/v1/members/{c.own['id']}", headers=manager)
    assert r.json()["children"][0]["birth_date"] is not None
    # The till records the other store's member's order by phone or card.
    for ref in (
        {"phone": c.other_phone},
        {"identity": {"kind": "pos_card", "value": c.other_card}},
    ):
        order = await post_order(client, c.franchise, order_body(member=ref, store_code="F1"))
        assert order["member_id"] == c.other["id"]


async def _share(client, platform_headers, tenant_id, kinds: list[str]) -> None:  # type: ignore[no-untyped-def]
    r = await client.patch(
        f"/api/v1/tenants/{tenant_id}",
        json={"members_shared_with": kinds},
        headers=platform_headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["members_shared_with"] == sorted(set(kinds))


async def test_the_chain_decides_which_store_kinds_share_members(client, chain, platform_headers):
    c = await chain()
    r = await client.get(f"/api/v1/tenants/{c.tenant.id}", headers=platform_headers)
    assert r.json()["members_shared_with"] == ["direct"]
    url = f"/api/v1/members/{c.other['id']}"
    await _share(client, platform_headers, c.tenant.id, ["franchise", "direct"])
    r = await client.get(url, headers=c.franchise)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "王芳"
    await _share(client, platform_headers, c.tenant.id, [])
    assert (await client.get(url, headers=c.franchise)).status_code == 404
    # Now a direct store sees only its own members too.
    assert (await client.get(f"/api/v1/members/{c.own['id']}", headers=c.direct)).status_code == 404
    assert (await client.get(url, headers=c.direct)).status_code == 200
    r = await client.patch(
        f"/api/v1/tenants/{c.tenant.id}",
        json={"members_shared_with": ["everyone"]},
        headers=platform_headers,
    )
    assert r.status_code in (400, 422)


async def test_the_manifest_sets_member_sharing(tmp_path: Path):
    slug = f"share-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "chain.toml"

    async def apply(shared: str) -> list[manifests.Change]:
        path.write_text(
            f'[tenant]\nslug = "{slug}"\nname = "Chain"\n{shared}\n'
            '[[stores]]\ncode = "F1"\nname = "F"\nkind = "franchise"\n',
            encoding="utf-8",
        )
        manifest = manifests.load_manifest(path)
        with acting_as(Actor("system", name="tests")):
            async with scoped_session() as session:
                tenant, changes = await manifests.apply(session, manifest)
                assert tenant.members_shared_with == manifest.tenant.members_shared_with
        return changes

    await apply("")
    assert await apply("") == []
    changes = await apply('members_shared_with = ["franchise", "direct"]')
    assert [c.describe() for c in changes] == [
        f"~ tenant {slug}: members_shared_with: ['direct'] -> ['direct', 'franchise']"
    ]
    assert await apply('members_shared_with = ["direct", "franchise"]') == []
    with pytest.raises(Invalid) as refused:
        await apply('members_shared_with = ["all"]')
    assert [e.field for e in refused.value.errors] == ["tenant.members_shared_with.0"]
