"""The earn rules on the programme page: HQ's admin sets the category and store multipliers
(rows of a code and a percent, added and removed), the excluded categories and SKUs
(comma-separated) and the points policy's shown fields, through the loyalty service, audited
as the admin; a refused value is a 422 beside its field and nothing changes; the preview
follows the saved rules; the analyst reads them only."""

from __future__ import annotations

import re

from litestar.testing import AsyncTestClient

from .test_programme_ladder import PAGE, version_of
from .test_store_admin import audit_actions, csrf_of
from .test_users_and_sessions import add_user, sign_in


async def program_of(client, t) -> dict:  # type: ignore[no-untyped-def,type-arg]
    return (await client.get("/api/v1/loyalty/program", headers=t.hq())).json()  # type: ignore[no-any-return]


async def preview_points(c, **params: str) -> int:  # type: ignore[no-untyped-def]
    page = await c.get(PAGE, params={"amount": "100", "tier": "bronze", **params})
    assert page.status_code == 200, page.text
    shown = re.search(r'data-testid="preview-points">(\d+)<', page.text)
    assert shown, page.text
    return int(shown.group(1))


async def test_admin_sets_the_earn_rules(app, client, make_tenant) -> None:
    t = await make_tenant(("S1", "S2"))
    admin = await add_user(client, t, "adm", "hq_admin")
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "adm")).status_code == 303
        page = await c.get(PAGE)
        assert 'data-testid="category_multipliers"' in page.text
        csrf = csrf_of(page.text)
        assert await preview_points(c, category="feeding", store="S1") == 100

        rules = {
            "csrf_token": csrf,
            "version": version_of(page.text),
            "earn_rules.category_multipliers.0.code": "feeding",
            "earn_rules.category_multipliers.0.percent": "200",
            "earn_rules.category_multipliers.1.code": "",
            "earn_rules.category_multipliers.1.percent": "",
            "earn_rules.store_multipliers.0.code": "S1",
            "earn_rules.store_multipliers.0.percent": "150",
            "earn_rules.excluded_categories": "gift_card, services",
            "earn_rules.excluded_skus": "SKU-1,SKU-2",
            "points.cash_points_per_yuan": "50",
            "points.pending_days": "3",
            "points.expiry": "rolling",
            "points.expiry_months": "12",
        }
        saved = await c.post(PAGE, data=rules)
        assert saved.status_code == 200, saved.text
        assert 'data-testid="saved"' in saved.text
        program = await program_of(client, t)
        earn = program["earn_rules"]
        assert earn["category_multipliers"] == {"feeding": 200}
        assert earn["store_multipliers"] == {"S1": 150}
        assert earn["excluded_categories"] == ["gift_card", "services"]
        assert earn["excluded_skus"] == ["SKU-1", "SKU-2"]
        points = program["points"]
        assert (points["cash_points_per_yuan"], points["pending_days"]) == (50, 3)
        assert (points["expiry"], points["expiry_months"]) == ("rolling", 12)
        assert points["hold_timeout_minutes"] == 15  # not on the form: kept

        # The preview follows: 100 yuan of feeding at S1 = 100 x 2 x 1.5; excluded: nothing.
        assert await preview_points(c, category="feeding", store="S1") == 300
        assert await preview_points(c, category="feeding", store="S2") == 200
        assert await preview_points(c, category="services", store="S1") == 0

        # Remove the category row, add another; a ladder-only form keeps the rules.
        version = version_of(saved.text)
        changed = await c.post(
            PAGE,
            data={
                "csrf_token": csrf,
                "version": version,
                "earn_rules.category_multipliers.0.code": "feeding",
                "earn_rules.category_multipliers.0.percent": "200",
                "earn_rules.category_multipliers.0.remove": "1",
                "earn_rules.category_multipliers.1.code": "toys",
                "earn_rules.category_multipliers.1.percent": "300",
            },
        )
        assert changed.status_code == 200, changed.text
        earn = (await program_of(client, t))["earn_rules"]
        assert earn["category_multipliers"] == {"toys": 300}
        assert earn["store_multipliers"] == {"S1": 150}
        assert earn["excluded_skus"] == ["SKU-1", "SKU-2"]

        # Refused beside the field (422 naming it), nothing saved.
        version = version_of(changed.text)
        for bad, key in (
            (
                {
                    "earn_rules.store_multipliers.0.code": "NOPE",
                    "earn_rules.store_multipliers.0.percent": "120",
                },
                "earn_rules.store_multipliers.0.code",
            ),
            (
                {
                    "earn_rules.category_multipliers.0.code": "toys",
                    "earn_rules.category_multipliers.0.percent": "20000",
                },
                "earn_rules.category_multipliers.0.percent",
            ),
            (
                {
                    "earn_rules.category_multipliers.0.code": "x" * 65,
                    "earn_rules.category_multipliers.0.percent": "120",
                },
                "earn_rules.category_multipliers.0.code",
            ),
            (
                {
                    "earn_rules.category_multipliers.0.code": "toys",
                    "earn_rules.category_multipliers.0.percent": "lots",
                },
                "earn_rules.category_multipliers.0.percent",
            ),
            (
                {
                    "earn_rules.category_multipliers.0.code": "toys",
                    "earn_rules.category_multipliers.0.percent": "100",
                    "earn_rules.category_multipliers.1.code": "toys",
                    "earn_rules.category_multipliers.1.percent": "200",
                },
                "earn_rules.category_multipliers.1.code",
            ),
            ({"earn_rules.excluded_skus": "ok, " + "y" * 65}, "earn_rules.excluded_skus"),
            ({"points.pending_days": "400"}, "points.pending_days"),
            ({"points.cash_points_per_yuan": "0"}, "points.cash_points_per_yuan"),
            ({"points.expiry": "someday"}, "points.expiry"),
        ):
            refused = await c.post(PAGE, data={"csrf_token": csrf, "version": version} | bad)
            assert refused.status_code == 422, (bad, refused.text)
            assert f'data-testid="error-{key}"' in refused.text, (bad, refused.text)
        after = await program_of(client, t)
        assert after["version"] == int(version)
        assert after["earn_rules"] == earn

        no_token = {"earn_rules.excluded_skus": "SKU-9", "version": version}
        assert (await c.post(PAGE, data=no_token)).status_code == 403

    rows = await audit_actions(t.id, "loyalty.updated")
    mine = [e for e in rows if e.actor_id == admin["id"]]
    assert len(mine) == 2
    assert mine[-1].changes["program"]["earn_rules"]["category_multipliers"] == {"toys": 300}


async def test_analyst_reads_the_earn_rules_only(app, client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    await add_user(client, t, "ana", "hq_analyst")
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "ana")).status_code == 303
        page = await c.get(PAGE)
        assert page.status_code == 200
        assert 'name="earn_rules.excluded_skus"' not in page.text
        assert 'data-testid="category_multipliers"' not in page.text
        form = {
            "csrf_token": csrf_of(page.text),
            "earn_rules.store_multipliers.0.code": "S1",
            "earn_rules.store_multipliers.0.percent": "500",
        }
        assert (await c.post(PAGE, data=form)).status_code == 403
    assert (await program_of(client, t))["earn_rules"]["store_multipliers"] == {}
