"""Throwaway services and real ``nestpoint`` processes for the fault-tolerance suite.

Nothing here touches the PostgreSQL and Redis the rest of the suite shares: a test gets a
PostgreSQL 15 cluster of its own (``initdb`` as the ``postgres`` user into a temporary
folder, a free port, its socket in that folder, ``fsync=off``) and a ``redis-server`` of its
own (``served.RedisServer``), both of which it may stop and start again, and it starts
``nestpoint serve``, ``worker`` and ``scheduler`` as processes in sessions of their own
(``start_new_session``), each writing its output to a file (a pipe nobody reads would fill
up under load and block the process). Every process and service is stopped by whoever
started it, also when a test fails (``Stack.close``), and their logs are printed then.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from loyalty.helpers import new_phone
from nestpoint.testing import STORE_KEY_SCOPES
from served import RedisServer, free_port

T = TypeVar("T")

PG_BIN = Path(os.environ.get("NESTPOINT_FAULTS_PG_BIN", "/usr/lib/postgresql/15/bin"))
OWNER_ROLE = "nestpoint_owner"
APP_ROLE = "nestpoint_app"
DATABASE = "nestpoint"
PROBE_ID = "faultprobe"  # the probe plugin's id (tests/faults/probe_plugin.py)
# Seconds a process may take to start on a loaded two-core machine (it imports the whole
# application first).
START_TIMEOUT = 90.0


def missing_services() -> str | None:
    """Why the PostgreSQL and Redis scenarios cannot run here, or None when they can."""
    for binary in (PG_BIN / "initdb", PG_BIN / "pg_ctl"):
        if not binary.exists():
            return f"{binary} is missing (Debian package postgresql-15)"
    if shutil.which("runuser") is None:
        return "runuser is missing (initdb must run as the postgres user)"
    if shutil.which("redis-server") is None:
        return "redis-server is missing (Debian package redis-server)"
    if os.geteuid() != 0:
        return "initdb runs through runuser as postgres: the suite must run as root"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres user (the server refuses to run as root)"
    return None


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll ``check`` until it returns something true; return that, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except (OSError, httpx.HTTPError):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(every)


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


# ------------------------------------------------------------------------------- services


class PostgresCluster:
    """A PostgreSQL 15 cluster of the test's own, run as the ``postgres`` user."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="nestpoint-faults-pg-"))
        shutil.chown(self.root, "postgres", "postgres")  # initdb and the server run as postgres
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()

    def _run(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(  # noqa: S603 - our own binaries and arguments
            ["runuser", "-u", "postgres", "--", *args],  # noqa: S607 - runuser from PATH
            cwd=self.root,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        output = (done.stdout + done.stderr).decode(errors="replace")
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited with {done.returncode}:\n{output}")
        return output

    def init(self) -> PostgresCluster:
        self._run(
            str(PG_BIN / "initdb"),
            *("-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"),
            *("--locale=C", "--no-sync"),
        )
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c max_connections=300"
        )
        self._run(
            str(PG_BIN / "pg_ctl"),
            *("-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60"),
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"
        )

    def running(self) -> bool:
        pg_ctl = str(PG_BIN / "pg_ctl")
        done = subprocess.run(  # noqa: S603 - our own binaries and arguments
            ["runuser", "-u", "postgres", "--", pg_ctl, "-D", str(self.data), "status"],  # noqa: S607
            cwd=self.root,
            capture_output=True,
            timeout=30,
            check=False,
        )
        return done.returncode == 0

    def destroy(self) -> None:
        try:
            if self.data.exists() and self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, user: str, database: str = DATABASE, driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://{user}@127.0.0.1:{self.port}/{database}"

    def admin(self, *statements: str) -> None:
        """Run statements as the superuser, on the ``postgres`` database."""

        async def run() -> None:
            import asyncpg

            conn = await asyncpg.connect(
                host="127.0.0.1", port=self.port, user="postgres", database="postgres"
            )
            try:
                for statement in statements:
                    await conn.execute(statement)
            finally:
                await conn.close()

        asyncio.run(run())

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


# ------------------------------------------------------------------------------- processes


@dataclass
class Proc:
    """One ``nestpoint`` command as a process of its own, its output in a file."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_dir: Path
    process: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    def start(self) -> Proc:
        log = self.log_dir / f"{self.name}.{time.monotonic_ns()}.log"  # a restart: a new file
        self.logs.append(log)
        with log.open("wb") as out:
            self.process = subprocess.Popen(  # noqa: S603 - our interpreter and arguments
                [sys.executable, "-m", "nestpoint.cli", *self.args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # no signal meant for the test's group reaches it
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        """The current process's output so far."""
        return self.logs[-1].read_text(errors="replace") if self.logs else ""

    def wait_for(self, text: str, timeout: float = START_TIMEOUT) -> None:
        def seen() -> bool:
            if not self.alive:
                raise AssertionError(f"{self.name} exited:\n{self.output()[-3000:]}")
            return text in self.output()

        wait_until(seen, timeout, f"{self.name} printing {text!r}", every=0.1)

    def kill(self) -> int:
        """SIGKILL: the process gets no chance to finish anything. Returns its pid."""
        assert self.process is not None
        pid = self.process.pid
        self.process.kill()
        self.process.wait(timeout=30)
        return pid

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)

    def tails(self, chars: int = 2500, errors: int = 3) -> str:
        """Each log's first few error lines (with their tracebacks) and its end."""
        parts = []
        for log in self.logs:
            text = log.read_text(errors="replace") if log.exists() else ""
            failures = [
                line[:4000]
                for line in text.splitlines()
                if '"level": "error"' in line or '"level": "critical"' in line
            ]
            parts.append(f"--- {log.name}: {len(failures)} error lines, the first {errors} ---")
            parts.extend(failures[:errors])
            parts.append(f"--- {log.name} (last {chars} characters) ---\n{text[-chars:]}")
        return "\n".join(parts)


def nestpoint_cli(env: dict[str, str], *args: str, timeout: float = 180) -> str:
    done = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", "nestpoint.cli", *args],
        env=env,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, (
        f"nestpoint {' '.join(args)} exited with {done.returncode}:\n"
        + done.stderr.decode(errors="replace")[-3000:]
    )
    return done.stdout.decode()


def install_probe(directory: Path) -> Path:
    """A folder to put on ``PYTHONPATH`` in which the probe plugin is "installed": its
    module and a ``dist-info`` naming it in the ``nestpoint`` entry-point group."""
    site = directory / "probe-site"
    site.mkdir(parents=True)
    shutil.copyfile(Path(__file__).with_name("probe_plugin.py"), site / "nestpoint_faults_probe.py")
    dist = site / "nestpoint_faults_probe-0.0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: nestpoint-faults-probe\nVersion: 0.0.0\n"
    )
    (dist / "entry_points.txt").write_text(f"[nestpoint]\n{PROBE_ID} = nestpoint_faults_probe\n")
    return site


@dataclass
class ProbeCall:
    event_id: str
    type: str
    pid: int
    at: float


def probe_calls(path: Path) -> list[ProbeCall]:
    if not path.exists():
        return []
    calls = []
    for line in path.read_text().splitlines():
        event_id, type_, pid, at = line.split()
        calls.append(ProbeCall(event_id, type_, int(pid), float(at)))
    return calls


# ------------------------------------------------------------------------------- database


class Database:
    """Reads (and, for a lease the test lets lapse, writes) the database directly, as the
    superuser on PostgreSQL (no row-level security applies) or on the SQLite file."""

    def __init__(self, url: str) -> None:
        self.url = url

    def run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async def main() -> T:
            connect_args = {"timeout": 30} if self.url.startswith("sqlite") else {}
            engine = create_async_engine(self.url, poolclass=NullPool, connect_args=connect_args)
            try:
                async with AsyncSession(engine, expire_on_commit=False) as session:
                    result = await work(session)
                    await session.commit()
                    return result
            finally:
                await engine.dispose()

        return asyncio.run(main())

    def scalars(self, statement: Any) -> list[Any]:
        async def work(session: AsyncSession) -> list[Any]:
            return list((await session.scalars(statement)).all())

        return self.run(work)

    def rows(self, statement: Any) -> list[Any]:
        async def work(session: AsyncSession) -> list[Any]:
            return list((await session.execute(statement)).all())

        return self.run(work)


# ------------------------------------------------------------------------------- the API


@dataclass
class Tenant:
    id: uuid.UUID
    hq_key: str
    store_keys: dict[str, str]

    def hq(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.hq_key}"}

    def store(self, code: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.store_keys[code]}"}


def _ok(response: httpx.Response) -> Any:
    assert response.status_code in (200, 201), f"{response.status_code}: {response.text}"
    return response.json()


def make_tenant(url: str, platform_key: str, store_codes: tuple[str, ...]) -> Tenant:
    """A tenant, its HQ key, stores and a till key per store, through the API."""
    platform = {"Authorization": f"Bearer {platform_key}"}
    with httpx.Client(base_url=url, timeout=60) as client:
        slug = f"t-{uuid.uuid4().hex[:12]}"
        body = {"slug": slug, "name": f"Chain {slug}"}
        tenant_id = uuid.UUID(
            _ok(client.post("/api/v1/tenants", json=body, headers=platform))["id"]
        )
        hq_key = _ok(
            client.post(
                f"/api/v1/tenants/{tenant_id}/api-keys", json={"name": "HQ"}, headers=platform
            )
        )["key"]
        tenant = Tenant(tenant_id, hq_key, {})
        for code in store_codes:
            _ok(
                client.post(
                    "/api/v1/stores", json={"code": code, "name": code}, headers=tenant.hq()
                )
            )
            key = {"name": f"till {code}", "kind": "store", "store_code": code}
            key["scopes"] = STORE_KEY_SCOPES  # type: ignore[assignment]
            tenant.store_keys[code] = _ok(
                client.post("/api/v1/api-keys", json=key, headers=tenant.hq())
            )["key"]
    return tenant


def enable_plugins(url: str, tenant: Tenant, *plugin_ids: str) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        for plugin_id in plugin_ids:
            r = client.put(
                f"/api/v1/tenant/plugins/{plugin_id}", json={"enabled": True}, headers=tenant.hq()
            )
            _ok(r)


def enrol(url: str, tenant: Tenant, count: int) -> list[str]:
    with httpx.Client(base_url=url, timeout=60) as client:
        return [
            _ok(
                client.post(
                    "/api/v1/members",
                    json={"phone": new_phone(), "name": "王芳"},
                    headers=tenant.hq(),
                )
            )["id"]
            for _ in range(count)
        ]


def healthy(url: str) -> bool:
    return httpx.get(f"{url}/healthz", timeout=2).status_code == 200


# ------------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    """The services and processes of one scenario; ``close`` stops every one of them."""

    directory: Path
    env: dict[str, str]
    database: Database
    api_port: int
    probe_log: Path
    procs: list[Proc] = field(default_factory=list)
    cluster: PostgresCluster | None = None
    redis: RedisServer | None = None
    platform_key: str = ""
    killed: dict[int, float] = field(default_factory=dict)  # pid -> when it was SIGKILLed
    failed: bool = False  # a failure was explained: keep the logs

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def proc(self, name: str, *args: str, env: dict[str, str] | None = None) -> Proc:
        proc = Proc(name, list(args), env or self.env, self.directory)
        self.procs.append(proc)
        return proc

    def serve(self, name: str = "api") -> Proc:
        return self.proc(name, "serve", "--port", str(self.api_port)).start()

    def wait_healthy(self, proc: Proc) -> None:
        def up() -> bool:
            if not proc.alive:
                raise AssertionError(f"{proc.name} exited:\n{proc.output()[-3000:]}")
            return healthy(self.url)

        wait_until(up, START_TIMEOUT, f"{proc.name} answering /healthz", every=0.1)

    def kill(self, proc: Proc) -> int:
        at = time.time()
        pid = proc.kill()
        self.killed[pid] = at
        return pid

    def close(self) -> None:
        errors = []
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except Exception as exc:  # stop every other one all the same
                errors.append(f"{proc.name}: {exc}")
        if self.redis is not None:
            with contextlib.suppress(Exception):
                self.redis.stop()
        if self.cluster is not None:
            self.cluster.destroy()
        if self.failed:
            print(f"the processes' logs are kept in {self.directory}")
        else:
            shutil.rmtree(self.directory, ignore_errors=True)
        assert not errors, errors

    def report(self) -> str:
        parts = [proc.tails() for proc in self.procs]
        if self.cluster is not None:
            parts.append(f"--- postgresql server.log ---\n{self.cluster.log_tail()}")
        return "\n".join(parts)

    @contextlib.contextmanager
    def explained(self) -> Iterator[None]:
        """On any failure inside, print every process's output (pytest shows it with the
        failure), then let the failure through."""
        try:
            yield
        except BaseException:
            self.failed = True
            print(self.report())
            print(f"the processes' logs are kept in {self.directory}")
            raise


def base_env(directory: Path, probe_site: Path, probe_log: Path) -> dict[str, str]:
    """The settings every process of a stack shares (nothing of the test run's own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NESTPOINT_")}
    python_path = [str(probe_site), *filter(None, [env.get("PYTHONPATH")])]
    env |= {
        "NESTPOINT_DATA_DIR": str(directory),
        "NESTPOINT_PII_KEYS": f"k1:{_key()}",
        "NESTPOINT_PII_HASH_KEY": _key(),
        "NESTPOINT_LOG_JSON": "true",
        # Far above what the load sends (the limit is still counted, in Redis when set).
        "NESTPOINT_RATE_LIMIT": "100000/second",
        "NESTPOINT_METRICS_PORT": "0",  # workers and the scheduler serve no metrics port
        # The expiry scenario kills workers between the chunks of a run: one member each.
        "NESTPOINT_JOB_CHUNK_MEMBERS": "1",
        "PYTHONPATH": os.pathsep.join(python_path),
        "FAULTS_PROBE_LOG": str(probe_log),
    }
    return env


def postgres_stack() -> Stack:
    """A cluster and a Redis of the stack's own, migrated, with a platform key; no API or
    worker started yet. The caller closes it."""
    directory = Path(tempfile.mkdtemp(prefix="nestpoint-faults-"))
    cluster = PostgresCluster()
    probe_log = directory / "probe.log"
    env = base_env(directory, install_probe(directory), probe_log)
    stack = Stack(
        directory,
        env,
        Database(cluster.url("postgres")),
        free_port(),
        probe_log,
        cluster=cluster,
    )
    try:
        cluster.init().start()
        cluster.admin(
            f"CREATE ROLE {OWNER_ROLE} LOGIN CREATEROLE NOSUPERUSER NOBYPASSRLS",
            f"CREATE DATABASE {DATABASE} OWNER {OWNER_ROLE}",
        )
        stack.redis = RedisServer().start()
        env |= {
            "NESTPOINT_DATABASE_URL": cluster.url(APP_ROLE),
            "NESTPOINT_MIGRATION_DATABASE_URL": cluster.url(OWNER_ROLE),
            "NESTPOINT_APP_ROLE": APP_ROLE,
            "NESTPOINT_REDIS_URL": stack.redis.url,
        }
    except BaseException:
        stack.close()
        raise
    return _prepared(stack, env)


def sqlite_stack() -> Stack:
    """The embedded set-up: a SQLite file, no Redis (``serve`` runs the worker and the
    scheduler inside itself); migrated, with a platform key."""
    directory = Path(tempfile.mkdtemp(prefix="nestpoint-faults-"))
    probe_log = directory / "probe.log"
    env = base_env(directory, install_probe(directory), probe_log)
    db_file = directory / "nestpoint.db"
    env["NESTPOINT_DATABASE_URL"] = f"sqlite+aiosqlite:///{db_file}"
    stack = Stack(
        directory, env, Database(f"sqlite+aiosqlite:///{db_file}"), free_port(), probe_log
    )
    return _prepared(stack, env)


def _prepared(stack: Stack, env: dict[str, str]) -> Stack:
    """Migrate the stack's database and make its platform key (stopping it on failure)."""
    try:
        nestpoint_cli(env, "migrate")
        stack.platform_key = nestpoint_cli(env, "keys", "create-platform", "--name", "faults")
        stack.platform_key = stack.platform_key.strip()
    except BaseException:
        stack.close()
        raise
    return stack
