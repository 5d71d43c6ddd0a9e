"""``nestpoint export``: write an export to a file, run here (not through the broker)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Annotated, Literal

import typer

exports_app = typer.Typer(
    help="Export members, children, points ledgers, orders or a segment to CSV or XLSX.",
    no_args_is_help=True,
)

Tenant = Annotated[str, typer.Option(help="The chain's slug.")]
FormatOption = Annotated[str, typer.Option("--format", help="csv or xlsx.", case_sensitive=False)]
Output = Annotated[Path, typer.Option(help="The file to write.", dir_okay=False)]
Pii = Annotated[
    bool, typer.Option("--pii", help="Full phones, names, birthdays and nicknames (else masked).")
]


@exports_app.command("members")
def members(tenant: Tenant, output: Output, fmt: FormatOption = "csv", pii: Pii = False) -> None:
    """Every member: phone and name (masked without --pii), tier, points, status."""
    _export("members", tenant, fmt, output, pii)


@exports_app.command("children")
def children(tenant: Tenant, output: Output, fmt: FormatOption = "csv", pii: Pii = False) -> None:
    """Every child: stage; dates and nickname only with --pii."""
    _export("children", tenant, fmt, output, pii)


@exports_app.command("points-ledger")
def points_ledger(tenant: Tenant, output: Output, fmt: FormatOption = "csv") -> None:
    """Every points entry: member, kind, amount, balance after, cause, time."""
    _export("points_ledger", tenant, fmt, output, False)


@exports_app.command("orders")
def orders(tenant: Tenant, output: Output, fmt: FormatOption = "csv") -> None:
    """Every order: external id, store, member, totals, points earned and used, paid at."""
    _export("orders", tenant, fmt, output, False)


@exports_app.command("segment")
def segment(
    code: Annotated[str, typer.Argument(help="The saved segment's code.")],
    tenant: Tenant,
    output: Output,
    fmt: FormatOption = "csv",
    pii: Pii = False,
) -> None:
    """A saved segment's members as it is now, with the columns of `members` (masked
    without --pii)."""
    _export("segment", tenant, fmt, output, pii, code)


@exports_app.command("member-data")
def member_data(
    member_id: Annotated[uuid.UUID, typer.Argument(help="The member's id.")],
    tenant: Tenant,
    output: Output,
    reason: Annotated[str, typer.Option(help="Why: the request it answers (audited).")],
) -> None:
    """One member's data as JSON (a PIPL access and copy request), audited with --reason."""
    rows = asyncio.run(_run_member_data(member_id, tenant, reason.strip()[:500], output))
    typer.echo(f"{rows} member's data written to {output}")


Kind = Literal["members", "children", "points_ledger", "orders", "segment"]


def _export(
    kind: Kind, slug: str, fmt: str, output: Path, full: bool, segment_code: str | None = None
) -> None:
    fmt = fmt.lower()
    if fmt not in ("csv", "xlsx"):
        raise typer.BadParameter("csv or xlsx", param_hint="--format")
    rows = asyncio.run(_run(kind, slug, fmt, output, full, segment_code))
    typer.echo(f"{rows} rows written to {output}")


async def _run(
    kind: Kind, slug: str, fmt: str, output: Path, full: bool, segment_code: str | None = None
) -> int:
    from rich.progress import Progress

    from nestpoint.context import Actor, acting_as, tenant_context
    from nestpoint.db import get_database, scoped_session
    from nestpoint.errors import NestpointError
    from nestpoint.exports import service
    from nestpoint.jobs.cli import _tenant_ids

    try:
        [tenant_id] = await _tenant_ids(slug)
        with acting_as(Actor("system", name="nestpoint export")), tenant_context(tenant_id):
            job = service.new_export(
                kind,
                fmt,
                masked=kind in service.PERSONAL and not full,
                requested_by="cli",
                segment_code=segment_code,
            )
            async with scoped_session() as session:
                if segment_code is not None:
                    try:
                        await service.check_segment(session, segment_code)
                    except NestpointError as exc:
                        raise typer.BadParameter(exc.detail, param_hint="CODE") from exc
                service.add_export(session, job)
            with Progress(transient=True) as bar:
                task = bar.add_task(f"export {kind}", total=None)

                def advance(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                await service.run_export(job.id, progress=advance)
            async with scoped_session() as session:
                finished = await service.get_export(session, job.id)
                chunks, rows = finished.chunks, finished.rows_done
            with output.open("wb") as out:
                async for data in service.read_file(tenant_id, job.id, chunks):
                    out.write(data)
            return rows
    finally:
        await get_database().dispose()


async def _run_member_data(member_id: uuid.UUID, slug: str, reason: str, output: Path) -> int:
    from nestpoint.context import Actor, acting_as, tenant_context
    from nestpoint.db import get_database, scoped_session
    from nestpoint.errors import NestpointError
    from nestpoint.exports import service
    from nestpoint.jobs.cli import _tenant_ids

    if not reason:
        raise typer.BadParameter("give the request it answers", param_hint="--reason")
    try:
        [tenant_id] = await _tenant_ids(slug)
        with acting_as(Actor("system", name="nestpoint export")), tenant_context(tenant_id):
            async with scoped_session() as session:
                job = await service.member_data_job(session, member_id, reason, "cli")
                await service.add_member_data_job(session, job)
            await service.run_export(job.id)
            async with scoped_session() as session:
                finished = await service.get_export(session, job.id)
                chunks, rows = finished.chunks, finished.rows_done
            with output.open("wb") as out:
                async for data in service.read_file(tenant_id, job.id, chunks):
                    out.write(data)
            return rows
    except NestpointError as exc:
        raise typer.BadParameter(str(exc)) from exc
    finally:
        await get_database().dispose()
