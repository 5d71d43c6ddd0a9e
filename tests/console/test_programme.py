"""The programme page: the ladder and earn rules as the loyalty service has them, a preview
computed by the orders service's own rules, and HQ's admin changing the ladder (audited,
refused values shown beside their field); roles without the page get 403."""

from __future__ import annotations

import re

from litestar.testing import AsyncTestClient
from sqlalchemy import select

from nestpoint.audit.models import AuditEntry
from nestpoint.context import tenant_context
from nestpoint.db import scoped_session

from .test_users_and_sessions import add_user, sign_in


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def test_programme_page(app, client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    program = (await client.get("/api/v1/loyalty/program", headers=t.hq())).json()
    program.pop("version")
    program["earn_rules"]["category_multipliers"] = {"feeding": 200}
    r = await client.put("/api/v1/loyalty/program", json=program, headers=t.hq())
    assert r.status_code == 200, r.text
    tiers = program["tiers"]
    top = tiers[-1]
    admin = await add_user(client, t, "adm", "hq_admin")
    for login, role, store in (("ana", "hq_analyst", None), ("mgr", "store_manager", "S1")):
        await add_user(client, t, login, role, store)
    await add_user(client, t, "clk", "store_clerk", "S1")

    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "adm")).status_code == 303
        page = await c.get("/console/programme")
        assert page.status_code == 200
        for tier in tiers:
            assert f'data-tier="{tier["code"]}"' in page.text
        # The admin edits the multipliers in rows (a code and a percent).
        assert 'name="earn_rules.category_multipliers.0.code" value="feeding"' in page.text
        assert 'name="earn_rules.category_multipliers.0.percent" value="200"' in page.text
        # The preview equals the API's order preview rule: 128 yuan of feeding at the top
        # tier, rate x category, rounded down.
        page = await c.get(
            "/console/programme",
            params={"amount": "128.50", "tier": top["code"], "category": "feeding"},
        )
        assert page.status_code == 200
        expected = 12850 * top["earn_rate_percent"] * 200 * 100 * 100 // 10_000_000_000
        shown = re.search(r'data-testid="preview-points">(\d+)<', page.text)
        assert shown
        assert int(shown.group(1)) == expected
        bad = await c.get("/console/programme", params={"amount": "12.345"})
        assert bad.status_code == 422
        assert 'data-testid="error-amount"' in bad.text

        # A change: audited as loyalty.updated by the admin, then shown.
        csrf = _csrf(page.text)
        form = {
            "csrf_token": csrf,
            "tiers.0.earn_rate_percent": "150",
            "earn_rules.cap_per_order": "500",
        }
        saved = await c.post("/console/programme", data=form)
        assert saved.status_code == 200
        assert 'data-testid="saved"' in saved.text
        now = (await client.get("/api/v1/loyalty/program", headers=t.hq())).json()
        assert now["tiers"][0]["earn_rate_percent"] == 150
        assert now["earn_rules"]["cap_per_order"] == 500
        # A refused value is shown beside its field, and nothing changes.
        refused = await c.post(
            "/console/programme", data={"csrf_token": csrf, "tiers.0.redeem_cap_percent": "101"}
        )
        assert refused.status_code == 422
        assert 'data-testid="error-tiers.0.redeem_cap_percent"' in refused.text
        words = await c.post(
            "/console/programme", data={"csrf_token": csrf, "tiers.0.threshold": "many"}
        )
        assert words.status_code == 422
        assert 'data-testid="error-tiers.0.threshold"' in words.text
        after = (await client.get("/api/v1/loyalty/program", headers=t.hq())).json()
        assert after["version"] == now["version"]
        # Without the token: refused before the handler.
        no_csrf = await c.post("/console/programme", data={"tiers.0.threshold": "0"})
        assert no_csrf.status_code == 403

    with tenant_context(t.id):
        async with scoped_session() as session:
            rows = (
                await session.scalars(
                    select(AuditEntry).where(AuditEntry.action == "loyalty.updated")
                )
            ).all()
    assert [e.actor_id for e in rows].count(admin["id"]) == 1

    # The analyst reads it and cannot change it; store roles cannot open it.
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "ana")).status_code == 303
        page = await c.get("/console/programme")
        assert page.status_code == 200
        assert 'name="tiers.0.threshold"' not in page.text
        assert "feeding 200%" in page.text  # the earn rules, read only
        r = await c.post(
            "/console/programme",
            data={"csrf_token": _csrf(page.text), "tiers.0.earn_rate_percent": "300"},
        )
        assert r.status_code == 403
    for login in ("mgr", "clk"):
        async with AsyncTestClient(app=app) as c:
            assert (await sign_in(c, t.slug, login)).status_code == 303
            assert (await c.get("/console/programme")).status_code == 403
