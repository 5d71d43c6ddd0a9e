"""docs/configuration.md is generated from the settings class and kept current."""

from __future__ import annotations

from nestpoint.settings import Settings, reference
from source_tree import REPO_ROOT

REFERENCE = REPO_ROOT / "docs" / "configuration.md"


def test_every_setting_says_what_it_is_for() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not field.description]
    assert missing == []


def test_the_configuration_reference_lists_every_setting_and_is_current() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    for name in Settings.model_fields:
        assert f"`NESTPOINT_{name.upper()}`" in text
    assert text == reference(), "run: nestpoint settings reference --output docs/configuration.md"
