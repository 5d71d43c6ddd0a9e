"""Running Alembic from the CLI and tests (``nestpoint migrate``)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from nestpoint.plugins.manager import get_plugin_host
from nestpoint.settings import get_settings

# Inside the package: in the source tree a symlink to the top-level migrations/, in a built
# wheel a copy of it, so an installed service migrates without the source tree.
PACKAGED_MIGRATIONS = Path(__file__).parent / "migrations"


def migrations_dir() -> Path:
    return Path(os.environ.get("NESTPOINT_MIGRATIONS_DIR", PACKAGED_MIGRATIONS))


def alembic_config(url: str | None = None) -> Config:
    settings = get_settings()
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", url or settings.owner_database_url)
    config.set_main_option("path_separator", "os")
    # The core's revisions plus each loaded plugin's own version location (one branch each).
    locations = [migrations_dir() / "versions", *get_plugin_host().migration_locations()]
    config.set_main_option("version_locations", os.pathsep.join(str(p) for p in locations))
    # Read by the RLS migration: which role to grant rights to.
    config.attributes["app_role"] = settings.app_role
    return config


class DatabaseUnreachable(Exception):
    """The database to migrate does not answer (or refuses the role): one line to show."""


def check_reachable(url: str | None = None, timeout: float = 5.0) -> None:
    """Connect once to the migration database, or raise :class:`DatabaseUnreachable` with a
    one-line reason (the URL without its password, and what the driver said), so that
    ``nestpoint migrate`` against a server that is down prints that, not a traceback."""
    url = url or get_settings().owner_database_url
    if url.startswith("sqlite"):
        return  # a file: created if missing

    async def probe() -> None:
        engine = create_async_engine(url, poolclass=NullPool, connect_args={"timeout": timeout})
        try:
            async with engine.connect():
                pass
        finally:
            await engine.dispose()

    try:
        asyncio.run(probe())
    except (OSError, TimeoutError, SQLAlchemyError) as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        raise DatabaseUnreachable(f"cannot connect to {shown}: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    """The driver's own words, on one line (SQLAlchemy wraps them in ``orig``)."""
    inner = getattr(exc, "orig", None) or exc
    text = " ".join(str(inner).split()) or type(inner).__name__
    return text[:300]


def _ensure_sqlite_dir(url: str) -> None:
    if url.startswith("sqlite") and ":memory:" not in url:
        Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)


def upgrade(url: str | None = None, revision: str = "heads") -> None:
    """Apply migrations as the owner role. Safe to call from inside a running event loop."""
    config = alembic_config(url)
    _ensure_sqlite_dir(config.get_main_option("sqlalchemy.url") or "")
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        command.upgrade(config, revision)
        return
    # env.py calls asyncio.run(); give it a thread of its own when a loop is running here.
    import threading

    errors: list[BaseException] = []

    def run() -> None:
        try:
            command.upgrade(config, revision)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
