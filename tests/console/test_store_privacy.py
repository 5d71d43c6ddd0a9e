"""A store role sees personal data of its own store's members only.

The chain shares its members with direct stores (the default ``members_shared_with``), so
S1's store key reaches S2's member unmasked through the API; in the console S1's manager
and clerk reach that member too (served at the till, opened by id) but see them masked.
Only reads of their own store's members are audited as unmasked reads.
"""

from __future__ import annotations

import uuid

from litestar.testing import AsyncTestClient
from sqlalchemy import select

from nestpoint.audit.models import AuditEntry
from nestpoint.context import tenant_context
from nestpoint.db import scoped_session

from .test_users_and_sessions import add_user, sign_in


def _phone() -> str:
    return f"137{uuid.uuid4().int % 10**8:08d}"


async def test_store_roles_see_only_their_own_members_unmasked(app, client, make_tenant) -> None:
    t = await make_tenant(("S1", "S2"))
    made = {}
    for code, name in (("S1", "Alice Own"), ("S2", "Bella Other")):
        phone = _phone()
        r = await client.post(
            "/api/v1/members",
            json={"phone": phone, "name": name, "home_store_code": code},
            headers=t.hq(),
        )
        assert r.status_code == 201, r.text
        made[code] = (r.json()["id"], phone, name)
    manager = await add_user(client, t, "mgr", "store_manager", "S1")
    await add_user(client, t, "clk", "store_clerk", "S1")
    own_id, own_phone, own_name = made["S1"]
    other_id, other_phone, other_name = made["S2"]

    # The API is unchanged: a direct store's key with members:pii reads S2's member whole.
    r = await client.post(
        "/api/v1/api-keys",
        json={
            "name": "pii S1",
            "kind": "store",
            "store_code": "S1",
            "scopes": ["members:read", "members:pii"],
        },
        headers=t.hq(),
    )
    assert r.status_code == 201, r.text
    key = {"Authorization": f"Bearer {r.json()['key']}"}
    r = await client.get(f"/api/v1/members/{other_id}", headers=key)
    assert r.status_code == 200, r.text
    assert r.json()["phone"].endswith(other_phone[-8:])
    assert r.json()["name"] == other_name

    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "mgr")).status_code == 303
        # Their own member: whole, on the member's page and in the search.
        page = await c.get(f"/console/members/{own_id}")
        assert page.status_code == 200
        assert own_phone in page.text
        assert own_name in page.text
        # S2's member is in reach (shared with direct stores) but masked everywhere.
        page = await c.get(f"/console/members/{other_id}")
        assert page.status_code == 200
        assert other_phone not in page.text
        assert other_name not in page.text
        assert other_phone[-4:] in page.text
        search = await c.get("/console/members", params={"q": other_phone})
        assert search.status_code == 200
        assert other_id in search.text
        shown = search.text.split('data-testid="found-phone">', 1)[1].split("</tr>", 1)[0]
        assert other_phone not in shown
        assert other_name not in shown
        assert other_phone[-4:] in shown
        card = await c.get(
            "/console/till/lookup", params={"q": other_phone}, headers={"HX-Request": "true"}
        )
        assert card.status_code == 200
        assert f'value="{other_id}"' in card.text  # still servable at the till
        assert other_phone not in card.text
        assert other_name not in card.text
        card = await c.get(
            "/console/till/lookup", params={"q": own_phone}, headers={"HX-Request": "true"}
        )
        assert own_phone in card.text
        assert own_name in card.text

    async with AsyncTestClient(app=app) as c:  # the clerk has no members:pii: masked both
        assert (await sign_in(c, t.slug, "clk")).status_code == 303
        card = await c.get(
            "/console/till/lookup", params={"q": other_phone}, headers={"HX-Request": "true"}
        )
        assert card.status_code == 200
        assert other_phone not in card.text
        assert other_name not in card.text

    # Unmasked reads audited: the manager's of their own member, never of S2's.
    with tenant_context(t.id):
        async with scoped_session() as session:
            rows = (
                await session.scalars(
                    select(AuditEntry).where(AuditEntry.action == "member.personal_data_read")
                )
            ).all()
    assert {e.subject_id for e in rows if e.actor_id == manager["id"]} == {own_id}
