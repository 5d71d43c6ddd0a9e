"""The demo's example manifests: carried in the package, and usable where a plugin they
name is not installed (the example plugin ships in the source tree only); the demo's data
seeds again over itself."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from nestpoint import demo
from nestpoint.context import Actor, acting_as, tenant_context
from nestpoint.db import scoped_session
from nestpoint.members.models import Member
from source_tree import REPO_ROOT


def test_the_package_carries_the_example_manifests() -> None:
    for filename in demo.EXAMPLE_MANIFESTS:
        packaged = demo.EXAMPLE_DIR / filename
        assert packaged.read_bytes() == (REPO_ROOT / "tenants" / filename).read_bytes()


def test_a_plugin_not_installed_is_left_out_of_the_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    path = demo.EXAMPLE_DIR / "nest-community.toml"
    assert "example" in {p.id for p in demo._example_manifest(path).plugins}

    installed = frozenset({"delivery", "consultations", "classes"})
    monkeypatch.setattr(demo, "get_plugin_host", lambda: SimpleNamespace(loaded=installed))
    manifest = demo._example_manifest(path)

    assert {p.id for p in manifest.plugins} <= installed
    assert "example" not in {p.id for p in manifest.plugins}
    assert manifest.tenant.slug == "nest-community"


async def test_the_demo_data_seeds_again_over_itself(tmp_path: Path, database_env: object) -> None:
    """`make run` twice on one database: the second seeding finds the first one's benefit
    uses, exchanges and orders and changes nothing (it once failed on a use's key), also
    after a member was erased in between."""
    from nestpoint import demo_data
    from nestpoint.privacy import service as privacy
    from test_manifest import apply_file, copy_example

    path, slug = copy_example(tmp_path, "nest-community.toml")
    tenant_id, _ = await apply_file(path)
    with acting_as(Actor("system", name="tests")):
        members, _ = await demo_data.seed_members(tenant_id, slug, 12)
        assert members == 12
        await demo_data.seed_benefits(tenant_id, count=8)
        granted, _ = await demo_data.seed_coupons(tenant_id, count=6)
        assert granted == 6
        before = await _uses(tenant_id)
        coupons_before = await _coupons(tenant_id)
        with tenant_context(tenant_id):
            async with scoped_session() as session:
                oldest = await session.scalar(select(Member.id).order_by(Member.joined_at))
                assert oldest is not None
                await privacy.erase_member(session, oldest, reason="demo")
        await demo_data.seed_benefits(tenant_id, count=8)  # raised Conflict before the fix
        await demo_data.seed_coupons(tenant_id, count=6)
    after = await _uses(tenant_id)
    # The members seeded the first time have the uses they had (a member moved into the
    # first eight may have gained some).
    assert {m: n for m, n in after.items() if m in before} == before
    coupons_after = await _coupons(tenant_id)
    assert {m: c for m, c in coupons_after.items() if m in coupons_before} == coupons_before


async def _coupons(tenant_id: object) -> dict[object, list[tuple[str, str]]]:
    """Each member's coupons: (code, status)."""
    from nestpoint.coupons.models import Coupon

    with tenant_context(tenant_id):  # type: ignore[arg-type]
        async with scoped_session() as session:
            rows = (
                await session.execute(select(Coupon.member_id, Coupon.code, Coupon.status))
            ).all()
    found: dict[object, list[tuple[str, str]]] = {}
    for member_id, code, status in rows:
        found.setdefault(member_id, []).append((code, status))
    return found


async def _uses(tenant_id: object) -> dict[object, int]:
    """Benefit uses per member."""
    from sqlalchemy import func

    from nestpoint.benefits.models import BenefitUse

    with tenant_context(tenant_id):  # type: ignore[arg-type]
        async with scoped_session() as session:
            rows = await session.execute(
                select(BenefitUse.member_id, func.count()).group_by(BenefitUse.member_id)
            )
            return dict(rows.all())
