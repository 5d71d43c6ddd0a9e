"""Exports: CSV and XLSX files streamed into chunks, masked without members:pii, parsed
back equal to the data; jobs that are idempotent, isolated per tenant, audited, run by a
real worker and by the CLI; memory bounded whatever the row count."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import time
import tracemalloc
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy import insert

from commands import nestpoint
from loyalty.helpers import new_phone, order_body
from nestpoint.context import Actor, acting_as, tenant_context
from nestpoint.db import scoped_session
from nestpoint.db.base import utcnow
from nestpoint.exports import service
from nestpoint.members import pii
from nestpoint.members.models import Member

NAMES = ["王芳", "李小龙", "=1+2"]  # the last would be a formula in a spreadsheet
CONSENT = {"granted": True, "source": "pos"}


async def _enrol(client: Any, tenant: Any, name: str, **extra: Any) -> dict[str, Any]:
    body = {"phone": new_phone(), "name": name} | extra
    r = await client.post("/api/v1/members", json=body, headers=tenant.hq())
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _key(client: Any, tenant: Any, scopes: list[str]) -> dict[str, str]:
    r = await client.post(
        "/api/v1/api-keys", json={"name": "analyst", "scopes": scopes}, headers=tenant.hq()
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


async def _request(
    client: Any, headers: dict[str, str], kind: str, fmt: str = "csv", key: str | None = None
) -> dict[str, Any]:
    body = {"kind": kind, "format": fmt, "idempotency_key": key or uuid.uuid4().hex}
    r = await client.post("/api/v1/exports", json=body, headers=headers)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued"
    return dict(r.json())


async def _run(tenant: Any, export_id: str, **kwargs: Any) -> None:
    """What the ``exports.run`` actor does."""
    with acting_as(Actor("system", name="tests")), tenant_context(tenant.id):
        await service.run_export(uuid.UUID(export_id), **kwargs)


async def _download(client: Any, headers: dict[str, str], job: dict[str, Any]) -> bytes:
    r = await client.get(f"/api/v1/exports/{job['id']}/file", headers=headers)
    assert r.status_code == 200, r.text
    assert f".{job['format']}" in r.headers["content-disposition"]
    assert r.headers["content-type"].startswith(service.MEDIA_TYPES[job["format"]].split(";")[0])
    return bytes(r.content)


def _csv_rows(data: bytes) -> list[dict[str, str]]:
    assert data.startswith(service.BOM)
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


def _xlsx_rows(data: bytes) -> list[dict[str, Any]]:
    sheet = openpyxl.load_workbook(io.BytesIO(data), read_only=True).worksheets[0]
    header, *rows = list(sheet.iter_rows(values_only=True))
    return [dict(zip(header, row, strict=True)) for row in rows]


async def test_members_csv_in_full_with_members_pii(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    made = {m["id"]: m for m in [await _enrol(client, tenant, n) for n in NAMES]}
    job = await _request(client, tenant.hq(), "members")
    assert job["masked"] is False
    r = await client.get(f"/api/v1/exports/{job['id']}/file", headers=tenant.hq())
    assert r.status_code == 409  # not done yet
    seen: list[tuple[int, int]] = []
    await _run(tenant, job["id"], progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (3, 3)
    r = await client.get(f"/api/v1/exports/{job['id']}", headers=tenant.hq())
    state = r.json()
    assert (state["status"], state["rows_done"], state["rows_total"]) == ("done", 3, 3)
    data = await _download(client, tenant.hq(), job)
    assert hashlib.sha256(data).hexdigest() == state["sha256"]
    assert len(data) == state["size_bytes"]
    rows = _csv_rows(data)
    assert len(rows) == 3
    for row in rows:
        member = made[row["id"]]
        assert row["phone"] == member["phone"]  # E.164: a number, left as it is
        expected = member["name"]
        assert row["name"] == ("'" + expected if expected.startswith("=") else expected)
        assert row["points_balance"] == "0"
    assert {r["name"] for r in rows} == {"王芳", "李小龙", "'=1+2"}
    # Requested and done are audited.
    r = await client.get("/api/v1/audit", params={"limit": 200}, headers=tenant.hq())
    actions = [e for e in r.json()["items"] if e["subject_id"] == job["id"]]
    assert {e["action"] for e in actions} >= {"exports.requested", "exports.done"}
    done = next(e for e in actions if e["action"] == "exports.done")
    assert done["changes"]["rows"] == 3
    assert done["changes"]["masked"] is False


async def test_members_xlsx_masked_without_members_pii(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    made = {
        m["id"]: m for m in [await _enrol(client, tenant, n, birthday="1990-07-15") for n in NAMES]
    }
    analyst = await _key(client, tenant, ["members:read", "exports:read", "exports:write"])
    job = await _request(client, analyst, "members", "xlsx")
    assert job["masked"] is True
    await _run(tenant, job["id"])
    rows = _xlsx_rows(await _download(client, analyst, job))
    assert len(rows) == 3
    for row in rows:
        member = made[row["id"]]
        assert row["phone"] == "'" + pii.mask_phone(member["phone"])
        assert "****" in row["phone"]
        masked = pii.mask_name(member["name"])  # "王*", and "=***" quoted: no formula
        assert row["name"] == ("'" + masked if masked.startswith("=") else masked)
        assert row["birthday"] is None
        assert row["birthday_month"] == 7
    # An export in full is not for this key; the HQ key's in full is not downloadable by it.
    full = await _request(client, tenant.hq(), "members", "xlsx")
    await _run(tenant, full["id"])
    r = await client.get(f"/api/v1/exports/{full['id']}/file", headers=analyst)
    assert r.status_code == 403, r.text
    rows = _xlsx_rows(await _download(client, tenant.hq(), full))
    assert {r["name"] for r in rows} == {"王芳", "李小龙", "'=1+2"}
    assert {r["birthday"] for r in rows} == {"1990-07-15"}
    # Orders need orders:read.
    body = {"kind": "orders", "format": "csv", "idempotency_key": "o"}
    r = await client.post("/api/v1/exports", json=body, headers=analyst)
    assert r.status_code == 403, r.text
    assert r.json()["errors"][0]["field"] == "kind"


async def test_children_ledger_and_orders(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    born = (utcnow() - timedelta(days=400)).date()
    member = await _enrol(
        client,
        tenant,
        "王芳",
        guardian_consent=CONSENT,
        children=[{"nickname": "乐乐", "birth_date": born.isoformat()}],
    )
    r = await client.post(
        "/api/v1/orders",
        json=order_body("ext-1", member={"id": member["id"]}),
        headers=tenant.hq(),
    )
    assert r.status_code == 201, r.text
    order = r.json()

    job = await _request(client, tenant.hq(), "children")
    await _run(tenant, job["id"])
    [child] = _csv_rows(await _download(client, tenant.hq(), job))
    assert (child["member_id"], child["stage"], child["nickname"]) == (member["id"], "1-3y", "乐乐")
    assert child["birth_date"] == born.isoformat()
    analyst = await _key(client, tenant, ["members:read", "exports:read", "exports:write"])
    job = await _request(client, analyst, "children", "xlsx")
    await _run(tenant, job["id"])
    [child] = _xlsx_rows(await _download(client, analyst, job))
    assert (child["stage"], child["nickname"], child["birth_date"]) == ("1-3y", None, None)

    job = await _request(client, tenant.hq(), "orders")
    await _run(tenant, job["id"])
    [row] = _csv_rows(await _download(client, tenant.hq(), job))
    assert (row["external_id"], row["store"], row["member_id"]) == ("ext-1", "S1", member["id"])
    assert int(row["total_fen"]) == 10000
    assert int(row["points_earned"]) == order["points_earned"]

    job = await _request(client, tenant.hq(), "points_ledger")
    await _run(tenant, job["id"])
    entries = _csv_rows(await _download(client, tenant.hq(), job))
    assert entries
    assert all(e["member_id"] == member["id"] for e in entries)
    earn = next(e for e in entries if e["kind"] == "earn")
    assert earn["order_ref"] == earn["cause_id"]
    assert earn["cause_type"] == "order"
    assert int(earn["amount"]) == order["points_earned"]


async def test_idempotent_and_isolated(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    tenant, other = await make_tenant(), await make_tenant()
    first = await _request(client, tenant.hq(), "members", key="k1")
    body = {"kind": "members", "format": "csv", "idempotency_key": "k1"}
    r = await client.post("/api/v1/exports", json=body, headers=tenant.hq())
    assert r.status_code == 202
    assert r.json()["id"] == first["id"]
    assert r.headers["idempotent-replayed"] == "true"
    r = await client.post("/api/v1/exports", json=body | {"format": "xlsx"}, headers=tenant.hq())
    assert r.status_code == 409
    assert r.json()["errors"][0]["field"] == "idempotency_key"
    r = await client.get("/api/v1/exports", headers=tenant.hq())
    assert [e["id"] for e in r.json()["items"]] == [first["id"]]
    await _run(tenant, first["id"])
    for path in ("", "/file"):
        r = await client.get(f"/api/v1/exports/{first['id']}{path}", headers=other.hq())
        assert r.status_code == 404, r.text
    r = await client.delete(f"/api/v1/exports/{first['id']}", headers=other.hq())
    assert r.status_code == 404
    assert (await client.get("/api/v1/exports", headers=other.hq())).json()["items"] == []
    r = await client.delete(f"/api/v1/exports/{first['id']}", headers=tenant.hq())
    assert r.status_code == 204
    r = await client.get(f"/api/v1/exports/{first['id']}", headers=tenant.hq())
    assert r.status_code == 404


ROWS = 20_000


async def _many_members(tenant_id: uuid.UUID, count: int) -> None:
    """``count`` members written directly (the API would take minutes)."""
    ring = pii.keyring()
    with acting_as(Actor("system", name="tests")), tenant_context(tenant_id):
        async with scoped_session() as session:
            rows = []
            for n in range(count):
                member_id = uuid.uuid4()
                phone = f"+86139{n:08d}"
                context = f"{tenant_id}:{member_id}".encode()
                rows.append(
                    {
                        "tenant_id": tenant_id,
                        "id": member_id,
                        "phone_hash": ring.lookup_hash(phone),
                        "phone_enc": ring.encrypt(phone, context=context),
                        "name_enc": ring.encrypt(f"会员{n}", context=context),
                        "tags": [],
                    }
                )
            await session.execute(insert(Member), rows)


async def test_a_large_export_is_chunked_in_bounded_memory(  # type: ignore[no-untyped-def]
    client, make_tenant, monkeypatch
) -> None:
    tenant = await make_tenant()
    await _many_members(tenant.id, ROWS)
    monkeypatch.setattr(service, "CHUNK_SIZE", 64 * 1024)
    monkeypatch.setattr(service, "BATCH_SIZE", 100)
    # A small export first: what runs once per process (compiled statements, imports) is
    # not what is measured.
    small = await make_tenant()
    await _many_members(small.id, 10)
    await _run(small, (await _request(client, small.hq(), "members"))["id"])
    job = await _request(client, tenant.hq(), "members")
    tracemalloc.start()
    try:
        await _run(tenant, job["id"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    state = (await client.get(f"/api/v1/exports/{job['id']}", headers=tenant.hq())).json()
    assert (state["status"], state["rows_done"], state["rows_total"]) == ("done", ROWS, ROWS)
    assert state["size_bytes"] > 1_000_000  # about 1.5 MB of CSV...
    print(f"peak {peak} bytes for {state['size_bytes']} bytes of CSV")
    assert peak < state["size_bytes"]  # ...never held at once
    data = await _download(client, tenant.hq(), job)
    assert hashlib.sha256(data).hexdigest() == state["sha256"]
    rows = _csv_rows(data)
    assert len(rows) == ROWS
    assert len({r["id"] for r in rows}) == ROWS
    assert {r["name"] for r in rows[:3]} <= {f"会员{n}" for n in range(ROWS)}
    chunks = [len(c) async for c in service.read_file(tenant.id, uuid.UUID(job["id"]), 10**6)]
    assert len(chunks) == -(-state["size_bytes"] // (64 * 1024)) > 1
    assert set(chunks[:-1]) == {64 * 1024}


async def test_a_worker_runs_the_export(client, make_tenant, worker) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    await _enrol(client, tenant, "王芳")
    job = await _request(client, tenant.hq(), "members", "xlsx")
    deadline = time.monotonic() + 30
    while True:
        state = (await client.get(f"/api/v1/exports/{job['id']}", headers=tenant.hq())).json()
        if state["status"] in ("done", "failed") or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert state["status"] == "done", state
    [row] = _xlsx_rows(await _download(client, tenant.hq(), job))
    assert row["name"] == "王芳"


async def test_the_cli_writes_the_file(client, make_tenant, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    member = await _enrol(client, tenant, "李小龙")
    output = tmp_path / "members.csv"
    done = await nestpoint("export", "members", "--tenant", tenant.slug, "--output", str(output))
    assert done.returncode == 0, done.stderr
    assert "1 rows written" in done.stdout
    [row] = _csv_rows(output.read_bytes())
    assert row["id"] == member["id"]
    assert row["phone"] == "'" + pii.mask_phone(member["phone"])  # masked without --pii
    assert row["name"] == "李**"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=cmd", "'=cmd"),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-1+2", "'-1+2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("+8613912345678", "+8613912345678"),  # a phone in E.164: a number, not a formula
        ("-15", "-15"),
        ("plain", "plain"),
    ],
)
def test_formulas_are_neutralised(value: str, expected: str) -> None:
    assert service.csv_cell(value) == expected == service.xlsx_cell(value)


async def test_a_job_whose_message_was_lost_is_found_by_the_sweep(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from sqlalchemy import update

    from nestpoint.context import tenant_context
    from nestpoint.db import scoped_session
    from nestpoint.db.base import utcnow
    from nestpoint.exports.actors import stale_queued
    from nestpoint.exports.models import Export
    from nestpoint.jobs.tenants import run_for_tenant

    tenant = await make_tenant()
    body = {"kind": "members", "format": "csv", "idempotency_key": "lost-1"}
    r = await client.post("/api/v1/exports", json=body, headers=tenant.hq())
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert await run_for_tenant(tenant.id, stale_queued, name="test") == []  # too recent
    with tenant_context(tenant.id):
        async with scoped_session() as session:
            await session.execute(update(Export).values(created_at=utcnow() - timedelta(minutes=3)))
    assert [str(i) for i in await run_for_tenant(tenant.id, stale_queued, name="test")] == [job_id]
