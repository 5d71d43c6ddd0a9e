"""Long exports as jobs in the console (/console/exports): a user starts one through the
exports service, a worker runs it, its row shows the progress (and polls only while it
runs), the finished file downloads through the session, byte for byte the service's file.
An analyst's export is masked as an API key's without members:pii; store roles are refused;
a double submit (one after the other, or at once) starts one job; no CSRF token, no job."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from loyalty.helpers import new_phone
from nestpoint.audit.models import AuditEntry
from nestpoint.context import Actor, acting_as, tenant_context
from nestpoint.db import scoped_session
from nestpoint.exports import service
from nestpoint.exports.models import Export

from .conftest import sign_in as browser_sign_in
from .test_users_and_sessions import add_user, login_token, sign_in

NAMES = ("王芳", "李小龙", "=1+2")


async def _enrol(client: Any, t: Any, name: str) -> dict[str, Any]:
    body = {"phone": new_phone(), "name": name, "birthday": "1990-07-15"}
    r = await client.post("/api/v1/members", json=body, headers=t.hq())
    assert r.status_code == 201, r.text
    return dict(r.json())


def _reference(html: str) -> str:
    found = re.search(r'name="reference" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def _form(c: Any) -> dict[str, str]:
    """A fresh form of the exports page: the session's CSRF token and the form's reference."""
    page = await c.get("/console/exports")
    assert page.status_code == 200, page.text
    return {"csrf_token": login_token(page.text), "reference": _reference(page.text)}


async def _start(c: Any, form: dict[str, str], kind: str = "members", fmt: str = "csv") -> str:
    r = await c.post("/console/exports", data=form | {"kind": kind, "format": fmt})
    assert r.status_code == 200, r.text
    assert 'data-testid="started"' in r.text
    return _first_job(r.text)


def _first_job(html: str) -> str:
    found = re.search(r'data-export-id="([0-9a-f-]{36})"', html)
    assert found, html
    return found.group(1)


async def _run(t: Any, export_id: str) -> None:
    """What the ``exports.run`` actor does (tests/exports/test_exports.py)."""
    with acting_as(Actor("system", name="tests")), tenant_context(t.id):
        await service.run_export(uuid.UUID(export_id))


async def _service_file(t: Any, export_id: str) -> bytes:
    with tenant_context(t.id):
        async with scoped_session() as session:
            job = await service.get_export(session, uuid.UUID(export_id))
            chunks, sha256 = job.chunks, job.sha256
    data = b"".join([c async for c in service.read_file(t.id, uuid.UUID(export_id), chunks)])
    assert hashlib.sha256(data).hexdigest() == sha256
    return data


async def _jobs(t: Any) -> int:
    with tenant_context(t.id):
        async with scoped_session() as session:
            return int(await session.scalar(select(func.count()).select_from(Export)) or 0)


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _rows(data: bytes) -> list[dict[str, str]]:
    assert data.startswith(service.BOM)
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


async def test_start_progress_and_download(app, client, make_tenant, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant(("S1",))
    admin = await add_user(client, t, "adm", "hq_admin")
    for name in NAMES:
        await _enrol(client, t, name)
    # Two rows per batch, and the job held before its second batch: its progress is seen.
    monkeypatch.setattr(service, "BATCH_SIZE", 2)
    paused, resume, sessions = asyncio.Event(), asyncio.Event(), []
    real = service.scoped_session

    @asynccontextmanager
    async def held(database: Any = None) -> AsyncIterator[Any]:
        sessions.append(database)
        if len(sessions) == 3:  # the claim, the first batch, then here: the second batch
            paused.set()
            await resume.wait()
        async with real(database) as session:
            yield session

    monkeypatch.setattr(service, "scoped_session", held)

    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "adm")).status_code == 303
        members = await c.get("/console/members")
        assert 'href="/console/exports?kind=members"' in members.text  # "Export all as a job"
        assert 'data-nav="exports"' in members.text
        page = await c.get("/console/exports", params={"kind": "orders"})
        assert '<option value="orders" selected>' in page.text
        assert "data-export-id" not in page.text  # no jobs yet
        export_id = await _start(c, await _form(c))
        row = await c.get(f"/console/exports/{export_id}/row")
        assert row.status_code == 200
        assert 'data-status="queued"' in row.text
        assert 'hx-trigger="every 1s"' in row.text  # a queued job's row polls
        assert (await c.get(f"/console/exports/{export_id}/file")).status_code == 409

        running = asyncio.create_task(_run(t, export_id))
        await asyncio.wait_for(paused.wait(), 30)
        row = await c.get(f"/console/exports/{export_id}/row")
        assert 'data-status="running"' in row.text
        assert 'value="2" max="3"' in row.text  # two rows of three written
        assert 'hx-trigger="every 1s"' in row.text
        assert 'data-testid="download"' not in row.text
        resume.set()
        await asyncio.wait_for(running, 30)

        row = await c.get(f"/console/exports/{export_id}/row")
        assert 'data-status="done"' in row.text
        assert "hx-trigger" not in row.text  # done: the row stops polling
        assert 'data-masked="false"' in row.text
        file = await c.get(f"/console/exports/{export_id}/file")
        assert file.status_code == 200
        assert file.headers["content-type"].startswith("text/csv")
        assert "attachment" in file.headers["content-disposition"]
        assert file.content == await _service_file(t, export_id)
        assert {r["name"] for r in _rows(file.content)} == {"王芳", "李小龙", "'=1+2"}
        # The same job and file through the API.
        api = await client.get(f"/api/v1/exports/{export_id}/file", headers=t.hq())
        assert api.content == file.content
        assert (await c.get(f"/console/exports/{uuid.uuid4()}/row")).status_code == 404
        assert (await c.get("/console/exports/nope/file")).status_code == 404

    with tenant_context(t.id):
        async with scoped_session() as session:
            entries = list(
                await session.scalars(select(AuditEntry).where(AuditEntry.subject_id == export_id))
            )
    by_action = {e.action: e for e in entries}
    assert set(by_action) >= {"exports.requested", "exports.done", "exports.downloaded"}
    assert by_action["exports.requested"].actor_id == admin["id"]  # the console user
    assert by_action["exports.requested"].changes["masked"] is False
    downloads = [e.actor_id for e in entries if e.action == "exports.downloaded"]
    assert len(downloads) == 2  # through the console, then the API
    assert admin["id"] in downloads


async def test_an_analysts_export_is_masked_as_the_api_masks_it(app, client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant(("S1",))
    await add_user(client, t, "ana", "hq_analyst")
    for name in NAMES:
        await _enrol(client, t, name)
    r = await client.post(
        "/api/v1/api-keys",
        json={"name": "no pii", "scopes": ["members:read", "exports:read", "exports:write"]},
        headers=t.hq(),
    )
    assert r.status_code == 201, r.text
    no_pii = {"Authorization": f"Bearer {r.json()['key']}"}
    body = {"kind": "members", "format": "csv", "idempotency_key": uuid.uuid4().hex}
    by_key = await client.post("/api/v1/exports", json=body, headers=no_pii)
    assert by_key.status_code == 202, by_key.text
    await _run(t, by_key.json()["id"])
    body["idempotency_key"] = uuid.uuid4().hex
    in_full = await client.post("/api/v1/exports", json=body, headers=t.hq())
    await _run(t, in_full.json()["id"])
    other = await make_tenant(("S1",))
    body["idempotency_key"] = uuid.uuid4().hex
    elsewhere = (await client.post("/api/v1/exports", json=body, headers=other.hq())).json()["id"]
    await _run(other, elsewhere)

    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "ana")).status_code == 303
        export_id = await _start(c, await _form(c))
        await _run(t, export_id)
        page = await c.get("/console/exports")
        mine = page.text.split(f'data-export-id="{export_id}"')[1].split("</tr>")[0]
        assert 'data-masked="true"' in mine
        assert 'data-testid="download"' in mine
        theirs = page.text.split(f'data-export-id="{in_full.json()["id"]}"')[1].split("</tr>")[0]
        assert 'data-masked="false"' in theirs
        assert 'data-testid="download"' not in theirs  # not for a role without members:pii
        r = await c.get(f"/console/exports/{in_full.json()['id']}/file")
        assert r.status_code == 403
        file = await c.get(f"/console/exports/{export_id}/file")
        assert file.status_code == 200
        # Another chain's job is not found.
        assert (await c.get(f"/console/exports/{elsewhere}/row")).status_code == 404
        assert (await c.get(f"/console/exports/{elsewhere}/file")).status_code == 404
        assert elsewhere not in page.text
    api = await client.get(f"/api/v1/exports/{by_key.json()['id']}/file", headers=no_pii)
    assert api.status_code == 200
    rows, expected = _rows(file.content), _rows(api.content)
    assert rows == expected  # masked exactly as for the API key without members:pii
    assert len(rows) == 3
    assert all("****" in r["phone"] and r["birthday"] == "" for r in rows)
    assert {"王*", "李**"} < {r["name"] for r in rows}


async def test_store_roles_are_refused(app, client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant(("S1",))
    await add_user(client, t, "mgr", "store_manager", "S1")
    await add_user(client, t, "clk", "store_clerk", "S1")
    body = {"kind": "members", "format": "csv", "idempotency_key": uuid.uuid4().hex}
    made = await client.post("/api/v1/exports", json=body, headers=t.hq())
    export_id = made.json()["id"]
    for login in ("mgr", "clk"):
        async with AsyncTestClient(app=app) as c:
            assert (await sign_in(c, t.slug, login)).status_code == 303
            home = await c.get("/console/till")
            assert 'data-nav="exports"' not in home.text
            token = login_token(home.text)
            assert (await c.get("/console/exports")).status_code == 403
            r = await c.post(
                "/console/exports",
                data={"csrf_token": token, "reference": "r1", "kind": "members", "format": "csv"},
            )
            assert r.status_code == 403
            assert (await c.get(f"/console/exports/{export_id}/row")).status_code == 403
            assert (await c.get(f"/console/exports/{export_id}/file")).status_code == 403
            if login == "mgr":
                members = await c.get("/console/members")
                assert members.status_code == 200
                assert "/console/exports" not in members.text
    assert await _jobs(t) == 1


async def test_a_double_submit_starts_one_job(app, client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant(("S1",))
    await add_user(client, t, "adm", "hq_admin")
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "adm")).status_code == 303
        form = await _form(c)
        first = await _start(c, form)
        again = await c.post("/console/exports", data=form | {"kind": "members", "format": "csv"})
        assert again.status_code == 200
        assert 'data-replayed="true"' in again.text
        assert _first_job(again.text) == first
        assert await _jobs(t) == 1
        # The same form with another kind: refused, nothing started.
        other = await c.post("/console/exports", data=form | {"kind": "orders", "format": "csv"})
        assert other.status_code == 409
        assert await _jobs(t) == 1
        # A bad kind, an unknown segment: the page again, naming the field.
        bad = await c.post("/console/exports", data=await _form(c) | {"kind": "secrets"})
        assert bad.status_code == 422
        assert "kind:" in bad.text
        bad = await c.post(
            "/console/exports", data=await _form(c) | {"kind": "segment", "segment_code": "none"}
        )
        assert bad.status_code == 422
        assert "segment_code:" in bad.text
        assert await _jobs(t) == 1


async def test_a_double_submit_at_once_starts_one_job(app, client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant(("S1",))
    await add_user(client, t, "adm", "hq_admin")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        assert (await sign_in(c, t.slug, "adm")).status_code == 303
        form = await _form(c) | {"kind": "members", "format": "xlsx"}
        answers = await asyncio.gather(*(c.post("/console/exports", data=form) for _ in range(2)))
    assert [a.status_code for a in answers] == [200, 200]
    assert len({_first_job(a.text) for a in answers}) == 1
    assert await _jobs(t) == 1


async def test_no_csrf_token_no_job(app, client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant(("S1",))
    await add_user(client, t, "adm", "hq_admin")
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "adm")).status_code == 303
        form = await _form(c)
        del form["csrf_token"]
        r = await c.post("/console/exports", data=form | {"kind": "members", "format": "csv"})
        assert r.status_code == 403
        wrong = form | {"csrf_token": "x" * 30, "kind": "members", "format": "csv"}
        assert (await c.post("/console/exports", data=wrong)).status_code == 403
    assert await _jobs(t) == 0


async def test_a_worker_runs_a_job_started_in_the_console(app, client, make_tenant, worker) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant(("S1",))
    await add_user(client, t, "adm", "hq_admin")
    await _enrol(client, t, "王芳")
    async with AsyncTestClient(app=app) as c:
        assert (await sign_in(c, t.slug, "adm")).status_code == 303
        export_id = await _start(c, await _form(c), fmt="xlsx")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            row = await c.get(f"/console/exports/{export_id}/row")
            if 'data-status="done"' in row.text or 'data-status="failed"' in row.text:
                break
            await asyncio.sleep(0.2)
        assert 'data-status="done"' in row.text, row.text
        file = await c.get(f"/console/exports/{export_id}/file")
        assert file.status_code == 200
        assert file.content == await _service_file(t, export_id)


# ------------------------------------------------------------------ in a real browser


async def test_the_progress_bar_reaches_done_in_a_browser(  # type: ignore[no-untyped-def]
    new_page, app, client, make_tenant, monkeypatch, tmp_path
) -> None:
    """The page polls the running job's row every second: the bar moves, then the row
    stops polling and offers the file. The job runs here, one row per batch, slowly."""
    t = await make_tenant(("S1",))
    await add_user(client, t, "adm", "hq_admin")
    for n in range(6):
        await _enrol(client, t, f"会员{n}")
    monkeypatch.setattr(service, "BATCH_SIZE", 1)
    source = service.SOURCES["members"]

    async def slow(session: Any, after: Any, limit: int) -> Any:
        await asyncio.sleep(0.6)
        return await source.fetch(session, after, limit)

    monkeypatch.setitem(
        service.SOURCES, "members", service.Source(source.model, source.columns, slow, source.cells)
    )
    page = await new_page()
    await browser_sign_in(page, t.slug, "adm")
    await page.goto("/console/members")
    await page.click("[data-testid=export-all-members]")
    await page.click("[data-testid=export-start]")
    await page.wait_for_selector("[data-testid=started]")
    export_id = await page.get_attribute("[data-export-id]", "data-export-id")
    running = asyncio.create_task(_run(t, export_id))
    row = f"#export-{export_id}"
    # Part-way: the bar shows some rows of all, without reloading the page.
    await page.wait_for_function(
        """(row) => { const bar = document.querySelector(row + ' progress');
                      return bar && bar.max === 6 && bar.value > 0 && bar.value < 6; }""",
        arg=row,
    )
    target = _folder(Path(os.environ.get("NESTPOINT_SCREENSHOTS") or tmp_path))
    await page.screenshot(path=str(target / "exports.zh_CN.png"))  # the chain's language
    await asyncio.wait_for(running, 60)
    await page.wait_for_selector(f"{row}[data-status=done] [data-testid=download]")
    assert await page.get_attribute(f"{row}", "hx-trigger") is None
    await page.click("button[name=locale][value=en]")
    await page.goto("/console/exports")
    await page.screenshot(path=str(target / "exports.en.png"))
    async with page.expect_download() as download_info:
        await page.click(f"{row} [data-testid=download]")
    download = await download_info.value
    saved = tmp_path / "members.csv"
    await download.save_as(saved)
    assert saved.read_bytes() == await _service_file(t, export_id)
    assert len(_rows(saved.read_bytes())) == 6
