"""``nestpoint settlement``: compute, close and show a chain's monthly settlement.

Each command imports what it runs inside its function (``nestpoint --help`` starts without
the app), as the other commands do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from nestpoint.settlement.schemas import PeriodFigures

settlement_app = typer.Typer(
    help="Franchise settlement: a chain's month per store (docs/settlement.md).",
    no_args_is_help=True,
)
Tenant = Annotated[str, typer.Option(help="The chain's slug.")]
Month = Annotated[str, typer.Option(help="The month of the chain's calendar, e.g. 2026-11.")]
AsJson = Annotated[bool, typer.Option("--json", help="The API's JSON.")]
AsCsv = Annotated[bool, typer.Option("--csv", help="The lines as CSV (the API's download).")]


def _month(value: str) -> str:
    from nestpoint.settlement.service import parse_month

    if parse_month(value) is None:
        raise typer.BadParameter("a month as YYYY-MM", param_hint="--month")
    return value


def _run(tenant: str, work: Callable[[Any], Awaitable[PeriodFigures]]) -> PeriodFigures:
    """``work`` in one session of the chain, as the operator's command; a domain error is
    the command's usage error (exit code 2)."""
    from nestpoint.jobs.cli import run_in_tenant

    figures: PeriodFigures = run_in_tenant(tenant, "nestpoint settlement", work)
    return figures


def _print(figures: PeriodFigures, as_json: bool, as_csv: bool) -> None:
    from nestpoint.settlement.service import to_csv

    if as_json:
        typer.echo(figures.model_dump_json(indent=2))
        return
    if as_csv:
        typer.echo(to_csv(figures), nl=False)
        return
    p = figures.period
    typer.echo(f"{p.month}  {p.status}  (1 point = {p.point_value_fen} fen)")
    typer.echo(
        f"{'store':<12} {'from':<7} {'issued':>10} {'redeemed':>10} {'expired':>10} "
        f"{'uses':>6} {'net yuan':>14}"
    )
    for line in figures.lines:
        who = line.store_code or "HQ"
        mark = "" if line.settles or not line.store_code else " (direct)"
        typer.echo(
            f"{who:<12} {line.origin_month:<7} {line.points_issued:>10,} "
            f"{line.points_redeemed:>10,} {line.points_expired:>10,} {line.benefit_uses:>6,} "
            f"{line.net_fen / 100:>14,.2f}{mark}"
        )


@settlement_app.command("compute")
def compute(tenant: Tenant, month: Month, as_json: AsJson = False, as_csv: AsCsv = False) -> None:
    """Compute the month's draft from the ledgers (a closed month: its stored figures)."""
    from nestpoint.settlement import service

    month = _month(month)
    _print(_run(tenant, lambda session: service.compute(session, month)), as_json, as_csv)


@settlement_app.command("close")
def close(tenant: Tenant, month: Month, as_json: AsJson = False, as_csv: AsCsv = False) -> None:
    """Close the month (computed once more, then immutable); closing it again shows it."""
    import uuid

    from nestpoint.settlement import service
    from nestpoint.settlement.schemas import CloseIn

    month = _month(month)
    key = CloseIn(idempotency_key=f"cli:{month}:{uuid.uuid4().hex}")

    async def work(session: Any) -> PeriodFigures:
        answer = await service.close(session, month, key)
        assert answer.result is not None  # a fresh key is never a replay
        return answer.result

    _print(_run(tenant, work), as_json, as_csv)


@settlement_app.command("show")
def show(tenant: Tenant, month: Month, as_json: AsJson = False, as_csv: AsCsv = False) -> None:
    """The month as stored (computed or closed)."""
    from nestpoint.settlement import service

    month = _month(month)
    _print(_run(tenant, lambda session: service.show(session, month)), as_json, as_csv)
