"""Test set-up: one fresh database per run, SQLite or PostgreSQL.

``NESTPOINT_TEST_DATABASE=sqlite`` (default) uses a temporary SQLite file.
``NESTPOINT_TEST_DATABASE=postgresql`` creates a fresh database on the server named by
``NESTPOINT_TEST_PG_ADMIN_URL`` (a superuser; default ``postgresql://root@127.0.0.1:5432/postgres``),
owned by the ``nestpoint_owner`` role that runs migrations; the app connects as
``nestpoint_app``, which owns nothing and is bound by RLS. When PostgreSQL cannot be reached
the run fails: it never skips.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import dramatiq
import httpx
import pytest
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from litestar import Litestar
from litestar.testing import AsyncTestClient

from nestpoint.context import Actor, acting_as
from nestpoint.db.session import get_database, reset_database
from nestpoint.jobs.broker import broker
from nestpoint.jobs.worker import start_worker
from nestpoint.members.pii import new_key
from nestpoint.settings import get_settings
from served import ServedNestpoint
from stripe_fake import LocalStripe

BACKEND = os.environ.get("NESTPOINT_TEST_DATABASE", "sqlite")
PG_ADMIN_URL = os.environ.get(
    "NESTPOINT_TEST_PG_ADMIN_URL", "postgresql://root@127.0.0.1:5432/postgres"
)
PG_DB = os.environ.get("NESTPOINT_TEST_PG_DB", f"nestpoint_test_{os.getpid()}")
OWNER_ROLE = "nestpoint_owner"
APP_ROLE = "nestpoint_app"


def _pg_url(user: str, driver: str = "postgresql+asyncpg") -> str:
    host_part = PG_ADMIN_URL.split("@", 1)[1].rsplit("/", 1)[0]
    return f"{driver}://{user}@{host_part}/{PG_DB}"


async def _pg_admin(*statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _create_pg_database() -> None:
    asyncio.run(
        _pg_admin(
            f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)",
            f"DROP DATABASE IF EXISTS {PG_TEMPLATE} WITH (FORCE)",
            f"""DO $$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{OWNER_ROLE}') THEN
                    CREATE ROLE {OWNER_ROLE} LOGIN CREATEROLE NOSUPERUSER NOBYPASSRLS;
                END IF;
            END $$""",
            f"CREATE DATABASE {PG_DB} OWNER {OWNER_ROLE}",
        )
    )


def _drop_pg_database() -> None:
    asyncio.run(
        _pg_admin(
            f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)",
            f"DROP DATABASE IF EXISTS {PG_TEMPLATE} WITH (FORCE)",
        )
    )


# A copy of the freshly migrated database, made before any test writes to it
# (the ``database_template`` fixture).
PG_TEMPLATE = f"{PG_DB}_template"
_templates: list[str] = []


def _make_template(sqlite_path: Path | None) -> str:
    if sqlite_path is None:
        # The migration's connections are closed (NullPool): nothing else uses the database.
        create = f"CREATE DATABASE {PG_TEMPLATE} TEMPLATE {PG_DB} OWNER {OWNER_ROLE}"
        asyncio.run(_pg_admin(create))
        return PG_TEMPLATE
    template = sqlite_path.with_name("template.db")
    source, target = sqlite3.connect(sqlite_path), sqlite3.connect(template)
    try:
        source.backup(target)  # consistent even if a journal were left behind
    finally:
        source.close()
        target.close()
    return str(template)


@pytest.fixture(scope="session")
def database_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Point settings at a fresh database and migrate it as the owner."""
    sqlite_path: Path | None = None
    if BACKEND == "postgresql":
        _create_pg_database()  # raises when the server cannot be reached: fail, never skip
        env = {
            "NESTPOINT_DATABASE_URL": _pg_url(APP_ROLE),
            "NESTPOINT_MIGRATION_DATABASE_URL": _pg_url(OWNER_ROLE),
            "NESTPOINT_APP_ROLE": APP_ROLE,
            # A server database needs configured personal-data keys (no key file).
            "NESTPOINT_PII_KEYS": f"test1:{new_key()}",
            "NESTPOINT_PII_HASH_KEY": new_key(),
        }
    elif BACKEND == "sqlite":
        sqlite_path = tmp_path_factory.mktemp("db") / "nestpoint.db"
        env = {"NESTPOINT_DATABASE_URL": f"sqlite+aiosqlite:///{sqlite_path}"}
    else:
        raise pytest.UsageError(f"unknown NESTPOINT_TEST_DATABASE={BACKEND!r}")
    # Every job test runs a job over its members in several chunks (members/jobs.py).
    env["NESTPOINT_JOB_CHUNK_MEMBERS"] = "2"
    # Counted on every request, as in production, but far above what one test's key sends
    # (tests/test_rate_limit.py sets its own).
    env["NESTPOINT_RATE_LIMIT"] = "100000/second"
    env["NESTPOINT_MEMBER_RATE_LIMIT"] = "100000/second"  # tests/memberapi sets its own
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    reset_database()
    from nestpoint.migrate import upgrade

    upgrade()
    _templates[:] = [_make_template(sqlite_path)]
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    get_settings.cache_clear()
    reset_database()
    if BACKEND == "postgresql":
        _drop_pg_database()


@pytest.fixture(scope="session")
def database_template(database_env: dict[str, str]) -> str:
    """The session's database as migrations left it (a SQLite file, or a PostgreSQL
    database name): the plugins' suites (tests/plugins/test_jobs_and_example.py,
    test_scaffold.py) start from a copy of it through NESTPOINT_TEST_TEMPLATE_DATABASE
    (nestpoint.testing) instead of migrating from scratch in each of their processes (a
    few seconds of CPU each); their set-up still migrates the copy to their plugins' heads.
    """
    return _templates[0]


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> ServedNestpoint:
    """For tests that run ``nestpoint serve``: a migrated SQLite database with a platform
    key, made once with the real commands (``nestpoint migrate``, ``nestpoint keys``) and
    copied by each test's server (tests/served.py)."""
    return ServedNestpoint(tmp_path_factory.mktemp("prepared")).prepare()


@pytest.fixture(scope="session")
def is_postgres(database_env: dict[str, str]) -> bool:
    return BACKEND == "postgresql"


@pytest.fixture(scope="session")
async def app(database_env: dict[str, str]) -> AsyncIterator[Litestar]:
    from nestpoint.api.app import create_app

    yield create_app(configure_logs=False)
    await get_database().dispose()


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


@pytest.fixture
async def concurrent_client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests really run at once, for concurrency tests.

    Litestar's ``AsyncTestClient`` runs each request to completion in a blocking portal, so
    requests sent with ``asyncio.gather`` through it are served one after another. This
    client drives the ASGI app on the test's own event loop: gathered requests interleave
    at every await and each holds its own connection and transaction, as on a real server.
    """
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@dataclass
class TenantHandle:
    """A tenant made through the API, with an HQ key and one store key per store."""

    id: uuid.UUID
    slug: str
    hq_key: str
    stores: dict[str, uuid.UUID]
    store_keys: dict[str, str]

    def hq(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.hq_key}"}

    def store(self, code: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.store_keys[code]}"}


@pytest.fixture(scope="session")
async def platform_key(database_env: dict[str, str]) -> str:
    from nestpoint.db import scoped_session
    from nestpoint.tenancy.service import create_platform_key

    with acting_as(Actor("system", name="tests")):
        async with scoped_session() as session:
            _, secret = await create_platform_key(session, "tests")
    return secret


@pytest.fixture
def platform_headers(platform_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {platform_key}"}


@pytest.fixture
def make_tenant(client: AsyncTestClient[Litestar], platform_headers: dict[str, str]):  # type: ignore[no-untyped-def]
    """Factory: a tenant with stores and keys, made through the public API."""

    async def make(store_codes: tuple[str, ...] = ("S1", "S2")) -> TenantHandle:
        slug = f"t-{uuid.uuid4().hex[:12]}"
        r = await client.post(
            "/api/v1/tenants",
            json={"slug": slug, "name": f"Chain {slug}"},
            headers=platform_headers,
        )
        assert r.status_code == 201, r.text
        tenant_id = uuid.UUID(r.json()["id"])
        r = await client.post(
            f"/api/v1/tenants/{tenant_id}/api-keys", json={"name": "HQ"}, headers=platform_headers
        )
        assert r.status_code == 201, r.text
        hq_key = r.json()["key"]
        hq = {"Authorization": f"Bearer {hq_key}"}
        stores: dict[str, uuid.UUID] = {}
        store_keys: dict[str, str] = {}
        for code in store_codes:
            r = await client.post(
                "/api/v1/stores", json={"code": code, "name": f"Store {code}"}, headers=hq
            )
            assert r.status_code == 201, r.text
            stores[code] = uuid.UUID(r.json()["id"])
            r = await client.post(
                "/api/v1/api-keys",
                json={
                    "name": f"till {code}",
                    "kind": "store",
                    "store_code": code,
                    "scopes": ["tenant:read", "stores:read", "stores:write"],
                },
                headers=hq,
            )
            assert r.status_code == 201, r.text
            store_keys[code] = r.json()["key"]
        return TenantHandle(tenant_id, slug, hq_key, stores, store_keys)

    return make


@pytest.fixture
def row_counts(database_env: dict[str, str]):  # type: ignore[no-untyped-def]
    """Async helper: ``{table: rows}`` of one tenant, for every tenant-owned table.

    Each count filters on ``tenant_id`` explicitly and runs in that tenant's context (so RLS
    on PostgreSQL lets it see the rows): tests compare counts before and after a request to
    prove that nothing was written.
    """
    from sqlalchemy import func, select

    from nestpoint.context import tenant_context
    from nestpoint.db import scoped_session
    from nestpoint.db.base import Base, tenant_owned_tables
    from nestpoint.db.models import metadata

    assert metadata is Base.metadata

    async def count(tenant_id: uuid.UUID) -> dict[str, int]:
        counts: dict[str, int] = {}
        with tenant_context(tenant_id):
            async with scoped_session() as session:
                for name in tenant_owned_tables():
                    table = Base.metadata.tables[name]
                    stmt = select(func.count()).select_from(table)
                    counts[name] = int(
                        await session.scalar(stmt.where(table.c.tenant_id == tenant_id)) or 0
                    )
        return counts

    return count


# ---------------------------------------------------------------------------- a real worker

_REDIS_URL = os.environ.get("NESTPOINT_REDIS_URL")


def flush_test_redis() -> None:
    """Drop messages of earlier runs (they name tenants of databases that are gone), and the
    in-process broker's backlog of earlier tests (a relay per commit of every test before:
    the worker would work through all of them before this test's event)."""
    # Only the dedicated test database is ever flushed, never a developer's own Redis data.
    if isinstance(broker, RedisBroker) and _REDIS_URL and _REDIS_URL.endswith("/15"):
        broker.client.flushdb()
    if isinstance(broker, StubBroker):
        broker.flush_all()


@pytest.fixture
def worker(database_env: dict[str, str]) -> Iterator[dramatiq.Worker]:
    """A real worker on the configured broker, started on a clean queue and stopped after."""
    flush_test_redis()
    running = start_worker(threads=2)
    try:
        yield running
    finally:
        # Close the worker loop's connection pool before that loop stops.
        loop_thread = get_event_loop_thread()
        if loop_thread is not None:
            loop_thread.run_coroutine(get_database().dispose())
        running.stop()


@pytest.fixture(scope="session")
def localstripe(database_env: dict[str, str]) -> Iterator[LocalStripe]:
    """``localstripe`` on a free port for the whole run; the application's Stripe calls go
    to it (``NESTPOINT_STRIPE_API_BASE``). Yields it (``tests/stripe_fake.py``: payment
    methods, what it holds, its webhooks)."""

    from nestpoint.payments import stripe_api

    fake = LocalStripe().start()
    saved = os.environ.get("NESTPOINT_STRIPE_API_BASE")
    os.environ["NESTPOINT_STRIPE_API_BASE"] = fake.url
    get_settings.cache_clear()
    stripe_api.client_for_key.cache_clear()
    yield fake
    fake.stop()
    if saved is None:
        os.environ.pop("NESTPOINT_STRIPE_API_BASE", None)
    else:
        os.environ["NESTPOINT_STRIPE_API_BASE"] = saved
    get_settings.cache_clear()
    stripe_api.client_for_key.cache_clear()
