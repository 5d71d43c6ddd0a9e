"""Tenants as code: ``nestpoint.tenancy.manifest`` and ``nestpoint tenants apply``.

The example manifests under ``tenants/`` are copied to a temporary directory with a unique
slug, so each test owns its tenant.
"""

from __future__ import annotations

import asyncio
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from nestpoint.cli import app as cli_app
from nestpoint.context import Actor, acting_as, tenant_context
from nestpoint.db import scoped_session
from nestpoint.errors import Invalid
from nestpoint.tenancy import manifest as manifests
from nestpoint.tenancy.models import Store, Tenant
from source_tree import REPO_ROOT

EXAMPLES = REPO_ROOT / "tenants"
EXAMPLE_FILES = ("bloom-premium.toml", "nest-community.toml")
STORE_FIELDS = ("name", "kind", "format", "region", "address")

pytestmark = pytest.mark.usefixtures("database_env")


def copy_example(tmp_path: Path, name: str) -> tuple[Path, str]:
    """Copy an example manifest with a unique slug; returns the path and the slug."""
    original = (EXAMPLES / name).read_text(encoding="utf-8")
    base = name.removesuffix(".toml")
    slug = f"{base}-{uuid.uuid4().hex[:8]}"
    text = original.replace(f'slug = "{base}"', f'slug = "{slug}"', 1)
    assert text != original
    path = tmp_path / f"{slug}.toml"
    path.write_text(text, encoding="utf-8")
    return path, slug


def store_blocks(text: str) -> tuple[str, list[str]]:
    head, *blocks = text.split("[[stores]]")
    return head, ["[[stores]]" + b for b in blocks]


async def plan_file(path: Path) -> list[manifests.Change]:
    manifest = manifests.load_manifest(path)
    async with scoped_session() as session:
        return await manifests.plan(session, manifest)


async def apply_file(path: Path) -> tuple[uuid.UUID, list[manifests.Change]]:
    manifest = manifests.load_manifest(path)
    with acting_as(Actor("system", name="tests")):
        async with scoped_session() as session:
            tenant, changes = await manifests.apply(session, manifest)
            return tenant.id, changes


async def tenant_by_slug(slug: str) -> Tenant | None:
    async with scoped_session() as session:
        return await session.scalar(select(Tenant).where(Tenant.slug == slug))


async def tenant_count() -> int:
    async with scoped_session() as session:
        return int(await session.scalar(select(func.count()).select_from(Tenant)) or 0)


async def stores_of(tenant_id: uuid.UUID) -> dict[str, Store]:
    with tenant_context(tenant_id):
        async with scoped_session() as session:
            return {s.code: s for s in (await session.scalars(select(Store))).all()}


def plugin_settings(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """The plugin settings a manifest creates (``[[plugins]]``): one audited change each."""
    created = []
    for plugin in spec.get("plugins", []):
        created.append(("create", f"plugin {plugin['id']}", {}))
        created += [
            ("create", f"plugin {plugin['id']} store {s['code']}", {})
            for s in plugin.get("stores", [])
        ]
    return created


def described(changes: list[manifests.Change]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(c.action, c.subject, c.changes) for c in changes]


@pytest.mark.parametrize("example", EXAMPLE_FILES)
async def test_apply_creates_tenant_and_stores(tmp_path: Path, example: str, row_counts) -> None:
    path, slug = copy_example(tmp_path, example)
    spec = tomllib.loads(path.read_text(encoding="utf-8"))
    assert await tenant_by_slug(slug) is None

    planned = await plan_file(path)
    tenant_id, changes = await apply_file(path)

    expected = [("create", f"tenant {slug}", {})] + [
        ("create", f"store {s['code']}", {}) for s in spec["stores"]
    ]
    expected += plugin_settings(spec)
    if "program" in spec:
        expected.append(("create", "loyalty program", {}))
    if "messaging" in spec:
        expected.append(("create", "messaging settings", {}))
    if "privacy" in spec:
        expected.append(("create", "privacy policy", {}))
    catalog = [("create", f"benefit {b['code']}", {}) for b in spec.get("benefits", [])]
    catalog += [("create", f"bundle {b['code']}", {}) for b in spec.get("bundles", [])]
    expected += catalog
    saved = [("create", f"segment {s['code']}", {}) for s in spec.get("segments", [])]
    saved += [
        ("create", f"coupon template {t['code']}", {}) for t in spec.get("coupon_templates", [])
    ]
    if "referrals" in spec:
        saved.append(("create", "referral settings", {}))
    campaigns = [("create", f"campaign {c['code']}", {}) for c in spec.get("campaigns", [])]
    money = [("create", "stored-value rules", {})] if "wallet" in spec else []
    money += [("create", f"paid plan {p['code']}", {}) for p in spec.get("paid_plans", [])]
    if "paid_membership" in spec:
        money.append(("create", "paid-membership settings", {}))
    if "settlement" in spec:
        money.append(("create", "settlement rule", {}))
    expected += saved + campaigns + money
    assert described(planned) == expected
    assert described(changes) == expected
    tenant = await tenant_by_slug(slug)
    assert tenant is not None
    assert tenant.id == tenant_id
    for key in ("name", "currency", "timezone", "locale"):
        assert getattr(tenant, key) == spec["tenant"][key], key
    stores = await stores_of(tenant_id)
    assert set(stores) == {s["code"] for s in spec["stores"]}
    for s in spec["stores"]:
        store = stores[s["code"]]
        assert store.active
        for key in STORE_FIELDS:
            assert getattr(store, key) == s[key], (s["code"], key)
    counts = await row_counts(tenant_id)
    assert counts["stores"] == len(spec["stores"])
    # The tenant, every store and the loyalty programme are recorded and announced; each
    # benefit and bundle, the messaging settings and the privacy policy, are recorded.
    programs = 1 if "program" in spec else 0
    messaging = 1 if "messaging" in spec else 0
    privacy = 1 if "privacy" in spec else 0
    assert counts["outbox_events"] == 1 + len(spec["stores"]) + programs
    assert counts["audit_entries"] == (
        1
        + len(spec["stores"])
        + len(plugin_settings(spec))
        + programs
        + len(catalog)
        + messaging
        + privacy
        + len(saved)
        # A campaign's creation and its activation.
        + sum(2 if c.get("active", True) else 1 for c in spec.get("campaigns", []))
        + len(money)
    )


async def test_second_apply_changes_nothing(tmp_path: Path, row_counts) -> None:
    path, _ = copy_example(tmp_path, "bloom-premium.toml")
    tenant_id, _ = await apply_file(path)
    counts = await row_counts(tenant_id)
    stamps = {code: s.updated_at for code, s in (await stores_of(tenant_id)).items()}

    assert await plan_file(path) == []
    again_id, changes = await apply_file(path)
    assert again_id == tenant_id
    assert changes == []
    assert await row_counts(tenant_id) == counts  # no event, no audit entry, no store
    assert {code: s.updated_at for code, s in (await stores_of(tenant_id)).items()} == stamps


async def test_editing_a_store_name_is_exactly_one_update(tmp_path: Path, row_counts) -> None:
    path, _ = copy_example(tmp_path, "bloom-premium.toml")
    tenant_id, _ = await apply_file(path)
    before = await stores_of(tenant_id)
    counts = await row_counts(tenant_id)
    old_name = before["SH-JA-02"].name
    new_name = "静安嘉里中心店 Jing'an Kerry Centre"
    path.write_text(path.read_text(encoding="utf-8").replace(old_name, new_name), "utf-8")

    expected = [("update", "store SH-JA-02", {"name": [old_name, new_name]})]
    assert described(await plan_file(path)) == expected
    _, changes = await apply_file(path)
    assert described(changes) == expected

    after = await stores_of(tenant_id)
    assert after["SH-JA-02"].name == new_name
    for code in ("SH-XH-01", "HZ-XH-03"):
        assert after[code].name == before[code].name
        assert after[code].updated_at == before[code].updated_at
    new_counts = await row_counts(tenant_id)
    assert new_counts["outbox_events"] == counts["outbox_events"] + 1
    assert new_counts["audit_entries"] == counts["audit_entries"] + 1
    assert await plan_file(path) == []


async def test_tenant_field_change_is_one_tenant_update(tmp_path: Path) -> None:
    path, slug = copy_example(tmp_path, "nest-community.toml")
    await apply_file(path)
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('timezone = "Asia/Shanghai"', 'timezone = "Asia/Chongqing"'))
    expected = [("update", f"tenant {slug}", {"timezone": ["Asia/Shanghai", "Asia/Chongqing"]})]
    assert described(await plan_file(path)) == expected
    await apply_file(path)
    tenant = await tenant_by_slug(slug)
    assert tenant is not None
    assert tenant.timezone == "Asia/Chongqing"
    assert await plan_file(path) == []


async def test_changing_the_quiet_hours_is_one_messaging_update(tmp_path: Path) -> None:
    path, _ = copy_example(tmp_path, "nest-community.toml")
    await apply_file(path)
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace('start = "21:00", end = "08:00"', 'start = "22:00", end = "08:00"')
    )
    planned = described(await plan_file(path))
    assert [(action, subject) for action, subject, _ in planned] == [
        ("update", "messaging settings")
    ]
    assert planned[0][2]["quiet_hours"][1]["start"] == "22:00"
    await apply_file(path)
    assert await plan_file(path) == []
    bad = path.read_text(encoding="utf-8").replace('start = "22:00"', 'start = "25:00"')
    path.write_text(bad, encoding="utf-8")
    with pytest.raises(Invalid) as caught:
        manifests.load_manifest(path)
    assert [e.field for e in caught.value.errors] == ["messaging.quiet_hours.start"]


async def test_removing_a_store_deactivates_it(tmp_path: Path) -> None:
    path, _ = copy_example(tmp_path, "nest-community.toml")
    tenant_id, _ = await apply_file(path)
    original = path.read_text(encoding="utf-8")
    head, blocks = store_blocks(original)
    removed = tomllib.loads(blocks[1])["stores"][0]["code"]
    path.write_text(head + "".join(b for i, b in enumerate(blocks) if i != 1), "utf-8")

    assert described(await plan_file(path)) == [("deactivate", f"store {removed}", {})]
    _, changes = await apply_file(path)
    assert described(changes) == [("deactivate", f"store {removed}", {})]
    stores = await stores_of(tenant_id)
    assert len(stores) == len(blocks)  # deactivated, never deleted
    assert stores[removed].active is False
    assert all(s.active for code, s in stores.items() if code != removed)
    assert await plan_file(path) == []  # an inactive store stays inactive quietly

    # Putting it back reactivates it.
    path.write_text(original, "utf-8")
    expected = [("update", f"store {removed}", {"active": [False, True]})]
    assert described(await plan_file(path)) == expected
    await apply_file(path)
    assert (await stores_of(tenant_id))[removed].active is True


INVALID_MANIFEST = """
[tenant]
slug = "Bad Slug!"
name = "Broken chain"
timezone = "Mars/Olympus_Mons"
colour = "pink"

[[stores]]
code = "A1"
name = "first"
kind = "pop-up"

[[stores]]
code = "A1"
name = "second"
"""

EXPECTED_ERROR_FIELDS = {
    "tenant.slug",
    "tenant.timezone",
    "tenant.colour",
    "stores.0.kind",
    "stores.1.code",
}


async def test_invalid_manifest_lists_every_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(INVALID_MANIFEST, encoding="utf-8")
    before = await tenant_count()
    with pytest.raises(Invalid) as caught:
        manifests.load_manifest(path)
    fields = [e.field for e in caught.value.errors]
    assert set(fields) == EXPECTED_ERROR_FIELDS, fields
    assert len(fields) == len(EXPECTED_ERROR_FIELDS)
    messages = {e.field: e.message for e in caught.value.errors}
    assert "A1" in messages["stores.1.code"]
    assert "Mars/Olympus_Mons" in messages["tenant.timezone"]
    assert await tenant_count() == before


async def test_duplicate_store_code_alone_names_the_field(tmp_path: Path) -> None:
    path, slug = copy_example(tmp_path, "bloom-premium.toml")
    head, blocks = store_blocks(path.read_text(encoding="utf-8"))
    path.write_text(head + "".join(blocks) + blocks[0].replace("Xuhui", "Copy"), "utf-8")
    with pytest.raises(Invalid) as caught:
        manifests.load_manifest(path)
    assert [e.field for e in caught.value.errors] == [f"stores.{len(blocks)}.code"]
    assert await tenant_by_slug(slug) is None


async def test_unparseable_manifest_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "garbage.toml"
    path.write_text("[tenant\nslug = ", encoding="utf-8")
    with pytest.raises(Invalid) as caught:
        manifests.load_manifest(path)
    assert [e.field for e in caught.value.errors] == ["(file)"]


# --------------------------------------------------------------------------- the CLI


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli_app, list(args), catch_exceptions=False)


async def run_cli(*args: str) -> Any:
    """The CLI runs its own event loop (asyncio.run): give it a thread without one."""
    return await asyncio.to_thread(invoke, *args)


async def test_cli_apply_twice_then_no_changes(tmp_path: Path) -> None:
    path, slug = copy_example(tmp_path, "nest-community.toml")
    spec = tomllib.loads(path.read_text(encoding="utf-8"))

    result = await run_cli("tenants", "apply", "--dry-run", str(path))
    assert result.exit_code == 0, result.output
    assert f"+ create tenant {slug}" in result.stdout
    assert "dry run: nothing applied" in result.stdout
    assert await tenant_by_slug(slug) is None

    result = await run_cli("tenants", "apply", str(path))
    assert result.exit_code == 0, result.output
    assert f"+ create tenant {slug}" in result.stdout
    for store in spec["stores"]:
        assert f"+ create store {store['code']}" in result.stdout
    assert "no changes" not in result.stdout
    tenant = await tenant_by_slug(slug)
    assert tenant is not None
    assert set(await stores_of(tenant.id)) == {s["code"] for s in spec["stores"]}

    result = await run_cli("tenants", "apply", str(path))
    assert result.exit_code == 0, result.output
    assert "no changes" in result.stdout
    assert "+" not in result.stdout
    assert "~" not in result.stdout


async def test_cli_invalid_manifest_exits_nonzero_listing_errors(tmp_path: Path) -> None:
    good, good_slug = copy_example(tmp_path, "bloom-premium.toml")
    bad = tmp_path / "broken.toml"
    bad.write_text(INVALID_MANIFEST, encoding="utf-8")
    before = await tenant_count()

    result = await run_cli("tenants", "apply", str(good), str(bad))
    assert result.exit_code != 0
    assert "nothing applied" in result.stderr
    for field in EXPECTED_ERROR_FIELDS:
        assert f"- {field}:" in result.stderr, field
    # One bad manifest stops the whole run: the good one was not applied either.
    assert await tenant_count() == before
    assert await tenant_by_slug(good_slug) is None


async def test_changing_the_retention_rules_is_one_privacy_update(tmp_path: Path) -> None:
    path, _ = copy_example(tmp_path, "nest-community.toml")
    await apply_file(path)
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("inactive_member_years = 2", "inactive_member_years = 5"))
    assert described(await plan_file(path)) == [
        ("update", "privacy policy", {"inactive_member_years": [2, 5]})
    ]
    await apply_file(path)
    assert await plan_file(path) == []
    bad = path.read_text(encoding="utf-8").replace("member_years = 5", "member_years = 0")
    path.write_text(bad, encoding="utf-8")
    with pytest.raises(Invalid) as caught:
        manifests.load_manifest(path)
    assert [e.field for e in caught.value.errors] == ["privacy.inactive_member_years"]


async def test_a_coupon_template_edit_is_one_update(tmp_path: Path) -> None:
    path, _ = copy_example(tmp_path, "bloom-premium.toml")
    await apply_file(path)
    text = path.read_text(encoding="utf-8")
    edited = text.replace("amount_off_fen = 3000", "amount_off_fen = 3500", 1)
    assert edited != text
    path.write_text(edited, encoding="utf-8")
    changes = await plan_file(path)
    assert described(changes) == [
        ("update", "coupon template welcome-30", {"amount_off_fen": [3000, 3500]})
    ]
    _, applied = await apply_file(path)
    assert described(applied) == described(changes)
    assert await plan_file(path) == []


def test_a_coupon_template_names_only_the_manifests_stores(tmp_path: Path) -> None:
    path, _ = copy_example(tmp_path, "nest-community.toml")
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('store_codes = ["CD-01"]', 'store_codes = ["XX-9"]'))
    with pytest.raises(Invalid) as caught:
        manifests.load_manifest(path)
    assert [e.field for e in caught.value.errors] == ["coupon_templates.3.store_codes"]


async def test_paid_plans_and_stored_value_rules_apply_and_edit_as_one_update(
    tmp_path: Path,
) -> None:
    path, _ = copy_example(tmp_path, "bloom-premium.toml")
    tenant_id, _ = await apply_file(path)
    text = path.read_text(encoding="utf-8")
    edited = text.replace("price_fen = 29900", "price_fen = 32900", 1).replace(
        "bonus_fen = 40000", "bonus_fen = 45000", 1
    )
    path.write_text(edited, encoding="utf-8")
    changes = described(await plan_file(path))
    assert ("update", "paid plan black-card", {"price_fen": [29900, 32900]}) in changes
    assert [c[:2] for c in changes] == [
        ("update", "stored-value rules"),
        ("update", "paid plan black-card"),
    ]
    await apply_file(path)
    assert await plan_file(path) == []
    with acting_as(Actor("system", name="tests")), tenant_context(tenant_id):
        async with scoped_session() as session:
            from nestpoint.membership import service as membership

            plan = await membership.get_plan(session, "black-card")
    assert (plan.price_fen, plan.earn_multiplier_percent) == (32900, 200)


def test_a_paid_plan_names_only_the_manifests_benefits(tmp_path: Path) -> None:
    path, _ = copy_example(tmp_path, "bloom-premium.toml")
    text = path.read_text(encoding="utf-8")
    bad = text.replace(
        'benefits = ["card-double-points", "free-delivery"',
        'benefits = ["card-double-points", "no-such"',
        1,
    )
    assert bad != text
    path.write_text(bad, encoding="utf-8")
    with pytest.raises(Invalid) as caught:
        manifests.load_manifest(path)
    assert [e.field for e in caught.value.errors] == ["paid_plans.0.benefits.1"]
