"""Real processes for the operations tests: ``nestpoint serve`` and ``redis-server``.

Each runs on a free port with its own temporary state (a SQLite file, no Redis persistence)
and is stopped by the test that started it.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until(check: object, timeout: float, what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {process.returncode}")
        try:
            if check():  # type: ignore[operator]
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what}: not up within {timeout}s")


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@dataclass
class RedisServer:
    """A throwaway ``redis-server`` on a free port (not 6379: other runs share that one)."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise pytest.UsageError("redis-server is not installed (apt-get install redis-server)")
        options = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        self.process = subprocess.Popen(  # noqa: S603 - our own arguments
            [binary, *options, "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_until(self._answers, 10, "redis-server", self.process)
        return self

    def _answers(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@dataclass
class ServedNestpoint:
    """``nestpoint serve`` as its own process, on a fresh SQLite file in ``directory``."""

    directory: Path
    redis_url: str | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    platform_key: str = ""
    pii_key: str = field(default_factory=_key)
    pii_hash_key: str = field(default_factory=_key)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NESTPOINT_")}
        env |= {
            "NESTPOINT_DATABASE_URL": f"sqlite+aiosqlite:///{self.directory / 'nestpoint.db'}",
            "NESTPOINT_PII_KEYS": f"k1:{self.pii_key}",
            "NESTPOINT_PII_HASH_KEY": self.pii_hash_key,
            "NESTPOINT_LOG_JSON": "true",
            "NESTPOINT_CONFIG_CACHE_SECONDS": "0",
        }
        if self.redis_url:
            env["NESTPOINT_REDIS_URL"] = self.redis_url
        return env

    def cli(self, *args: str) -> str:
        done = subprocess.run(  # noqa: S603 - our own interpreter and arguments
            [sys.executable, "-m", "nestpoint.cli", *args],
            env=self.env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
        return done.stdout.decode()

    def python(self, code: str) -> str:
        """Run ``code`` in a fresh interpreter with this server's settings."""
        done = subprocess.run(  # noqa: S603 - our own interpreter and the test's code
            [sys.executable, "-c", code], env=self.env, capture_output=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
        return done.stdout.decode()

    def prepare(self) -> ServedNestpoint:
        """Migrate the database and make a platform key."""
        self.cli("migrate")
        self.platform_key = self.cli("keys", "create-platform", "--name", "tests").strip()
        return self

    def copy(self, directory: Path, redis_url: str | None = None) -> ServedNestpoint:
        """A server of its own on a copy of this prepared database (migrating once per run
        instead of once per server saves seconds per test)."""
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.directory / "nestpoint.db", directory / "nestpoint.db")
        return ServedNestpoint(
            directory,
            redis_url=redis_url,
            platform_key=self.platform_key,
            pii_key=self.pii_key,
            pii_hash_key=self.pii_hash_key,
        )

    def start(self, *serve_args: str, ignore_sigint: bool = False) -> ServedNestpoint:
        """Serve (``prepare`` first, or ``copy`` a prepared one); with ``ignore_sigint`` the
        server starts with SIGINT ignored, as a shell starts a command in the background."""
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [sys.executable, "-m", "nestpoint.cli", "serve", "--port", str(self.port), *serve_args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a signal to the test's process group must not reach it
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
            if ignore_sigint
            else None,
        )
        _wait_until(self._healthy, 60, "nestpoint serve", self.process)
        return self

    def _healthy(self) -> bool:
        return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 10) -> str:
        """Send ``sig``, wait for the exit, return the output; kill it if it hangs."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            out, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate(timeout=10)
            raise AssertionError(
                f"still running {timeout}s after {sig.name}:\n"
                + out.decode(errors="replace")[-3000:]
            ) from None
        return out.decode(errors="replace")
