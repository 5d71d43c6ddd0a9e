"""``nestpoint privacy``: erase a member, set and run a chain's retention rules."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

import typer

from nestpoint.jobs.cli import run_in_tenant as _run

privacy_app = typer.Typer(
    help="Members' rights: erase a member; a chain's retention rules and their runs.",
    no_args_is_help=True,
)

Tenant = Annotated[str, typer.Option(help="The chain's slug.")]


@privacy_app.command("erase")
def erase(
    member_id: Annotated[uuid.UUID, typer.Argument(help="The member's id.")],
    tenant: Tenant,
    reason: Annotated[str, typer.Option(help="Why: the request it answers (audited).")],
) -> None:
    """Erase one member's personal data (the books stay, pseudonymous). Again: the same."""
    from nestpoint.privacy import service

    async def go(session: Any) -> dict[str, Any]:
        erasure = await service.erase_member(session, member_id, reason=reason.strip()[:500])
        return {"erased_at": erasure.erased_at, **erasure.summary}

    done = _run(tenant, "nestpoint privacy erase", go)
    typer.echo(f"member {member_id} erased at {done.pop('erased_at'):%Y-%m-%d %H:%M:%S} UTC")
    typer.echo(", ".join(f"{key} {value}" for key, value in done.items()))


@privacy_app.command("policy")
def policy(
    tenant: Tenant,
    inactive_years: Annotated[
        int | None, typer.Option(min=1, max=100, help="Erase members inactive this long.")
    ] = None,
    child_age_years: Annotated[
        int | None, typer.Option(min=1, max=100, help="Erase children's data at this age.")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Switch both rules off.")] = False,
) -> None:
    """Show the retention rules, or set them (the options given; --clear for none)."""
    from nestpoint.privacy import service
    from nestpoint.privacy.schemas import PolicyIn

    async def go(session: Any) -> Any:
        current = await service.get_policy(session)
        if not clear and inactive_years is None and child_age_years is None:
            return current
        data = PolicyIn(
            inactive_member_years=None
            if clear
            else inactive_years or current.inactive_member_years,
            child_data_age_years=None if clear else child_age_years or current.child_data_age_years,
        )
        return await service.set_policy(session, data)

    rules = _run(tenant, "nestpoint privacy policy", go)
    typer.echo(f"inactive members erased after: {rules.inactive_member_years or 'never'} years")
    typer.echo(f"children's data erased at age: {rules.child_data_age_years or 'never'}")


@privacy_app.command("retention")
def retention(
    tenant: Tenant,
    preview: Annotated[bool, typer.Option("--preview", help="Count only; erase nothing.")] = False,
) -> None:
    """Run the chain's retention rules now, here, and print the report."""
    asyncio.run(_retention(tenant, preview))


async def _retention(slug: str, preview: bool) -> None:
    from nestpoint.context import Actor, acting_as, tenant_context
    from nestpoint.db import get_database, scoped_session
    from nestpoint.jobs.cli import _tenant_ids
    from nestpoint.members.service import local_today
    from nestpoint.privacy import retention, service

    try:
        [tenant_id] = await _tenant_ids(slug)
        with (
            acting_as(Actor("system", name="nestpoint privacy retention")),
            tenant_context(tenant_id),
        ):
            if preview:
                async with scoped_session() as session:
                    rules = await service.get_policy(session)
                    due = await service.due_for_retention(
                        session, rules, await local_today(session)
                    )
                typer.echo(f"due: {len(due.member_ids)} members, {len(due.child_ids)} children")
                return
            report = await retention.run(await retention.start("cli"))
            typer.echo(
                f"run {report.id}: {report.members_erased} members and "
                f"{report.children_erased} children erased"
            )
    finally:
        await get_database().dispose()
