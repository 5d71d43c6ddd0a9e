"""What the ``nestpoint plugins ...`` and ``nestpoint plugin new`` commands do."""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, select

from nestpoint.context import tenant_context
from nestpoint.db import get_database, scoped_session
from nestpoint.plugins.manager import PluginHost
from nestpoint.plugins.models import PluginEnablement
from nestpoint.tenancy.models import Store, Tenant

TEMPLATE_DIR = Path(__file__).parent / "scaffold"
NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


class ScaffoldUnavailable(RuntimeError):
    """copier (the extra ``nestpoint[scaffold]``) is not installed: one line to show."""


# ---------------------------------------------------------------------------- list


async def where_enabled() -> dict[str, list[str]] | None:
    """``{plugin id: ["<tenant slug> (chain)", "<tenant slug>: <store code>", ...]}``, or
    ``None`` when the database has not been migrated yet."""
    found: dict[str, list[str]] = defaultdict(list)
    try:
        async with get_database().engine.connect() as conn:
            migrated = await conn.run_sync(
                lambda sync: inspect(sync).has_table(PluginEnablement.__tablename__)
            )
        if not migrated:
            return None
        async with scoped_session() as session:
            tenants = (await session.execute(select(Tenant.id, Tenant.slug))).all()
        for tenant_id, slug in tenants:
            with tenant_context(tenant_id):
                async with scoped_session() as session:
                    rows = (
                        await session.scalars(
                            select(PluginEnablement).where(PluginEnablement.enabled)
                        )
                    ).all()
                    codes: dict[uuid.UUID, str] = {
                        s.id: s.code for s in (await session.scalars(select(Store))).all()
                    }
            for row in sorted(rows, key=lambda r: (r.store_id is not None, str(r.store_id))):
                where = (
                    f"{slug} (chain)"
                    if row.store_id is None
                    else f"{slug}: {codes.get(row.store_id, row.store_id)}"
                )
                found[row.plugin_id].append(where)
    finally:
        await get_database().dispose()
    return dict(found)


def describe_plugins(
    host: PluginHost, enabled: dict[str, list[str]] | None, *, show_enabled: bool = True
) -> list[str]:
    if not host.plugins:
        return ["no plugins installed"]
    lines: list[str] = []
    for info in sorted(host.plugins.values(), key=lambda i: i.id):
        state = "loaded" if info.loaded else f"skipped ({info.reason})"
        lines.append(f"{info.id}  {info.package} {info.version}  {state}")
        lines.append(f"    hooks:   {', '.join(info.hooks) or '-'}")
        if not show_enabled:
            continue
        if enabled is None:
            lines.append("    enabled: (unknown: the database is not migrated or not reachable)")
        else:
            lines.append(f"    enabled: {', '.join(enabled.get(info.id, [])) or 'nowhere'}")
    return lines


# ---------------------------------------------------------------------------- scaffold


def _workspace_root(directory: Path) -> Path | None:
    """The uv workspace whose members would include a package made in ``directory``."""
    import tomllib
    from fnmatch import fnmatch

    target = (directory.resolve() / "nestpoint-x").as_posix()
    for folder in [directory.resolve(), *directory.resolve().parents]:
        pyproject = folder / "pyproject.toml"
        if not pyproject.is_file():
            continue
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            continue
        members = data.get("tool", {}).get("uv", {}).get("workspace", {}).get("members", [])
        if any(fnmatch(target, (folder / m).as_posix()) for m in members):
            return folder
    return None


def _copier() -> Callable[..., Any]:
    """copier's ``run_copy``: an optional extra, since a served instance never scaffolds."""
    try:
        from copier import run_copy
    except ModuleNotFoundError as exc:
        raise ScaffoldUnavailable(
            "nestpoint plugin new needs copier: install nestpoint[scaffold] "
            "(pip install 'nestpoint[scaffold]')"
        ) from exc
    return run_copy


def scaffold(name: str, directory: Path, description: str = "") -> Path:
    """Render the plugin template into ``directory/nestpoint-<name>``; returns that folder.

    The package is ``nestpoint_<name with underscores>``, the plugin id is ``name``.
    """
    run_copy = _copier()
    if not NAME_RE.match(name):
        raise ValueError(
            f"plugin name {name!r}: lower-case letters, digits and single dashes, "
            "starting with a letter (e.g. birthday-bonus)"
        )
    target = directory / f"nestpoint-{name}"
    if target.exists():
        raise FileExistsError(f"{target} exists")
    workspace = _workspace_root(directory)
    run_copy(
        str(TEMPLATE_DIR),
        str(target),
        data={
            "plugin_id": name,
            "package": "nestpoint_" + name.replace("-", "_"),
            "distribution": f"nestpoint-{name}",
            "description": description or f"A Nestpoint plugin: {name}",
            # In a Nestpoint checkout's uv workspace (plugins/*), nestpoint comes from it.
            "in_workspace": workspace is not None,
        },
        defaults=True,
        unsafe=False,
        quiet=True,
        vcs_ref=None,
    )
    return target
