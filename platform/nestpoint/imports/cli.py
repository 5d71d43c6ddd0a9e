"""``nestpoint import``: import a legacy file (CSV or XLSX), run here with a progress bar."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from pathlib import Path
from typing import Annotated, Any

import typer

imports_app = typer.Typer(
    help="Import members, children, opening balances, orders or tags from CSV or XLSX: every "
    "row is checked first, then all rows are written or none (docs/imports.md).",
    no_args_is_help=True,
)

FileArgument = Annotated[
    Path, typer.Argument(help="The CSV or XLSX file.", exists=True, dir_okay=False)
]
Tenant = Annotated[str, typer.Option(help="The chain's slug.")]
FormatOption = Annotated[
    str | None,
    typer.Option("--format", help="csv or xlsx (default: from the file's extension)."),
]
MapOption = Annotated[
    list[str] | None,
    typer.Option("--map", help="FIELD=COLUMN: read our field from the file's column (repeatable)."),
]
PreviewOption = Annotated[
    bool, typer.Option("--preview", help="Show the mapping and the first rows; write nothing.")
]
ReportOption = Annotated[
    Path | None,
    typer.Option(help="Where to write the row report (default: FILE.report.csv).", dir_okay=False),
]


def _command(kind: str, doc: str) -> None:
    def command(
        file: FileArgument,
        tenant: Tenant,
        fmt: FormatOption = None,
        map_: MapOption = None,
        preview: PreviewOption = False,
        report: ReportOption = None,
    ) -> None:
        _import(kind, file, tenant, fmt, map_ or [], preview, report)

    command.__doc__ = doc
    imports_app.command(kind)(command)


_command("members", "Members: phone, name, gender, birthday, home store, tags, consent.")
_command("children", "Children of members already in the chain, by legacy id.")
_command("balances", "Opening points balances with their original expiry.")
_command("orders", "Historic orders (no points are earned now).")
_command("tags", "Tags added to members.")

KINDS = ("members", "children", "balances", "orders", "tags")
Directory = Annotated[
    Path,
    typer.Argument(help="Holds members.csv, children.csv, ... (or .xlsx).", file_okay=False),
]


@imports_app.command("all")
def import_all(directory: Directory, tenant: Tenant) -> None:
    """A legacy export in one command: the directory's members, children, balances, orders
    and tags files (named so, CSV or XLSX), in that order. Each file is all or nothing; the
    first with bad rows stops the rest (run it again once fixed: what is in is skipped)."""
    if not directory.is_dir():
        raise typer.BadParameter("not a directory", param_hint="DIRECTORY")
    found = [
        (kind, path)
        for kind in KINDS
        for path in [directory / f"{kind}.csv", directory / f"{kind}.xlsx"]
        if path.is_file()
    ]
    if not found:
        raise typer.BadParameter(
            "no members.csv, children.csv, balances.csv, orders.csv or tags.csv (or .xlsx)",
            param_hint="DIRECTORY",
        )
    for kind, path in found:
        typer.echo(f"{kind} ({path.name}):")
        _import(kind, path, tenant, None, [], False, None)


def _mapping(pairs: list[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for pair in pairs:
        name, sep, column = pair.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise typer.BadParameter("FIELD=COLUMN", param_hint="--map")
        mapping[name.strip()] = column.strip()
    return mapping


def _import(
    kind: str,
    file: Path,
    slug: str,
    fmt: str | None,
    pairs: list[str],
    preview: bool,
    report: Path | None,
) -> None:
    fmt = (fmt or file.suffix.lstrip(".") or "csv").lower()
    if fmt not in ("csv", "xlsx"):
        raise typer.BadParameter("csv or xlsx", param_hint="--format")
    mapping = _mapping(pairs)
    if preview:
        asyncio.run(_preview(kind, file, slug, fmt, mapping))
        return
    report = report or file.with_name(file.name + ".report.csv")
    size, digest = file.stat().st_size, _sha256(file)
    job = asyncio.run(_run(kind, file, slug, fmt, mapping, report, size, digest))
    if job["status"] == "done":
        typer.echo(
            f"{job['rows_imported']} rows imported, {job['rows_skipped']} already there"
            f" (of {job['rows_total']})"
        )
        return
    if job["status"] == "invalid":
        typer.echo(f"nothing imported: {job['rows_bad']} bad rows, see {report}", err=True)
    else:
        typer.echo(f"import failed: {job['error']}", err=True)
    raise typer.Exit(1)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while data := source.read(1024 * 1024):
            digest.update(data)
    return digest.hexdigest()


async def _preview(kind: str, file: Path, slug: str, fmt: str, mapping: dict[str, str]) -> None:
    from nestpoint.context import Actor, acting_as, tenant_context
    from nestpoint.db import get_database, scoped_session
    from nestpoint.errors import Invalid
    from nestpoint.imports import service
    from nestpoint.jobs.cli import _tenant_ids

    try:
        [tenant_id] = await _tenant_ids(slug)
        with acting_as(Actor("system", name="nestpoint import")), tenant_context(tenant_id):
            async with scoped_session() as session:
                with file.open("rb") as source:
                    try:
                        shown = await service.preview_file(session, kind, fmt, source, mapping)
                    except Invalid as exc:
                        for error in exc.errors:
                            typer.echo(f"{error.field}: {error.message}", err=True)
                        raise typer.Exit(1) from None
        typer.echo("mapping: " + ", ".join(f"{k} <- {v}" for k, v in shown.mapping.items()))
        if shown.unmapped:
            typer.echo("not read: " + ", ".join(shown.unmapped))
        for row in shown.rows:
            typer.echo(f"row {row.row}: " + ", ".join(f"{k}={v}" for k, v in row.values.items()))
        for problem in shown.problems:
            typer.echo(f"row {problem.row} {problem.field}: {problem.problem}")
        if not shown.problems:
            typer.echo("no problems in these rows")
    finally:
        await get_database().dispose()


async def _run(
    kind: str,
    file: Path,
    slug: str,
    fmt: str,
    mapping: dict[str, str],
    report: Path,
    size: int,
    digest: str,
) -> dict[str, Any]:
    from rich.progress import Progress

    from nestpoint.context import Actor, acting_as, tenant_context
    from nestpoint.db import get_database, scoped_session
    from nestpoint.errors import Invalid
    from nestpoint.imports import service
    from nestpoint.jobs.cli import _tenant_ids

    try:
        [tenant_id] = await _tenant_ids(slug)
        with acting_as(Actor("system", name="nestpoint import")), tenant_context(tenant_id):
            with file.open("rb") as source:
                try:
                    columns = service.check_file(kind, fmt, source, mapping)
                except Invalid as exc:
                    for error in exc.errors:
                        typer.echo(f"{error.field}: {error.message}", err=True)
                    raise typer.Exit(1) from None
            job = service.new_import(
                kind,
                fmt,
                requested_by="cli",
                mapping=columns,
                file_name=file.name,
                size=size,
                sha256=digest,
            )
            async with scoped_session() as session:
                service.add_import(session, job)
            with Progress(transient=True) as bar:
                task = bar.add_task(f"import {kind}", total=None)

                def advance(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                with contextlib.suppress(Exception):  # recorded on the job as failed
                    await service.run_import(job.id, progress=advance, source=file)
            async with scoped_session() as session:
                finished = await service.get_import(session, job.id)
                state = {
                    "status": finished.status,
                    "rows_total": finished.rows_total,
                    "rows_imported": finished.rows_imported,
                    "rows_skipped": finished.rows_skipped,
                    "rows_bad": finished.rows_bad,
                    "error": finished.error,
                    "report_chunks": finished.report_chunks,
                }
            if state["status"] in ("done", "invalid"):
                with report.open("wb") as out:
                    async for data in service.read_chunks(
                        tenant_id, job.id, "report", finished.report_chunks
                    ):
                        out.write(data)
            return state
    finally:
        await get_database().dispose()
