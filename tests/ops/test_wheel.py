"""The built wheel is the service: installed with its pinned dependencies into a fresh virtual
environment outside the source tree, ``nestpoint migrate`` migrates a fresh database of this
run's backend from the migrations the wheel carries, and writes nothing into the source tree.
Without the ``scaffold`` extra, ``nestpoint plugin new`` says what to install."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from alembic.util import to_tuple
from sqlalchemy.ext.asyncio import create_async_engine

from conftest import APP_ROLE, BACKEND, OWNER_ROLE, PG_ADMIN_URL, _pg_admin
from source_tree import REPO_ROOT

# The PostgreSQL run needs the owner role, which the session's database set-up creates.
pytestmark = pytest.mark.usefixtures("database_env")

# Variables that could point the installed service back at the source tree or this run.
LEAKY = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")


def _uv() -> str:
    """uv itself: ``uv run`` names it in $UV; otherwise the one on PATH."""
    found = os.environ.get("UV") or shutil.which("uv")
    assert found, "uv is needed to build the wheel (make install puts it on PATH)"
    return found


def _run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    run = subprocess.run(  # noqa: S603 - our own tools, fixed arguments
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, f"{command}:\n{run.stdout}\n{run.stderr}"
    return run.stdout


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any Nestpoint setting or source-tree path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NESTPOINT_") and k not in LEAKY}
    return env | extra


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The core's wheel and its locked dependencies (no extras) in a fresh environment."""
    work = tmp_path_factory.mktemp("wheel")
    uv, env = _uv(), _clean_env()
    build = ("build", "--wheel", "--package", "nestpoint", "--out-dir", work)
    _run(uv, *build, cwd=REPO_ROOT, env=env)
    (wheel,) = work.glob("nestpoint-*.whl")
    requirements = work / "requirements.txt"
    export = ("export", "--frozen", "--no-dev", "--no-emit-workspace", "--no-hashes")
    _run(uv, *export, "--package", "nestpoint", "-o", requirements, cwd=REPO_ROOT, env=env)
    _run(uv, "venv", work / "venv", "--python", sys.executable, cwd=work, env=env)
    python = work / "venv" / "bin" / "python"
    _run(uv, "pip", "install", "--python", python, "-r", requirements, wheel, cwd=work, env=env)
    return work / "venv"


@pytest.fixture
def database(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Settings for a fresh database of this run's backend (SQLite: the default file)."""
    if BACKEND == "sqlite":
        yield {}  # the default: var/nestpoint.db under the working directory
        return
    name = f"nestpoint_wheel_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f"CREATE DATABASE {name} OWNER {OWNER_ROLE}"))
    host = PG_ADMIN_URL.split("@", 1)[1].rsplit("/", 1)[0]
    yield {
        "NESTPOINT_DATABASE_URL": f"postgresql+asyncpg://{APP_ROLE}@{host}/{name}",
        "NESTPOINT_MIGRATION_DATABASE_URL": f"postgresql+asyncpg://{OWNER_ROLE}@{host}/{name}",
        "NESTPOINT_APP_ROLE": APP_ROLE,
    }
    asyncio.run(_pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def _core_heads() -> set[str]:
    """The core's heads as alembic records them: a head that a later revision depends on
    (0002_plugins, through 0008) is implied by that revision, not stored."""
    script = ScriptDirectory(str(REPO_ROOT / "migrations"))
    needed = {d for rev in script.walk_revisions() for d in to_tuple(rev.dependencies, ())}
    return set(script.get_heads()) - needed


def _revisions_and_tables(url: str) -> tuple[set[str], set[str]]:
    async def read() -> tuple[set[str], set[str]]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
                tables = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
                return {row[0] for row in rows}, set(tables)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _top_level(folder: Path) -> set[str]:
    """What a build or an install would leave behind (dist/, build/, *.egg-info)."""
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


def test_the_installed_wheel_migrates_without_the_source_tree(
    venv: Path, database: dict[str, str], tmp_path: Path
) -> None:
    before = _top_level(REPO_ROOT), _top_level(REPO_ROOT / "platform")
    python = venv / "bin" / "python"
    where = _run(
        python,
        "-c",
        "import nestpoint, nestpoint.migrate as m; print(nestpoint.__file__, m.migrations_dir())",
        cwd=tmp_path,
        env=_clean_env(),
    ).split()
    assert all(Path(p).resolve().is_relative_to(venv.resolve()) for p in where), where

    out = _run(venv / "bin" / "nestpoint", "migrate", cwd=tmp_path, env=_clean_env(**database))
    assert "migrated to heads" in out

    if BACKEND == "sqlite":
        assert (tmp_path / "var" / "nestpoint.db").is_file()  # data_dir: var/ of the cwd
        url = f"sqlite+aiosqlite:///{tmp_path / 'var' / 'nestpoint.db'}"
    else:
        url = database["NESTPOINT_MIGRATION_DATABASE_URL"]
    revisions, tables = _revisions_and_tables(url)
    assert revisions == _core_heads()
    assert {"tenants", "members", "outbox_events"} <= tables
    assert (_top_level(REPO_ROOT), _top_level(REPO_ROOT / "platform")) == before


def test_plugin_new_without_the_scaffold_extra_says_what_to_install(
    venv: Path, tmp_path: Path
) -> None:
    run = subprocess.run(  # noqa: S603 - the installed command
        [str(venv / "bin" / "nestpoint"), "plugin", "new", "birthday-bonus"],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.strip().splitlines() == [
        "nestpoint plugin new needs copier: install nestpoint[scaffold] "
        "(pip install 'nestpoint[scaffold]')"
    ]
    assert "Traceback" not in run.stdout + run.stderr
    assert list(tmp_path.iterdir()) == []
