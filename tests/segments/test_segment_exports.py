"""Exports of a segment: its members (as the segment is when the job runs) with the columns
of the members export, masked without members:pii, audited; through the API and the CLI."""

from __future__ import annotations

import csv
import io
import subprocess
import uuid
from pathlib import Path
from typing import Any

import openpyxl

from commands import nestpoint
from nestpoint.context import Actor, acting_as, tenant_context
from nestpoint.exports import service
from nestpoint.members import pii
from segments.helpers import enrol, populate

VIP = {"name": "VIP", "rule": {"field": "tag", "op": "has", "value": "vip"}}


async def _export(client: Any, headers: dict[str, str], code: str, fmt: str = "csv") -> Any:
    body = {
        "kind": "segment",
        "segment_code": code,
        "format": fmt,
        "idempotency_key": uuid.uuid4().hex,
    }
    return await client.post("/api/v1/exports", json=body, headers=headers)


async def _run(tenant: Any, export_id: str) -> None:
    with acting_as(Actor("system", name="tests")), tenant_context(tenant.id):
        await service.run_export(uuid.UUID(export_id))


def _csv(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


async def test_a_segment_exports_its_members_when_the_job_runs(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    p = await populate(client, tenant)
    r = await client.put("/api/v1/segments/vip", json=VIP, headers=tenant.hq())
    assert r.status_code == 201, r.text
    r = await _export(client, tenant.hq(), "vip")
    assert r.status_code == 202, r.text
    job = r.json()
    assert (job["kind"], job["segment_code"], job["masked"]) == ("segment", "vip", False)
    # A member tagged after the request is in the file: the segment as the job runs.
    late = await enrol(client, tenant, name="赵敏", tags=["vip"])
    await _run(tenant, job["id"])
    r = await client.get(f"/api/v1/exports/{job['id']}", headers=tenant.hq())
    assert (r.json()["status"], r.json()["rows_done"]) == ("done", 3)
    r = await client.get(f"/api/v1/exports/{job['id']}/file", headers=tenant.hq())
    assert r.status_code == 200, r.text
    assert 'filename="segment-vip-' in r.headers["content-disposition"]
    rows = _csv(r.content)
    assert [row["id"] for row in rows] == sorted({p.silent, p.core, late})
    assert list(rows[0]) == list(service.MEMBER_COLUMNS)
    silent = next(row for row in rows if row["id"] == p.silent)
    assert (silent["name"], silent["home_store"], silent["tags"]) == ("王芳", "S1", "vip")
    assert silent["birthday"] == "1990-03-08"
    # Audited with the segment's code.
    r = await client.get("/api/v1/audit", params={"limit": 200}, headers=tenant.hq())
    entries = [e for e in r.json()["items"] if e["subject_id"] == job["id"]]
    requested = next(e for e in entries if e["action"] == "exports.requested")
    assert requested["changes"]["segment_code"] == "vip"
    assert any(e["action"] == "exports.done" for e in entries)


async def test_masked_without_members_pii_and_checked(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    p = await populate(client, tenant)
    r = await client.put("/api/v1/segments/vip", json=VIP, headers=tenant.hq())
    assert r.status_code == 201, r.text
    r = await client.post(
        "/api/v1/api-keys",
        json={"name": "analyst", "scopes": ["members:read", "exports:read", "exports:write"]},
        headers=tenant.hq(),
    )
    analyst = {"Authorization": f"Bearer {r.json()['key']}"}
    r = await _export(client, analyst, "vip", "xlsx")
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["masked"] is True
    await _run(tenant, job["id"])
    r = await client.get(f"/api/v1/exports/{job['id']}/file", headers=analyst)
    assert r.status_code == 200, r.text
    sheet = openpyxl.load_workbook(io.BytesIO(r.content), read_only=True).worksheets[0]
    header, *values = list(sheet.iter_rows(values_only=True))
    rows = [dict(zip(header, v, strict=True)) for v in values]
    assert {row["id"] for row in rows} == {p.silent, p.core}
    silent = next(row for row in rows if row["id"] == p.silent)
    assert "****" in silent["phone"]
    assert (silent["name"], silent["birthday"], silent["birthday_month"]) == ("王*", None, 3)
    # An unknown segment, a segment_code without kind segment, or none with it.
    r = await _export(client, tenant.hq(), "nope")
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "segment_code"
    for body in (
        {"kind": "members", "segment_code": "vip", "idempotency_key": "a"},
        {"kind": "segment", "idempotency_key": "b"},
    ):
        r = await client.post("/api/v1/exports", json=body, headers=tenant.hq())
        assert r.status_code == 422, r.text
        assert "segment_code" in r.json()["errors"][0]["message"]
    # A segment deleted before the job runs: the job fails, saying so.
    r = await _export(client, tenant.hq(), "vip")
    job = r.json()
    r = await client.delete("/api/v1/segments/vip", headers=tenant.hq())
    assert r.status_code == 204, r.text
    await _run(tenant, job["id"])
    r = await client.get(f"/api/v1/exports/{job['id']}", headers=tenant.hq())
    assert r.json()["status"] == "failed"
    assert "vip" in r.json()["error"]


async def test_the_cli_exports_a_segment(client, make_tenant, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    p = await populate(client, tenant)
    r = await client.put("/api/v1/segments/vip", json=VIP, headers=tenant.hq())
    assert r.status_code == 201, r.text
    output = tmp_path / "vip.csv"

    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return await nestpoint("export", "segment", *args)

    done = await cli("vip", "--tenant", tenant.slug, "--output", str(output))
    assert done.returncode == 0, done.stderr
    assert "2 rows written" in done.stdout
    rows = _csv(output.read_bytes())
    assert {row["id"] for row in rows} == {p.silent, p.core}
    silent = next(row for row in rows if row["id"] == p.silent)
    assert silent["phone"].startswith("'")  # masked: "'138****…" is quoted
    assert "****" in silent["phone"]
    assert pii.mask_name("王芳") == silent["name"]
    done = await cli("vip", "--tenant", tenant.slug, "--output", str(output), "--pii")
    assert done.returncode == 0, done.stderr
    silent = next(row for row in _csv(output.read_bytes()) if row["id"] == p.silent)
    assert (silent["name"], "****" in silent["phone"]) == ("王芳", False)
    done = await cli("nope", "--tenant", tenant.slug, "--output", str(output))
    assert done.returncode != 0
    assert "no segment 'nope'" in done.stderr
