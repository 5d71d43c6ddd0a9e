"""Runs the expiry and tier jobs when told to, in a process that has loaded the application
already, as a worker would (``mixed_bench.py``): so the window measured while the jobs run
holds the jobs, not Python starting up.

Prints ``ready`` once loaded, waits for a line on stdin, runs ``expire-points`` then
``evaluate-tiers`` for the bench tenant, and prints ``done`` and each job's seconds (JSON).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.db import get_database, scoped_session
from nestpoint.events.service import install_session_hooks
from nestpoint.jobs.tenants import run_for_tenant
from nestpoint.loyalty.service import load_program
from nestpoint.points.jobs import expire_points
from nestpoint.tenancy.models import Tenant
from nestpoint.tiers.jobs import evaluate_tiers


async def evaluate(session: AsyncSession) -> Any:
    return await evaluate_tiers(session, await load_program(session))


async def main(slug: str) -> None:
    install_session_hooks()
    async with scoped_session() as session:
        tenant_id = await session.scalar(select(Tenant.id).where(Tenant.slug == slug))
    assert tenant_id is not None, f"no tenant {slug}"
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    seconds = {}
    for name, job in (("expire-points", expire_points), ("evaluate-tiers", evaluate)):
        started = time.perf_counter()
        await run_for_tenant(tenant_id, job, name=name)
        seconds[name] = round(time.perf_counter() - started, 3)
    await get_database().dispose()
    print("done " + json.dumps(seconds), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
