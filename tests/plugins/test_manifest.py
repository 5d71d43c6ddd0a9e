"""Plugins in tenant manifests: enabled per store, idempotent, errors name the field."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from nestpoint.context import Actor, acting_as
from nestpoint.db import scoped_session
from nestpoint.errors import Invalid
from nestpoint.plugins.manager import get_plugin_host
from nestpoint.tenancy import manifest as manifests

MANIFEST = """
[tenant]
slug = "{slug}"
name = "Plugin chain"

[[stores]]
code = "A1"
name = "Store A1"

[[stores]]
code = "A2"
name = "Store A2"

[[plugins]]
id = "example"
enabled = {chain_enabled}
config = {{ birthday_multiplier = 3 }}

[[plugins.stores]]
code = "A1"
enabled = true
config = {{ greeting = "{greeting}" }}
"""


def write(tmp_path: Path, slug: str, **values: str) -> Path:
    values = {"chain_enabled": "false", "greeting": "hi", **values}
    path = tmp_path / f"{slug}.toml"
    path.write_text(MANIFEST.format(slug=slug, **values), encoding="utf-8")
    return path


async def apply(path: Path) -> tuple[uuid.UUID, list[manifests.Change]]:
    manifest = manifests.load_manifest(path)
    with acting_as(Actor("system", name="tests")):
        async with scoped_session() as session:
            tenant, changes = await manifests.apply(session, manifest)
            return tenant.id, changes


@pytest.mark.usefixtures("database_env")
async def test_manifest_enables_a_plugin_for_one_store(tmp_path: Path) -> None:
    slug = f"p-{uuid.uuid4().hex[:8]}"
    tenant_id, changes = await apply(write(tmp_path, slug))
    assert [c.subject for c in changes][-2:] == ["plugin example", "plugin example store A1"]
    host = get_plugin_host()
    stores = await _stores(tenant_id)
    on_a1 = await host.enabled_plugins(tenant_id, stores["A1"])
    assert on_a1["example"]["birthday_multiplier"] == 3
    assert on_a1["example"]["greeting"] == "hi"
    assert await host.enabled_plugins(tenant_id, stores["A2"]) == {}

    # Applying again changes nothing; editing the store's config is one update.
    _, again = await apply(write(tmp_path, slug))
    assert again == []
    _, edited = await apply(write(tmp_path, slug, greeting="你好"))
    assert [(c.action, c.subject) for c in edited] == [("update", "plugin example store A1")]
    assert edited[0].changes == {"config": [{"greeting": "hi"}, {"greeting": "你好"}]}
    # Chain-wide: every store.
    await apply(write(tmp_path, slug, chain_enabled="true", greeting="你好"))
    assert "example" in await host.enabled_plugins(tenant_id, stores["A2"])


@pytest.mark.usefixtures("database_env")
def test_manifest_errors_name_the_field(tmp_path: Path) -> None:
    text = MANIFEST.format(slug="bad-plugins", chain_enabled="false", greeting="x" * 101)
    text = text.replace('code = "A1"\nenabled = true', 'code = "Z9"\nenabled = true')
    text += '\n[[plugins]]\nid = "not-installed"\n'
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(Invalid) as info:
        manifests.load_manifest(path)
    assert sorted(e.field for e in info.value.errors) == [
        "plugins.0.stores.0.code",
        "plugins.0.stores.0.config.greeting",
        "plugins.1.id",
    ]


async def _stores(tenant_id: uuid.UUID) -> dict[str, uuid.UUID]:
    from sqlalchemy import select

    from nestpoint.context import tenant_context
    from nestpoint.tenancy.models import Store

    with tenant_context(tenant_id):
        async with scoped_session() as session:
            return {s.code: s.id for s in (await session.scalars(select(Store))).all()}
