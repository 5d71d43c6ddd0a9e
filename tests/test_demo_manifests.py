"""The demo's example manifests: carried in the package, and usable where a plugin they
name is not installed (the example plugin ships in the source tree only)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from nestpoint import demo
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
