"""``nestpoint plugin new``: the scaffold's own tests pass right away (run from the checkout,
not installed: its conftest registers the plugin with ``nestpoint.testing``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from nestpoint.cli import app


def test_scaffold_creates_a_plugin_whose_tests_pass(tmp_path: Path, database_template: str) -> None:
    result = CliRunner().invoke(
        app, ["plugin", "new", "birthday-bonus", "--directory", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    root = tmp_path / "nestpoint-birthday-bonus"
    package = root / "src" / "nestpoint_birthday_bonus"
    assert (package / "plugin.py").is_file()
    pyproject = (root / "pyproject.toml").read_text()
    assert 'birthday-bonus = "nestpoint_birthday_bonus.plugin"' in pyproject
    # The scaffold uses only the public extension API.
    source = (package / "plugin.py").read_text()
    imports = [
        line
        for line in source.splitlines()
        if line.startswith(("from nestpoint", "import nestpoint"))
    ]
    assert imports == ["from nestpoint.plugins.api import ("]

    env = {k: v for k, v in os.environ.items() if not k.startswith("NESTPOINT_DATABASE")}
    env.pop("NESTPOINT_MIGRATION_DATABASE_URL", None)
    env["NESTPOINT_TEST_TEMPLATE_DATABASE"] = database_template  # its own plugin migrated on
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "6 passed" in run.stdout


def test_scaffold_refuses_bad_names_and_existing_folders(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["plugin", "new", "Bad_Name", "--directory", str(tmp_path)])
    assert result.exit_code == 2
    (tmp_path / "nestpoint-taken").mkdir()
    result = runner.invoke(app, ["plugin", "new", "taken", "--directory", str(tmp_path)])
    assert result.exit_code == 2
