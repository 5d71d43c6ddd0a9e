"""The tier ladder on the programme page: HQ's admin adds a tier (kept in the order of the
thresholds), edits a tier's name, numbers and benefits, reorders by thresholds and removes a
tier (its members move one rung down), through the loyalty service, audited as the admin;
refused values beside their field, nothing changed; a form older than the programme is a 409;
the preview follows the new ladder; the analyst and store roles cannot change it."""

from __future__ import annotations

import re
import uuid

from litestar.testing import AsyncTestClient
from sqlalchemy import update

from nestpoint.context import tenant_context
from nestpoint.db import scoped_session
from nestpoint.members.models import Member

from .test_store_admin import audit_actions, csrf_of
from .test_users_and_sessions import add_user, sign_in

PAGE = "/console/programme"


def version_of(html: str) -> str:
    found = re.search(r'name="version" value="(\d+)"', html)
    assert found, html
    return found.group(1)


async def codes(client, t) -> list[str]:  # type: ignore[no-untyped-def]
    program = (await client.get("/api/v1/loyalty/program", headers=t.hq())).json()
    return [tier["code"] for tier in program["tiers"]]


async def test_admin_runs_the_ladder(app, client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    admin = await add_user(client, t, "adm", "hq_admin")
    before = await codes(client, t)
    assert before == ["bronze", "silver", "gold", "diamond"]
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "adm")).status_code == 303
        page = await c.get(PAGE)
        assert 'data-testid="new-tier"' in page.text
        assert 'data-testid="remove-gold"' in page.text
        csrf = csrf_of(page.text)

        # Add a tier between silver and gold: it lands there, by its threshold.
        new = {
            "csrf_token": csrf,
            "version": version_of(page.text),
            "new.code": "silverplus",
            "new.name": "Silver+",
            "new.threshold": "3000",
            "new.earn_rate_percent": "130",
            "new.benefits": "free_gift, birthday_cake",
        }
        added = await c.post(PAGE, data=new)
        assert added.status_code == 200, added.text
        assert 'data-testid="saved"' in added.text
        assert await codes(client, t) == ["bronze", "silver", "silverplus", "gold", "diamond"]
        program = (await client.get("/api/v1/loyalty/program", headers=t.hq())).json()
        plus = program["tiers"][2]
        assert (plus["name"], plus["earn_rate_percent"], plus["redeem_cap_percent"]) == (
            "Silver+",
            130,
            10,
        )
        assert plus["benefits"] == ["free_gift", "birthday_cake"]
        assert plus["protection_days"] == 90

        # The same form again: older than the programme now, 409, nothing added.
        stale = await c.post(PAGE, data=new)
        assert stale.status_code == 409
        assert 'data-testid="error-form"' in stale.text
        assert await codes(client, t) == ["bronze", "silver", "silverplus", "gold", "diamond"]

        # Edit and reorder: silverplus (row 2) above gold by its threshold; a name, the
        # protection and the benefits of the entry tier.
        version = version_of(added.text)
        edit = {
            "csrf_token": csrf,
            "version": version,
            "tiers.2.threshold": "8000",
            "tiers.0.name": "Bronze card",
            "tiers.0.protection_days": "30",
            "tiers.0.benefits": "welcome_gift",
        }
        moved = await c.post(PAGE, data=edit)
        assert moved.status_code == 200, moved.text
        assert await codes(client, t) == ["bronze", "silver", "gold", "silverplus", "diamond"]
        program = (await client.get("/api/v1/loyalty/program", headers=t.hq())).json()
        entry = program["tiers"][0]
        assert (entry["name"], entry["protection_days"], entry["benefits"]) == (
            "Bronze card",
            30,
            ["welcome_gift"],
        )

        # Refused, beside the field, and nothing changes.
        version = version_of(moved.text)
        for bad, key in (
            ({"tiers.1.threshold": "5000"}, "tiers"),  # the same threshold as gold
            ({"tiers.1.name": " "}, "tiers.1.name"),
            ({"tiers.1.protection_days": "many"}, "tiers.1.protection_days"),
            ({"tiers.1.benefits": "x" * 65}, "tiers.1.benefits"),
            ({"new.code": "Bad Code", "new.name": "B", "new.threshold": "100"}, "new.code"),
            ({"new.code": "ruby", "new.name": "Ruby"}, "new.threshold"),
            ({"new.name": "Nameless", "new.threshold": "100"}, "new.code"),
            ({"new.code": "gold", "new.name": "G", "new.threshold": "100"}, "tiers"),
        ):
            refused = await c.post(PAGE, data={"csrf_token": csrf, "version": version} | bad)
            assert refused.status_code == 422, bad
            assert f'data-testid="error-{key}"' in refused.text, (bad, refused.text)
        removing_entry = await c.post(
            PAGE, data={"csrf_token": csrf, "version": version, "remove": "bronze"}
        )
        assert removing_entry.status_code == 422  # the entry tier needs threshold 0
        assert 'data-testid="error-tiers"' in removing_entry.text
        after = (await client.get("/api/v1/loyalty/program", headers=t.hq())).json()
        assert after["version"] == int(version)

        # Remove a tier: its members move one rung down.
        phone = f"138{uuid.uuid4().int % 10**8:08d}"
        r = await client.post("/api/v1/members", json={"phone": phone}, headers=t.hq())
        assert r.status_code == 201, r.text
        member_id = uuid.UUID(r.json()["id"])
        with tenant_context(t.id):
            async with scoped_session() as session:
                await session.execute(
                    update(Member).where(Member.id == member_id).values(tier_code="silverplus")
                )
                await session.commit()
        removed = await c.post(
            PAGE, data={"csrf_token": csrf, "version": version, "remove": "silverplus"}
        )
        assert removed.status_code == 200, removed.text
        assert await codes(client, t) == ["bronze", "silver", "gold", "diamond"]
        member = (await client.get(f"/api/v1/members/{member_id}", headers=t.hq())).json()
        assert member["tier_code"] == "gold"

        # The preview follows the ladder: 100 yuan at diamond (200%) earns 200 points.
        preview = await c.get(PAGE, params={"amount": "100", "tier": "diamond"})
        assert preview.status_code == 200
        shown = re.search(r'data-testid="preview-points">(\d+)<', preview.text)
        assert shown
        assert int(shown.group(1)) == 200
        assert (await c.post(PAGE, data={"remove": "gold"})).status_code == 403  # no token

    rows = await audit_actions(t.id, "loyalty.updated")
    assert [e.actor_id for e in rows].count(admin["id"]) == 3  # added, edited, removed


async def test_only_the_admin_changes_the_ladder(app, client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    await add_user(client, t, "ana", "hq_analyst")
    await add_user(client, t, "mgr", "store_manager", "S1")
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "ana")).status_code == 303
        page = await c.get(PAGE)
        assert page.status_code == 200
        assert 'data-testid="new-tier"' not in page.text
        assert 'data-testid="remove-gold"' not in page.text
        form = {"csrf_token": csrf_of(page.text), "remove": "gold"}
        assert (await c.post(PAGE, data=form)).status_code == 403
        form = {"csrf_token": csrf_of(page.text), "new.code": "x", "new.threshold": "9"}
        assert (await c.post(PAGE, data=form)).status_code == 403
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "mgr")).status_code == 303
        csrf = csrf_of((await c.get("/console/till")).text)
        assert (await c.post(PAGE, data={"csrf_token": csrf, "remove": "gold"})).status_code == 403
    assert await codes(client, t) == ["bronze", "silver", "gold", "diamond"]
