"""``nestpoint coupons``: a chain's coupon templates, one coupon's ledger, a grant."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import typer

from nestpoint.jobs.cli import run_in_tenant as _run

coupons_app = typer.Typer(
    help="Coupons: the chain's templates, one coupon and its ledger, a grant to a member.",
    no_args_is_help=True,
)

Tenant = Annotated[str, typer.Option(help="The chain's slug.")]


@coupons_app.command("templates")
def templates(tenant: Tenant) -> None:
    """The chain's coupon templates: what each gives, how many were issued of the stock."""
    from nestpoint.coupons import service

    for t in _run(tenant, "nestpoint coupons templates", service.list_templates):
        stock = "unlimited" if t.stock is None else f"{t.stock}"
        state = "" if t.active else "  (inactive)"
        typer.echo(f"{t.code:<24} {t.kind:<12} issued {t.issued}/{stock}  {t.name}{state}")


@coupons_app.command("show")
def show(code: Annotated[str, typer.Argument(help="The coupon's code.")], tenant: Tenant) -> None:
    """One coupon: its template, member, status and ledger."""
    from nestpoint.coupons import service

    async def go(session: Any) -> Any:
        return await service.get_coupon(session, code)

    c = _run(tenant, "nestpoint coupons show", go)
    status = "expired" if c.expired else c.status
    typer.echo(f"{c.code}  {c.template_code} ({c.name})  member {c.member_id}  {status}")
    typer.echo(f"valid {c.valid_from:%Y-%m-%d %H:%M} to {c.valid_until:%Y-%m-%d %H:%M} UTC")
    for e in c.events:
        order = f" order {e.order_id}" if e.order_id else ""
        amount = f" {e.amount_fen} fen" if e.amount_fen else ""
        typer.echo(f"  {e.created_at:%Y-%m-%d %H:%M:%S} {e.kind}{amount}{order} {e.reason}")


@coupons_app.command("grant")
def grant(
    template: Annotated[str, typer.Argument(help="The template's code.")],
    member_id: Annotated[uuid.UUID, typer.Argument(help="The member's id.")],
    tenant: Tenant,
    key: Annotated[
        str, typer.Option(help="Idempotency key: the same key again issues nothing new.")
    ],
) -> None:
    """Give a member a coupon for free (audited); the same key again answers the same."""
    from nestpoint.coupons import service
    from nestpoint.coupons.schemas import IssueIn

    async def go(session: Any) -> Any:
        data = IssueIn(template_code=template, idempotency_key=key)
        return await service.grant_or_exchange(session, member_id, data, may_grant=True)

    answer = _run(tenant, "nestpoint coupons grant", go)
    replayed = " (already granted with this key)" if answer.replayed else ""
    typer.echo(f"coupon {answer.body['code']} valid until {answer.body['valid_until']}{replayed}")
