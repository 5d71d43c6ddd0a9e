"""``nestpoint messages``: a chain's reach, and failed messages queued again after a
provider's outage (operators)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")

messages_app = typer.Typer(help="Messages to members: reach, and requeue.", no_args_is_help=True)

Tenant = Annotated[str, typer.Option(help="The chain's slug.")]


@messages_app.command("reach")
def reach(tenant: Tenant, days: Annotated[int, typer.Option(min=1, max=3660)] = 30) -> None:
    """Messages of the last DAYS by channel, status and reason, and the reach rate."""
    from nestpoint.messaging.service import reach as report

    async def main() -> None:
        until = datetime.now(UTC)
        result = await _for_tenant(tenant, lambda s: report(s, until - timedelta(days=days), until))
        for row in result.rows:
            typer.echo(f"{row.channel or '-'}\t{row.status}\t{row.reason or '-'}\t{row.count}")
        rate = "-" if result.reach_rate is None else f"{result.reach_rate:.1%}"
        typer.echo(f"reached {result.reached} of {result.total} settled: {rate}")

    asyncio.run(main())


@messages_app.command("requeue")
def requeue(
    tenant: Tenant,
    since: Annotated[
        datetime, typer.Option(help="Messages created since then (ISO 8601, UTC if no offset).")
    ],
) -> None:
    """Queue again the messages that failed before any provider took them (every channel
    failed, or their template was missing); never one a provider may have sent."""
    from nestpoint.messaging.service import requeue_failed

    moment = since if since.tzinfo else since.replace(tzinfo=UTC)

    async def main() -> None:
        ids = await _for_tenant(tenant, lambda s: requeue_failed(s, moment))
        typer.echo(f"{len(ids)} messages queued again")

    asyncio.run(main())


async def _for_tenant(slug: str, job: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``job`` for the chain ``slug`` in one transaction, as the system actor."""
    from nestpoint.db import get_database
    from nestpoint.jobs.cli import _tenant_ids
    from nestpoint.jobs.tenants import run_for_tenant

    try:
        [tenant_id] = await _tenant_ids(slug)
        return await run_for_tenant(tenant_id, job, name="nestpoint messages")
    finally:
        await get_database().dispose()
