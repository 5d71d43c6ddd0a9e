"""``nestpoint campaigns``: a chain's campaigns, a run by hand, a campaign's results."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")

campaigns_app = typer.Typer(help="Campaigns: list, run, results.", no_args_is_help=True)

Tenant = Annotated[str, typer.Option(help="The chain's slug.")]
Code = Annotated[str, typer.Argument(help="The campaign's code.")]


@campaigns_app.command("list")
def list_campaigns(tenant: Tenant) -> None:
    """The chain's campaigns: code, kind, status, spent points and coupons."""
    from sqlalchemy import select

    from nestpoint.campaigns.models import Campaign

    async def read(session: AsyncSession) -> list[Campaign]:
        return list((await session.scalars(select(Campaign).order_by(Campaign.code))).all())

    for c in asyncio.run(_for_tenant(tenant, read)):
        typer.echo(
            f"{c.code}\t{c.kind}\t{c.status}\t{c.schedule.get('kind')}"
            f"\tpoints {c.spent_points}\tcoupons {c.spent_coupons}"
        )


@campaigns_app.command("run")
def run(tenant: Tenant, code: Code) -> None:
    """Run a campaign now: a scheduled one for its current period (each member once per
    period, as its schedule would), a triggered one's date condition and new events."""
    from nestpoint.campaigns.jobs import run_by_hand
    from nestpoint.db.base import utcnow

    results = asyncio.run(_for_tenant(tenant, lambda s: run_by_hand(s, code, utcnow())))
    for r in results:
        c = r.counts
        typer.echo(
            f"{r.campaign_code} {r.trigger_key}: granted {c.granted}, holdout {c.holdout}, "
            f"refused {c.refused}"
        )


@campaigns_app.command("results")
def results(tenant: Tenant, code: Code) -> None:
    """The campaign's results as JSON (reach, redemption, uplift, cost, attainment)."""
    from nestpoint.campaigns.results import results as compute
    from nestpoint.campaigns.service import get_campaign

    async def read(session: AsyncSession) -> str:
        found = await compute(session, await get_campaign(session, code))
        return json.dumps(found.model_dump(mode="json"), ensure_ascii=False, indent=2)

    typer.echo(asyncio.run(_for_tenant(tenant, read)))


async def _for_tenant(slug: str, job: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``job`` for the chain ``slug``, as the system actor; a domain error (an unknown
    code) is printed, exit status 1."""
    from nestpoint.db import get_database
    from nestpoint.errors import NestpointError
    from nestpoint.jobs.cli import _tenant_ids
    from nestpoint.jobs.tenants import run_for_tenant

    try:
        [tenant_id] = await _tenant_ids(slug)
        return await run_for_tenant(tenant_id, job, name="nestpoint campaigns")
    except NestpointError as exc:
        typer.echo(f"nestpoint campaigns: {exc.detail}", err=True)
        raise typer.Exit(1) from None
    finally:
        await get_database().dispose()
