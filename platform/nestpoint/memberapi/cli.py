"""``nestpoint member-tokens``: revoke a member's tokens, and delete the expired ones.

Imports happen inside the commands: ``nestpoint --help`` starts without loading the app.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

import typer

from nestpoint.jobs.cli import run_in_tenant as _run

member_tokens_app = typer.Typer(
    help="Member tokens of the member API: revoke a member's, purge the expired.",
    no_args_is_help=True,
)


@member_tokens_app.command("revoke")
def revoke(
    tenant: Annotated[str, typer.Option(help="The chain's slug.")],
    member: Annotated[str, typer.Option(help="The member's id.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail).")] = "cli",
) -> None:
    """Revoke every live token of a member: they stop at once, on every instance."""
    from nestpoint.memberapi import service

    try:
        member_id = uuid.UUID(member)
    except ValueError as exc:
        raise typer.BadParameter(f"not a member id: {member!r}") from exc

    async def go(session: Any) -> Any:
        return await service.revoke_member_tokens(session, member_id, reason=reason)

    done = _run(tenant, "nestpoint member-tokens revoke", go)
    typer.echo(f"revoked {done.revoked} token(s) of member {done.member_id}")


@member_tokens_app.command("purge")
def purge(
    older_than_days: Annotated[
        int, typer.Option(min=0, help="Delete tokens expired more than this many days ago.")
    ] = 7,
) -> None:
    """Delete the tokens that expired (they open nothing), in every active chain."""
    from datetime import timedelta

    from nestpoint.db import get_database
    from nestpoint.jobs.tenants import active_tenant_ids, run_for_tenant
    from nestpoint.memberapi import service

    async def go() -> int:
        try:
            total = 0
            for tenant_id in await active_tenant_ids():
                total += await run_for_tenant(
                    tenant_id,
                    lambda s: service.purge_tokens(s, timedelta(days=older_than_days)),
                    name="nestpoint member-tokens purge",
                )
            return total
        finally:
            await get_database().dispose()

    typer.echo(f"deleted {asyncio.run(go())} expired token(s)")
