"""Relay drain (issue 9): how fast the outbox relay empties a backlog.

Runs after the HTTP benchmarks, on ``nestpoint_bench``, where the orders left their outbox
events unrelayed (no worker runs during the HTTP benchmarks), in this process with the
application's settings (PostgreSQL as the app role):

1. **no plugin**: the orders' backlog, which no plugin wants (the bench tenant enables
   none): ``drain_pending`` publishes each batch as it claims it;
2. **delivered**: the example plugin enabled for the chain, then ``--events``
   ``tier.changed`` events written through the outbox (``events.service.emit``, a
   thousand per transaction), then ``drain_pending`` hands each to the plugin's
   ``nestpoint_on_tier_changed`` (which writes a row of its own) and records the outcome.

Reports events per second for each (``results/relay.json``). No target: the figure says
how long a backlog (an import, the demo's seeding, a plugin down for an hour) keeps a new
event waiting.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

from common import HTTP_DB, TENANT_SLUG, admin_sync, base_settings, table, use_app_env, write_result

BATCH = 1_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--events", type=int, default=10_000, help="events delivered to the plugin")
    return p.parse_args(argv)


def unpublished() -> int:
    sql = "SELECT count(*) FROM outbox_events WHERE published_at IS NULL"
    return int(admin_sync(sql, database=HTTP_DB)[0][0])


async def _tenant_id() -> uuid.UUID:
    from sqlalchemy import select

    from nestpoint.db import scoped_session
    from nestpoint.tenancy.models import Tenant

    async with scoped_session() as session:
        tenant_id = await session.scalar(select(Tenant.id).where(Tenant.slug == TENANT_SLUG))
    assert tenant_id is not None, f"no tenant {TENANT_SLUG}: run http_bench.py first"
    return tenant_id


async def _drain(tenant_id: uuid.UUID) -> dict[str, Any]:
    from nestpoint.plugins.relay import drain_pending

    started = time.perf_counter()
    published = await drain_pending(tenant_id, budget_seconds=3_600)
    seconds = time.perf_counter() - started
    return {
        "events": published,
        "seconds": round(seconds, 2),
        "events_per_s": round(published / seconds, 1) if seconds else 0.0,
    }


async def _enable_example_and_emit(tenant_id: uuid.UUID, events: int) -> None:
    from nestpoint.context import Actor, acting_as, tenant_context
    from nestpoint.db import scoped_session
    from nestpoint.events.service import emit
    from nestpoint.plugins import service as plugins
    from nestpoint.plugins.manager import get_plugin_host
    from nestpoint.plugins.schemas import ChainSettingUpdate

    with acting_as(Actor("system", name="bench")), tenant_context(tenant_id):
        async with scoped_session() as session:
            update = ChainSettingUpdate(enabled=True)
            await plugins.set_chain(session, get_plugin_host(), "example", update)
        for start in range(0, events, BATCH):
            async with scoped_session() as session:
                for _ in range(min(BATCH, events - start)):
                    member_id = uuid.uuid4()
                    emit(session, "tier.changed", "member", member_id, _payload(member_id))


def _payload(member_id: uuid.UUID) -> dict[str, Any]:
    return {
        "member_id": str(member_id),
        "from_tier": "bronze",
        "to_tier": "silver",
        "reason": "upgrade",
        "growth_value": 1_000,
    }


async def _run(events: int) -> dict[str, Any]:
    from nestpoint.db import get_database

    try:
        tenant_id = await _tenant_id()
        no_plugin = await _drain(tenant_id)
        await _enable_example_and_emit(tenant_id, events)
        delivered = await _drain(tenant_id)
    finally:
        await get_database().dispose()
    return {"no_plugin": no_plugin, "delivered": delivered}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    print(f"==> relay drain: the orders' backlog ({unpublished()} events), then", end=" ")
    print(f"{args.events} events for the example plugin", flush=True)
    use_app_env(HTTP_DB)
    runs = asyncio.run(_run(args.events))
    left = unpublished()
    result = {
        "benchmark": "relay",
        **runs,
        "left_unpublished": left,
        "valid": left == 0,
        "settings": base_settings() | {"database": HTTP_DB, "outbox_batch_size": "default (200)"},
    }
    path = write_result("relay", result)
    print(f"    wrote {path}")
    print(
        table(
            [[name, str(r["events"]), f"{r['seconds']:.2f}", f"{r['events_per_s']:.0f}"]
             for name, r in runs.items()],
            ["relay drain", "events", "seconds", "events/s"],
        )
    )  # fmt: skip
    return result


if __name__ == "__main__":
    main()
