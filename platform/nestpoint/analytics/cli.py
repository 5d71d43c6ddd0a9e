"""``nestpoint analytics``: a chain's headline figures of a period, for an operator."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from nestpoint.analytics.schemas import AnalyticsSummary

analytics_app = typer.Typer(help="Analytics: the figures HQ watches.", no_args_is_help=True)


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter("a date as YYYY-MM-DD") from None


@analytics_app.command("summary")
def summary(
    tenant: Annotated[str, typer.Option(help="The chain's slug.")],
    start: Annotated[date, typer.Option("--from", parser=_day, metavar="YYYY-MM-DD",
                                        help="First day (the chain's time zone).")],
    end: Annotated[date, typer.Option("--to", parser=_day, metavar="YYYY-MM-DD",
                                      help="Last day, included.")],
    store: Annotated[str | None, typer.Option(help="A store's code (default: the chain).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON.")] = False,
) -> None:  # fmt: skip
    """Every headline figure of a period (docs/analytics.md): sales, member share, average
    orders, repurchase, points redemption, churn and reactivation."""
    from nestpoint.analytics.service import summary as compute
    from nestpoint.db import get_database
    from nestpoint.errors import Invalid, NestpointError
    from nestpoint.jobs.cli import _tenant_ids
    from nestpoint.jobs.tenants import run_for_tenant
    from nestpoint.tenancy.service import store_codes

    async def read(session: AsyncSession) -> AnalyticsSummary:
        store_id = None
        if store is not None:
            codes = await store_codes(session, refresh=True)
            if store not in codes:
                raise Invalid.field("store", f"no store with code {store!r}")
            store_id = codes[store]
        return await compute(session, start=start, end=end, store_id=store_id)

    async def run() -> AnalyticsSummary:
        try:
            [tenant_id] = await _tenant_ids(tenant)
            return await run_for_tenant(tenant_id, read, name="nestpoint analytics")
        except NestpointError as exc:
            typer.echo(f"nestpoint analytics: {exc.detail}", err=True)
            raise typer.Exit(1) from None
        finally:
            await get_database().dispose()

    figures = asyncio.run(run())
    typer.echo(figures.model_dump_json(indent=2) if as_json else render(figures))


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _yuan(fen: int | None) -> str:
    return "-" if fen is None else f"{fen / 100:,.2f}"


def render(s: AnalyticsSummary) -> str:
    """The summary as lines an operator reads (yuan with two decimals, rates in percent)."""
    p, sales, aov, pts, churn = s.period, s.sales, s.average_order, s.points_redemption, s.churn
    return "\n".join(
        [
            f"period\t{p.start} .. {p.end} ({p.days} days, {p.timezone})"
            f"{'' if p.store_id is None else f', store {p.store_id}'}",
            f"net sales\t{_yuan(sales.net_fen)} (members {_yuan(sales.member_net_fen)}, "
            f"others {_yuan(sales.non_member_net_fen)}; refunded {_yuan(sales.refunded_fen)})",
            f"orders\t{sales.orders} (members {sales.member_orders}, "
            f"others {sales.non_member_orders})",
            f"member share\t{_percent(s.member_share.rate)} (target 70%)",
            f"average order\tmembers {_yuan(aov.member_fen)}, others {_yuan(aov.non_member_fen)}"
            f", uplift {_percent(aov.uplift)} (target +25%)",
            f"repurchase\t{_percent(s.repurchase.rate)} ({s.repurchase.numerator} of "
            f"{s.repurchase.denominator} buying members; target +40% on the baseline)",
            f"points redemption\t{_percent(pts.rate)} ({pts.redeemed} of {pts.issued}; "
            "12% before, industry 25%)",
            f"churn\t{_percent(churn.churn_rate)} ({churn.churned} of {churn.previous_active}; "
            "target 15%)",
            f"reactivation\t{_percent(churn.reactivation_rate)} ({churn.reactivated} of "
            f"{churn.lapsed} lapsed)",
            f"new members\t{s.new_members}",
        ]
    )
