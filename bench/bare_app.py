"""The framework's bound for the lookup (``make bench``'s ``lookup_bare``): the least any
Litestar service can do for ``GET /api/v1/members/lookup?phone=``.

One handler, served by uvicorn with as many workers as ``nestpoint serve``: it keys the
phone's hash (HMAC-SHA256 of ``+86`` and the number, with the benchmark's hash key), runs
the statement the application sends (``nestpoint_lookup_member``, as the application role,
row-level security on) through a pool of asyncpg connections (a prepared statement), and
returns the rows as JSON. No API key, no phone validation, no decryption, no view: what it
reaches, against the lookup's own pgbench ceiling, is where the framework and the driver
stop on this machine, whatever the application does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

import asyncpg
from litestar import Litestar, get

DSN = os.environ["BARE_DSN"]
TENANT = os.environ["BARE_TENANT"]
STORE = os.environ["BARE_STORE"]
HASH_KEY = base64.b64decode(os.environ["BARE_HASH_KEY"])
LOOKUP = "SELECT * FROM nestpoint_lookup_member($1::uuid, $2::uuid, $3::varchar)"
POOL: dict[str, asyncpg.Pool] = {}


async def open_pool() -> None:
    POOL["db"] = await asyncpg.create_pool(DSN, min_size=16, max_size=16)


async def close_pool() -> None:
    await POOL["db"].close()


@get("/readyz", sync_to_thread=False)
def readyz() -> dict[str, str]:
    return {"status": "ok"}


@get("/api/v1/members/lookup")
async def lookup(phone: str) -> list[dict[str, Any]]:
    digest = hmac.new(HASH_KEY, ("+86" + phone).encode(), hashlib.sha256).hexdigest()
    rows = await POOL["db"].fetch(LOOKUP, TENANT, STORE, digest)
    return [dict(row) for row in rows]


app = Litestar([readyz, lookup], on_startup=[open_pool], on_shutdown=[close_pool])
