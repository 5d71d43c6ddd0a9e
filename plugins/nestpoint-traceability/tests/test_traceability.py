"""The traceability plugin, tested with Nestpoint's test kit (``nestpoint.testing``)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from nestpoint_traceability import csvfile
from nestpoint_traceability.models import TraceScan
from nestpoint_traceability.schemas import TraceabilityConfig
from nestpoint_traceability.service import authenticity
from sqlalchemy import select

from nestpoint.context import Actor, acting_as, tenant_context
from nestpoint.db import scoped_session
from nestpoint.exports.service import run_export

PLUGIN = "traceability"
BASE = "/api/v1/plugins/traceability"
HEADER = "sku,batch_no,product_name,production_date,expiry_date,origin"
GOOD = f"""{HEADER}
FM-1,B-001,婴儿配方奶粉 1段 900g,2025-03-01,2027-02-28,新西兰 New Zealand
FM-1,B-002,婴儿配方奶粉 1段 900g,2025-04-01,2027-03-31,新西兰 New Zealand
DP-NB,2504/07,纸尿裤 NB 84片,2025-04-07,2028-04-06,中国 天津
"""
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
PUBLIC_FIELDS = {
    "code",
    "kind",
    "product_name",
    "sku",
    "batch_no",
    "production_date",
    "expiry_date",
    "expired",
    "origin",
    "has_report",
    "report",
    "authenticity",
    "scanned_at",
}


def _public(t, code: str, suffix: str = "") -> str:  # type: ignore[no-untyped-def]
    return f"/public/{t.slug}/traceability/codes/{code}{suffix}"


def _key() -> str:
    return uuid.uuid4().hex


async def _import(client, t, text: str = GOOD, key: str | None = None):  # type: ignore[no-untyped-def]
    return await client.post(
        f"{BASE}/imports", json={"idempotency_key": key or _key(), "csv": text}, headers=t.hq()
    )


async def _batches(client, t) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    r = await client.get(f"{BASE}/batches", params={"limit": 200}, headers=t.hq())
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def _unit_codes(client, t, batch_id: str, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    r = await client.post(
        f"{BASE}/batches/{batch_id}/unit-codes",
        json={"idempotency_key": _key(), "count": count},
        headers=t.hq(),
    )
    assert r.status_code == 201, r.text
    return [c["code"] for c in r.json()["codes"]]


async def _member(client, t) -> str:  # type: ignore[no-untyped-def]
    phone = f"139{uuid.uuid4().int % 100_000_000:08d}"
    r = await client.post("/api/v1/members", json={"phone": phone}, headers=t.hq())
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


# ------------------------------------------------------------------ pure rules


def test_dates_are_read_as_spreadsheets_write_them() -> None:
    assert csvfile.parse_date("2026-03-01") == date(2026, 3, 1)
    assert csvfile.parse_date("2026/3/1") == date(2026, 3, 1)
    assert csvfile.parse_date("20260301") == date(2026, 3, 1)
    assert csvfile.parse_date("2026-02-30") is None
    assert csvfile.parse_date("01/03/2026") is None


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.text(alphabet=st.sampled_from(list(',"\n\r\t ;\x00\ufeff-/.0123456789Aa奶'))) | st.text())
def test_any_text_gets_batches_or_problems_never_an_exception(text: str) -> None:
    rows, problems = csvfile.check(HEADER + "\n" + text, date(2026, 11, 30))
    assert all(p.field("csv").startswith("csv") for p in problems)
    assert {r.row for r in rows}.isdisjoint({p.row for p in problems})
    csvfile.check(text, date(2026, 11, 30))
    csvfile.report(problems)


def test_the_hint_warns_from_the_threshold_on() -> None:
    config = TraceabilityConfig(counterfeit_warning_scans=2)
    first = datetime(2026, 3, 1, 2, 0).astimezone()
    assert authenticity(0, None, None, config, None).verdict == "genuine"
    once = authenticity(1, first, first, config, None)
    assert (once.verdict, once.warning, once.scans_before) == ("scanned_before", False, 1)
    assert authenticity(2, first, first, config, None).verdict == "counterfeit_warning"


# ------------------------------------------------------------------ import, then look up


async def test_a_batch_imported_from_csv_is_looked_up_by_its_scan_code(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    await nestpoint_enable_plugin(t, PLUGIN)
    r = await _import(client, t)
    assert r.status_code == 201, r.text
    imported = r.json()
    assert imported["rows"] == 3
    assert [(b["sku"], b["batch_no"]) for b in imported["batches"]] == [
        ("FM-1", "B-001"),
        ("FM-1", "B-002"),
        ("DP-NB", "2504/07"),
    ]
    batch = imported["batches"][0]
    assert batch["scan_url"] == _public(t, batch["scan_code"])

    r = await nestpoint_client.get(_public(t, batch["scan_code"]))  # no key at all
    assert r.status_code == 200, r.text
    found = r.json()
    assert set(found) == PUBLIC_FIELDS
    assert found["kind"] == "batch"
    assert (found["sku"], found["batch_no"], found["origin"]) == (
        "FM-1",
        "B-001",
        "新西兰 New Zealand",
    )
    assert (found["production_date"], found["expiry_date"]) == ("2025-03-01", "2027-02-28")
    assert found["product_name"] == "婴儿配方奶粉 1段 900g"
    assert found["has_report"] is False
    assert found["report"] is None
    assert found["authenticity"] is None  # a batch code is on every package of the batch
    # Lower case, as a person types it, finds it too.
    r = await client.get(_public(t, batch["scan_code"].lower()))
    assert r.status_code == 200

    listed = await _batches(client, t)
    assert len(listed) == 3
    r = await client.get(f"{BASE}/batches/{batch['id']}", headers=t.store("S1"))
    assert r.status_code == 200  # a store reads the chain's batches
    assert r.json()["import_id"] == imported["import_id"]


async def test_a_bad_file_lists_every_bad_row_and_imports_nothing(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    await nestpoint_enable_plugin(t, PLUGIN)
    bad = f"""{HEADER}
FM-1,B-001,奶粉,2025-03-01,2027-02-28,新西兰
FM-1,,奶粉,2025-03-01,2027-02-28,新西兰
FM-1,B-003,奶粉,2025-13-01,2027-02-28,新西兰
FM-1,B-004,奶粉,2025-03-01,2025-02-28,新西兰
FM-1,B-005,奶粉,2025-03-01
FM 1,B-006,奶粉,2099-03-01,2100-02-28,
FM-1,B-001,奶粉,2025-03-01,2027-02-28,新西兰

FM-1,B-009,奶粉,2025-03-01,2027-02-28,新西兰
"""
    r = await _import(client, t, bad)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["type"].endswith("/invalid")
    assert "nothing was imported" in problem["detail"]
    assert "6 bad rows of 8" in problem["detail"]
    assert [e["field"] for e in problem["errors"]] == [
        "csv.row.3.batch_no",
        "csv.row.4.production_date",
        "csv.row.5.expiry_date",
        "csv.row.6",
        "csv.row.7.sku",
        "csv.row.7.production_date",
        "csv.row.7.origin",
        "csv.row.8.batch_no",
    ]
    messages = {e["field"]: e["message"] for e in problem["errors"]}
    assert messages["csv.row.3.batch_no"] == "required"
    assert "not after the production date" in messages["csv.row.5.expiry_date"]
    assert "in the future" in messages["csv.row.7.production_date"]
    assert "also row 2" in messages["csv.row.8.batch_no"]
    assert await _batches(client, t) == []  # not even the good rows

    # The same checks as a report to open in a spreadsheet; nothing written either.
    r = await client.post(f"{BASE}/imports/check", json={"csv": bad}, headers=t.hq())
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    lines = r.text.splitlines()
    assert lines[0] == "row,column,problem"
    assert [line.split(",")[:2] for line in lines[1:3]] == [
        ["3", "batch_no"],
        ["4", "production_date"],
    ]
    assert len(lines) == 9
    r = await client.post(f"{BASE}/imports/check", json={"csv": GOOD}, headers=t.hq())
    assert r.text.splitlines() == ["row,column,problem"]
    assert await _batches(client, t) == []


async def test_duplicates_within_the_file_and_against_existing_batches(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    await nestpoint_enable_plugin(t, PLUGIN)
    assert (await _import(client, t)).status_code == 201
    again = f"""{HEADER}
FM-2,C-001,奶粉,2025-03-01,2027-02-28,荷兰
FM-1,B-002,奶粉,2025-04-01,2027-03-31,新西兰
FM-2,C-001,奶粉,2025-03-01,2027-02-28,荷兰
"""
    r = await _import(client, t, again)
    assert r.status_code == 422, r.text
    errors = r.json()["errors"]
    assert [e["field"] for e in errors] == ["csv.row.3.batch_no", "csv.row.4.batch_no"]
    assert "already imported" in errors[0]["message"]
    assert "also row 2" in errors[1]["message"]
    assert len(await _batches(client, t)) == 3  # FM-2 C-001 was not imported either


async def test_wrong_columns_empty_files_and_hostile_input_are_refused_never_500(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    await nestpoint_enable_plugin(t, PLUGIN)
    cases = [
        (
            "sku,batch,product_name,production_date,expiry_date,origin\nA,1,x,2025-01-01,2026-01-01,y",
            ["csv.header", "csv.header"],
        ),
        ("", ["csv"]),
        (f"{HEADER}\n\n", ["csv"]),
        ("\x00\x01,\x02\n\x00", ["csv.header"] * 8),
        ('sku,"unterminated\n', ["csv.header"] * 6),
    ]
    for text, fields in cases:
        r = await _import(client, t, text)
        assert r.status_code == 422, (text, r.text)
        assert [e["field"] for e in r.json()["errors"]] == fields, (text, r.json())
    # Chinese headers, a BOM and CRLF, as Excel saves them, are understood.
    chinese = (
        "\ufeff商品编码,批次号,品名,生产日期,有效期至,产地\r\n"
        "FM-9,Z-1,奶粉,2025/3/1,2027/2/28,荷兰\r\n"
    )
    assert (await _import(client, t, chinese)).status_code == 201

    # A file upload: bytes that are not UTF-8 are named; gb18030 is read when said.
    gbk = f"{HEADER}\nFM-8,G-1,婴儿奶粉,2025-03-01,2027-02-28,中国\n".encode("gb18030")
    form = {"idempotency_key": _key()}
    r = await client.post(
        f"{BASE}/imports/upload", files={"file": ("b.csv", gbk)}, data=form, headers=t.hq()
    )
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["file"]
    assert "gb18030" in r.json()["errors"][0]["message"]
    r = await client.post(
        f"{BASE}/imports/upload",
        files={"file": ("b.csv", gbk)},
        data={**form, "encoding": "gb18030"},
        headers=t.hq(),
    )
    assert r.status_code == 201, r.text
    assert r.json()["batches"][0]["sku"] == "FM-8"
    bad_rows = f"{HEADER}\nFM-7,,x,2025-03-01,2027-02-28,y\n".encode()
    r = await client.post(
        f"{BASE}/imports/upload",
        files={"file": ("c.csv", bad_rows)},
        data={"idempotency_key": _key()},
        headers=t.hq(),
    )
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["file.row.2.batch_no"]
    for data, field in [({"idempotency_key": "short"}, "idempotency_key"), ({}, "idempotency_key")]:
        r = await client.post(
            f"{BASE}/imports/upload", files={"file": ("c.csv", b"x")}, data=data, headers=t.hq()
        )
        assert r.status_code == 422
        assert [e["field"] for e in r.json()["errors"]] == [field]
    r = await client.post(
        f"{BASE}/imports/upload", data={"idempotency_key": _key(), "file": "x"}, headers=t.hq()
    )
    assert r.status_code == 400  # not a form with a file: not multipart at all
    huge = b"x" * (1_048_576 + 10)
    r = await client.post(
        f"{BASE}/imports/upload",
        files={"file": ("d.csv", huge)},
        data={"idempotency_key": _key()},
        headers=t.hq(),
    )
    assert r.status_code == 400
    assert [e["field"] for e in r.json()["errors"]] == ["body"]
    r = await client.post(
        f"{BASE}/imports",
        content=b'{"idempotency_key": "abcdefgh12", "csv": "\xff\xfe"}',
        headers={**t.hq(), "content-type": "application/json"},
    )
    assert r.status_code == 400  # not UTF-8: the core refuses the JSON body

    # Reports: the declared type, the bytes of that type, not empty, not above 5 MiB.
    batch = (await _batches(client, t))[0]["id"]
    path = f"{BASE}/batches/{batch}/report"
    for body, content_type, field, status in [
        (PDF, "text/html", "header.content-type", 422),
        (b"<script>alert(1)</script>", "application/pdf", "body", 422),
        (b"", "application/pdf", "body", 422),
        (b"%PDF-" + b"0" * (5 * 1024 * 1024), "application/pdf", "body", 400),
    ]:
        r = await client.put(path, content=body, headers={**t.hq(), "content-type": content_type})
        assert r.status_code == status, (content_type, r.text)
        assert [e["field"] for e in r.json()["errors"]] == [field]
    assert "5242880" in r.json()["detail"]
    r = await client.put(
        f"{BASE}/batches/{uuid.uuid4()}/report",
        content=PDF,
        headers={**t.hq(), "content-type": "application/pdf"},
    )
    assert r.status_code == 404
    # Codes of every shape find nothing, and never fail.
    for code in ("x", "B" * 64, "U" + "0" * 20, "..%2F..", "B-001"):
        r = await client.get(_public(t, code))
        assert r.status_code == 404, (code, r.text)
    r = await client.get(_public(t, "%00"))  # refused before any route: a NUL in the path
    assert r.status_code == 400, r.text
    assert r.json()["errors"] == [{"field": "path", "message": "holds NUL"}]
    r = await client.get(_public(t, "x" * 65))
    assert r.status_code == 400


async def test_an_import_retried_with_its_key_imports_once(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    await nestpoint_enable_plugin(t, PLUGIN)
    key = _key()
    first = await _import(client, t, GOOD, key)
    assert first.status_code == 201
    again = await _import(client, t, GOOD, key)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert len(await _batches(client, t)) == 3
    # The same file uploaded with the same key is the same import.
    r = await client.post(
        f"{BASE}/imports/upload",
        files={"file": ("g.csv", GOOD.encode())},
        data={"idempotency_key": key},
        headers=t.hq(),
    )
    assert r.status_code == 201
    assert r.json() == first.json()
    # The key with another file is a conflict naming it.
    other = await _import(client, t, GOOD.replace("B-001", "B-101"), key)
    assert other.status_code == 409
    assert [e["field"] for e in other.json()["errors"]] == ["idempotency_key"]
    # Without the key, the same file again is refused: its batches exist.
    assert (await _import(client, t, GOOD)).status_code == 422

    # Unit codes: a retry answers the same codes, never new ones.
    batch = first.json()["batches"][0]["id"]
    body = {"idempotency_key": _key(), "count": 3}
    made = await client.post(f"{BASE}/batches/{batch}/unit-codes", json=body, headers=t.hq())
    retry = await client.post(f"{BASE}/batches/{batch}/unit-codes", json=body, headers=t.hq())
    assert made.status_code == retry.status_code == 201
    assert retry.json() == made.json()
    r = await client.get(f"{BASE}/batches/{batch}", headers=t.hq())
    assert r.json()["unit_codes"] == 3
    codes = [c["code"] for c in made.json()["codes"]]
    assert len(set(codes)) == 3
    assert all(len(c) == 21 and c[0] == "U" for c in codes)
    # As CSV for the printer: the run's codes with the URL to print.
    run = made.json()["print_run_id"]
    r = await client.get(
        f"{BASE}/batches/{batch}/unit-codes.csv", params={"print_run": run}, headers=t.hq()
    )
    assert r.status_code == 200
    rows = r.text.splitlines()
    assert rows[0] == "code,url,sku,batch_no,product_name,expiry_date"
    assert sorted(row.split(",")[0] for row in rows[1:]) == sorted(codes)
    assert rows[1].split(",")[1] == _public(t, rows[1].split(",")[0])


# ------------------------------------------------------------------ scans and the hint


async def test_first_scan_is_genuine_and_later_ones_say_how_often_and_since_when(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    await nestpoint_enable_plugin(t, PLUGIN, config={"counterfeit_warning_scans": 3})
    batch = (await _import(client, t)).json()["batches"][0]["id"]
    code = (await _unit_codes(client, t, batch, 2))[0]

    first = await client.get(_public(t, code))
    assert first.status_code == 200, first.text
    hint = first.json()["authenticity"]
    assert first.json()["kind"] == "unit"
    assert (hint["verdict"], hint["first_scan"], hint["scans_before"]) == ("genuine", True, 0)
    assert hint["warning"] is False

    second = (await client.get(_public(t, code))).json()["authenticity"]
    assert (second["verdict"], second["first_scan"], second["scans_before"]) == (
        "scanned_before",
        False,
        1,
    )
    assert second["first_scanned_at"] == first.json()["scanned_at"]
    assert second["last_scanned_at"] == first.json()["scanned_at"]

    # A member's scan counts too, and answers the same facts.
    member = await _member(client, t)
    body = {"idempotency_key": _key(), "member_id": member, "code": code}
    r = await client.post(f"{BASE}/scans", json=body, headers=t.hq())
    assert r.status_code == 201, r.text
    assert r.json()["authenticity"]["scans_before"] == 2
    assert r.json()["member_id"] == member
    retry = await client.post(f"{BASE}/scans", json=body, headers=t.hq())
    assert retry.headers["Idempotent-Replayed"] == "true"  # not a second scan

    third = (await client.get(_public(t, code))).json()["authenticity"]
    assert (third["verdict"], third["warning"], third["scans_before"]) == (
        "counterfeit_warning",
        True,
        3,
    )
    assert third["first_scanned_at"] == first.json()["scanned_at"]
    assert "谨防假冒" in third["message"]

    # The other code of the batch is untouched: its first scan is genuine.
    other = await _unit_codes(client, t, batch, 1)
    assert (await client.get(_public(t, other[0]))).json()["authenticity"]["first_scan"]

    # HQ sees the code's scans, members included; the public never does.
    r = await client.get(f"{BASE}/codes/{code}/scans", headers=t.hq())
    assert r.status_code == 200
    assert [s["source"] for s in r.json()] == ["public", "member", "public", "public"]
    assert r.json()[1]["member_id"] == member
    r = await client.get(f"{BASE}/codes/{code}/scans", headers=t.store("S1"))
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["store"]


async def test_the_public_look_up_needs_no_key_and_shows_no_member_data(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    await nestpoint_enable_plugin(t, PLUGIN, config={"public_base_url": "https://trace.example"})
    batch = (await _import(client, t)).json()["batches"][0]
    r = await client.put(
        f"{BASE}/batches/{batch['id']}/report",
        content=PDF,
        headers={**t.hq(), "content-type": "application/pdf"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["size"] == len(PDF)
    code = (await _unit_codes(client, t, batch["id"], 1))[0]
    member = await _member(client, t)
    body = {"idempotency_key": _key(), "member_id": member, "code": code}
    r = await client.post(f"{BASE}/scans", json=body, headers=t.store("S1"))
    assert r.status_code == 201, r.text

    r = await client.get(_public(t, code))
    assert r.status_code == 200
    found = r.json()
    assert set(found) == PUBLIC_FIELDS
    assert member not in r.text
    assert str(t.stores["S1"]) not in r.text
    assert found["has_report"] is True
    link = found["report"]["url"]
    assert link == "https://trace.example" + _public(t, code, "/report")
    # The link works without a key, serves the document as stored, and is not a scan.
    r = await client.get(_public(t, code, "/report"))
    assert r.status_code == 200
    assert r.content == PDF
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert (await client.get(_public(t, code))).json()["authenticity"]["scans_before"] == 2
    # A member scan records the store of the store key.
    r = await client.get(f"{BASE}/codes/{code}/scans", headers=t.hq())
    member_scans = [s for s in r.json() if s["source"] == "member"]
    assert member_scans[0]["store_id"] == str(t.stores["S1"])
    # Staff download the same document.
    r = await client.get(f"{BASE}/batches/{batch['id']}/report", headers=t.store("S2"))
    assert r.status_code == 200
    assert r.content == PDF
    # An unknown member is 404 and records nothing.
    body = {"idempotency_key": _key(), "member_id": str(uuid.uuid4()), "code": code}
    assert (await client.post(f"{BASE}/scans", json=body, headers=t.hq())).status_code == 404


async def test_the_public_look_up_is_rate_limited_per_client(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin, nestpoint_public_rate_limit
):
    t, client = nestpoint_tenant, nestpoint_client
    await nestpoint_enable_plugin(t, PLUGIN)
    code = (await _import(client, t)).json()["batches"][0]["scan_code"]
    nestpoint_public_rate_limit("3/minute")
    statuses = [(await client.get(_public(t, code))).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    r = await client.get(_public(t, code))
    assert r.status_code == 429
    assert r.headers["content-type"] == "application/problem+json"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert r.json()["type"].endswith("/rate-limited")
    # Unknown chains count too (a scan of every slug is not free), and staff keys are not
    # limited by it.
    assert (await client.get(f"/public/no-such-chain/traceability/codes/{code}")).status_code == 429
    assert (await client.get(f"{BASE}/batches", headers=t.hq())).status_code == 200


async def test_tenants_are_isolated_and_the_plugin_answers_only_where_enabled(
    nestpoint_make_tenant, nestpoint_client, nestpoint_enable_plugin
):
    client = nestpoint_client
    a, b = await nestpoint_make_tenant(), await nestpoint_make_tenant()
    await nestpoint_enable_plugin(a, PLUGIN)
    imported = (await _import(client, a)).json()["batches"][0]
    code = (await _unit_codes(client, a, imported["id"], 1))[0]
    assert (await client.get(_public(a, code))).status_code == 200

    # B has not enabled the plugin: its public routes do not exist.
    assert (await client.get(_public(b, code))).status_code == 404
    await nestpoint_enable_plugin(b, PLUGIN, store="S2")  # enabled somewhere in the chain
    for path in (_public(b, code), _public(b, imported["scan_code"]), _public(b, code, "/report")):
        r = await client.get(path)
        assert r.status_code == 404, path
    assert (await client.get(f"{BASE}/batches/{imported['id']}", headers=b.hq())).status_code == 404
    assert await _batches(client, b) == []
    r = await client.get(f"{BASE}/codes/{code}/scans", headers=b.hq())
    assert r.status_code == 404
    # B's own import of the same SKU and batch is B's business.
    assert (await _import(client, b)).status_code == 201
    assert (await client.get(f"/public/no-such-chain/traceability/codes/{code}")).status_code == 404


async def test_only_hq_writes_and_the_configuration_is_checked(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    r = await client.put(
        f"/api/v1/tenant/plugins/{PLUGIN}",
        json={"enabled": True, "config": {"scan_url_template": "https://m.example/t?c=CODE"}},
        headers=t.hq(),
    )
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["config.scan_url_template"]
    template = "https://m.example/t?c={code}"
    await nestpoint_enable_plugin(t, PLUGIN, config={"scan_url_template": template})
    r = await client.post(
        f"{BASE}/imports", json={"idempotency_key": _key(), "csv": GOOD}, headers=t.store("S1")
    )
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["store"]
    imported = (await _import(client, t)).json()["batches"][0]
    assert imported["scan_url"] == f"https://m.example/t?c={imported['scan_code']}"
    r = await client.post(
        f"{BASE}/batches/{imported['id']}/unit-codes",
        json={"idempotency_key": _key(), "count": 1},
        headers=t.store("S1"),
    )
    assert r.status_code == 422
    r = await client.get(f"{BASE}/batches", params={"limit": 2}, headers=t.store("S1"))
    page = r.json()
    assert len(page["items"]) == 2
    assert page["next_cursor"]
    r = await client.get(
        f"{BASE}/batches", params={"limit": 2, "cursor": page["next_cursor"]}, headers=t.hq()
    )
    assert [b["batch_no"] for b in r.json()["items"]] == ["B-002"]
    assert r.json()["next_cursor"] is None
    r = await client.get(f"{BASE}/batches", params={"cursor": "not-a-cursor"}, headers=t.hq())
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["query.cursor"]


async def test_scans_at_the_same_moment_are_counted_one_after_the_other(
    nestpoint_tenant, nestpoint_client, nestpoint_concurrent_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    await nestpoint_enable_plugin(t, PLUGIN)
    batch = (await _import(client, t)).json()["batches"][0]["id"]
    code = (await _unit_codes(client, t, batch, 1))[0]
    responses = await asyncio.gather(
        *(nestpoint_concurrent_client.get(_public(t, code)) for _ in range(8))
    )
    assert [r.status_code for r in responses] == [200] * 8
    before = sorted(r.json()["authenticity"]["scans_before"] for r in responses)
    assert before == list(range(8))  # one first scan, never two


# ------------------------------------------------------------------ a member's data export


async def test_a_members_data_export_holds_their_scans_and_nobody_elses(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin
):
    t, client = nestpoint_tenant, nestpoint_client
    await nestpoint_enable_plugin(t, PLUGIN)
    batch = (await _import(client, t)).json()["batches"][0]
    codes = await _unit_codes(client, t, batch["id"], 2)
    member, other = await _member(client, t), await _member(client, t)
    for who, code, headers in ((member, codes[0], t.store("S1")), (member, codes[1], t.hq())):
        body = {"idempotency_key": _key(), "member_id": who, "code": code}
        assert (await client.post(f"{BASE}/scans", json=body, headers=headers)).status_code == 201
    body = {"idempotency_key": _key(), "member_id": other, "code": codes[0]}
    assert (await client.post(f"{BASE}/scans", json=body, headers=t.hq())).status_code == 201
    assert (await client.get(_public(t, codes[1]))).status_code == 200  # nobody's scan

    body = {"reason": "PIPL access request #9", "idempotency_key": _key()}
    r = await client.post(f"/api/v1/members/{member}/data-exports", json=body, headers=t.hq())
    assert r.status_code == 202, r.text
    export_id = r.json()["id"]
    with acting_as(Actor("system", name="tests")), tenant_context(t.id):
        await run_export(uuid.UUID(export_id))
    r = await client.get(f"/api/v1/exports/{export_id}/file", headers=t.hq())
    assert r.status_code == 200, r.text
    scans = r.json()["plugins"]["traceability"]["scans"]
    assert [(s["code"], s["sku"], s["batch_no"]) for s in scans] == [
        (codes[0], batch["sku"], batch["batch_no"]),
        (codes[1], batch["sku"], batch["batch_no"]),
    ]
    assert [s["store_id"] for s in scans] == [str(t.stores["S1"]), None]
    assert other not in r.text


async def test_an_erased_members_scans_keep_the_product_and_lose_the_member(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin, nestpoint_erase_member
):
    t, client = nestpoint_tenant, nestpoint_client
    await nestpoint_enable_plugin(t, PLUGIN)
    batch = (await _import(client, t)).json()["batches"][0]
    codes = await _unit_codes(client, t, batch["id"], 2)
    member, other = await _member(client, t), await _member(client, t)
    for who, code in ((member, codes[0]), (other, codes[1])):
        body = {"idempotency_key": _key(), "member_id": who, "code": code}
        assert (await client.post(f"{BASE}/scans", json=body, headers=t.hq())).status_code == 201

    erasure = await nestpoint_erase_member(t, member)
    assert erasure["plugins"]["traceability"] == {"scans": 1}
    again = await nestpoint_erase_member(t, member)  # asked again: nothing left
    assert again["plugins"]["traceability"] == {"scans": 0}
    with tenant_context(t.id):
        async with scoped_session() as session:
            scans = (await session.execute(select(TraceScan.code, TraceScan.member_id))).all()
    assert sorted((code, str(who) if who else None) for code, who in scans) == sorted(
        [(codes[0], None), (codes[1], other)]
    )
