"""Discovery: entry points in the ``nestpoint`` group, the operator's allow and block lists,
and plugins that cannot be loaded."""

from __future__ import annotations

import logging

import pytest

from nestpoint.plugins.api import hookimpl
from nestpoint.plugins.manager import PluginHost
from nestpoint.plugins.registries import RegistrationError
from nestpoint.settings import Settings


def test_installed_plugins_are_found_through_entry_points(caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="nestpoint.plugins")
    host = PluginHost(Settings())
    host.load_entry_points()
    info = host.plugins["example"]
    assert info.loaded
    assert (info.package, info.version) == ("nestpoint-example", "0.1.0")
    assert "nestpoint_adjust_earned_points" in info.hooks
    (record,) = [
        r
        for r in caplog.records
        if r.getMessage() == "plugin loaded" and r.plugin == "example"  # type: ignore[attr-defined]
    ]
    assert (record.plugin, record.package, record.version) == (
        "example",
        "nestpoint-example",
        "0.1.0",
    )  # type: ignore[attr-defined]
    assert host.contributions["example"].config_schema is not None
    assert host.migration_locations()


@pytest.mark.parametrize(
    "settings",
    [{"plugins_block": ["example"]}, {"plugins_allow": ["something-else"]}],
)
def test_the_operator_blocks_or_allows_plugins(settings, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="nestpoint.plugins")
    host = PluginHost(Settings(**settings))
    host.load_entry_points()
    info = host.plugins["example"]
    assert not info.loaded
    assert info.reason == "blocked by operator settings"
    assert "example" not in host.loaded
    assert any(r.getMessage() == "plugin skipped" for r in caplog.records)


class BadRegistration:
    @hookimpl
    def nestpoint_register_jobs(self, registry) -> None:  # type: ignore[no-untyped-def]
        raise RegistrationError("nope")


class UnknownHook:
    @hookimpl
    def nestpoint_on_something_else(self) -> None:
        pass


def test_a_plugin_that_cannot_register_is_skipped_not_fatal() -> None:
    host = PluginHost(Settings())
    assert not host.register_plugin(BadRegistration(), "bad").loaded
    assert "registration failed" in host.plugins["bad"].reason
    assert not host.register_plugin(UnknownHook(), "unknown").loaded
    assert "refused" in host.plugins["unknown"].reason
    assert host.loaded == frozenset()
