"""Running Alembic from the CLI and tests (``nestpoint migrate``)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from alembic import command
from alembic.config import Config

from nestpoint.plugins.manager import get_plugin_host
from nestpoint.settings import PROJECT_ROOT, get_settings


def migrations_dir() -> Path:
    return Path(os.environ.get("NESTPOINT_MIGRATIONS_DIR", PROJECT_ROOT / "migrations"))


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
