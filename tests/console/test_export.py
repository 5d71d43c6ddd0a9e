"""Every table exports as CSV (``?export=<table>``), as the user sees it: the stores and keys
(no secret), the programme's ladder (inputs' values), the users, a found member; a store manager's
export of another store's member is masked like the page; an unknown table is 404; a role
that may not open the page may not export it."""

from __future__ import annotations

import csv
import io
import uuid

from litestar.testing import AsyncTestClient

from .test_users_and_sessions import add_user, sign_in


def _rows(text: str) -> list[list[str]]:
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


async def test_tables_export_as_csv(app, client, make_tenant) -> None:
    t = await make_tenant(("S1", "S2"))
    await add_user(client, t, "adm", "hq_admin")
    await add_user(client, t, "mgr", "store_manager", "S1")
    await add_user(client, t, "clk", "store_clerk", "S1")
    phone = f"136{uuid.uuid4().int % 10**8:08d}"
    r = await client.post(
        "/api/v1/members",
        json={"phone": phone, "name": "=HYPERLINK(1)", "home_store_code": "S2"},
        headers=t.hq(),
    )
    assert r.status_code == 201, r.text
    member_id = r.json()["id"]

    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "adm")).status_code == 303
        page = await c.get("/console/stores")
        assert 'href="?export=keys"' in page.text
        keys = await c.get("/console/stores", params={"export": "keys"})
        assert keys.status_code == 200
        assert keys.text.startswith("\ufeff"), keys.text[:300]
        assert keys.headers["content-type"].startswith("text/csv")
        assert "attachment" in keys.headers["content-disposition"]
        rows = _rows(keys.text)
        assert len(rows) == 1 + 3  # header, the HQ key and two till keys
        assert t.hq_key not in keys.text
        assert "Revoke" not in keys.text  # no button labels
        stores = _rows((await c.get("/console/stores", params={"export": "stores"})).text)
        assert [r[0] for r in stores[1:]] == ["S1", "S2"]
        tiers = _rows((await c.get("/console/programme", params={"export": "tiers"})).text)
        assert tiers[1][1] == "0"  # the entry tier's threshold, an input's value
        found = await c.get("/console/members", params={"q": phone, "export": "found"})
        (row,) = _rows(found.text)[1:]
        assert row[0].endswith(phone)  # whole, for HQ's admin
        assert row[1] == "'=HYPERLINK(1)"  # never run as a formula
        users = _rows((await c.get("/console/users", params={"export": "users"})).text)
        assert sorted(r[0] for r in users[1:]) == ["adm", "clk", "mgr"]
        # A table the page does not show (no points yet: no ledger) is not found.
        ledger = await c.get(f"/console/members/{member_id}", params={"export": "ledger"})
        assert ledger.status_code == 404
        assert (await c.get("/console/stores", params={"export": "nope"})).status_code == 404

    async with AsyncTestClient(app=app) as c:  # the chain shares S2's member with S1: masked
        assert (await sign_in(c, t.slug, "mgr")).status_code == 303
        found = await c.get("/console/members", params={"q": phone, "export": "found"})
        assert found.status_code == 200
        (row,) = _rows(found.text)[1:]
        assert phone not in row[0]
        assert row[0].endswith(phone[-4:])
        assert "HYPERLINK" not in found.text
        assert (await c.get("/console/stores", params={"export": "keys"})).status_code == 403
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "clk")).status_code == 303
        r = await c.get("/console/members", params={"q": phone, "export": "found"})
        assert r.status_code == 403
