"""``nestpoint`` commands run by the tests in their own process.

A command runs as ``nestpoint ...`` would (the same Typer application, the settings of the
environment, its own event loop and database connections, in a thread of its own), and
answers what a finished process would: the exit code, stdout and stderr. A new interpreter
per command would cost seconds of CPU each (importing the app) and test nothing more: the
``nestpoint`` entry point itself runs as a real process in the tests of serving, migrating
and the personal-data keys (tests/served.py, test_migrate_cli.py, test_pii_keys.py).
"""

from __future__ import annotations

import asyncio
import subprocess
import traceback

from typer.testing import CliRunner

from nestpoint.cli import app


def _invoke(args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    result = CliRunner().invoke(app, list(args))
    stderr = result.stderr
    if result.exc_info is not None and not isinstance(result.exception, SystemExit):
        # What the process would have printed before exiting with 1.
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return subprocess.CompletedProcess(
        ["nestpoint", *args], result.exit_code, result.stdout, stderr
    )


async def nestpoint(*args: str) -> subprocess.CompletedProcess[str]:
    """``nestpoint *args``: its exit code (``returncode``), ``stdout`` and ``stderr``."""
    return await asyncio.to_thread(_invoke, args)
