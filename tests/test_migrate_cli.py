"""``nestpoint migrate`` against a database that does not answer says so in one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_migrate_against_a_server_that_is_down_prints_one_line_and_fails() -> None:
    url = f"postgresql+asyncpg://owner:s3cret@127.0.0.1:{_closed_port()}/nestpoint"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NESTPOINT_")}
    env |= {"NESTPOINT_DATABASE_URL": url, "NESTPOINT_MIGRATION_DATABASE_URL": url}
    run = subprocess.run(
        [sys.executable, "-m", "nestpoint.cli", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("nestpoint migrate: cannot connect to postgresql+asyncpg://owner:")
    assert "s3cret" not in run.stderr  # the password is not shown
    assert "Traceback" not in run.stderr + run.stdout
