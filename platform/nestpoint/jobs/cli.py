"""``nestpoint jobs``: run the periodic jobs now, for one tenant or all (operators, tests,
benchmarks). The same functions the actors run, called directly, not through the broker."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

jobs_app = typer.Typer(
    help="Run periodic jobs now; see and requeue dead jobs.", no_args_is_help=True
)
members_app = typer.Typer(help="Member data maintenance.", no_args_is_help=True)
T = TypeVar("T")

# As in ``nestpoint.cli``, each command imports the jobs it runs inside its function, so the
# `nestpoint` command starts without loading every context.


def _jobs() -> dict[str, Callable[[AsyncSession], Awaitable[Any]]]:
    from nestpoint.events.service import install_session_hooks
    from nestpoint.loyalty.service import load_program
    from nestpoint.points.jobs import announce_expiring, expire_points, release_expired_holds
    from nestpoint.segments.jobs import recompute
    from nestpoint.tiers.jobs import evaluate_tiers

    install_session_hooks()

    async def evaluate(session: AsyncSession) -> Any:
        return await evaluate_tiers(session, await load_program(session))

    return {
        "expire-points": expire_points,
        "release-holds": release_expired_holds,
        "announce-expiring": announce_expiring,
        "evaluate-tiers": evaluate,
        "recompute-segments": recompute,
    }


async def _tenant_ids(slug: str | None) -> list[uuid.UUID]:
    from nestpoint.db import scoped_session
    from nestpoint.jobs.tenants import active_tenant_ids
    from nestpoint.tenancy.models import Tenant

    if slug is None:
        return await active_tenant_ids()
    async with scoped_session() as session:
        tenant_id = await session.scalar(select(Tenant.id).where(Tenant.slug == slug))
    if tenant_id is None:
        raise typer.BadParameter(f"no tenant {slug!r}", param_hint="--tenant")
    return [tenant_id]


def run_in_tenant(slug: str, actor: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """A command's ``work`` in one session of the chain ``slug``, acting as ``actor``; a
    domain error or a bad value is the command's usage error (exit code 2)."""

    async def go() -> T:
        from pydantic import ValidationError

        from nestpoint.context import Actor, acting_as, tenant_context
        from nestpoint.db import get_database, scoped_session
        from nestpoint.errors import NestpointError

        try:
            [tenant_id] = await _tenant_ids(slug)
            with acting_as(Actor("system", name=actor)), tenant_context(tenant_id):
                async with scoped_session() as session:
                    return await work(session)
        except (NestpointError, ValidationError) as exc:
            raise typer.BadParameter(str(exc)) from exc
        finally:
            await get_database().dispose()

    return asyncio.run(go())


@jobs_app.command("run")
def run(
    name: Annotated[
        str,
        typer.Argument(
            help=(
                "expire-points, release-holds, announce-expiring, evaluate-tiers or "
                "recompute-segments"
            )
        ),
    ],
    tenant: Annotated[str | None, typer.Option(help="Tenant slug (default: all).")] = None,
) -> None:
    """Run a job now and print what it did and how long it took."""
    jobs = _jobs()
    if name not in jobs:
        raise typer.BadParameter(f"one of {sorted(jobs)}", param_hint="NAME")

    async def main() -> None:
        from nestpoint.db import get_database
        from nestpoint.jobs.tenants import run_for_tenant

        try:
            for tenant_id in await _tenant_ids(tenant):
                started = time.perf_counter()
                result = await run_for_tenant(tenant_id, jobs[name], name=name)
                typer.echo(f"{name} {tenant_id}: {result} in {time.perf_counter() - started:.3f} s")
        finally:
            await get_database().dispose()

    asyncio.run(main())


@jobs_app.command("dead-letters")
def dead_letters(
    requeue: Annotated[
        bool, typer.Option(help="Send them to their queues again, with fresh retries.")
    ] = False,
    message_id: Annotated[
        list[str] | None, typer.Option("--id", help="Only this message (repeatable).")
    ] = None,
) -> None:
    """List the jobs that exhausted their retries (the dead-letter queues), or requeue them."""
    from nestpoint.jobs.broker import dead_letters as listed
    from nestpoint.jobs.broker import requeue_dead

    if requeue:
        count = requeue_dead(set(message_id) if message_id else None)
        typer.echo(f"{count} dead jobs requeued")
        return
    letters = [d for d in listed() if not message_id or d.message_id in message_id]
    for dead in letters:
        died = datetime.fromtimestamp(dead.died_at, UTC).isoformat() if dead.died_at else "-"
        args = json.dumps(list(dead.args), ensure_ascii=False)
        typer.echo(f"{dead.queue}\t{dead.message_id}\t{dead.actor}\t{died}\t{args}\t{dead.error}")
    typer.echo(f"{len(letters)} dead jobs", err=True)


def require_pii_keys() -> None:
    """Start-up check of serving and working processes: one clear line, exit status 2."""
    from nestpoint.members.pii import PiiKeyError, keyring

    try:
        keyring()
    except PiiKeyError as exc:
        typer.echo(f"nestpoint: cannot start: {exc}", err=True)
        raise typer.Exit(code=2) from exc


@members_app.command("rotate-keys")
def rotate_keys(batch: Annotated[int, typer.Option(help="Rows per transaction.")] = 1000) -> None:
    """Re-encrypt personal data written under older keys (after putting a new key first)."""
    from nestpoint.members.service import rotate_keys as rotate

    require_pii_keys()

    async def main() -> None:
        from nestpoint.db import get_database
        from nestpoint.jobs.tenants import run_for_tenant

        try:
            for tenant_id in await _tenant_ids(None):
                total = 0
                while done := await run_for_tenant(
                    tenant_id, lambda s: rotate(s, batch), name="members.rotate-keys"
                ):
                    total += done
                typer.echo(
                    f"{tenant_id}: {total} rows re-encrypted (members, children, identities)"
                )
        finally:
            await get_database().dispose()

    asyncio.run(main())


@members_app.command("new-key")
def new_key(
    key_id: Annotated[
        str | None, typer.Option(help="Id of the new key (default: k<YYYYMMDD>).")
    ] = None,
) -> None:
    """Print new personal-data keys: the first ones, or the steps of a rotation."""
    from nestpoint.members.pii import PiiKeyError, new_key_plan
    from nestpoint.settings import get_settings

    try:
        lines = new_key_plan(get_settings(), key_id)
    except PiiKeyError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=2) from exc
    for line in lines:
        typer.echo(line)
