"""``nestpoint membership``: a chain's paid plans, a member's cards, the renewal job now."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")

membership_app = typer.Typer(
    help="Paid membership: plans, a member's cards, renewals.", no_args_is_help=True
)

Tenant = Annotated[str, typer.Option(help="The chain's slug.")]


@membership_app.command("plans")
def plans(tenant: Tenant) -> None:
    """The chain's paid plans: code, period, price, multiplier, benefits."""
    from nestpoint.membership.service import list_plans

    for p in asyncio.run(_for_tenant(tenant, list_plans)):
        period = f"trial {p.trial_days}d" if p.period == "trial" else p.period
        state = "" if p.active else "\tinactive"
        typer.echo(
            f"{p.code}\t{period}\t{p.price_fen} fen\tx{p.earn_multiplier_percent}%"
            f"\t{','.join(p.benefits)}{state}"
        )


@membership_app.command("show")
def show(tenant: Tenant, member: Annotated[str, typer.Argument(help="The member's id.")]) -> None:
    """A member's paid cards as JSON, with their charges and savings."""
    from nestpoint.membership.service import list_member_cards

    try:
        member_id = uuid.UUID(member)
    except ValueError:
        typer.echo("nestpoint membership: the member is named by id", err=True)
        raise typer.Exit(2) from None

    async def read(session: AsyncSession) -> str:
        cards = await list_member_cards(session, member_id)
        return json.dumps([c.model_dump(mode="json") for c in cards], ensure_ascii=False, indent=2)

    typer.echo(asyncio.run(_for_tenant(tenant, read)))


@membership_app.command("renew-due")
def renew_due(tenant: Tenant) -> None:
    """Run the daily renewal job now: reminders, renewal payments, retries, lapses."""
    from nestpoint.membership.service import renew_due as run

    done = asyncio.run(_for_tenant(tenant, run))
    typer.echo(f"reminded {done.reminded}, renewals asked {done.requested}, lapsed {done.lapsed}")


async def _for_tenant(slug: str, job: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``job`` for the chain ``slug`` as the system actor; a domain error is printed,
    exit status 1."""
    from nestpoint.db import get_database
    from nestpoint.errors import NestpointError
    from nestpoint.jobs.cli import _tenant_ids
    from nestpoint.jobs.tenants import run_for_tenant

    try:
        [tenant_id] = await _tenant_ids(slug)
        return await run_for_tenant(tenant_id, job, name="nestpoint membership")
    except NestpointError as exc:
        typer.echo(f"nestpoint membership: {exc.detail}", err=True)
        raise typer.Exit(1) from None
    finally:
        await get_database().dispose()
