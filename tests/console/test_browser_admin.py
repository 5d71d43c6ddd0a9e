"""HQ's chain administration in a real browser (chromium, uvicorn; see conftest.py): the
admin adds a tier by pressing Enter in its form (the form's default button adds, it never
removes a tier), removes it with its row's button, makes a store, and sets a plugin secret
that the page never shows again."""

from __future__ import annotations

import uuid

import pytest

from .conftest import PASSWORD, sign_in


@pytest.fixture(scope="module")
async def chain(app, platform_key):  # type: ignore[no-untyped-def]
    from litestar.testing import AsyncTestClient

    platform = {"Authorization": f"Bearer {platform_key}"}
    async with AsyncTestClient(app=app) as client:
        slug = f"a-{uuid.uuid4().hex[:10]}"
        body = {"slug": slug, "name": "Admin Chain", "locale": "en"}
        r = await client.post("/api/v1/tenants", json=body, headers=platform)
        assert r.status_code == 201, r.text
        tenant_id = r.json()["id"]
        r = await client.post(
            f"/api/v1/tenants/{tenant_id}/api-keys", json={"name": "HQ"}, headers=platform
        )
        hq = {"Authorization": f"Bearer {r.json()['key']}"}
        r = await client.post("/api/v1/stores", json={"code": "S1", "name": "S1"}, headers=hq)
        assert r.status_code == 201, r.text
        user = {"login": "admin", "role": "hq_admin", "password": PASSWORD}
        r = await client.post("/api/v1/console-users", json=user, headers=hq)
        assert r.status_code == 201, r.text
        yield {"slug": slug, "hq": hq}


async def _program_codes(app, hq) -> list[str]:  # type: ignore[no-untyped-def]
    from litestar.testing import AsyncTestClient

    async with AsyncTestClient(app=app) as client:
        program = (await client.get("/api/v1/loyalty/program", headers=hq)).json()
    return [t["code"] for t in program["tiers"]]


async def test_admin_adds_and_removes_a_tier(new_page, chain, app) -> None:
    page = await new_page()
    await sign_in(page, chain["slug"], "admin")
    await page.goto("/console/programme")
    await page.fill("input[name='new.code']", "platinum")
    await page.fill("input[name='new.name']", "Platinum")
    await page.fill("input[name='new.threshold']", "30000")
    async with page.expect_navigation():
        await page.press("input[name='new.threshold']", "Enter")
    await page.wait_for_selector("[data-testid=saved]")
    assert await _program_codes(app, chain["hq"]) == [
        "bronze",
        "silver",
        "gold",
        "diamond",
        "platinum",
    ]
    async with page.expect_navigation():
        await page.press("input[name='tiers.0.threshold']", "Enter")  # nothing edited
    await page.wait_for_selector("[data-testid=saved]")
    assert len(await _program_codes(app, chain["hq"])) == 5
    async with page.expect_navigation():
        await page.click("[data-testid=remove-platinum]")
    await page.wait_for_selector("[data-testid=saved]")
    assert "platinum" not in await _program_codes(app, chain["hq"])


async def test_admin_makes_a_store_and_sets_a_secret(new_page, chain, app) -> None:
    from litestar.testing import AsyncTestClient

    page = await new_page()
    await sign_in(page, chain["slug"], "admin")
    await page.goto("/console/stores")
    await page.fill("[data-testid=store-form] input[name=code]", "S2")
    await page.fill("[data-testid=store-form] input[name=name]", "Second store")
    await page.select_option("[data-testid=store-form] select[name=kind]", "franchise")
    await page.click("[data-testid=add-store]")
    await page.wait_for_selector("[data-testid=store-created]")
    await page.click("[data-testid=open-store-S2]")
    await page.click("[data-testid=close-store]")
    await page.wait_for_selector("[data-testid=reopen-store]")

    secret = f"browser-{uuid.uuid4().hex}"
    await page.goto("/console/plugins/sms")
    await page.fill("[data-testid=secret-form-access_key_secret] input[name=value]", secret)
    await page.click("[data-testid=set-access_key_secret]")
    await page.wait_for_selector("[data-testid=secret-saved]")
    assert secret not in await page.content()
    async with AsyncTestClient(app=app) as client:
        store = (await client.get("/api/v1/stores/S2", headers=chain["hq"])).json()
        listed = await client.get("/api/v1/tenant/plugins/sms/secrets", headers=chain["hq"])
    assert (store["kind"], store["active"]) == ("franchise", False)
    assert next(s for s in listed.json()["items"] if s["name"] == "access_key_secret")["set"]
