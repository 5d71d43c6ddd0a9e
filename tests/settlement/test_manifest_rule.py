"""The ``[settlement]`` section of a tenant manifest: applied as HQ's rule, an edit planned
and applied as one update, a second apply changing nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from nestpoint.context import Actor, acting_as, tenant_context
from nestpoint.db import scoped_session
from nestpoint.settlement import service
from test_manifest import apply_file, copy_example, described, plan_file

pytestmark = pytest.mark.usefixtures("database_env")


async def test_the_manifest_sets_the_rule_and_an_edit_is_one_update(tmp_path: Path) -> None:
    path, _ = copy_example(tmp_path, "nest-community.toml")
    tenant_id, _ = await apply_file(path)

    async def rule() -> dict[str, object]:
        with acting_as(Actor("system", name="tests")), tenant_context(tenant_id):
            async with scoped_session() as session:
                return (await service.get_rules(session)).model_dump()

    applied = await rule()
    assert (applied["point_value_fen"], applied["benefit_fee_fen"]) == (1, 200)
    assert applied["benefit_fees"]["wipes-pack"] == 500
    assert await plan_file(path) == []

    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("benefit_fee_fen = 200", "benefit_fee_fen = 300", 1), "utf-8")
    assert described(await plan_file(path)) == [
        ("update", "settlement rule", {"benefit_fee_fen": [200, 300]})
    ]
    await apply_file(path)
    assert (await rule())["benefit_fee_fen"] == 300
    assert await plan_file(path) == []
