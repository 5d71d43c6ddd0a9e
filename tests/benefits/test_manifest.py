"""The benefit catalog in a tenant's manifest (``[[benefits]]`` and ``[[bundles]]``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from nestpoint.benefits.models import Benefit, BenefitBundle
from nestpoint.context import tenant_context
from nestpoint.db import scoped_session
from nestpoint.errors import Invalid
from test_manifest import apply_file, copy_example, plan_file

pytestmark = pytest.mark.usefixtures("database_env")


async def _catalog(tenant_id) -> dict[str, bool]:  # type: ignore[no-untyped-def]
    with tenant_context(tenant_id):
        async with scoped_session() as session:
            rows = (await session.scalars(select(Benefit))).all()
            assert (await session.scalars(select(BenefitBundle))).all()
            return {row.code: row.active for row in rows}


async def test_the_premium_manifest_carries_its_catalog_and_applies_once(tmp_path: Path):
    path, _ = copy_example(tmp_path, "bloom-premium.toml")
    tenant_id, changes = await apply_file(path)
    created = {c.subject for c in changes if c.action == "create"}
    assert {"benefit parenting-consultation", "bundle newborn-pack"} <= created
    catalog = await _catalog(tenant_id)
    assert catalog["free-delivery"] is True
    assert len(catalog) == 8
    assert await plan_file(path) == []  # applied: nothing left to change
    # A benefit dropped from the file is deactivated, never deleted.
    text = path.read_text(encoding="utf-8")
    start = text.index('[[benefits]]\ncode = "thermometer"')
    end = text.index("[[benefits]]", start + 1)
    path.write_text(text[:start] + text[end:], encoding="utf-8")
    changes = await plan_file(path)
    assert [(c.action, c.subject) for c in changes] == [("deactivate", "benefit thermometer")]
    await apply_file(path)
    assert (await _catalog(tenant_id))["thermometer"] is False


async def test_a_bad_catalog_entry_is_named_and_nothing_is_applied(tmp_path: Path):
    path, _ = copy_example(tmp_path, "bloom-premium.toml")
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('type = "core.gift"', 'type = "core.nothing"'), encoding="utf-8")
    with pytest.raises(Invalid) as caught:
        await apply_file(path)
    assert [e.field for e in caught.value.errors] == ["benefits.6.type"]
    path.write_text(text.replace("quota = 2\ntier_quotas", "quota = 0\ntier_quotas", 1), "utf-8")
    with pytest.raises(Invalid) as caught:
        await apply_file(path)
    assert [e.field for e in caught.value.errors] == ["benefits.1.quota"]
