"""Plugin discovery and the facade through which the core calls every hook."""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import pluggy

from nestpoint.plugins import ENTRY_POINT_GROUP, PROJECT_NAME, hookspecs
from nestpoint.settings import Settings, get_settings

if TYPE_CHECKING:
    from nestpoint.events.service import Event

log = logging.getLogger("nestpoint.plugins")


@dataclass(slots=True)
class PluginInfo:
    id: str
    package: str
    version: str
    hooks: list[str] = field(default_factory=list)
    loaded: bool = True
    reason: str = ""


class PluginHost:
    """Owns the pluggy manager; the single place the core calls hooks from."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}

    def load_entry_points(self) -> None:
        """Register every plugin of the ``nestpoint`` entry-point group the operator allows."""
        allow, block = set(self.settings.plugins_allow), set(self.settings.plugins_block)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            package = ep.dist.name if ep.dist else ep.module
            version = ep.dist.version if ep.dist else "unknown"
            info = PluginInfo(id=ep.name, package=package, version=version)
            if ep.name in block or (allow and ep.name not in allow):
                info.loaded, info.reason = False, "blocked by operator settings"
                log.info(
                    "plugin skipped",
                    extra={
                        "plugin": ep.name,
                        "package": package,
                        "version": version,
                        "reason": info.reason,
                    },
                )
            else:
                self.register(ep.load(), info)
            self.plugins[ep.name] = info

    def register(self, plugin: object, info: PluginInfo) -> None:
        self.pm.register(plugin, name=info.id)
        info.hooks = sorted(hook.name for hook in self.pm.get_hookcallers(plugin) or [])
        self.plugins[info.id] = info
        log.info(
            "plugin loaded",
            extra={
                "plugin": info.id,
                "package": info.package,
                "version": info.version,
                "hooks": info.hooks,
            },
        )

    def unregister(self, plugin_id: str) -> None:
        self.pm.unregister(name=plugin_id)
        self.plugins.pop(plugin_id, None)

    async def _call_each(self, hook_name: str, **kwargs: Any) -> list[str]:
        """Call every implementation of a hook, awaiting coroutines; collect failures."""
        failures: list[str] = []
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            try:
                result = impl.function(**kwargs)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                log.exception(
                    "plugin hook failed", extra={"plugin": impl.plugin_name, "hook": hook_name}
                )
                failures.append(f"{impl.plugin_name}: {type(exc).__name__}: {exc}")
        return failures

    async def deliver_event(self, event: Event) -> list[str]:
        """Hand one outbox event to every plugin; returns the failures (empty = delivered)."""
        return await self._call_each("nestpoint_on_event", event=event)


_host: PluginHost | None = None


def get_plugin_host() -> PluginHost:
    global _host
    if _host is None:
        _host = PluginHost()
        _host.load_entry_points()
    return _host
