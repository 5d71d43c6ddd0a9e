"""``nestpoint.testing``: the pytest plugin for plugin authors (and Nestpoint's own plugins).

Installed with Nestpoint and loaded by pytest through the ``pytest11`` entry point, so a
plugin's tests need no set-up of their own beyond pytest-asyncio's settings::

    [tool.pytest.ini_options]
    asyncio_mode = "auto"
    asyncio_default_fixture_loop_scope = "session"
    asyncio_default_test_loop_scope = "session"

Fixtures (all prefixed ``nestpoint_``, so they never clash with a project's own):

``nestpoint_plugins``
    Override it (session scope) to register plugins that are not installed, e.g. the
    package under test run from a checkout: ``{"my-plugin": my_plugin.plugin}``.
``nestpoint_host``
    A fresh plugin host: the installed plugins plus ``nestpoint_plugins``; it replaces the
    process-wide host for the session.
``nestpoint_database``
    A fresh database, migrated (the core's and the plugins' migrations): SQLite in a
    temporary folder, or PostgreSQL with ``NESTPOINT_TEST_DATABASE=postgresql`` (a new
    database on ``NESTPOINT_TEST_PG_ADMIN_URL``; the app connects as a role bound by RLS).
    ``NESTPOINT_TEST_TEMPLATE_DATABASE`` (a SQLite file, or a PostgreSQL database name)
    makes it a copy of an already migrated database, then migrated to the heads of this
    session's plugins: Nestpoint's own suite passes its freshly migrated one to each
    plugin's suite it runs, instead of every one migrating from scratch.
``nestpoint_app`` / ``nestpoint_client`` / ``nestpoint_concurrent_client``
    The Litestar application (with the plugins' routes) and an async test client; the
    concurrent one really serves gathered requests at once (capacity and quota races).
``nestpoint_make_tenant`` / ``nestpoint_tenant``
    A tenant (chain) with stores, an HQ key and a key per store: a :class:`TenantHandle`.
    A store key can do what a till's can (record orders, enrol and look members up, hold
    points) and manage plugins (:data:`STORE_KEY_SCOPES`); ``store_scopes=[...]`` narrows
    it.
``nestpoint_enable_plugin`` / ``nestpoint_disable_plugin``
    Enable (with config) or disable a plugin for a chain or one store, through the API.
``nestpoint_emit_event``
    Write a domain event to the outbox as the core would, and relay it to the plugins.
``nestpoint_run_jobs``
    Run what is due for a tenant: relay its outbox, run the plugins' periodic jobs;
    ``skip_backoff=True`` retries failed deliveries without waiting out their back-off.
``nestpoint_erase_member``
    Erase a member as HQ does and have the plugins erase theirs at once (the
    ``nestpoint_erase_member_data`` hook); returns the erasure with each plugin's answer.
``nestpoint_adjust_points``
    Ask the enabled plugins for earn-rule adjustments, as the order service does: for one
    line earning ``base_points`` or for ``lines=[EarnLine(...), ...]``, paid at ``paid_at``
    in the chain's ``time_zone``.
``nestpoint_public_rate_limit``
    ``nestpoint_public_rate_limit("3/minute")`` sets the limit per client address of the
    plugins' public routes (``/public/...``) for one test, with fresh counters in memory.
``nestpoint_member_token``
    ``await nestpoint_member_token(tenant, member_id)``: the headers of a member token
    (``Authorization: Bearer npm_...``) for the plugin's member routes (``/api/v1/me/...``).
``nestpoint_member_rate_limit``
    ``nestpoint_member_rate_limit("3/minute")`` sets the limit per member of the member
    API (and plugins' member routes) for one test, with fresh counters in memory.

The same helpers exist as plain functions (:func:`enable_plugin`, :func:`emit_event`...)
for suites that bring their own client. :func:`next_local_time` gives a moment of the day
to step a job at (quiet hours, a chain's morning) that is always ahead of the clock.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

# The core is imported inside the helpers, never here: pytest loads this plugin (pytest11)
# before a suite sets its NESTPOINT_* environment, and importing the core reads the settings
# (the broker and the engine are chosen once, at import).
if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.testing import AsyncTestClient

    from nestpoint.plugins.api import EarnAdjustment, EarnLine
    from nestpoint.plugins.manager import PluginHost

    Client = AsyncTestClient[Litestar]

# A store key made by the kit can do what a till's key does by default (look members up,
# enrol them, record orders and refunds, hold points) and manage the store's plugins.
# (Written out: the core is not imported here; a test keeps it equal to
# tenancy.keys.DEFAULT_SCOPES["store"] plus the two plugin scopes.)
STORE_KEY_SCOPES = [
    "benefits:read",
    "benefits:use",
    "coupons:read",
    "coupons:use",
    "loyalty:read",
    "members:read",
    "members:write",
    "membership:read",
    "membership:sell",
    "orders:read",
    "orders:write",
    "plugins:read",
    "plugins:write",
    "points:hold",
    "referrals:use",
    "stores:read",
    "tenant:read",
    "wallet:read",
    "wallet:topup",
]


# ---------------------------------------------------------------------------- handles


@dataclass
class TenantHandle:
    """A tenant made through the API, with an HQ key and one store key per store."""

    id: uuid.UUID
    slug: str
    hq_key: str
    stores: dict[str, uuid.UUID] = field(default_factory=dict)
    store_keys: dict[str, str] = field(default_factory=dict)

    def hq(self) -> dict[str, str]:
        """Headers for an HQ (tenant) key."""
        return {"Authorization": f"Bearer {self.hq_key}"}

    def store(self, code: str) -> dict[str, str]:
        """Headers for the key of store ``code``."""
        return {"Authorization": f"Bearer {self.store_keys[code]}"}


# ---------------------------------------------------------------------------- helpers


def _tenant_id(tenant: TenantHandle | uuid.UUID) -> uuid.UUID:
    """A handle's id (any object with an ``id``, e.g. a suite's own handle) or an id."""
    return tenant if isinstance(tenant, uuid.UUID) else tenant.id


def _ok(response: Any, *statuses: int) -> Any:
    if response.status_code not in (statuses or (200, 201)):
        raise AssertionError(f"{response.status_code}: {response.text}")
    return response.json()


async def make_tenant(
    client: Client,
    platform_key: str,
    store_codes: tuple[str, ...] = ("S1", "S2"),
    *,
    store_scopes: list[str] | None = None,
) -> TenantHandle:
    """Create a tenant, its HQ key, its stores and a key per store, through the API.

    Each store key carries ``store_scopes`` (default :data:`STORE_KEY_SCOPES`: a till's
    default scopes, so it records orders, plus ``plugins:read`` and ``plugins:write``);
    pass fewer to test what a narrower key may not do."""
    platform = {"Authorization": f"Bearer {platform_key}"}
    slug = f"t-{uuid.uuid4().hex[:12]}"
    body = _ok(
        await client.post(
            "/api/v1/tenants", json={"slug": slug, "name": f"Chain {slug}"}, headers=platform
        )
    )
    tenant_id = uuid.UUID(body["id"])
    hq_key = _ok(
        await client.post(
            f"/api/v1/tenants/{tenant_id}/api-keys", json={"name": "HQ"}, headers=platform
        )
    )["key"]
    handle = TenantHandle(tenant_id, slug, hq_key)
    for code in store_codes:
        store = _ok(
            await client.post(
                "/api/v1/stores", json={"code": code, "name": f"Store {code}"}, headers=handle.hq()
            )
        )
        handle.stores[code] = uuid.UUID(store["id"])
        handle.store_keys[code] = _ok(
            await client.post(
                "/api/v1/api-keys",
                json={
                    "name": f"till {code}",
                    "kind": "store",
                    "store_code": code,
                    "scopes": store_scopes or STORE_KEY_SCOPES,
                },
                headers=handle.hq(),
            )
        )["key"]
    return handle


async def enable_plugin(
    client: Client,
    tenant: TenantHandle,
    plugin_id: str,
    *,
    store: str | None = None,
    config: Mapping[str, Any] | None = None,
    enabled: bool = True,
    allow_store_opt_in: bool | None = None,
) -> dict[str, Any]:
    """Enable (or, with ``enabled=False``, disable) a plugin for the chain or one store,
    as HQ; returns the plugin's description (``GET /api/v1/tenant/plugins/<id>``)."""
    body: dict[str, Any] = {"enabled": enabled}
    if config is not None:
        body["config"] = dict(config)
    if store is None:
        if allow_store_opt_in is not None:
            body["allow_store_opt_in"] = allow_store_opt_in
        path = f"/api/v1/tenant/plugins/{plugin_id}"
    else:
        path = f"/api/v1/tenant/plugins/{plugin_id}/stores/{store}"
    result: dict[str, Any] = _ok(await client.put(path, json=body, headers=tenant.hq()))
    return result


async def disable_plugin(
    client: Client, tenant: TenantHandle, plugin_id: str, *, store: str | None = None
) -> dict[str, Any]:
    """Disable a plugin for one store, or everywhere in the chain (``store=None``)."""
    if store is not None:
        return await enable_plugin(client, tenant, plugin_id, store=store, enabled=False)
    result: dict[str, Any] = _ok(
        await client.post(f"/api/v1/tenant/plugins/{plugin_id}/disable", headers=tenant.hq())
    )
    return result


def next_local_time(
    hour: int, time_zone: str = "Asia/Shanghai", at_least: timedelta = timedelta(hours=1)
) -> datetime:
    """The next ``hour``:00 in ``time_zone``, at least ``at_least`` from now, in UTC: a
    moment to step a message or a job at that a test never starts after (a fixed date
    would, once the calendar passed it)."""
    zone = ZoneInfo(time_zone)
    now = datetime.now(UTC)
    day = now.astimezone(zone).date()
    while True:
        moment = datetime(day.year, day.month, day.day, hour, tzinfo=zone).astimezone(UTC)
        if moment >= now + at_least:
            return moment
        day += timedelta(days=1)


async def emit_event(
    tenant: TenantHandle | uuid.UUID,
    type: str,
    payload: Mapping[str, Any] | None = None,
    *,
    store: str | uuid.UUID | None = None,
    subject_type: str = "test",
    subject_id: str | None = None,
    deliver: bool = True,
) -> str:
    """Write an event to the outbox (committed, as the core does); relay it unless
    ``deliver=False``. ``store`` is a store code (of a handle) or a store id."""
    from nestpoint.context import tenant_context
    from nestpoint.db import scoped_session
    from nestpoint.events.service import emit
    from nestpoint.plugins.relay import relay_pending

    tenant_id = _tenant_id(tenant)
    store_id = tenant.stores[store] if isinstance(store, str) else store  # type: ignore[union-attr]
    with tenant_context(tenant_id, store_id):
        async with scoped_session() as session:
            event_id = str(
                emit(
                    session,
                    type,
                    subject_type,
                    subject_id or str(uuid.uuid4()),
                    dict(payload or {}),
                    store_id=store_id,
                )
            )
    if deliver:
        await relay_pending(tenant_id)
    return event_id


async def make_retries_due(tenant: TenantHandle | uuid.UUID) -> None:
    """Make every event of the tenant that waits for a retry due now: the next relay retries
    it without the test waiting out the back-off."""
    from sqlalchemy import update

    from nestpoint.context import tenant_context
    from nestpoint.db import scoped_session, utcnow
    from nestpoint.events.models import OutboxEvent

    tenant_id = _tenant_id(tenant)
    with tenant_context(tenant_id):
        async with scoped_session() as session:
            await session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.tenant_id == tenant_id, OutboxEvent.published_at.is_(None))
                .values(next_attempt_at=utcnow())
            )


async def run_jobs(
    host: PluginHost, tenant: TenantHandle | uuid.UUID, *, skip_backoff: bool = False
) -> list[str]:
    """Run what is due for a tenant now: relay its outbox (all due events, retries
    included), then every periodic job of the plugins enabled for it. Returns the periodic
    jobs that ran. ``skip_backoff=True`` first makes the events waiting for a retry due
    (:func:`make_retries_due`), so a failed delivery is retried at once."""
    from nestpoint.plugins.jobs import run_periodic_jobs_now
    from nestpoint.plugins.relay import relay_pending

    tenant_id = _tenant_id(tenant)
    if skip_backoff:
        await make_retries_due(tenant_id)
    while await relay_pending(tenant_id):
        pass
    ran = await run_periodic_jobs_now(host, tenant_id)
    await host.drain()
    return ran


async def member_token(client: Any, tenant: TenantHandle, member_id: str) -> dict[str, str]:
    """A member token for ``member_id``, issued as the chain's backend does (``POST
    /api/v1/member-tokens`` with the HQ key): the headers to send it with."""
    body = {"member_id": member_id}
    issued = _ok(await client.post("/api/v1/member-tokens", json=body, headers=tenant.hq()), 201)
    return {"Authorization": f"Bearer {issued['token']}"}


async def erase_member(
    client: Any, tenant: TenantHandle, member_id: str, reason: str = "test erasure"
) -> dict[str, Any]:
    """Erase a member as HQ does (``POST /api/v1/members/{id}/erasure``), then ask the
    plugins to erase theirs now, as the ``privacy.erase_in_plugins`` job does. Returns the
    erasure (``plugins``: each plugin's answer; ``plugins_erased_at`` set when all did)."""
    from nestpoint.privacy.actors import ask_plugins_to_erase

    path = f"/api/v1/members/{member_id}/erasure"
    _ok(await client.post(path, json={"reason": reason}, headers=tenant.hq()), 200)
    await ask_plugins_to_erase(tenant.id, uuid.UUID(member_id))
    return dict(_ok(await client.get(path, headers=tenant.hq()), 200))


async def adjust_points(
    host: PluginHost,
    tenant: TenantHandle,
    store: str | None,
    *,
    base_points: int = 100,
    member_id: str = "member-1",
    paid_at: datetime | None = None,
    children_birth_dates: tuple[date, ...] = (),
    member_birthday: date | None = None,
    tier_code: str | None = None,
    time_zone: str = "Asia/Shanghai",
    lines: Sequence[EarnLine] | None = None,
) -> list[tuple[str, EarnAdjustment]]:
    """Ask the plugins enabled for ``store`` to adjust an order's points, as the order
    service does: ``paid_at`` (default now) reaches them in the chain's ``time_zone``. The
    order has ``lines`` (``EarnLine``s; ``base_points`` is then their sum), or else one
    line earning ``base_points``."""
    from nestpoint.plugins.api import EarnContext, EarnLine

    store_id = tenant.stores[store] if store else None
    zone = ZoneInfo(time_zone)
    if lines:
        base_points = sum(line.base_points for line in lines)
    order_lines = tuple(lines or (EarnLine("SKU-1", "milk", 1, base_points * 100, base_points),))
    context = EarnContext(
        tenant_id=str(tenant.id),
        store_id=str(store_id) if store_id else None,
        member_id=member_id,
        member_birthday=member_birthday,
        children_birth_dates=children_birth_dates,
        tier_code=tier_code,
        paid_at=(paid_at or datetime.now(UTC)).astimezone(zone),
        lines=order_lines,
        base_points=base_points,
        time_zone=time_zone,
        config={},
    )
    result = await host.adjust_earned_points(tenant.id, store_id, context)
    await host.drain()
    return result


# ---------------------------------------------------------------------------- database


def _pg_settings() -> tuple[str, str]:
    admin = os.environ.get(
        "NESTPOINT_TEST_PG_ADMIN_URL", "postgresql://root@127.0.0.1:5432/postgres"
    )
    name = f"nestpoint_kit_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    return admin, name


async def _pg_admin(admin_url: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _fresh_database(tmp: Path) -> tuple[dict[str, str], Callable[[], None]]:
    """A new database: empty, or a copy of ``NESTPOINT_TEST_TEMPLATE_DATABASE`` when set."""
    backend = os.environ.get("NESTPOINT_TEST_DATABASE", "sqlite")
    template = os.environ.get("NESTPOINT_TEST_TEMPLATE_DATABASE")
    if backend == "sqlite":
        if template:
            shutil.copyfile(template, tmp / "nestpoint.db")
        return {"NESTPOINT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'nestpoint.db'}"}, (
            lambda: None
        )
    if backend != "postgresql":
        raise pytest.UsageError(f"unknown NESTPOINT_TEST_DATABASE={backend!r}")
    admin, name = _pg_settings()
    owner, app_role = "nestpoint_owner", "nestpoint_app"
    create = f"CREATE DATABASE {name} OWNER {owner}"
    if template:
        create += f" TEMPLATE {template}"
    asyncio.run(
        _pg_admin(
            admin,
            f"""DO $$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{owner}') THEN
                    CREATE ROLE {owner} LOGIN CREATEROLE NOSUPERUSER NOBYPASSRLS;
                END IF;
            END $$""",
            create,
        )
    )
    host = admin.split("@", 1)[1].rsplit("/", 1)[0]
    env = {
        "NESTPOINT_DATABASE_URL": f"postgresql+asyncpg://{app_role}@{host}/{name}",
        "NESTPOINT_MIGRATION_DATABASE_URL": f"postgresql+asyncpg://{owner}@{host}/{name}",
        "NESTPOINT_APP_ROLE": app_role,
    }
    if not os.environ.get("NESTPOINT_PII_KEYS"):  # a server database needs configured keys
        from nestpoint.members.pii import new_key

        env["NESTPOINT_PII_KEYS"] = f"kit1:{new_key()}"
        env["NESTPOINT_PII_HASH_KEY"] = new_key()
    drop = f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    return env, lambda: asyncio.run(_pg_admin(admin, drop))


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def nestpoint_plugins() -> Mapping[str, object]:
    """Plugins to register that are not installed: ``{plugin id: module or object}``.

    Override in your ``conftest.py`` (session scope) to test a plugin from its checkout.
    """
    return {}


@pytest.fixture(scope="session")
def nestpoint_host(nestpoint_plugins: Mapping[str, object]) -> Iterator[PluginHost]:
    """A fresh plugin host (installed plugins + ``nestpoint_plugins``), process-wide."""
    from nestpoint.plugins.manager import PluginHost, set_plugin_host

    host = PluginHost()
    host.load_entry_points()
    for plugin_id, plugin in nestpoint_plugins.items():
        if plugin_id in host.plugins and host.plugins[plugin_id].loaded:
            continue  # installed as well: the entry point already registered it
        info = host.register_plugin(plugin, plugin_id, package=plugin_id, version="dev")
        if not info.loaded:
            raise pytest.UsageError(f"plugin {plugin_id!r} was refused: {info.reason}")
    previous = set_plugin_host(host)
    yield host
    set_plugin_host(previous)


@pytest.fixture(scope="session")
def nestpoint_database(
    nestpoint_host: PluginHost, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """A fresh, migrated database for the session; yields the settings it set."""
    from nestpoint.db.session import reset_database
    from nestpoint.migrate import upgrade
    from nestpoint.settings import get_settings

    env, drop = _fresh_database(tmp_path_factory.mktemp("nestpoint"))
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    reset_database()
    nestpoint_host.settings = get_settings()
    upgrade()
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    get_settings.cache_clear()
    reset_database()
    drop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def nestpoint_app(nestpoint_database: dict[str, str]) -> AsyncIterator[Litestar]:
    """The application, with every registered plugin's routes mounted."""
    from nestpoint.api.app import create_app
    from nestpoint.db.session import get_database

    yield create_app(configure_logs=False)
    await get_database().dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def nestpoint_client(nestpoint_app: Litestar) -> AsyncIterator[Client]:
    from litestar.testing import AsyncTestClient

    async with AsyncTestClient(app=nestpoint_app) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="session")
async def nestpoint_concurrent_client(nestpoint_app: Litestar) -> AsyncIterator[Any]:
    """A client (``httpx.AsyncClient``) whose requests really run at once: requests sent
    with ``asyncio.gather`` interleave at every await, each with its own connection and
    transaction, as on a real server (``nestpoint_client`` serves them one by one). For
    capacity and quota tests."""
    import httpx

    transport = httpx.ASGITransport(app=nestpoint_app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def nestpoint_platform_key(nestpoint_database: dict[str, str]) -> str:
    """A platform (operator) key."""
    from nestpoint.context import Actor, acting_as
    from nestpoint.db import scoped_session
    from nestpoint.tenancy.service import create_platform_key

    with acting_as(Actor("system", name="nestpoint.testing")):
        async with scoped_session() as session:
            _, secret = await create_platform_key(session, "nestpoint.testing")
    return secret


@pytest.fixture
def nestpoint_make_tenant(
    nestpoint_client: Client, nestpoint_platform_key: str
) -> Callable[..., Awaitable[TenantHandle]]:
    """Factory: ``await nestpoint_make_tenant(("S1", "S2"))`` makes a fresh tenant;
    ``store_scopes=[...]`` gives its store keys other scopes (see :func:`make_tenant`)."""

    async def make(
        store_codes: tuple[str, ...] = ("S1", "S2"), *, store_scopes: list[str] | None = None
    ) -> TenantHandle:
        return await make_tenant(
            nestpoint_client, nestpoint_platform_key, store_codes, store_scopes=store_scopes
        )

    return make


@pytest_asyncio.fixture(loop_scope="session")
async def nestpoint_tenant(
    nestpoint_make_tenant: Callable[..., Awaitable[TenantHandle]],
) -> TenantHandle:
    """A fresh tenant with stores ``S1`` and ``S2``."""
    return await nestpoint_make_tenant()


@pytest.fixture
def nestpoint_enable_plugin(nestpoint_client: Client) -> Callable[..., Awaitable[dict[str, Any]]]:
    """``await nestpoint_enable_plugin(tenant, "my-plugin", store="S1", config={...})``."""

    async def enable(tenant: TenantHandle, plugin_id: str, **kwargs: Any) -> dict[str, Any]:
        return await enable_plugin(nestpoint_client, tenant, plugin_id, **kwargs)

    return enable


@pytest.fixture
def nestpoint_disable_plugin(nestpoint_client: Client) -> Callable[..., Awaitable[dict[str, Any]]]:
    """``await nestpoint_disable_plugin(tenant, "my-plugin", store=None)``."""

    async def disable(tenant: TenantHandle, plugin_id: str, **kwargs: Any) -> dict[str, Any]:
        return await disable_plugin(nestpoint_client, tenant, plugin_id, **kwargs)

    return disable


@pytest.fixture
def nestpoint_emit_event(nestpoint_database: dict[str, str]) -> Callable[..., Awaitable[str]]:
    """``await nestpoint_emit_event(tenant, "tier.changed", {...}, store="S1")``."""
    return emit_event


@pytest.fixture
def nestpoint_run_jobs(
    nestpoint_host: PluginHost, nestpoint_database: dict[str, str]
) -> Callable[[TenantHandle], Awaitable[list[str]]]:
    """``await nestpoint_run_jobs(tenant)``: relay the outbox, run periodic jobs;
    ``skip_backoff=True`` retries failed deliveries at once (see :func:`run_jobs`)."""

    async def run(tenant: TenantHandle, *, skip_backoff: bool = False) -> list[str]:
        return await run_jobs(nestpoint_host, tenant, skip_backoff=skip_backoff)

    return run


@pytest.fixture
def nestpoint_erase_member(
    nestpoint_client: Client,
) -> Callable[..., Awaitable[dict[str, Any]]]:
    """``await nestpoint_erase_member(tenant, member_id)``: erase a member and have the
    plugins erase theirs at once (see :func:`erase_member`); returns the erasure."""

    async def erase(tenant: TenantHandle, member_id: str, **kwargs: Any) -> dict[str, Any]:
        return await erase_member(nestpoint_client, tenant, member_id, **kwargs)

    return erase


@pytest.fixture
def nestpoint_adjust_points(
    nestpoint_host: PluginHost, nestpoint_database: dict[str, str]
) -> Callable[..., Awaitable[list[tuple[str, EarnAdjustment]]]]:
    """``await nestpoint_adjust_points(tenant, "S1", base_points=100, ...)``."""

    async def adjust(
        tenant: TenantHandle, store: str | None, **kwargs: Any
    ) -> list[tuple[str, EarnAdjustment]]:
        return await adjust_points(nestpoint_host, tenant, store, **kwargs)

    return adjust


@pytest.fixture
def nestpoint_public_rate_limit(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """``nestpoint_public_rate_limit("3/minute")``: the public routes' limit per client
    address for this test (counters in memory, fresh for each call); the settings' limit
    (``NESTPOINT_PUBLIC_RATE_LIMIT``) again after it. Every request of a test client comes
    from the same address, so a suite that makes many public requests sets a high one."""

    def install(spec: str) -> None:
        from nestpoint.api import middleware
        from nestpoint.api.ratelimit import make_public_rate_limit
        from nestpoint.settings import Settings

        made = make_public_rate_limit(
            Settings(public_rate_limit=spec, rate_limit_storage_url="memory://")
        )
        monkeypatch.setattr(middleware, "public_rate_limit", lambda: made)

    return install


@pytest.fixture
def nestpoint_member_token(
    nestpoint_client: Client,
) -> Callable[[TenantHandle, str], Awaitable[dict[str, str]]]:
    """``await nestpoint_member_token(tenant, member_id)``: headers carrying a member token
    (see :func:`member_token`), for the plugin's member routes."""

    async def issue(tenant: TenantHandle, member_id: str) -> dict[str, str]:
        return await member_token(nestpoint_client, tenant, member_id)

    return issue


@pytest.fixture
def nestpoint_member_rate_limit(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """``nestpoint_member_rate_limit("3/minute")``: the limit per member on the member API
    and the plugins' member routes for this test (counters in memory, fresh for each call);
    the settings' limit (``NESTPOINT_MEMBER_RATE_LIMIT``) again after it."""

    def install(spec: str) -> None:
        from nestpoint.api import middleware
        from nestpoint.api.ratelimit import make_member_rate_limit
        from nestpoint.settings import Settings

        made = make_member_rate_limit(
            Settings(member_rate_limit=spec, rate_limit_storage_url="memory://")
        )
        monkeypatch.setattr(middleware, "member_rate_limit", lambda: made)

    return install
