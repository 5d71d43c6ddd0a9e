"""Leader election for the scheduler: of all the processes running one, only the holder of
a lock enqueues periodic jobs, and another takes over within seconds when it dies.

- PostgreSQL: a session advisory lock (``pg_try_advisory_lock``) held on a connection of
  the scheduler's own. The server releases it when that connection ends, so a leader
  killed without warning frees it at once; a leader that cannot reach the database any
  more steps down (its check fails) before another can be elected.
- SQLite (the embedded default, one machine): an exclusive ``flock`` on a file beside the
  database, released by the kernel when the process ends.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import IO, Protocol

from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from nestpoint.settings import Settings

log = logging.getLogger("nestpoint.scheduler")

CHECK_TIMEOUT_SECONDS = 5.0


class Leadership(Protocol):
    async def hold(self) -> bool:
        """Try to be (or check that this process still is) the leader."""

    async def release(self) -> None:
        """Step down (a stopping scheduler lets another take over at once)."""


def leadership_for(settings: Settings) -> Leadership:
    if settings.is_postgres:
        return AdvisoryLock(settings.database_url, settings.scheduler_lock_id)
    database = make_url(settings.database_url).database
    if not database or database == ":memory:":
        return SoleProcess()
    return FileLock(Path(database).with_suffix(".scheduler.lock"))


class SoleProcess:
    """An in-memory database is one process's own: it always leads."""

    async def hold(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class AdvisoryLock:
    def __init__(self, url: str, lock_id: int) -> None:
        self.url = url
        self.lock_id = lock_id
        self._engine: AsyncEngine | None = None
        self._connection: AsyncConnection | None = None

    async def hold(self) -> bool:
        try:
            if self._connection is None:
                return await self._acquire()
            await self._connection.execute(text("SELECT 1"))
            return True
        except Exception as exc:  # the connection (and with it the lock) is gone
            log.warning("scheduler lock lost", extra={"error": f"{type(exc).__name__}: {exc}"})
            await self.release()
            return False

    async def _acquire(self) -> bool:
        if self._engine is None:
            self._engine = create_async_engine(
                self.url,
                poolclass=NullPool,
                connect_args={"timeout": CHECK_TIMEOUT_SECONDS, "command_timeout": 10},
            )
        connection = await self._engine.connect()
        connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        got = await connection.scalar(
            text("SELECT pg_try_advisory_lock(:id)"), {"id": self.lock_id}
        )
        if got:
            self._connection = connection
            return True
        await connection.close()
        return False

    async def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                # Closing the connection releases the session lock with it.
                await connection.close()
            except Exception:
                log.debug("scheduler lock connection already gone")
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None


class FileLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    async def hold(self) -> bool:
        # A local file and a non-blocking lock: nothing here waits.
        return self._file is not None or self._lock()

    def _lock(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "ab")  # noqa: SIM115 - held open for as long as we lead
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            return False
        file.truncate(0)
        file.write(f"{os.getpid()}\n".encode())
        file.flush()
        self._file = file
        return True

    async def release(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            fcntl.flock(file.fileno(), fcntl.LOCK_UN)
            file.close()
