"""The ``nestpoint`` command: serve, worker, scheduler, migrate, tenants apply, demo, plugins."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from nestpoint.jobs.cli import require_pii_keys
from nestpoint.settings import get_settings

# Each command imports what it runs inside its function (the one kind of lazy import the
# core keeps): `nestpoint --help` and every command start without loading Litestar, the
# ORM, the broker and the plugins, which the other commands need and this one may not.
if TYPE_CHECKING:
    from nestpoint.tenancy.changes import Change
    from nestpoint.tenancy.manifest import TenantManifest

app = typer.Typer(
    help="Nestpoint: membership platform for mother-and-baby store chains.",
    no_args_is_help=True,
    add_completion=False,
)
tenants_app = typer.Typer(help="Tenants as code.", no_args_is_help=True)
plugins_app = typer.Typer(help="Installed plugins.", no_args_is_help=True)
plugin_app = typer.Typer(help="Writing a plugin.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
settings_app = typer.Typer(help="Settings (NESTPOINT_* variables).", no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")
app.add_typer(settings_app, name="settings")
app.add_typer(plugins_app, name="plugins")
app.add_typer(plugin_app, name="plugin")
app.add_typer(keys_app, name="keys")


def _configure_logs() -> None:
    from nestpoint.api.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)


def _serve_metrics() -> None:
    """A worker's or scheduler's ``/metrics``, on ``NESTPOINT_METRICS_PORT``."""
    settings = get_settings()
    if not settings.metrics_enabled or not settings.metrics_port:
        return
    from prometheus_client import start_http_server

    from nestpoint.observability import collectors

    collectors.install()
    start_http_server(settings.metrics_port, addr=settings.host)


def _trace(role: str) -> None:
    """Tracing on for this process when NESTPOINT_TRACING_ENABLED says so."""
    from nestpoint.observability import tracing

    tracing.configure(role)


@app.command()
def migrate(revision: str = "heads") -> None:
    """Apply database migrations (as the owner role: NESTPOINT_MIGRATION_DATABASE_URL)."""
    from nestpoint.migrate import DatabaseUnreachable, check_reachable, upgrade

    try:
        check_reachable()
    except DatabaseUnreachable as exc:
        typer.echo(f"nestpoint migrate: {exc}", err=True)
        raise typer.Exit(1) from None
    upgrade(revision=revision)
    typer.echo(f"migrated to {revision}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    workers: Annotated[int | None, typer.Option(help="Server processes.")] = None,
    in_process_worker: Annotated[
        bool,
        typer.Option(
            help="Also consume jobs in this process (always on with the in-process broker)."
        ),
    ] = False,
) -> None:
    """Serve the HTTP API (uvicorn)."""
    import uvicorn

    from nestpoint.jobs.broker import is_in_process

    settings = get_settings()
    require_pii_keys()
    _configure_logs()
    jobs = None
    if in_process_worker or is_in_process():
        from nestpoint.jobs.worker import start_scheduler, start_worker

        jobs = (start_worker(), start_scheduler())
    try:
        with _signals_end_the_server():
            uvicorn.run(
                "nestpoint.api.asgi:app",
                host=host or settings.host,
                port=port or settings.port,
                workers=workers or settings.workers,
                log_config=None,
                access_log=False,
            )
    finally:
        if jobs is not None:
            from nestpoint.jobs.worker import stop_worker

            stop_worker(*jobs)


@contextmanager
def _signals_end_the_server() -> Iterator[None]:
    """Let SIGINT and SIGTERM end ``uvicorn.run`` normally, so the in-process worker is
    stopped after it (uvicorn handles the signal, shuts down, then raises it again to the
    handler that was there before: here that handler only notes it, where Python's own would
    raise KeyboardInterrupt or kill the process first). This holds even when SIGINT was
    ignored at start (a server started in the background). A second signal while stopping
    exits at once."""
    received: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        if received:
            os._exit(128 + signum)
        received.append(signum)

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        if not received:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


@app.command()
def worker(
    threads: Annotated[int, typer.Option(help="Worker threads.")] = 4,
    scheduler: Annotated[
        bool,
        typer.Option(help="Also run a scheduler (leader-elected, as `nestpoint scheduler`)."),
    ] = True,
) -> None:
    """Run a Dramatiq worker (and the periodic scheduler) until SIGINT/SIGTERM."""
    from nestpoint.jobs.worker import start_scheduler, start_worker, stop_worker

    require_pii_keys()
    _configure_logs()
    _serve_metrics()
    _trace("worker")
    running = start_worker(threads)
    sched = start_scheduler() if scheduler else None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    stop_worker(running, sched)


@app.command()
def scheduler() -> None:
    """Run the periodic job scheduler until SIGINT/SIGTERM (leader-elected: run any number)."""
    from nestpoint.jobs.scheduler import run_scheduler

    require_pii_keys()
    _configure_logs()
    _serve_metrics()
    _trace("scheduler")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_scheduler(stop)

    asyncio.run(main())


@tenants_app.command("apply")
def tenants_apply(
    manifests: Annotated[
        list[Path], typer.Argument(help="Manifest files (TOML).", exists=True, dir_okay=False)
    ],
    dry_run: Annotated[bool, typer.Option(help="Print the plan and change nothing.")] = False,
) -> None:
    """Create or update tenants from manifests; prints the plan, then applies it."""
    from nestpoint.errors import Invalid
    from nestpoint.tenancy.manifest import load_manifest

    loaded = []
    failed = False
    for path in manifests:
        try:
            loaded.append((path, load_manifest(path)))
        except Invalid as exc:
            failed = True
            typer.echo(f"{path}: invalid manifest, nothing applied:", err=True)
            for error in exc.errors:
                typer.echo(f"  - {error.field}: {error.message}", err=True)
    if failed:
        raise typer.Exit(code=2)
    for path, manifest in loaded:
        changes = asyncio.run(_apply_manifest(manifest, dry_run=dry_run))
        typer.echo(f"{path} ({manifest.tenant.slug}):")
        if not changes:
            typer.echo("  no changes")
        for change in changes:
            typer.echo(f"  {change.describe()}")
        if dry_run and changes:
            typer.echo("  (dry run: nothing applied)")


async def _apply_manifest(manifest: TenantManifest, *, dry_run: bool) -> list[Change]:
    from nestpoint.context import Actor, acting_as
    from nestpoint.db import scoped_session
    from nestpoint.db.session import get_database
    from nestpoint.events.service import install_session_hooks
    from nestpoint.tenancy import manifest as manifests

    install_session_hooks()
    try:
        with acting_as(Actor("system", name="tenants-apply")):
            async with scoped_session() as session:
                if dry_run:
                    return list(await manifests.plan(session, manifest))
                _, changes = await manifests.apply(session, manifest)
                return list(changes)
    finally:
        await get_database().dispose()


@keys_app.command("create-platform")
def create_platform_key(name: Annotated[str, typer.Option(help="Who the key is for.")]) -> None:
    """Create a platform (operator) key and print it once."""

    async def run() -> str:
        from nestpoint.db import scoped_session
        from nestpoint.db.session import get_database
        from nestpoint.tenancy.service import create_platform_key as create

        try:
            async with scoped_session() as session:
                _, secret = await create(session, name)
                return secret
        finally:
            await get_database().dispose()

    typer.echo(asyncio.run(run()))


@plugins_app.command("list")
def plugins_list(
    db: Annotated[bool, typer.Option(help="Also read where each plugin is enabled.")] = True,
) -> None:
    """Installed plugins: id, package and version, hooks implemented, where enabled."""
    from nestpoint.plugins.commands import describe_plugins, where_enabled
    from nestpoint.plugins.manager import get_plugin_host

    host = get_plugin_host()
    enabled = None
    if db:
        try:
            enabled = asyncio.run(where_enabled())
        except Exception as exc:  # the list is still useful without a database
            typer.echo(f"(could not read enablement: {type(exc).__name__})", err=True)
    for line in describe_plugins(host, enabled, show_enabled=db):
        typer.echo(line)


# The options of the generated references (hooks, settings).
ReferenceOutput = Annotated[
    Path | None, typer.Option(help="Write to this file (default: print it).")
]
ReferenceCheck = Annotated[bool, typer.Option(help="Fail if the file is not up to date.")]


@plugins_app.command("reference")
def plugins_reference(output: ReferenceOutput = None, check: ReferenceCheck = False) -> None:
    """Generate the hook reference (docs/plugins/reference.md) from the hookspec docstrings."""
    from nestpoint.plugins.reference import render

    _reference(render(), output, check, "nestpoint plugins reference")


@settings_app.command("reference")
def settings_reference(output: ReferenceOutput = None, check: ReferenceCheck = False) -> None:
    """Generate the configuration reference (docs/configuration.md) from the settings."""
    from nestpoint.settings import reference

    _reference(reference(), output, check, "nestpoint settings reference")


def _reference(text: str, output: Path | None, check: bool, command: str) -> None:
    """Print a generated reference, write it to ``output``, or check that file is current."""
    if output is None:
        typer.echo(text, nl=False)
    elif check:
        if not output.exists() or output.read_text(encoding="utf-8") != text:
            typer.echo(f"{output} is out of date: run {command}", err=True)
            raise typer.Exit(code=1)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}")


@plugin_app.command("new")
def plugin_new(
    name: Annotated[str, typer.Argument(help="The plugin id, e.g. birthday-bonus.")],
    directory: Annotated[
        Path, typer.Option(help="Where to create nestpoint-NAME/ (default: the current folder).")
    ] = Path("."),
    description: Annotated[str, typer.Option(help="One line about the plugin.")] = "",
) -> None:
    """Create a plugin package (nestpoint-NAME) whose own tests pass right away."""
    from nestpoint.plugins.commands import ScaffoldUnavailable, scaffold

    try:
        target = scaffold(name, directory, description)
    except (ValueError, FileExistsError, ScaffoldUnavailable) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=2) from exc
    typer.echo(f"created {target}")
    typer.echo(f"  test it:    uv run --no-sync pytest {target}")
    typer.echo("  next steps: docs/plugins/tutorial.md")


@app.command()
def demo(
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve after seeding.")
    ] = True,
) -> None:
    """Migrate, apply the example tenants, create demo keys, and serve with a worker."""
    from nestpoint.demo import prepare_demo

    settings = get_settings()
    require_pii_keys()
    info = prepare_demo()
    url = f"http://{settings.host}:{port or settings.port}"
    typer.echo(info.render(url))
    if serve_after:
        serve(host=None, port=port, workers=1, in_process_worker=True)


def _add_loyalty_commands() -> None:
    from nestpoint.analytics.cli import analytics_app
    from nestpoint.billing.cli import billing_app
    from nestpoint.campaigns.cli import campaigns_app
    from nestpoint.console.cli import console_app
    from nestpoint.coupons.cli import coupons_app
    from nestpoint.exports.cli import exports_app
    from nestpoint.imports.cli import imports_app
    from nestpoint.jobs.cli import jobs_app, members_app
    from nestpoint.memberapi.cli import member_tokens_app
    from nestpoint.membership.cli import membership_app
    from nestpoint.messaging.cli import messages_app
    from nestpoint.payments.cli import payments_app
    from nestpoint.privacy.cli import privacy_app
    from nestpoint.settlement.cli import settlement_app

    app.add_typer(jobs_app, name="jobs")
    app.add_typer(members_app, name="members")
    app.add_typer(member_tokens_app, name="member-tokens")
    app.add_typer(messages_app, name="messages")
    app.add_typer(exports_app, name="export")
    app.add_typer(imports_app, name="import")
    app.add_typer(privacy_app, name="privacy")
    app.add_typer(coupons_app, name="coupons")
    app.add_typer(payments_app, name="payments")
    app.add_typer(campaigns_app, name="campaigns")
    app.add_typer(console_app, name="console")
    app.add_typer(billing_app, name="billing")
    app.add_typer(membership_app, name="membership")
    app.add_typer(analytics_app, name="analytics")
    app.add_typer(settlement_app, name="settlement")


_add_loyalty_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
