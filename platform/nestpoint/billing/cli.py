"""``nestpoint billing``: the platform operator's plans, every chain's plan, usage and state.

Each command imports what it runs inside its function (``nestpoint --help`` starts without
the app), as the other commands do.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any, TypeVar

import typer

billing_app = typer.Typer(
    help="Tenant billing: the plans, each chain's plan, usage and state (docs/billing.md).",
    no_args_is_help=True,
)
plans_app = typer.Typer(help="The plans the platform sells.", no_args_is_help=True)
billing_app.add_typer(plans_app, name="plans")

T = TypeVar("T")
Limit = Annotated[
    int | None, typer.Option(help="The limit; leave out for unlimited.", show_default=False)
]


def _run(work: Callable[[Any], Awaitable[T]]) -> T:
    """``work`` in one platform session as the operator's command; a domain error or a bad
    value is the command's usage error (exit code 2)."""

    async def go() -> T:
        from pydantic import ValidationError

        from nestpoint.context import Actor, acting_as
        from nestpoint.db import get_database, scoped_session
        from nestpoint.errors import NestpointError
        from nestpoint.events.service import install_session_hooks

        install_session_hooks()
        try:
            with acting_as(Actor("system", name="nestpoint billing")):
                async with scoped_session() as session:
                    return await work(session)
        except (NestpointError, ValidationError) as exc:
            raise typer.BadParameter(str(exc)) from exc
        finally:
            await get_database().dispose()

    return asyncio.run(go())


def _limit(value: int | None) -> str:
    return "unlimited" if value is None else f"{value:,}"


@plans_app.command("list")
def plans_list() -> None:
    """Every plan: code, monthly price, limits (members, stores, plugins, messages/month)."""
    from nestpoint.billing import service

    for p in _run(service.list_plans):
        offered = "" if p.active else "  (not offered)"
        typer.echo(
            f"{p.code:<14} {p.price_fen / 100:>12,.2f} {p.currency}/month  "
            f"members {_limit(p.max_members)}, stores {_limit(p.max_stores)}, "
            f"plugins {_limit(p.max_plugins)}, messages {_limit(p.max_messages)}/month"
            f"  {p.name}{offered}"
        )


@plans_app.command("set")
def plans_set(
    code: Annotated[str, typer.Argument(help="The plan's code, e.g. growth.")],
    name: Annotated[str, typer.Option(help="The plan's name.")],
    price_fen: Annotated[int, typer.Option(help="Monthly price in fen.")],
    currency: Annotated[str, typer.Option(help="ISO 4217 code.")] = "CNY",
    members: Limit = None,
    stores: Limit = None,
    plugins: Limit = None,
    messages: Limit = None,
    offered: Annotated[bool, typer.Option(help="Offered to new subscriptions.")] = True,
) -> None:
    """Create or replace a plan (every limit left out is unlimited)."""
    from nestpoint.billing import service
    from nestpoint.billing.schemas import PLAN_CODE, PlanIn

    if not re.fullmatch(PLAN_CODE.strip("^$"), code):
        raise typer.BadParameter(f"code: must match {PLAN_CODE}")

    async def go(session: Any) -> Any:
        data = PlanIn(
            name=name,
            price_fen=price_fen,
            currency=currency,
            max_members=members,
            max_stores=stores,
            max_plugins=plugins,
            max_messages=messages,
            active=offered,
        )
        return await service.put_plan(session, code, data)

    _, created = _run(go)
    typer.echo(f"plan {code} {'created' if created else 'updated'}")


@billing_app.command("list")
def list_tenants() -> None:
    """Every chain: its plan, status, Stripe sync, and usage against each limit."""
    from nestpoint.billing import service

    async def go(session: Any) -> list[Any]:
        views, cursor = await service.list_views(session, cursor=None, limit=200)
        while cursor is not None:
            more, cursor = await service.list_views(session, cursor=cursor, limit=200)
            views += more
        return views

    for v in _run(go):
        sub = v.subscription
        state = f"{sub.status} ({sub.sync_state})" if sub is not None else "no plan"
        usage = ", ".join(
            f"{limit.name} {limit.used:,}/{_limit(limit.limit)}"
            + ("" if limit.state == "ok" else f" {limit.state.upper()}")
            for limit in v.limits
        )
        plan = v.plan.code if v.plan is not None else "-"
        typer.echo(f"{v.tenant_slug:<24} {plan:<12} {state:<22} {usage}")


@billing_app.command("subscribe")
def subscribe(
    tenant: Annotated[str, typer.Argument(help="The chain's slug.")],
    plan: Annotated[str, typer.Argument(help="The plan's code.")],
) -> None:
    """Put a chain on a plan (a worker then makes it so in Stripe)."""
    from nestpoint.billing import service

    async def go(session: Any) -> Any:
        return await service.subscribe(
            session, await service.tenant_id_by_slug(session, tenant), plan
        )

    sub = _run(go)
    typer.echo(f"{tenant}: plan {sub.plan_code}, {sub.status}, Stripe sync {sub.sync_state}")


@billing_app.command("refresh")
def refresh(
    tenant: Annotated[str | None, typer.Option(help="One chain's slug; all when left out.")] = None,
) -> None:
    """Record chains' usage now and warn of the limits crossed (the periodic job's work)."""
    from nestpoint.billing import service

    async def go(session: Any) -> int:
        ids = (
            [await service.tenant_id_by_slug(session, tenant)]
            if tenant
            else await service.all_tenant_ids(session)
        )
        for tenant_id in ids:
            await service.refresh_usage(session, tenant_id)
        return len(ids)

    typer.echo(f"usage recorded for {_run(go)} chain(s)")


@billing_app.command("sync")
def sync() -> None:
    """Make Stripe match every plan choice still pending (the periodic sweep's work)."""
    from nestpoint.billing import jobs
    from nestpoint.events.service import install_session_hooks

    async def go() -> int:
        from nestpoint.db import get_database

        install_session_hooks()
        try:
            return await jobs.sync_due(grace=timedelta(0))
        finally:
            await get_database().dispose()

    typer.echo(f"{asyncio.run(go())} subscription(s) synced")
