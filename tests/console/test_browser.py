"""The console in a real browser (Debian's chromium through Playwright) against a real
server (uvicorn) on the run's database: each role signs in, a wrong password and the
throttle, CSRF, the till (look up, enrol, order, redeem), masking and reach.

Screenshots of the main pages in both languages go to ``$NESTPOINT_SCREENSHOTS`` when set
(``NESTPOINT_SCREENSHOTS=docs/console`` refreshes the committed ones), else to a
temporary folder.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from .conftest import PASSWORD, new_phone, sign_in

ROLES = {
    "admin": ("hq_admin", None),
    "analyst": ("hq_analyst", None),
    "manager": ("store_manager", "S1"),
    "clerk": ("store_clerk", "S1"),
}


@pytest.fixture(scope="module")
async def chain(app, platform_key):  # type: ignore[no-untyped-def]
    """A chain whose direct stores S1 and S2 see only their own members (franchise store F1
    sees all), with one user per role (and F1's manager) and two members (home stores S1 and
    S2), made through the API in process (same database)."""
    from litestar.testing import AsyncTestClient

    platform = {"Authorization": f"Bearer {platform_key}"}
    async with AsyncTestClient(app=app) as client:
        slug = f"c-{uuid.uuid4().hex[:10]}"
        r = await client.post(
            "/api/v1/tenants",
            json={
                "slug": slug,
                "name": "Bloom Babies",
                "locale": "en",
                "members_shared_with": ["franchise"],
            },
            headers=platform,
        )
        assert r.status_code == 201, r.text
        tenant_id = r.json()["id"]
        r = await client.post(
            f"/api/v1/tenants/{tenant_id}/api-keys", json={"name": "HQ"}, headers=platform
        )
        hq = {"Authorization": f"Bearer {r.json()['key']}"}
        for code in ("S1", "S2", "F1"):
            kind = "franchise" if code == "F1" else "direct"
            r = await client.post(
                "/api/v1/stores",
                json={"code": code, "name": f"Store {code}", "kind": kind},
                headers=hq,
            )
            assert r.status_code == 201, r.text
        for login, (role, store) in (ROLES | {"fmanager": ("store_manager", "F1")}).items():
            body = {"login": login, "role": role, "password": PASSWORD}
            if store:
                body["store_code"] = store
            r = await client.post("/api/v1/console-users", json=body, headers=hq)
            assert r.status_code == 201, r.text
        members = {}
        for store in ("S1", "S2"):
            phone = new_phone()
            r = await client.post(
                "/api/v1/members",
                json={"phone": phone, "name": f"Member {store}", "home_store_code": store},
                headers=hq,
            )
            assert r.status_code == 201, r.text
            members[store] = (r.json()["id"], phone)
        yield {"slug": slug, "hq": hq, "members": members, "client_app": app}


async def test_each_role_signs_in_and_sees_only_its_pages(new_page, chain) -> None:
    landing = {"admin": "dashboard", "analyst": "dashboard", "manager": "dashboard"}
    for login in ROLES:
        page = await new_page()
        await sign_in(page, chain["slug"], login)
        assert page.url.endswith(f"/console/{landing.get(login, 'till')}"), (login, page.url)
        assert login in await page.inner_text("[data-testid=who]")
        if login == "clerk":
            response = await page.goto("/console/dashboard")
            assert response.status == 403
            response = await page.goto("/console/members")
            assert response.status == 403
        else:
            response = await page.goto("/console/members")
            assert response.status == 200
        if login in ("admin", "analyst"):
            response = await page.goto("/console/till")
            assert response.status == 403
        await page.goto("/console/dashboard" if login != "clerk" else "/console/till")
        await page.click("[data-testid=logout]")
        assert "/console/login" in page.url
        response = await page.goto("/console/till")
        assert "/console/login" in page.url  # signed out: back to the sign-in page


async def test_wrong_password_then_throttled(new_page, chain, app) -> None:
    from litestar.testing import AsyncTestClient

    login = f"u{uuid.uuid4().hex[:8]}"
    async with AsyncTestClient(app=app) as client:
        r = await client.post(
            "/api/v1/console-users",
            json={"login": login, "role": "hq_analyst", "password": PASSWORD},
            headers=chain["hq"],
        )
        assert r.status_code == 201
    page = await new_page()
    for _ in range(5):
        await sign_in(page, chain["slug"], login, "not the password")
        assert "Wrong chain, login or password." in await page.inner_text(
            "[data-testid=login-error]"
        )
    await sign_in(page, chain["slug"], login)  # right, but too many failures just now
    assert "Too many failed sign-ins" in await page.inner_text("[data-testid=login-error]")
    assert "/console/login" in page.url


async def test_a_post_without_the_csrf_token_is_refused(new_page, chain) -> None:
    page = await new_page()
    await sign_in(page, chain["slug"], "clerk")
    html = await page.content()
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token
    phone = new_phone()
    refused = await page.request.post("/console/till/enrol", form={"phone": phone})
    assert refused.status == 403
    forged = await page.request.post(
        "/console/till/enrol", form={"phone": phone, "csrf_token": "forged"}
    )
    assert forged.status == 403
    done = await page.request.post(
        "/console/till/enrol", form={"phone": phone, "csrf_token": token.group(1)}
    )
    assert done.status == 200


async def test_the_till_looks_up_enrols_records_and_redeems(new_page, chain, app) -> None:
    from litestar.testing import AsyncTestClient

    page = await new_page()
    await sign_in(page, chain["slug"], "clerk")
    # Look up the S1 member by phone: the till's view is masked (no members:pii).
    member_id, phone = chain["members"]["S1"]
    await page.fill("[data-testid=till-q]", phone)
    await page.click("[data-testid=till-lookup]")
    shown = await page.inner_text("[data-testid=till-phone]")
    assert phone not in shown
    assert shown.endswith(phone[-4:])

    # Enrol a new member; the card appears.
    newcomer = new_phone()
    await page.click("summary")
    await page.fill("[data-testid=enrol-phone]", newcomer)
    await page.fill("[data-testid=enrol-name]", "Wang Fang")
    await page.click("[data-testid=enrol]")
    await page.wait_for_selector("[data-testid=notice]")
    assert (await page.inner_text("[data-testid=till-phone]")).endswith(newcomer[-4:])

    # Record an order for the S1 member: it earns points.
    await page.fill("[data-testid=till-q]", phone)
    await page.click("[data-testid=till-lookup]")
    await page.wait_for_selector(f"[data-member='{member_id}']")
    reference = await page.get_attribute("[data-testid=order-ref]", "value")
    opened_at = await page.get_attribute("[data-testid=order-opened]", "value")
    await page.fill("[data-testid=order-amount]", "128.00")
    await page.click("[data-testid=record-order]")
    await page.wait_for_selector("[data-testid=order-done]")
    earned = int(await page.inner_text("[data-testid=done-earned]"))
    assert earned > 0

    # The same form again (a double submit): recorded once, answered the same.
    csrf = await page.get_attribute("[data-member] input[name=csrf_token]", "value")
    assert csrf
    again = await page.request.post(
        "/console/till/order",
        form={
            "member_id": member_id,
            "reference": reference or "",
            "opened_at": opened_at or "",
            "amount": "128.00",
            "points_used": "0",
            "item": "",
        },
        headers={"X-CSRF-Token": csrf},
    )
    assert again.status == 200
    assert "already recorded once" in await again.text()

    # Give the member points to redeem (HQ), then pay part of an order with them.
    async with AsyncTestClient(app=app) as client:
        r = await client.post(
            f"/api/v1/members/{member_id}/points/adjustments",
            json={"amount": 1000, "reason": "welcome", "idempotency_key": uuid.uuid4().hex},
            headers=chain["hq"],
        )
        assert r.status_code == 201, r.text
        before = await client.get(f"/api/v1/members/{member_id}/points", headers=chain["hq"])
        balance_before = before.json()["balance"]
    await page.fill("[data-testid=till-q]", phone)
    await page.click("[data-testid=till-lookup]")
    # The same member's card again, fresh (without the last order's receipt).
    await page.wait_for_selector("[data-testid=order-done]", state="detached")
    await page.fill("[data-testid=order-amount]", "50")
    await page.fill("[data-testid=order-points]", "500")
    await page.click("[data-testid=record-order]")
    await page.wait_for_selector("[data-testid=order-done]")
    assert await page.inner_text("[data-testid=done-used]") == "500"
    earned = int(await page.inner_text("[data-testid=done-earned]"))
    async with AsyncTestClient(app=app) as client:
        after = await client.get(f"/api/v1/members/{member_id}/points", headers=chain["hq"])
    assert after.json()["balance"] == balance_before - 500 + earned

    # A mistake is shown, not a broken page: more points than the member has.
    await page.fill("[data-testid=order-amount]", "10000")
    await page.fill("[data-testid=order-points]", "900000")
    await page.click("[data-testid=record-order]")
    await page.wait_for_selector("[data-testid=flash-error]")


async def test_masking_and_reach(new_page, chain) -> None:
    member_id, phone = chain["members"]["S1"]
    other_id, _ = chain["members"]["S2"]
    # The analyst sees a masked phone, in the search and on the member's page.
    analyst = await new_page()
    await sign_in(analyst, chain["slug"], "analyst")
    await analyst.goto(f"/console/members?q={phone}")
    shown = await analyst.inner_text("[data-testid=found-phone]")
    assert phone not in shown
    assert shown.endswith(phone[-4:])
    await analyst.click("[data-testid=open-member]")
    assert phone not in await analyst.content()
    # HQ's admin sees it whole.
    admin = await new_page()
    await sign_in(admin, chain["slug"], "admin")
    await admin.goto(f"/console/members/{member_id}")
    assert phone in await admin.inner_text("[data-testid=member-phone]")
    # S1's manager opens S1's member, never S2's (404, as if there were none).
    manager = await new_page()
    await sign_in(manager, chain["slug"], "manager")
    response = await manager.goto(f"/console/members/{member_id}")
    assert response.status == 200
    assert phone in await manager.inner_text("[data-testid=member-phone]")
    response = await manager.goto(f"/console/members/{other_id}")
    assert response.status == 404
    assert "Member S2" not in await manager.content()
    # F1's manager reaches every member (the chain shares them with franchise stores) but
    # sees another store's member masked: personal data of their own store's members only.
    fmanager = await new_page()
    await sign_in(fmanager, chain["slug"], "fmanager")
    response = await fmanager.goto(f"/console/members/{member_id}")
    assert response.status == 200
    shown = await fmanager.inner_text("[data-testid=member-phone]")
    assert phone not in shown
    assert shown.endswith(phone[-4:])
    assert "Member S1" not in await fmanager.content()


async def test_the_programme_previews_an_order(new_page, chain) -> None:
    page = await new_page()
    await sign_in(page, chain["slug"], "admin")
    await page.click("[data-nav=programme]")
    await page.wait_for_selector("[data-testid=tiers]")
    await page.fill("[data-testid=preview-form] input[name=amount]", "128.50")
    await page.select_option("[data-testid=preview-form] select[name=tier]", index=0)
    await page.click("[data-testid=preview-form] button[type=submit]")
    # The entry tier earns 1 point a yuan by default (rounded down).
    assert await page.inner_text("[data-testid=preview-points]") == "128"
    await page.fill("[data-testid=preview-form] input[name=amount]", "1.234")
    await page.click("[data-testid=preview-form] button[type=submit]")
    assert await page.is_visible("[data-testid=error-amount]")
    clerk = await new_page()
    await sign_in(clerk, chain["slug"], "clerk")
    response = await clerk.goto("/console/programme")
    assert response.status == 403


async def test_a_plugin_is_enabled_and_configured_for_one_store(new_page, chain, app) -> None:
    from litestar.testing import AsyncTestClient

    page = await new_page()
    await sign_in(page, chain["slug"], "admin")
    await page.click("[data-nav=plugins]")
    await page.click("[data-testid=open-example-S1]")
    await page.click("[data-testid=enable]")
    await page.wait_for_selector("[data-testid=saved]")
    # Out of range: refused beside the field, nothing saved.
    await page.fill("input[name='config.birthday_multiplier']", "9")
    await page.click("[data-testid=save-config]")
    assert await page.is_visible("[data-testid=error-birthday_multiplier]")
    await page.fill("input[name='config.birthday_multiplier']", "3")
    await page.fill("input[name='config.celebrate_tiers']", "gold")
    await page.click("[data-testid=save-config]")
    await page.wait_for_selector("[data-testid=saved]")
    async with AsyncTestClient(app=app) as client:
        r = await client.get("/api/v1/tenant/plugins/example", headers=chain["hq"])
    assert r.status_code == 200, r.text
    s1 = next(s for s in r.json()["stores"] if s["store_code"] == "S1")
    assert s1["enabled"] is True
    assert s1["config"]["birthday_multiplier"] == 3
    assert s1["config"]["celebrate_tiers"] == ["gold"]
    # S1's manager sees it, read only.
    manager = await new_page()
    await sign_in(manager, chain["slug"], "manager")
    await manager.goto("/console/plugins/example/stores/S1")
    assert await manager.input_value("input[name='config.birthday_multiplier']") == "3"
    assert await manager.locator("[data-testid=save-config]").count() == 0


async def test_hq_makes_and_revokes_a_key(new_page, chain) -> None:
    page = await new_page()
    await sign_in(page, chain["slug"], "admin")
    await page.click("[data-nav=stores]")
    await page.wait_for_selector("[data-store=F1]")
    await page.fill("[data-testid=key-form] input[name=name]", "browser key")
    await page.select_option("[data-testid=key-form] select[name=kind]", "store")
    await page.select_option("[data-testid=key-form] select[name=store_code]", "S2")
    await page.click("[data-testid=key-form] button[type=submit]")
    secret = await page.inner_text("[data-testid=secret]")
    assert len(secret) > 20
    await page.click("[data-key='browser key'] [data-testid=revoke]")
    await page.wait_for_selector("[data-testid=revoked]")
    assert secret not in await page.content()


async def test_the_dashboard_shows_the_apis_figures(new_page, chain, app) -> None:
    from litestar.testing import AsyncTestClient

    async with AsyncTestClient(app=app) as client:
        api = await client.get("/api/v1/analytics/summary", headers=chain["hq"])
    assert api.status_code == 200, api.text
    figures = api.json()
    page = await new_page()
    await sign_in(page, chain["slug"], "admin")
    await page.goto("/console/dashboard")
    rate = figures["member_share"]["rate"]
    shown = "—" if rate is None else f"{rate * 100:.1f}%"
    assert await page.inner_text("[data-testid=member-share]") == shown
    assert await page.inner_text("[data-testid=new-members]") == str(figures["new_members"])
    # Sales by hour: Chart.js (vendored) draws the chart.
    await page.wait_for_selector("[data-testid=hourly-chart][data-drawn=true]", state="attached")


async def test_screenshots_in_both_languages(new_page, chain, app, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from litestar.testing import AsyncTestClient

    target = _folder(Path(os.environ.get("NESTPOINT_SCREENSHOTS") or tmp_path))
    member_id, phone = chain["members"]["S1"]
    async with AsyncTestClient(app=app) as client:  # something to show on the member's page
        line = {"sku": "MILK-900", "name": "Formula 900g", "category": "feeding", "quantity": 2}
        order = {
            "channel": "pos",
            "external_id": uuid.uuid4().hex,
            "store_code": "S1",
            "member": {"id": member_id},
            "lines": [line | {"unit_price_fen": 26800, "paid_fen": 53600}],
            "paid_at": datetime.now(UTC).isoformat(),
            "payment": {"cash_fen": 53600},
        }
        r = await client.post("/api/v1/orders", json=order, headers=chain["hq"])
        assert r.status_code == 201, r.text
    shots: list[str] = []
    for locale, suffix in (("en-US", "en"), ("zh-CN", "zh_CN")):
        page = await new_page(locale)
        await page.goto("/console/login")
        await _shot(page, target / f"login.{suffix}.png", shots)
        await sign_in(page, chain["slug"], "admin")
        # The user's language is stored on the user: choose this one.
        await page.click(f"button[name=locale][value={suffix}]")
        await page.goto("/console/dashboard")
        await _shot(page, target / f"dashboard.{suffix}.png", shots)
        await page.goto(f"/console/members/{member_id}")
        await _shot(page, target / f"member.{suffix}.png", shots, full=True)
        await page.goto("/console/programme?amount=268.00&category=feeding&store=S1")
        await _shot(page, target / f"programme.{suffix}.png", shots, full=True)
        await page.goto("/console/plugins/example/stores/S1")
        await _shot(page, target / f"plugin.{suffix}.png", shots)
        clerk = await new_page(locale)
        await sign_in(clerk, chain["slug"], "manager")
        await clerk.click(f"button[name=locale][value={suffix}]")
        await clerk.goto("/console/till")
        await clerk.fill("[data-testid=till-q]", phone)
        await clerk.click("[data-testid=till-lookup]")
        await clerk.wait_for_selector(f"[data-member='{member_id}']")
        await _shot(clerk, target / f"till.{suffix}.png", shots)
    zh = await (await new_page("zh-CN")).goto("/console/login")
    assert "登录" in await zh.text()
    assert len(shots) == 12
    assert _sizes(target, shots) == dict.fromkeys(shots, True)


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sizes(folder: Path, names: list[str]) -> dict[str, bool]:
    return {name: (folder / name).stat().st_size > 5_000 for name in names}


async def _shot(page: Any, path: Path, shots: list[str], *, full: bool = False) -> None:
    await page.screenshot(path=str(path), full_page=full)
    shots.append(path.name)
