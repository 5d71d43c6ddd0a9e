"""Segments in tenant manifests (``[[segments]]``): created from the example manifests,
unchanged by a second apply, one update when a rule changes, and a bad rule refused with
the path of its bad node before anything is applied."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from nestpoint.context import tenant_context
from nestpoint.db import scoped_session
from nestpoint.errors import Invalid
from nestpoint.segments.models import Segment
from nestpoint.tenancy import manifest as manifests
from test_manifest import apply_file, copy_example, described, plan_file

pytestmark = pytest.mark.usefixtures("database_env")


async def _segments(tenant_id: object) -> dict[str, Segment]:
    with tenant_context(tenant_id):  # type: ignore[arg-type]
        async with scoped_session() as session:
            return {s.code: s for s in (await session.scalars(select(Segment))).all()}


async def test_example_segments_are_applied_once(tmp_path: Path) -> None:
    path, _ = copy_example(tmp_path, "nest-community.toml")
    tenant_id, _ = await apply_file(path)
    saved = await _segments(tenant_id)
    assert set(saved) == {"silent-90d", "due-within-8w"}
    assert saved["silent-90d"].rule == {"field": "last_order_days_ago", "op": "gte", "value": 90}
    assert saved["due-within-8w"].rule["all"][1] == {
        "field": "due_within_weeks",
        "op": "lte",
        "value": 8,
    }
    assert await plan_file(path) == []
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('op = "gte", value = 90 }', 'op = "gte", value = 120 }'))
    planned = described(await plan_file(path))
    assert [(a, s) for a, s, _ in planned] == [("update", "segment silent-90d")]
    assert planned[0][2]["rule"][1]["value"] == 120
    await apply_file(path)
    assert (await _segments(tenant_id))["silent-90d"].rule["value"] == 120
    assert await plan_file(path) == []


async def test_a_bad_segment_is_refused_with_its_path(tmp_path: Path) -> None:
    path, _ = copy_example(tmp_path, "bloom-premium.toml")
    text = path.read_text(encoding="utf-8")
    bad = text.replace(
        '{ field = "orders", op = "gte", value = 3, days = 365 }',
        '{ field = "orders", op = "gte", value = "3", days = 365 }',
    )
    bad += (
        '\n[[segments]]\ncode = "far"\nname = "Far"\n'
        'rule = { field = "home_store", op = "in", value = ["NOPE"] }\n'
    )
    path.write_text(bad, encoding="utf-8")
    with pytest.raises(Invalid) as caught:
        manifests.load_manifest(path)
    assert [e.field for e in caught.value.errors] == [
        "segments.1.rule.all.1.value",
        "segments.2.rule",
    ]
