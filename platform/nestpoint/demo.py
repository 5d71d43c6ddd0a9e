"""The demo: a ready-to-explore Nestpoint on the embedded default.

Migrates, applies the example manifests of ``tenants/`` (carried inside the package as
``nestpoint/demo_tenants``), and creates fresh demo keys (revoking the previous run's,
since a key is shown only once) so the printed keys work.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select, update

from nestpoint.billing import service as billing
from nestpoint.console import service as console
from nestpoint.console.schemas import ConsoleUserCreate, ConsoleUserUpdate
from nestpoint.context import Actor, acting_as, tenant_context
from nestpoint.db import get_database, scoped_session, utcnow
from nestpoint.demo_data import seed_benefits, seed_coupons, seed_members
from nestpoint.events.service import install_session_hooks
from nestpoint.jobs.tenants import run_for_tenant
from nestpoint.members.models import Member
from nestpoint.migrate import upgrade
from nestpoint.plugins.manager import get_plugin_host
from nestpoint.plugins.relay import drain_pending
from nestpoint.segments.jobs import recompute as recompute_segments
from nestpoint.tenancy import manifest as manifests
from nestpoint.tenancy import service
from nestpoint.tenancy.models import ApiKey, PlatformKey, Store
from nestpoint.tenancy.schemas import ApiKeyCreate

log = logging.getLogger("nestpoint.demo")

DEMO_KEY_NAME = "demo"
# The top-level tenants/ folder: a symlink to it in the source tree, a copy in the wheel.
EXAMPLE_DIR = Path(__file__).parent / "demo_tenants"
EXAMPLE_MANIFESTS = ("bloom-premium.toml", "nest-community.toml")
# Members per example chain, each with children and a few orders (enough that lists,
# lookups and tier histories mean something; seeded once).
DEMO_MEMBERS = int(os.environ.get("NESTPOINT_DEMO_MEMBERS", "1000"))
PLUGIN_DEMO_STORE = ("nest-community", "store CD-01")
# The plan each example chain is on (the default plans of migration 0029; docs/billing.md).
DEMO_PLANS = {"bloom-premium": "growth", "nest-community": "starter"}


@dataclass
class DemoInfo:
    platform_key: str = ""
    keys: list[tuple[str, str, str]] = field(default_factory=list)  # (tenant, who, key)
    seeded: list[tuple[str, int, int]] = field(default_factory=list)  # (tenant, members, orders)
    relayed: int = 0  # outbox events the seeding raised, relayed before serving
    # (tenant, login, role, password): console users, new passwords each run
    users: list[tuple[str, str, str, str]] = field(default_factory=list)

    def render(self, url: str) -> str:
        lines = [
            "",
            "Nestpoint demo is ready.",
            f"  API docs (Swagger UI): {url}/schema/swagger",
            f"  API docs (Scalar):     {url}/schema",
            f"  Health:                {url}/readyz",
            f"  Metrics (Prometheus):  {url}/metrics",
            "",
            *[f"  {slug}: seeded {m} members and {o} orders" for slug, m, o in self.seeded if m],
            *([f"  relayed the {self.relayed} events they raised"] if self.relayed else []),
            "",
            "Demo keys (send as 'Authorization: Bearer <key>'; new ones each run):",
            f"  platform operator:  {self.platform_key}",
        ]
        lines += [f"  {tenant} {who}:  {key}" for tenant, who, key in self.keys]
        if self.users:
            lines += [
                "",
                f"Console (HQ and stores, in the browser): {url}/console/",
                "  sign in with the chain, login and password (new passwords each run):",
                *[
                    f"  {tenant}  {login:<18} {role:<14} {password}"
                    for tenant, login, role, password in self.users
                ],
            ]
        lines += [
            "",
            f"Try: curl -H 'Authorization: Bearer {self.keys[0][2]}' {url}/api/v1/stores",
            f"Plans and usage: curl -H 'Authorization: Bearer {self.platform_key}' "
            f"{url}/api/v1/billing/tenants",
        ]
        # The example plugin is enabled for one store of one chain (tenants/*.toml).
        plugin_keys = [k for t, who, k in self.keys if (t, who) == PLUGIN_DEMO_STORE]
        if plugin_keys:
            lines += [
                "Plugin 'example' (enabled for nest-community's store CD-01 only):",
                f"     curl -H 'Authorization: Bearer {plugin_keys[0]}' "
                f"{url}/api/v1/plugins/example/hello",
            ]
        lines.append("")
        return "\n".join(lines)


def _example_manifest(path: Path) -> manifests.TenantManifest:
    """An example manifest without the plugins this installation lacks: the example plugin
    lives in the source tree only, and the demo runs from an installed wheel too."""
    raw = manifests.read_manifest(path)
    loaded = get_plugin_host().loaded
    missing = [p.get("id") for p in raw.get("plugins", []) if p.get("id") not in loaded]
    if missing:
        log.warning("demo: plugins not installed, left out", extra={"plugins": missing})
        raw["plugins"] = [p for p in raw.get("plugins", []) if p.get("id") in loaded]
    return manifests.validate_manifest(raw, str(path))


async def _seed() -> DemoInfo:
    install_session_hooks()
    info = DemoInfo()
    with acting_as(Actor("system", name="demo")):
        async with scoped_session() as session:
            await session.execute(
                update(PlatformKey)
                .where(PlatformKey.name == DEMO_KEY_NAME, PlatformKey.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            _, info.platform_key = await service.create_platform_key(session, DEMO_KEY_NAME)
        for filename in EXAMPLE_MANIFESTS:
            manifest = _example_manifest(EXAMPLE_DIR / filename)
            async with scoped_session() as session:
                tenant, _ = await manifests.apply(session, manifest)
            with tenant_context(tenant.id):
                async with scoped_session() as session:
                    await session.execute(
                        update(ApiKey)
                        .where(ApiKey.name.like(f"{DEMO_KEY_NAME}%"), ApiKey.revoked_at.is_(None))
                        .values(revoked_at=utcnow())
                    )
                    _, hq_key = await service.create_api_key(
                        session, ApiKeyCreate(name=f"{DEMO_KEY_NAME} HQ"), "demo"
                    )
                    first_store = await session.scalar(select(Store).order_by(Store.code))
                    assert first_store is not None
                    _, store_key = await service.create_api_key(
                        session,
                        ApiKeyCreate(
                            name=f"{DEMO_KEY_NAME} till", kind="store", store_code=first_store.code
                        ),
                        "demo",
                    )
            members, orders = await seed_members(tenant.id, tenant.slug, DEMO_MEMBERS)
            await seed_benefits(tenant.id)
            await seed_coupons(tenant.id)
            # The built-in segments now, not at the chain's next 02:30: the demo shows them.
            await run_for_tenant(tenant.id, recompute_segments, name="demo")
            await _seed_plugins(tenant.id)
            await _seed_billing(tenant.id, tenant.slug)
            # Relay what the seeding raised now, so the demo starts with no backlog (a
            # plugin's first event would otherwise wait behind thousands).
            info.relayed += await drain_pending(tenant.id, budget_seconds=600)
            info.seeded.append((tenant.slug, members, orders))
            info.keys.append((tenant.slug, "HQ", hq_key))
            info.keys.append((tenant.slug, f"store {first_store.code}", store_key))
            for login, role, password in await _seed_console_users(tenant.id, first_store.code):
                info.users.append((tenant.slug, login, role, password))
    await get_database().dispose()
    return info


async def _seed_console_users(tenant_id: uuid.UUID, store_code: str) -> list[tuple[str, str, str]]:
    """One console user per role (the store roles at the first store), each with a fresh
    password: made on the first run, reset on later ones (a password is shown only once)."""
    wanted = [
        ("hq-admin", "hq_admin", None),
        ("hq-analyst", "hq_analyst", None),
        (f"manager-{store_code.lower()}", "store_manager", store_code),
        (f"clerk-{store_code.lower()}", "store_clerk", store_code),
    ]
    made: list[tuple[str, str, str]] = []
    with tenant_context(tenant_id):
        async with scoped_session() as session:
            for login, role, store in wanted:
                existing = await console.find_login(session, login)
                if existing is None:
                    data = ConsoleUserCreate.model_validate(
                        {"login": login, "role": role, "store_code": store}
                    )
                    _, password = await console.create_user(session, data)
                else:
                    change = ConsoleUserUpdate(disabled=False, reset_password=True)
                    _, password = await console.update_user(session, existing, change)
                made.append((login, role, password or ""))
    return made


async def _seed_plugins(tenant_id: uuid.UUID) -> None:
    """Each plugin enabled at a store seeds a little of its own data there (bookings,
    deliveries), through its ``nestpoint_seed_demo`` hook."""
    with tenant_context(tenant_id):
        async with scoped_session() as session:
            stores = list((await session.scalars(select(Store.id).order_by(Store.code))).all())
            members = [
                str(m)
                for m in (
                    await session.scalars(select(Member.id).order_by(Member.joined_at).limit(40))
                ).all()
            ]
    failures = await get_plugin_host().seed_demo(tenant_id, stores, members)
    for failure in failures:
        log.warning("a plugin's demo data failed: %s", failure.describe())


async def _seed_billing(tenant_id: uuid.UUID, slug: str) -> None:
    """Put the chain on its demo plan and record its usage, so the operator's view
    (``GET /api/v1/billing/tenants``, ``nestpoint billing list``) shows plans, usage and a
    warning. With no platform Stripe key the plan stays ``pending`` for Stripe."""
    plan = DEMO_PLANS.get(slug)
    if plan is None:
        return
    async with scoped_session() as session:
        await billing.subscribe(session, tenant_id, plan)
        await billing.refresh_usage(session, tenant_id)


def prepare_demo() -> DemoInfo:
    upgrade()
    return asyncio.run(_seed())
