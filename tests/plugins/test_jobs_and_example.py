"""Plugins' jobs run only for the tenants where the plugin is enabled; every first-party
plugin's own test suite passes on this backend."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nestpoint.plugins.api import JobRegistry, PluginContext, hookimpl
from nestpoint.testing import enable_plugin, run_jobs
from source_tree import REPO_ROOT


class Nightly:
    def __init__(self) -> None:
        self.ran: list[tuple[str, str | None, str]] = []

    async def tidy(self, plugin: PluginContext) -> None:
        self.ran.append((str(plugin.tenant_id), plugin.store_id, plugin.plugin_id))

    @hookimpl
    def nestpoint_register_jobs(self, registry: JobRegistry) -> None:
        registry.periodic(self.tidy, seconds=3600)


async def test_periodic_jobs_run_where_the_plugin_is_enabled(
    client, make_tenant, host, register_plugin
):
    nightly = register_plugin(Nightly(), "nightly")
    (job,) = [p for p in host.periodic_jobs() if p.job.plugin_id == "nightly"]
    assert job.job.actor_name == "plugins.nightly.tidy"
    assert job.seconds == 3600
    a = await make_tenant()
    b = await make_tenant()
    await enable_plugin(client, a, "nightly", store="S2")
    assert await run_jobs(host, a) == ["plugins.nightly.tidy"]
    assert await run_jobs(host, b) == []
    assert nightly.ran == [(str(a.id), None, "nightly")]


# Every first-party plugin's own suite (plugins/*/tests), found here: a new plugin's tests
# run in CI on both backends without any change to this repository's configuration.
PLUGIN_SUITES = sorted(path.parent for path in (REPO_ROOT / "plugins").glob("*/tests"))


def test_every_first_party_plugin_has_a_suite() -> None:
    assert "nestpoint-example" in [root.name for root in PLUGIN_SUITES]


@pytest.mark.parametrize("root", PLUGIN_SUITES, ids=lambda root: root.name)
def test_a_first_party_plugins_suite_passes(root: Path, database_template: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NESTPOINT_DATABASE")}
    env.pop("NESTPOINT_MIGRATION_DATABASE_URL", None)
    env["NESTPOINT_TEST_TEMPLATE_DATABASE"] = database_template  # not migrated again
    run = subprocess.run(  # noqa: S603 - our own interpreter and a plugin's test suite
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
