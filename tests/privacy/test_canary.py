"""The canary: a member's personal data, spread as far as the product spreads it (profile,
children, identities, lookups, messages, exports, plugins), is erased and then searched for
in the database (a ``pg_dump`` on PostgreSQL; every row of every table on SQLite), in every
log record and in Redis. None of it may be found."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import time
import uuid
from typing import Any

import pytest
import redis

from loyalty.helpers import new_phone, order_body
from nestpoint.db import get_database
from nestpoint.db.base import utcnow
from nestpoint.members.pii import normalize_phone
from nestpoint.settings import get_settings

PG_ADMIN_URL = os.environ.get(
    "NESTPOINT_TEST_PG_ADMIN_URL", "postgresql://root@127.0.0.1:5432/postgres"
)


def _canaries(phone: str, token: str) -> dict[str, str]:
    e164 = normalize_phone(phone)
    return {
        "phone": e164,
        "national phone": e164.removeprefix("+86"),
        "name": f"甄{token}芳",
        "nickname": f"豆{token}豆",
        "card": f"CARD{token}",
        "email": f"mama.{token}@example.cn",
        "free text": f"给甄{token}的留言",
    }


def _forms(value: str) -> list[bytes]:
    """The value as text, and as the hex a dump writes a binary column in."""
    raw = value.encode("utf-8")
    return [raw, raw.hex().encode()]


def _found_in(blob: bytes, canaries: dict[str, str]) -> list[str]:
    lowered = blob.lower()
    return [
        what for what, value in canaries.items() if any(f.lower() in lowered for f in _forms(value))
    ]


async def _database_dump() -> bytes:
    url = get_settings().database_url
    if url.startswith("sqlite"):
        return await _sqlite_dump()
    return await asyncio.to_thread(_pg_dump, url)


async def _sqlite_dump() -> bytes:
    """Every row of every table, through the app's own connections (binary columns as
    their bytes). Rows deleted from the file are zeroed (``secure_delete``); page images
    in the write-ahead log wait for the next checkpoint (docs/privacy.md)."""
    parts: list[bytes] = []
    async with get_database().engine.connect() as conn:
        tables = await conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")
        for (name,) in tables.all():
            rows = await conn.exec_driver_sql(f'SELECT * FROM "{name}"')
            for row in rows.all():
                parts += [v if isinstance(v, bytes) else str(v).encode() for v in row]
    return b"\n".join(parts)


def _pg_dump(url: str) -> bytes:
    database = url.rsplit("/", 1)[1]
    admin = PG_ADMIN_URL.rsplit("/", 1)[0]
    pg_dump = shutil.which("pg_dump")
    assert pg_dump, "the canary needs pg_dump (postgresql-client)"
    done = subprocess.run(  # noqa: S603 - PostgreSQL's own tool, fixed arguments
        [pg_dump, "--no-owner", f"{admin}/{database}"],
        capture_output=True,
        check=True,
        timeout=120,
    )
    return done.stdout


def _redis_dump() -> bytes:
    url = get_settings().redis_url
    if not url:  # the embedded default keeps its queue and caches in the process
        return b""
    client = redis.Redis.from_url(url)
    parts: list[bytes] = []
    for key in client.scan_iter(count=1000):
        parts.append(key)
        kind = client.type(key)
        if kind == b"string":
            parts.append(client.get(key) or b"")
        elif kind == b"hash":
            parts += [b"%s=%s" % item for item in client.hgetall(key).items()]
        elif kind == b"list":
            parts += client.lrange(key, 0, -1)
        elif kind == b"set":
            parts += list(client.smembers(key))
        elif kind == b"zset":
            parts += [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == b"stream":
            parts += [repr(entry).encode() for entry in client.xrange(key)]
    return b"\n".join(parts)


async def _wait(client: Any, url: str, headers: dict[str, str], done: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        body = (await client.get(url, headers=headers)).json()
        if done(body) or time.monotonic() > deadline:
            return dict(body)
        await asyncio.sleep(0.1)


async def test_nothing_of_an_erased_member_is_left_anywhere(  # type: ignore[no-untyped-def]
    client, make_tenant, worker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # Every logger at DEBUG, but httpx and httpcore as the product sets them
    # (nestpoint.api.logs): at INFO they log each URL, here the test client's own requests.
    for chatty in ("httpx", "httpcore"):
        caplog.set_level(logging.WARNING, logger=chatty)
    t = await make_tenant()
    hq = t.hq()
    for plugin_id in ("surveys", "traceability"):
        r = await client.put(
            f"/api/v1/tenant/plugins/{plugin_id}", json={"enabled": True}, headers=hq
        )
        assert r.status_code == 200, r.text
    token = uuid.uuid4().hex[:10]
    phone = new_phone()
    canary = _canaries(phone, token)
    body = {
        "phone": phone,
        "name": canary["name"],
        "guardian_consent": {"granted": True, "source": "pos"},
        "children": [{"nickname": canary["nickname"], "birth_date": utcnow().date().isoformat()}],
        "identities": [
            {"kind": "pos_card", "value": canary["card"]},
            {"kind": "email", "value": canary["email"]},
        ],
        "consents": [{"channel": "email", "granted": True, "source": "app"}],
    }
    r = await client.post("/api/v1/members", json=body, headers=hq)
    assert r.status_code == 201, r.text
    member_id = r.json()["id"]
    # Every way the data travels: lookups (query strings), an order at the till, a
    # message with the name in its parameters, an unmasked export and the member's copy.
    for params in (
        {"phone": phone},
        {"identity_kind": "pos_card", "identity_value": canary["card"]},
        {"identity_kind": "email", "identity_value": canary["email"]},
    ):
        r = await client.get("/api/v1/members/lookup", params=params, headers=hq)
        assert r.status_code == 200, r.text
    r = await client.post(
        "/api/v1/orders", json=order_body("canary-1", member={"phone": phone}), headers=hq
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        "/api/v1/messages",
        json={
            "message_key": f"canary-{token}",
            "purpose": "points_expiring",
            "template": "points_expiring",
            "member_ids": [member_id],
            "params": {"note": canary["free text"]},
        },
        headers=hq,
    )
    assert r.status_code == 202, r.text
    r = await client.post(
        "/api/v1/exports",
        json={"kind": "members", "format": "csv", "idempotency_key": f"c-{token}"},
        headers=hq,
    )
    table_export = r.json()
    r = await client.post(
        f"/api/v1/members/{member_id}/data-exports",
        json={"reason": "canary access request", "idempotency_key": f"d-{token}"},
        headers=hq,
    )
    copy = r.json()
    for job in (table_export, copy):  # run by the worker
        state = await _wait(
            client, f"/api/v1/exports/{job['id']}", hq, lambda b: b["status"] == "done"
        )
        assert state["status"] == "done", state
        r = await client.get(f"/api/v1/exports/{job['id']}/file", headers=hq)
        assert r.status_code == 200
        assert canary["phone"].encode() in r.content  # it was there

    # Before: the canary is alive (the test can see what it looks for).
    before = _found_in(await _database_dump(), canary)
    assert "phone" in before or "national phone" in before

    r = await client.post(
        f"/api/v1/members/{member_id}/erasure", json={"reason": "canary"}, headers=hq
    )
    assert r.status_code == 200, r.text
    assert r.json()["summary"]["exports_deleted"] == 2
    erasure = await _wait(
        client, f"/api/v1/members/{member_id}/erasure", hq, lambda b: b["plugins_erased_at"]
    )
    assert erasure["plugins_erased_at"], erasure

    assert _found_in(await _database_dump(), canary) == []
    assert _found_in(_redis_dump(), canary) == []
    leaks = {
        (record.name, what)
        for record in caplog.records
        for what in _found_in(f"{record.getMessage()} {record.__dict__}".encode(), canary)
    }
    assert leaks == set()
