"""The hook reference: every hookspec is documented completely, and docs/plugins/reference.md
is exactly what ``nestpoint plugins reference`` generates from the docstrings."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from nestpoint.cli import app
from nestpoint.plugins import hookspecs
from nestpoint.plugins.manager import PluginHost
from nestpoint.plugins.reference import check_hook, hookspec_functions, parse, render
from source_tree import REPO_ROOT

REFERENCE = REPO_ROOT / "docs" / "plugins" / "reference.md"


def test_every_hook_is_a_specification_of_the_host() -> None:
    names = {f.__name__ for f in hookspec_functions()}
    host = PluginHost()
    assert names == {n for n in dir(host.pm.hook) if n.startswith("nestpoint_")}
    assert all(name.startswith("nestpoint_") for name in names)
    for event_type in hookspecs.EVENT_TYPES:
        assert hookspecs.event_hook_name(event_type) in names, event_type


@pytest.mark.parametrize("function", hookspec_functions(), ids=lambda f: f.__name__)
def test_every_hook_has_a_complete_docstring(function) -> None:  # type: ignore[no-untyped-def]
    assert check_hook(parse(function)) == []


def test_the_reference_is_generated_from_the_hookspecs() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    assert text == render(), "run: nestpoint plugins reference --output docs/plugins/reference.md"
    for function in hookspec_functions():
        assert f'<a id="{function.__name__}"></a>' in text


def test_the_cli_checks_the_reference() -> None:
    result = CliRunner().invoke(
        app, ["plugins", "reference", "--output", str(REFERENCE), "--check"]
    )
    assert result.exit_code == 0, result.output


def test_an_undocumented_hook_is_caught() -> None:
    @hookspecs.hookspec
    def nestpoint_on_something(event, plugin):  # type: ignore[no-untyped-def]
        """Something happened.

        When: sometimes.

        Arguments:
            event: the event.

        Returns: nothing.

        Async: may be async.

        Results: collected.
        """

    problems = check_hook(parse(nestpoint_on_something))
    assert "no 'Scope:' section" in problems
    assert any("arguments documented ['event']" in p for p in problems)
