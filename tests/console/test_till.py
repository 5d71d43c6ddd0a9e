"""The till page's actions in process, as htmx sends them: a benefit used, points redeemed,
a double submit recorded once, a refused action shown as a message; all audited as the
clerk."""

from __future__ import annotations

import re
import uuid
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import select

from nestpoint.audit.models import AuditEntry
from nestpoint.context import tenant_context
from nestpoint.db import scoped_session

from .test_users_and_sessions import add_user, sign_in

CONSULT = {
    "name": "Parenting consultation",
    "type": "core.service",
    "options": {"minutes": 45},
    "quota": 1,
    "period": "month",
}


async def _programme(client: Any, hq: dict[str, str]) -> None:
    r = await client.put("/api/v1/benefits/consult", json=CONSULT, headers=hq)
    assert r.status_code == 200, r.text
    program = (await client.get("/api/v1/loyalty/program", headers=hq)).json()
    program.pop("version")
    program["points"] = program["points"] | {"pending_days": 0}
    program["tiers"][0]["benefits"] = ["consult"]
    r = await client.put("/api/v1/loyalty/program", json=program, headers=hq)
    assert r.status_code == 200, r.text


def _field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, html
    return found.group(1)


async def test_till_actions(app, client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    await _programme(client, t.hq())
    clerk = await add_user(client, t, "till1", "store_clerk", "S1")
    phone = f"138{uuid.uuid4().int % 10**8:08d}"
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "till1")).status_code == 303
        till = await c.get("/console/till")
        csrf = _field(till.text, "csrf_token")
        htmx = {"HX-Request": "true", "X-CSRF-Token": csrf}

        # Enrol, then the card carries the order and benefit forms.
        card = await c.post("/console/till/enrol", data={"phone": phone}, headers=htmx)
        assert card.status_code == 200
        assert 'data-testid="notice"' in card.text
        member_id = _field(card.text, "member_id")
        assert phone not in card.text  # the clerk's view is masked
        assert phone[-4:] in card.text

        # An order: recorded once, however often the same form is sent.
        order = {
            "member_id": member_id,
            "reference": _field(card.text, "reference"),
            "opened_at": _field(card.text, "opened_at"),
            "amount": "200.00",
            "points_used": "0",
        }
        first = await c.post("/console/till/order", data=order, headers=htmx)
        assert first.status_code == 200
        assert 'data-testid="order-done"' in first.text
        second = await c.post("/console/till/order", data=order, headers=htmx)
        assert second.status_code == 200
        assert 'data-testid="order-done"' in second.text
        assert "已记录" in second.text or "already recorded once" in second.text
        orders = await client.get(f"/api/v1/members/{member_id}/points", headers=t.hq())
        balance = orders.json()["balance"]
        assert balance > 0

        # Redeem: 100 points pay 1 yuan of a 50-yuan order.
        fresh = await c.get("/console/till/lookup", params={"q": phone}, headers=htmx)
        redeem = order | {
            "reference": _field(fresh.text, "reference"),
            "opened_at": _field(fresh.text, "opened_at"),
            "amount": "50",
            "points_used": "100",
        }
        paid = await c.post("/console/till/order", data=redeem, headers=htmx)
        assert re.search(r'data-testid="done-used">100<', paid.text), paid.text
        earned = int(re.search(r'data-testid="done-earned">(\d+)<', paid.text).group(1))  # type: ignore[union-attr]
        after = await client.get(f"/api/v1/members/{member_id}/points", headers=t.hq())
        assert after.json()["balance"] == balance - 100 + earned

        # A benefit the member holds, used once; the second use of a quota of 1 is refused
        # and shown as a message in the page's flash area.
        assert 'value="consult"' in paid.text
        use = {"member_id": member_id, "code": "consult", "reference": uuid.uuid4().hex}
        used = await c.post("/console/till/benefit", data=use, headers=htmx)
        assert used.status_code == 200
        assert 'data-testid="notice"' in used.text
        again = await c.post(
            "/console/till/benefit", data=use | {"reference": uuid.uuid4().hex}, headers=htmx
        )
        assert again.status_code == 200
        assert again.headers["hx-retarget"] == "#flash"
        assert 'data-testid="flash-error"' in again.text

        # Too many points: refused, nothing recorded.
        too_many = redeem | {"reference": uuid.uuid4().hex, "points_used": "999999"}
        refused = await c.post("/console/till/order", data=too_many, headers=htmx)
        assert 'data-testid="flash-error"' in refused.text
        # Without htmx the refusal is a page with the status.
        plain = await c.post("/console/till/order", data=too_many | {"csrf_token": csrf})
        assert plain.status_code == 422

    with tenant_context(t.id):
        async with scoped_session() as session:
            entries = list(
                await session.scalars(select(AuditEntry).where(AuditEntry.subject_id == member_id))
            )
    created = [e for e in entries if e.action == "member.created"]
    assert [(e.actor_kind, e.actor_id) for e in created] == [("store", clerk["id"])]


async def test_hostile_input_is_never_a_server_error(app, client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    await add_user(client, t, "boss", "store_manager", "S1")
    nasty = ["%00", "%ff%fe", "%ED%A0%80", "x" * 5000, "+8613%00", "'; drop table members;--"]
    async with AsyncTestClient(app=app) as c:
        for value in nasty:  # before signing in
            r = await c.get(f"/console/login?next={value}&lang={value}")
            assert r.status_code == 200, value
        assert (await sign_in(c, t.slug, "boss")).status_code == 303
        token = _field((await c.get("/console/till")).text, "csrf_token")
        for value in nasty:
            for path in ("/console/members?q=", "/console/till?q=", "/console/till/lookup?q="):
                r = await c.get(path + value)
                assert r.status_code < 500, (path, value, r.status_code)
            r = await c.get(f"/console/members/{value}")
            assert r.status_code in (200, 404), (value, r.status_code)
            form = {
                "csrf_token": token,
                "phone": value,
                "member_id": value,
                "amount": value,
                "points_used": value,
                "reference": value,
                "opened_at": value,
                "code": value,
                "login": value,
                "role": value,
                "action": value,
            }
            for action in ("till/enrol", "till/order", "till/benefit", "me/locale"):
                r = await c.post(f"/console/{action}", data=form)
                assert r.status_code < 500, (action, value, r.status_code, r.text[:300])


async def test_the_till_scans_the_members_app_card(app, client, make_tenant) -> None:
    t = await make_tenant(("S1",))
    await add_user(client, t, "clerk", "store_clerk", "S1")
    phone = f"137{uuid.uuid4().int % 10**8:08d}"
    r = await client.post("/api/v1/members", json={"phone": phone}, headers=t.hq())
    member_id = r.json()["id"]
    r = await client.post("/api/v1/member-tokens", json={"member_id": member_id}, headers=t.hq())
    assert r.status_code == 201, r.text
    member = {"Authorization": f"Bearer {r.json()['token']}"}
    code = (await client.get("/api/v1/me/card", headers=member)).json()["code"]
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "clerk")).status_code == 303
        card = await c.get("/console/till/lookup", params={"q": code}, headers={"HX-Request": "1"})
        assert card.status_code == 200
        assert f'data-member="{member_id}"' in card.text
        forged = await c.get(
            "/console/till/lookup", params={"q": code[:-4] + "AAAA"}, headers={"HX-Request": "1"}
        )
        assert forged.headers["hx-retarget"] == "#flash"
