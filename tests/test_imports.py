"""Imports: members, children, tags, opening balances and orders from CSV or XLSX, checked
row by row before anything is written, then all rows or none; a row report; re-runs that
change nothing; a job killed halfway that ends with each row once; the ledger's invariants
after opening balances; jobs run by a real worker and by the CLI; bad files refused with
problems naming the field, never a 500."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy import func, select

from commands import nestpoint
from loyalty.helpers import new_phone, order_body
from loyalty.invariants import check_ledger
from nestpoint.context import Actor, acting_as, tenant_context
from nestpoint.db import scoped_session
from nestpoint.imports import service
from nestpoint.imports.models import ImportChunk
from nestpoint.members import pii
from nestpoint.members.models import Child, Member
from nestpoint.orders.models import Order
from nestpoint.points.models import PointAccount, PointEntry, PointLot

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples" / "import"
# What an import writes besides the data: the job, its chunks, audit entries, the
# idempotency key of the request.
BOOKKEEPING = {"imports", "import_chunks", "audit_entries", "idempotency_keys"}


def _csv(header: list[str], rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def _xlsx(header: list[str], rows: list[list[Any]]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


async def _request(
    client: Any,
    tenant: Any,
    kind: str,
    content: bytes,
    fmt: str = "csv",
    mapping: dict[str, str] | None = None,
    key: str | None = None,
    status: int = 202,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": kind,
        "format": fmt,
        "content": base64.b64encode(content).decode(),
        "idempotency_key": key or uuid.uuid4().hex,
        "file_name": f"{kind}.{fmt}",
    }
    if mapping is not None:
        body["mapping"] = mapping
    r = await client.post("/api/v1/imports", json=body, headers=tenant.hq())
    assert r.status_code == status, r.text
    return dict(r.json())


async def _run(tenant: Any, import_id: str, **kwargs: Any) -> None:
    """What the ``imports.run`` actor does."""
    with acting_as(Actor("system", name="tests")), tenant_context(tenant.id):
        await service.run_import(uuid.UUID(import_id), **kwargs)


async def _state(client: Any, tenant: Any, job: dict[str, Any]) -> dict[str, Any]:
    r = await client.get(f"/api/v1/imports/{job['id']}", headers=tenant.hq())
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _import(
    client: Any, tenant: Any, kind: str, content: bytes, **kwargs: Any
) -> dict[str, Any]:
    job = await _request(client, tenant, kind, content, **kwargs)
    await _run(tenant, job["id"])
    return await _state(client, tenant, job)


async def _report(client: Any, tenant: Any, job: dict[str, Any]) -> list[dict[str, str]]:
    r = await client.get(f"/api/v1/imports/{job['id']}/report", headers=tenant.hq())
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))


async def _lookup(client: Any, tenant: Any, phone: str) -> dict[str, Any]:
    r = await client.get("/api/v1/members/lookup", params={"phone": phone}, headers=tenant.hq())
    assert r.status_code == 200, r.text
    return dict(r.json())


def _data(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if k not in BOOKKEEPING}


MEMBER_HEADER = [
    "会员编号",
    "手机号",
    "姓名",
    "性别",
    "生日",
    "门店",
    "joined_at",
    "tags",
    "guardian_consent_at",
]


def _members(phones: list[str], consent: bool = True) -> list[list[Any]]:
    return [
        [
            f"L{i}",
            phone,
            f"会员{i}",
            "女" if i % 2 else "male",
            "1990-07-15",
            "S1",
            "2021-03-01 10:00:00",
            "vip;formula",
            "2021-03-01T10:00:00+08:00" if consent else "",
        ]
        for i, phone in enumerate(phones)
    ]


# ---------------------------------------------------------------------------- members


async def test_members_children_and_tags(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    phones = [new_phone() for _ in range(3)]
    state = await _import(client, tenant, "members", _csv(MEMBER_HEADER, _members(phones)))
    assert state["status"] == "done", state
    assert (state["rows_total"], state["rows_imported"], state["rows_skipped"]) == (3, 3, 0)
    assert state["mapping"]["phone"] == "手机号"
    assert state["mapping"]["legacy_id"] == "会员编号"
    member = await _lookup(client, tenant, phones[1])
    assert member["name"] == "会员1"
    assert member["phone"] == pii.normalize_phone(phones[1])
    assert member["gender"] == "female"
    assert member["join_channel"] == "import"
    assert member["tags"] == ["formula", "vip"]
    assert member["guardian_consent"] is True
    assert member["home_store_id"] == str(tenant.stores["S1"])
    assert member["joined_at"].startswith("2021-03-01T02:00:00")  # 10:00 in Shanghai
    assert member["tier_code"] is not None
    assert member["points_balance"] == 0

    children = _csv(
        ["member_legacy_id", "member_phone", "legacy_id", "nickname", "gender", "birth_date"],
        [
            ["L0", "", "C1", "小宝", "女", "2024-05-01"],
            ["", phones[1], "C2", "", "male", "2023-01-20"],
        ],
    )
    state = await _import(client, tenant, "children", children)
    assert (state["status"], state["rows_imported"]) == ("done", 2), state
    member = await _lookup(client, tenant, phones[0])
    [child] = member["children"]
    assert child["nickname"] == "小宝"
    assert child["birth_date"] == "2024-05-01"
    assert len((await _lookup(client, tenant, phones[1]))["children"]) == 1

    tags = _csv(["member_phone", "tags"], [[phones[2], "formula,new-mum"], [phones[2], "twins"]])
    state = await _import(client, tenant, "tags", tags)
    assert (state["status"], state["rows_imported"]) == ("done", 2), state
    member = await _lookup(client, tenant, phones[2])
    assert member["tags"] == ["formula", "new-mum", "twins", "vip"]
    # Again: nothing changes.
    state = await _import(client, tenant, "tags", tags)
    assert (state["rows_imported"], state["rows_skipped"]) == (0, 2), state

    # Audited: requested and done.
    r = await client.get("/api/v1/audit", params={"limit": 200}, headers=tenant.hq())
    actions = {e["action"] for e in r.json()["items"] if e["subject_type"] == "import"}
    assert {"imports.requested", "imports.done"} <= actions


async def test_xlsx_with_a_mapping(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    phone = new_phone()
    content = _xlsx(
        ["Mobile No", "Full name", "Born"], [[int(phone), "李小龙", datetime(1988, 1, 2)]]
    )
    mapping = {"phone": "Mobile No", "name": "Full name", "birthday": "Born"}
    state = await _import(client, tenant, "members", content, fmt="xlsx", mapping=mapping)
    assert (state["status"], state["rows_imported"]) == ("done", 1), state
    member = await _lookup(client, tenant, phone)
    assert (member["name"], member["birthday"]) == ("李小龙", "1988-01-02")


async def test_one_bad_row_writes_nothing_and_the_report_lists_every_bad_row(  # type: ignore[no-untyped-def]
    client, make_tenant, row_counts
) -> None:
    tenant = await make_tenant()
    phones = [new_phone() for _ in range(4)]
    rows = _members(phones)
    rows[1][1] = "12345"  # not a phone
    rows[2][4] = "2990-01-01"  # a birthday in the future
    rows[2][5] = "NOPE"  # no such store
    rows[3][1] = phones[0]  # the same phone twice
    before = await row_counts(tenant.id)
    job = await _request(client, tenant, "members", _csv(MEMBER_HEADER, rows))
    await _run(tenant, job["id"])
    state = await _state(client, tenant, job)
    assert (state["status"], state["rows_bad"], state["rows_imported"]) == ("invalid", 4, 0)
    assert _data(await row_counts(tenant.id)) == _data(before)
    report = await _report(client, tenant, job)
    problems = {(r["row"], r["field"]) for r in report}
    assert problems == {
        ("3", "phone"),
        ("4", "birthday"),
        ("4", "home_store"),
        ("2", "phone"),
        ("5", "phone"),
    }
    assert all(r["problem"] for r in report)
    r = await client.get("/api/v1/audit", params={"limit": 200}, headers=tenant.hq())
    assert "imports.invalid" in {e["action"] for e in r.json()["items"]}


async def test_children_need_their_member_and_the_guardians_consent(  # type: ignore[no-untyped-def]
    client, make_tenant, row_counts
) -> None:
    tenant = await make_tenant()
    phones = [new_phone() for _ in range(2)]
    rows = _members(phones)
    rows[1][8] = ""  # no guardian's consent
    assert (await _import(client, tenant, "members", _csv(MEMBER_HEADER, rows)))["status"] == "done"
    before = await row_counts(tenant.id)
    children = _csv(
        ["member_legacy_id", "legacy_id", "birth_date", "due_date"],
        [
            ["L0", "C1", "2024-05-01", ""],  # good
            ["L1", "C2", "2024-05-01", ""],  # no consent
            ["L9", "C3", "2024-05-01", ""],  # no such member
            ["L0", "C1", "2024-06-01", ""],  # C1 again
            ["L0", "C4", "", ""],  # no date
        ],
    )
    job = await _request(client, tenant, "children", children)
    await _run(tenant, job["id"])
    state = await _state(client, tenant, job)
    assert (state["status"], state["rows_bad"]) == ("invalid", 5), state
    problems = {(r["row"], r["field"]) for r in await _report(client, tenant, job)}
    assert problems == {
        ("2", "legacy_id"),
        ("5", "legacy_id"),
        ("3", "member_phone"),
        ("4", "member_legacy_id"),
        ("6", "birth_date"),
    }
    assert _data(await row_counts(tenant.id)) == _data(before)


async def test_a_second_run_changes_nothing(client, make_tenant, row_counts) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    phones = [new_phone() for _ in range(5)]
    members = _csv(MEMBER_HEADER, _members(phones))
    children = _csv(
        ["member_legacy_id", "legacy_id", "nickname", "birth_date"],
        [[f"L{i}", f"C{i}", "宝宝", "2024-01-01"] for i in range(5)],
    )
    assert (await _import(client, tenant, "members", members))["rows_imported"] == 5
    assert (await _import(client, tenant, "children", children))["rows_imported"] == 5
    after_first = _data(await row_counts(tenant.id))
    again = await _import(client, tenant, "members", members)
    assert (again["status"], again["rows_imported"], again["rows_skipped"]) == ("done", 0, 5)
    again = await _import(client, tenant, "children", children)
    assert (again["status"], again["rows_imported"], again["rows_skipped"]) == ("done", 0, 5)
    assert _data(await row_counts(tenant.id)) == after_first
    # A file with old and new rows imports only the new ones.
    more = _csv(MEMBER_HEADER, _members([*phones, new_phone()]))
    state = await _import(client, tenant, "members", more)
    assert (state["rows_imported"], state["rows_skipped"]) == (1, 5), state


async def test_the_same_request_is_one_job(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    content = _csv(MEMBER_HEADER, _members([new_phone()]))
    first = await _request(client, tenant, "members", content, key="k1")
    body = {
        "kind": "members",
        "format": "csv",
        "content": base64.b64encode(content).decode(),
        "idempotency_key": "k1",
        "file_name": "members.csv",
    }
    r = await client.post("/api/v1/imports", json=body, headers=tenant.hq())
    assert r.status_code == 202, r.text
    assert r.headers["idempotent-replayed"] == "true"
    assert r.json()["id"] == first["id"]
    other = base64.b64encode(_csv(MEMBER_HEADER, _members([new_phone()]))).decode()
    r = await client.post("/api/v1/imports", json=body | {"content": other}, headers=tenant.hq())
    assert r.status_code == 409, r.text
    r = await client.get("/api/v1/imports", headers=tenant.hq())
    assert [j["id"] for j in r.json()["items"]] == [first["id"]]


# ---------------------------------------------------------------------------- failures


async def test_a_job_killed_in_the_merge_runs_again_to_each_row_once(  # type: ignore[no-untyped-def]
    client, make_tenant, row_counts, monkeypatch
) -> None:
    tenant = await make_tenant()
    phones = [new_phone() for _ in range(7)]
    before = _data(await row_counts(tenant.id))
    job = await _request(client, tenant, "members", _csv(MEMBER_HEADER, _members(phones)))
    real = service.MERGES["members"]

    async def killed(conn: Any, facts: Any) -> Any:
        await real(conn, facts)  # every row written in the transaction...
        raise RuntimeError("worker killed")  # ...which never commits

    monkeypatch.setitem(service.MERGES, "members", killed)
    with pytest.raises(RuntimeError):
        await _run(tenant, job["id"])
    state = await _state(client, tenant, job)
    assert state["status"] == "failed"
    assert "worker killed" in state["error"]
    assert _data(await row_counts(tenant.id)) == before
    monkeypatch.setitem(service.MERGES, "members", real)
    await _run(tenant, job["id"])  # what Dramatiq's retry does
    state = await _state(client, tenant, job)
    assert (state["status"], state["rows_imported"]) == ("done", 7), state
    counts = _data(await row_counts(tenant.id))
    assert counts["members"] == before["members"] + 7
    assert counts["point_accounts"] == before["point_accounts"] + 7
    assert counts["tier_changes"] == before["tier_changes"] + 7
    await _run(tenant, job["id"])  # a finished job is left alone
    assert _data(await row_counts(tenant.id)) == counts


async def test_a_job_killed_after_some_batches_runs_again_to_each_row_once(  # type: ignore[no-untyped-def]
    client, make_tenant, row_counts, monkeypatch
) -> None:
    tenant = await make_tenant()
    phones = [new_phone() for _ in range(9)]
    before = _data(await row_counts(tenant.id))
    job = await _request(client, tenant, "members", _csv(MEMBER_HEADER, _members(phones)))
    monkeypatch.setattr(service, "BATCH_SIZE", 2)
    real = service._stage_batch
    batches: list[int] = []

    async def dies_at_the_third(conn: Any, stage: Any, batch: Any) -> None:
        batches.append(len(batch))
        if len(batches) == 3:
            raise RuntimeError("worker killed")
        await real(conn, stage, batch)

    monkeypatch.setattr(service, "_stage_batch", dies_at_the_third)
    with pytest.raises(RuntimeError):
        await _run(tenant, job["id"])
    assert _data(await row_counts(tenant.id)) == before
    monkeypatch.setattr(service, "_stage_batch", real)
    seen: list[tuple[int, int]] = []
    await _run(tenant, job["id"], progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, 9)
    assert seen[-1] == (9, 9)
    state = await _state(client, tenant, job)
    assert (state["status"], state["rows_imported"], state["rows_done"]) == ("done", 9, 9)
    assert _data(await row_counts(tenant.id))["members"] == before["members"] + 9


async def test_two_runs_at_once_import_each_row_once(client, make_tenant, row_counts) -> None:  # type: ignore[no-untyped-def]
    """A retry may overlap a run the broker thought lost: they take turns, the second finds
    the job done; the uploaded file (personal data in clear) is gone once it is."""
    tenant = await make_tenant()
    before = _data(await row_counts(tenant.id))
    job = await _request(client, tenant, "members", _csv(MEMBER_HEADER, _members([new_phone()])))
    assert (await row_counts(tenant.id))["import_chunks"] == 1  # the file
    await asyncio.gather(_run(tenant, job["id"]), _run(tenant, job["id"]))
    state = await _state(client, tenant, job)
    assert (state["status"], state["rows_imported"]) == ("done", 1), state
    counts = await row_counts(tenant.id)
    assert _data(counts)["members"] == before["members"] + 1
    assert counts["import_chunks"] == 1  # the report only
    with tenant_context(tenant.id):
        async with scoped_session() as session:
            parts = (await session.scalars(select(ImportChunk.part))).all()
    assert parts == ["report"]


# ---------------------------------------------------------------------------- balances


async def test_opening_balances_keep_their_expiry_and_the_ledger_balances(  # type: ignore[no-untyped-def]
    client, make_tenant, row_counts
) -> None:
    tenant = await make_tenant()
    phones = [new_phone() for _ in range(3)]
    await _import(client, tenant, "members", _csv(MEMBER_HEADER, _members(phones)))
    balances = _csv(
        ["member_legacy_id", "member_phone", "legacy_id", "points", "expires_at", "earned_at"],
        [
            ["L0", "", "B1", "1200", "2030-06-30", "2024-06-30"],
            ["L0", "", "B2", "300", "2031-12-31T23:59:59+08:00", ""],
            ["", phones[1], "B3", "50", "2030-01-31", ""],
        ],
    )
    state = await _import(client, tenant, "balances", balances)
    assert (state["status"], state["rows_imported"]) == ("done", 3), state
    assert (await _lookup(client, tenant, phones[0]))["points_balance"] == 1500
    assert (await _lookup(client, tenant, phones[1]))["points_balance"] == 50
    with tenant_context(tenant.id):
        async with scoped_session() as session:
            ids = list((await session.scalars(select(Member.id))).all())
            await check_ledger(session, ids)
            lots = {
                (lot.amount, lot.expires_at, lot.source)
                for lot in (await session.scalars(select(PointLot))).all()
            }
            kinds = set((await session.scalars(select(PointEntry.kind))).all())
    shanghai = timedelta(hours=8)
    assert lots == {
        (1200, datetime(2030, 7, 1, tzinfo=UTC) - shanghai, "migration"),  # the 30th, all day
        (300, datetime(2031, 12, 31, 15, 59, 59, tzinfo=UTC), "migration"),
        (50, datetime(2030, 2, 1, tzinfo=UTC) - shanghai, "migration"),
    }
    assert kinds == {"migration"}
    # Again: nothing changes, and a new reference is added once.
    counts = _data(await row_counts(tenant.id))
    again = await _import(client, tenant, "balances", balances)
    assert (again["rows_imported"], again["rows_skipped"]) == (0, 3), again
    assert _data(await row_counts(tenant.id)) == counts
    more = _csv(
        ["member_legacy_id", "legacy_id", "points", "expires_at"],
        [["L0", "B1", "1200", "2030-06-30"], ["L0", "B4", "10", "2030-06-30"]],
    )
    state = await _import(client, tenant, "balances", more)
    assert (state["rows_imported"], state["rows_skipped"]) == (1, 1), state
    assert (await _lookup(client, tenant, phones[0]))["points_balance"] == 1510
    with tenant_context(tenant.id):
        async with scoped_session() as session:
            await check_ledger(session, ids)


async def test_bad_balances_write_nothing(client, make_tenant, row_counts) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    await _import(client, tenant, "members", _csv(MEMBER_HEADER, _members([new_phone()])))
    before = await row_counts(tenant.id)
    balances = _csv(
        ["member_legacy_id", "legacy_id", "points", "expires_at"],
        [
            ["L0", "B1", "100", "2030-06-30"],
            ["L0", "B2", "-5", "2030-06-30"],
            ["L0", "B3", "100", "2020-01-01"],  # expired already
            ["L0", "B4", "abc", "someday"],
        ],
    )
    job = await _request(client, tenant, "balances", balances)
    await _run(tenant, job["id"])
    state = await _state(client, tenant, job)
    assert (state["status"], state["rows_bad"]) == ("invalid", 3)
    problems = {(r["row"], r["field"]) for r in await _report(client, tenant, job)}
    assert problems == {("3", "points"), ("4", "expires_at"), ("5", "points"), ("5", "expires_at")}
    assert _data(await row_counts(tenant.id)) == _data(before)


# ---------------------------------------------------------------------------- orders


async def test_historic_orders_earn_nothing_and_are_not_counted_twice(  # type: ignore[no-untyped-def]
    client, make_tenant, row_counts
) -> None:
    tenant = await make_tenant()
    phones = [new_phone() for _ in range(2)]
    await _import(client, tenant, "members", _csv(MEMBER_HEADER, _members(phones)))
    now = datetime.now(UTC)
    orders = _csv(
        ["external_id", "store", "member_legacy_id", "paid_at", "total_fen", "refunded_fen"],
        [
            ["R1", "S1", "L0", (now - timedelta(days=700)).isoformat(), "12000", "0"],
            ["R2", "S2", "L0", (now - timedelta(days=30)).isoformat(), "5000", "5000"],
            ["R3", "S1", "", (now - timedelta(days=3)).isoformat(), "800", "300"],
        ],
    )
    state = await _import(client, tenant, "orders", orders)
    assert (state["status"], state["rows_imported"]) == ("done", 3), state
    counts = _data(await row_counts(tenant.id))
    with tenant_context(tenant.id):
        async with scoped_session() as session:
            rows = {
                o.external_id: o
                for o in (await session.scalars(select(Order).order_by(Order.external_id))).all()
            }
            earned = await session.scalar(select(func.count()).select_from(PointEntry))
            balance = await session.scalar(select(func.sum(PointAccount.balance)))
            member = await session.scalar(select(Member).where(Member.id == rows["R1"].member_id))
    assert {k: (o.status, o.points_earned, o.channel) for k, o in rows.items()} == {
        "R1": ("paid", 0, "pos"),
        "R2": ("refunded", 0, "pos"),
        "R3": ("partially_refunded", 0, "pos"),
    }
    assert rows["R3"].member_id is None
    assert rows["R2"].store_id == tenant.stores["S2"]
    assert (earned, balance) == (0, 0)
    assert member is not None
    assert member.last_order_at == rows["R2"].paid_at
    again = await _import(client, tenant, "orders", orders)
    assert (again["rows_imported"], again["rows_skipped"]) == (0, 3), again
    assert _data(await row_counts(tenant.id)) == counts
    # A till sending an imported receipt again is told it is taken: no second order.
    r = await client.post("/api/v1/orders", json=order_body("R1"), headers=tenant.hq())
    assert r.status_code == 409, r.text
    assert r.json()["errors"][0]["field"] == "external_id"
    assert _data(await row_counts(tenant.id)) == counts
    # The same receipt twice in a file, a store the chain lacks: nothing written.
    bad = _csv(
        ["external_id", "store", "paid_at", "total_fen"],
        [["R9", "S1", "2025-01-01", "100"], ["R9", "S1", "2025-01-02", "100"],
         ["R8", "XX", "2025-01-01", "100"]],
    )  # fmt: skip
    job = await _request(client, tenant, "orders", bad)
    await _run(tenant, job["id"])
    assert (await _state(client, tenant, job))["status"] == "invalid"
    problems = {(r["row"], r["field"]) for r in await _report(client, tenant, job)}
    assert problems == {("2", "external_id"), ("3", "external_id"), ("4", "store")}
    assert _data(await row_counts(tenant.id)) == counts


# ---------------------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    ("content", "fmt", "field"),
    [
        (b"", "csv", "content"),
        (b"\n\n", "csv", "content"),
        (b"\x00\x01\x02binary\xff" * 50, "csv", "content"),
        (b"phone,name\n", "csv", None),  # header only: refused by the job, not here
        ("手机号,姓名\n13800000000,王".encode("utf-16"), "csv", "content"),
        (b"PK\x03\x04not really a zip", "xlsx", "content"),
        (b"phone,name\n1,2\n", "xlsx", "content"),
        (b"name,gender\nx,f\n", "csv", "mapping.phone"),
        (b"phone,phone\n1,2\n", "csv", "content"),
    ],
)
async def test_a_bad_file_is_a_422_naming_the_field(  # type: ignore[no-untyped-def]
    client, make_tenant, content: bytes, fmt: str, field: str | None
) -> None:
    tenant = await make_tenant()
    encoded = base64.b64encode(content).decode() or "AA=="
    if not content:
        encoded = base64.b64encode(b" ").decode()
    body = {"kind": "members", "format": fmt, "content": encoded}
    for path, extra in (("/preview", {}), ("/", {"idempotency_key": "k"})):
        r = await client.post(f"/api/v1/imports{path}", json=body | extra, headers=tenant.hq())
        if field is None:
            assert r.status_code in (200, 202), r.text
            continue
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == field, r.text


async def test_a_file_unreadable_midway_is_invalid_not_a_500(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    good = "\n".join(f"{new_phone()},王{i}" for i in range(5))
    content = ("phone,name\n" + good + "\n").encode() + b'"' + b"x" * 70_000 + b'"\n'
    state = await _import(client, tenant, "members", content)
    assert state["status"] == "invalid", state
    report = await _report(client, tenant, (state))
    assert report[-1]["field"] == "file"
    gbk = "手机号,姓名\n" + f"{new_phone()},王芳\n"
    state = await _import(client, tenant, "members", gbk.encode("gb18030"))
    assert (state["status"], state["rows_imported"]) == ("done", 1), state
    state = await _import(client, tenant, "members", b"phone,name\n")
    assert state["status"] == "invalid"
    assert (await _report(client, tenant, state))[0]["field"] == "content"


async def test_the_preview_shows_the_mapping_and_the_first_rows(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    phones = [new_phone() for _ in range(30)]
    rows = _members(phones)
    rows[0][1] = "not a phone"
    content = _csv([*MEMBER_HEADER, "extra"], [[*row, "x"] for row in rows])
    body = {"kind": "members", "content": base64.b64encode(content).decode()}
    r = await client.post("/api/v1/imports/preview", json=body, headers=tenant.hq())
    assert r.status_code == 200, r.text
    shown = r.json()
    assert shown["mapping"]["phone"] == "手机号"
    assert shown["unmapped"] == ["extra"]
    assert len(shown["rows"]) == service.PREVIEW_ROWS
    assert shown["rows"][1]["values"]["name"] == "会员1"
    assert shown["problems"] == [
        {"row": 2, "field": "phone", "problem": "not a valid phone number for region CN"}
    ]
    r = await client.post(
        "/api/v1/imports/preview",
        json=body | {"mapping": {"phone": "nope", "shoe_size": "extra"}},
        headers=tenant.hq(),
    )
    assert r.status_code == 422, r.text
    assert {e["field"] for e in r.json()["errors"]} == {"mapping.phone", "mapping.shoe_size"}


async def test_scopes(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    r = await client.post(
        "/api/v1/api-keys",
        json={"name": "importer", "scopes": ["imports:read", "imports:write", "orders:write"]},
        headers=tenant.hq(),
    )
    key = {"Authorization": f"Bearer {r.json()['key']}"}
    body = {
        "kind": "members",
        "content": base64.b64encode(b"phone\n13800000000\n").decode(),
        "idempotency_key": "k",
    }
    r = await client.post("/api/v1/imports", json=body, headers=key)
    assert r.status_code == 403, r.text
    assert r.json()["errors"][0]["field"] == "kind"
    r = await client.get("/api/v1/imports", headers=tenant.store("S1"))
    assert r.status_code == 403


# ---------------------------------------------------------------------------- runners


async def test_a_worker_runs_the_import(client, make_tenant, worker) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    phone = new_phone()
    job = await _request(client, tenant, "members", _csv(MEMBER_HEADER, _members([phone])))
    deadline = time.monotonic() + 30
    while True:
        state = await _state(client, tenant, job)
        if state["status"] in ("done", "invalid", "failed") or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert (state["status"], state["rows_imported"]) == ("done", 1), state
    assert (await _lookup(client, tenant, phone))["name"] == "会员0"


async def test_the_cli_imports_and_writes_the_report(client, make_tenant, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    phones = [new_phone() for _ in range(3)]
    good = tmp_path / "members.csv"
    good.write_bytes(_csv(MEMBER_HEADER, _members(phones)))

    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return await nestpoint("import", *args, "--tenant", tenant.slug)

    done = await cli("all", str(EXAMPLES))
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines == [
        "members (members.csv):",
        "3 rows imported, 0 already there (of 3)",
        "children (children.csv):",
        "3 rows imported, 0 already there (of 3)",
        "balances (balances.csv):",
        "3 rows imported, 0 already there (of 3)",
        "orders (orders.csv):",
        "3 rows imported, 0 already there (of 3)",
        "tags (tags.csv):",
        "1 rows imported, 1 already there (of 2)",
    ]
    assert (await _lookup(client, tenant, "13800138000"))["points_balance"] == 1500
    done = await cli("members", str(good), "--preview")
    assert done.returncode == 0, done.stderr
    assert "phone <- 手机号" in done.stdout
    done = await cli("members", str(good))
    assert done.returncode == 0, done.stderr
    assert "3 rows imported, 0 already there (of 3)" in done.stdout
    assert (await _lookup(client, tenant, phones[2]))["name"] == "会员2"
    done = await cli("members", str(good))
    assert "0 rows imported, 3 already there" in done.stdout
    bad = tmp_path / "bad.csv"
    bad.write_bytes(_csv(["phone", "name"], [["123", "x"], [new_phone(), "y"]]))
    done = await cli("members", str(bad))
    assert done.returncode == 1
    assert "1 bad rows" in done.stderr
    report = list(
        csv.DictReader(io.StringIO((tmp_path / "bad.csv.report.csv").read_text("utf-8-sig")))
    )
    assert [(r["row"], r["field"]) for r in report] == [("2", "phone")]
    with tenant_context(tenant.id):
        async with scoped_session() as session:
            assert await session.scalar(select(func.count()).select_from(Child)) == 3
            assert await session.scalar(select(func.count()).select_from(Member)) == 6


async def test_the_example_files_in_the_docs_import(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    examples = EXAMPLES
    # The last tags row gives 张伟 a tag he has already: skipped.
    expected = {"members": 3, "children": 3, "balances": 3, "orders": 3, "tags": 1}
    for kind, rows in expected.items():
        state = await _import(client, tenant, kind, (examples / f"{kind}.csv").read_bytes())
        assert (state["status"], state["rows_imported"]) == ("done", rows), (kind, state)
    member = await _lookup(client, tenant, "13800138000")
    assert member["points_balance"] == 1500
    assert member["tags"] == ["formula", "premium", "twins", "vip"]
    assert [c["nickname"] for c in member["children"]] == ["小宝"]


async def test_a_member_merged_away_is_followed(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    phones = [new_phone() for _ in range(2)]
    await _import(client, tenant, "members", _csv(MEMBER_HEADER, _members(phones)))
    kept, gone = [await _lookup(client, tenant, p) for p in phones]
    r = await client.post(
        f"/api/v1/members/{kept['id']}/merge",
        json={"source_member_id": gone["id"]},
        headers=tenant.hq(),
    )
    assert r.status_code == 200, r.text
    balances = _csv(
        ["member_legacy_id", "member_phone", "legacy_id", "points", "expires_at"],
        [["L1", "", "B1", "100", "2030-01-01"], ["", phones[1], "B2", "20", "2030-01-01"]],
    )
    state = await _import(client, tenant, "balances", balances)
    assert (state["status"], state["rows_imported"]) == ("done", 2), state
    assert (await _lookup(client, tenant, phones[0]))["points_balance"] == 120


async def test_an_erased_member_is_not_imported_again(client, make_tenant, row_counts) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    phones = [new_phone() for _ in range(2)]
    members = _csv(MEMBER_HEADER, _members(phones))
    await _import(client, tenant, "members", members)
    erased = await _lookup(client, tenant, phones[0])
    r = await client.post(
        f"/api/v1/members/{erased['id']}/erasure",
        json={"reason": "PIPL deletion request #1"},
        headers=tenant.hq(),
    )
    assert r.status_code == 200, r.text
    before = _data(await row_counts(tenant.id))
    job = await _request(client, tenant, "members", members)
    await _run(tenant, job["id"])
    assert (await _state(client, tenant, job))["status"] == "invalid"
    report = await _report(client, tenant, job)
    assert [(r["row"], r["field"]) for r in report] == [("2", "legacy_id")]
    assert "erased" in report[0]["problem"]
    balances = _csv(
        ["member_legacy_id", "legacy_id", "points", "expires_at"],
        [["L0", "B1", "100", "2030-01-01"], ["L1", "B2", "100", "2030-01-01"]],
    )
    job = await _request(client, tenant, "balances", balances)
    await _run(tenant, job["id"])
    assert (await _state(client, tenant, job))["status"] == "invalid"
    report = await _report(client, tenant, job)
    assert [(r["row"], r["field"]) for r in report] == [("2", "member_legacy_id")]
    assert _data(await row_counts(tenant.id)) == before


async def test_progress_is_visible_in_the_job_while_it_runs(  # type: ignore[no-untyped-def]
    client, make_tenant, monkeypatch, is_postgres
) -> None:
    """On PostgreSQL ``rows_done`` is committed after every batch (other sessions see it);
    on SQLite the import holds the one write lock, so it is told to the caller only."""
    tenant = await make_tenant()
    job = await _request(
        client, tenant, "members", _csv(MEMBER_HEADER, _members([new_phone() for _ in range(7)]))
    )
    monkeypatch.setattr(service, "BATCH_SIZE", 2)
    real = service._set_progress
    seen: list[tuple[int, int]] = []

    async def watched(import_id: Any, done: int, total: int, database: Any) -> None:
        await real(import_id, done, total, database)
        async with scoped_session() as session:  # another transaction, as the API's
            row = await service.get_import(session, import_id)
            seen.append((row.rows_done, row.rows_total))

    monkeypatch.setattr(service, "_set_progress", watched)
    told: list[tuple[int, int]] = []
    await _run(tenant, job["id"], progress=lambda done, total: told.append((done, total)))
    assert told == [(0, 7), (2, 7), (4, 7), (6, 7), (7, 7)]
    assert seen == ([(0, 7), (2, 7), (4, 7), (6, 7), (7, 7)] if is_postgres else [(0, 7)])
    state = await _state(client, tenant, job)
    assert (state["status"], state["rows_done"], state["rows_total"]) == ("done", 7, 7)


async def test_members_bring_their_ids_in_other_channels(client, make_tenant, row_counts) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    phones = [new_phone() for _ in range(3)]
    header = ["phone", "name", "会员卡号", "openid"]
    rows = [
        [phones[0], "王芳", "6222020012345678", "oX1"],
        [phones[1], "李娜", "6222020099990000", ""],
    ]
    state = await _import(client, tenant, "members", _csv(header, rows))
    assert (state["status"], state["rows_imported"]) == ("done", 2), state
    assert state["mapping"]["pos_card"] == "会员卡号"
    member = await _lookup(client, tenant, phones[0])
    assert sorted((i["kind"], i["value"]) for i in member["identities"]) == [
        ("mp_openid", "oX1"),
        ("pos_card", "6222020012345678"),
    ]
    # The till finds the member by the card.
    r = await client.get(
        "/api/v1/members/lookup",
        params={"identity_kind": "pos_card", "identity_value": "6222020012345678"},
        headers=tenant.hq(),
    )
    assert r.status_code == 200, r.text
    assert r.json()["id"] == member["id"]
    # Again: skipped, no second identity.
    counts = _data(await row_counts(tenant.id))
    again = await _import(client, tenant, "members", _csv(header, rows))
    assert (again["rows_imported"], again["rows_skipped"]) == (0, 2), again
    assert _data(await row_counts(tenant.id)) == counts
    # A card that is another member's, or twice in a file: nothing written.
    bad = [
        [phones[2], "张伟", "6222020012345678", ""],
        [new_phone(), "赵六", "6222020055555555", "oY"],
        [new_phone(), "钱七", "", "oY"],
    ]
    job = await _request(client, tenant, "members", _csv(header, bad))
    await _run(tenant, job["id"])
    assert (await _state(client, tenant, job))["status"] == "invalid"
    problems = {(r["row"], r["field"]) for r in await _report(client, tenant, job)}
    assert problems == {("2", "pos_card"), ("3", "mp_openid"), ("4", "mp_openid")}
    assert _data(await row_counts(tenant.id)) == counts
