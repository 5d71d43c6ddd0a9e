"""Plugin discovery and the facade through which the core calls every hook.

:class:`PluginHost` is the only code that touches pluggy's hook callers. For every call it

* picks the plugins enabled for the tenant and store (a ``subset_hook_caller`` cached per
  set of enabled plugins, so per tenant/store, rebuilt when the enablement changes),
* calls each implementation on its own, so one plugin's exception or timeout never stops
  the others nor fails the core operation,
* awaits async implementations (pluggy itself is synchronous) within a time limit,
* applies first-result logic for ``firstresult`` hooks,
* records metrics per plugin and hook, and failures per plugin and tenant.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy
from pydantic import BaseModel, ValidationError

from nestpoint.context import tenant_context
from nestpoint.db import scoped_session
from nestpoint.errors import FieldError, Invalid
from nestpoint.plugins import ENTRY_POINT_GROUP, PROJECT_NAME, hookspecs
from nestpoint.plugins.enablement import EnablementCache, TenantPlugins, load_snapshot
from nestpoint.plugins.models import PluginFailure
from nestpoint.plugins.registries import (
    BenefitTypeRegistry,
    ChannelRegistry,
    ConfigSchemaRegistry,
    ConsolePanelRegistry,
    Contributions,
    JobRegistry,
    MigrationRegistry,
    PeriodicJob,
    PluginJob,
    RouteRegistry,
    SurveyTypeRegistry,
)
from nestpoint.plugins.types import (
    ChannelChoice,
    ConsoleViewer,
    EarnAdjustment,
    EarnContext,
    PluginContext,
)
from nestpoint.settings import Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from nestpoint.events.service import Event

log = logging.getLogger("nestpoint.plugins")
DEMO_SEED_SECONDS = 60.0
MEMBER_DATA_SECONDS = 60.0  # per plugin, for one member's data export
CONSOLE_PANEL_SECONDS = 2.0  # per panel: a page waits for its panels
UNAVAILABLE: dict[str, str] = {"error": "unavailable"}  # a failed plugin's part of an export

# Registration hooks, in the order the host calls them, with the registry each gets.
REGISTRATION_HOOKS: tuple[tuple[str, type[Any]], ...] = (
    ("nestpoint_register_config_schema", ConfigSchemaRegistry),
    ("nestpoint_register_routes", RouteRegistry),
    ("nestpoint_register_jobs", JobRegistry),
    ("nestpoint_register_migrations", MigrationRegistry),
    ("nestpoint_register_benefit_types", BenefitTypeRegistry),
    ("nestpoint_register_channel_connectors", ChannelRegistry),
    ("nestpoint_register_survey_types", SurveyTypeRegistry),
    ("nestpoint_register_console_panels", ConsolePanelRegistry),
)
GENERIC_EVENT_HOOK = "nestpoint_on_event"


@dataclass(slots=True)
class PluginInfo:
    id: str
    package: str
    version: str
    hooks: list[str] = field(default_factory=list)
    loaded: bool = True
    reason: str = ""


@dataclass(slots=True)
class HookStats:
    calls: int = 0
    failures: int = 0
    timeouts: int = 0
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class HookFailure:
    plugin_id: str
    hook: str
    kind: str  # "error" | "timeout"
    error: str

    def describe(self) -> str:
        return f"{self.plugin_id}.{self.hook}: {self.error}"


@dataclass(frozen=True, slots=True)
class RenderedPanel:
    """A plugin's console panel as rendered for one page: ``html`` is the plugin's escaped
    fragment, shown as it is."""

    name: str  # <plugin id>.<panel key>
    title: str
    html: str


@dataclass(slots=True)
class DeliveryOutcome:
    """What one event's delivery did: hooks that took it, and those that failed."""

    delivered: list[tuple[str, str]] = field(default_factory=list)  # (plugin id, hook)
    failures: list[HookFailure] = field(default_factory=list)


class _Failed:
    """Sentinel result of an implementation that raised or timed out."""


FAILED = _Failed()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


class PluginHost:
    """Owns the pluggy manager; the single place the core calls hooks from."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.contributions: dict[str, Contributions] = {}
        self.metrics: dict[tuple[str, str], HookStats] = {}
        self.enablement = EnablementCache(self.settings.plugins_cache_ttl_seconds)
        self._callers: dict[tuple[str, frozenset[str]], Any] = {}
        self._background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ discovery

    def load_entry_points(self) -> None:
        """Register every plugin of the ``nestpoint`` entry-point group the operator allows."""
        allow, block = set(self.settings.plugins_allow), set(self.settings.plugins_block)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            package = ep.dist.name if ep.dist else ep.module
            version = ep.dist.version if ep.dist else "unknown"
            info = PluginInfo(id=ep.name, package=package, version=version)
            if ep.name in self.plugins:
                continue
            if ep.name in block or (allow and ep.name not in allow):
                self._skip(info, "blocked by operator settings")
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                log.exception("plugin failed to import", extra={"plugin": ep.name})
                self._skip(info, f"import failed: {_describe(exc)}")
                continue
            self.register(plugin, info)

    def _skip(self, info: PluginInfo, reason: str) -> None:
        info.loaded, info.reason, info.hooks = False, reason, []
        self.plugins[info.id] = info
        log.info(
            "plugin skipped",
            extra={
                "plugin": info.id,
                "package": info.package,
                "version": info.version,
                "reason": reason,
            },
        )

    def register(self, plugin: object, info: PluginInfo) -> bool:
        """Register a plugin and collect its registrations; ``False`` if it was refused."""
        try:
            self.pm.register(plugin, name=info.id)
        except Exception as exc:  # a hook that matches no spec, a duplicate name...
            self._skip(info, f"refused: {_describe(exc)}")
            return False
        info.hooks = sorted(hook.name for hook in self.pm.get_hookcallers(plugin) or [])
        unknown = sorted(
            hook.name for hook in self.pm.get_hookcallers(plugin) or [] if not hook.has_spec()
        )
        if unknown:  # a misspelt hook would never be called: refuse the plugin, say why
            self.pm.unregister(name=info.id)
            self._skip(info, f"refused: implements unknown hooks {unknown}")
            return False
        try:
            self.contributions[info.id] = self._collect(info.id)
        except Exception as exc:
            log.exception("plugin registration failed", extra={"plugin": info.id})
            self.pm.unregister(name=info.id)
            self._skip(info, f"registration failed: {_describe(exc)}")
            return False
        info.loaded, info.reason = True, ""
        self.plugins[info.id] = info
        self._callers.clear()
        log.info(
            "plugin loaded",
            extra={
                "plugin": info.id,
                "package": info.package,
                "version": info.version,
                "hooks": info.hooks,
            },
        )
        return True

    def register_plugin(
        self, plugin: object, plugin_id: str, *, package: str = "", version: str = "0"
    ) -> PluginInfo:
        """Register a plugin object directly (tests, the test kit, internal plugins)."""
        info = PluginInfo(id=plugin_id, package=package or plugin_id, version=version)
        self.register(plugin, info)
        return info

    def unregister(self, plugin_id: str) -> None:
        if self.pm.get_plugin(plugin_id) is not None:
            self.pm.unregister(name=plugin_id)
        self.plugins.pop(plugin_id, None)
        self.contributions.pop(plugin_id, None)
        self._callers.clear()

    def _collect(self, plugin_id: str) -> Contributions:
        contributions = Contributions(plugin_id)
        plugin = self.pm.get_plugin(plugin_id)
        for hook_name, registry_type in REGISTRATION_HOOKS:
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin is plugin:
                    impl.function(registry=registry_type(contributions))
        return contributions

    @property
    def loaded(self) -> frozenset[str]:
        return frozenset(pid for pid, info in self.plugins.items() if info.loaded)

    # ------------------------------------------------------------------ configuration

    def config_schema(self, plugin_id: str) -> type[BaseModel] | None:
        contributions = self.contributions.get(plugin_id)
        return contributions.config_schema if contributions else None

    def validate_config(
        self,
        plugin_id: str,
        config: Mapping[str, Any],
        *,
        base: Mapping[str, Any] | None = None,
        field_prefix: str = "config",
    ) -> dict[str, Any]:
        """Validate ``config`` (over ``base``, the chain's, for a store); return what to store:
        the given fields, normalised. Errors name each field (``config.<field>``)."""
        schema = self.config_schema(plugin_id)
        if schema is None:
            if config:
                raise Invalid.field(field_prefix, f"plugin {plugin_id!r} takes no configuration")
            return {}
        unknown = sorted(set(config) - set(schema.model_fields))
        errors = [FieldError(f"{field_prefix}.{name}", "unknown field") for name in unknown]
        if not errors:
            try:
                model = schema.model_validate({**(base or {}), **config})
            except ValidationError as exc:
                errors = [
                    FieldError(".".join([field_prefix, *(str(p) for p in err["loc"])]), err["msg"])
                    for err in exc.errors()
                ]
            else:
                dumped = model.model_dump(mode="json")
                return {name: dumped[name] for name in config}
        raise Invalid("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)

    def merge_config(
        self,
        plugin_id: str,
        chain: Mapping[str, Any],
        store: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """The effective configuration: schema defaults < chain < store."""
        schema = self.config_schema(plugin_id)
        merged = {**chain, **(store or {})}
        if schema is None:
            return dict(merged)
        try:
            return schema.model_validate(merged).model_dump(mode="json")
        except ValidationError:
            # Stored values were valid when written; a newer plugin version may disagree.
            log.warning("stored plugin config no longer valid", extra={"plugin": plugin_id})
            return schema().model_dump(mode="json")

    # ------------------------------------------------------------------ enablement

    async def snapshot(
        self, tenant_id: uuid.UUID, session: AsyncSession | None = None, *, fresh: bool = True
    ) -> TenantPlugins:
        """The tenant's enablement: read fresh through ``session`` when one is given; with
        ``fresh=False`` the cached copy, loaded through ``session`` only when stale."""
        if session is None or not fresh:
            return await self.enablement.get(tenant_id, session)
        return self.enablement.put(await load_snapshot(session, tenant_id))

    async def enabled_plugins(
        self,
        tenant_id: uuid.UUID,
        store_id: uuid.UUID | None,
        *,
        anywhere: bool = False,
        session: AsyncSession | None = None,
        fresh: bool = True,
    ) -> dict[str, dict[str, Any]]:
        """``{plugin id: merged config}`` of the plugins enabled for this tenant and store
        (``session``/``fresh`` as in :meth:`snapshot`)."""
        snapshot = await self.snapshot(tenant_id, session, fresh=fresh)
        return snapshot.enabled_for(store_id, self.loaded, self.merge_config, anywhere=anywhere)

    def _caller(self, hook_name: str, enabled: Iterable[str]) -> Any:
        """A hook caller restricted to ``enabled`` plugins, cached per enabled set."""
        enabled_set = frozenset(enabled)
        key = (hook_name, enabled_set)
        caller = self._callers.get(key)
        if caller is None:
            remove = {
                plugin
                for name, plugin in self.pm.list_name_plugin()
                if name not in enabled_set and plugin is not None
            }
            caller = self._callers[key] = self.pm.subset_hook_caller(hook_name, remove)
        return caller

    def _implemented(self, hook_name: str) -> bool:
        return bool(getattr(self.pm.hook, hook_name).get_hookimpls())

    # ------------------------------------------------------------------ calling

    def _stats(self, plugin_id: str, hook_name: str) -> HookStats:
        key = (plugin_id, hook_name)
        stats = self.metrics.get(key)
        if stats is None:
            stats = self.metrics[key] = HookStats()
        return stats

    async def _call(
        self,
        impl: Any,
        hook_name: str,
        kwargs: Mapping[str, Any],
        time_limit: float,
        failures: list[HookFailure],
    ) -> Any:
        """Call one implementation, isolated: returns its result or ``FAILED``."""
        plugin_id = impl.plugin_name
        stats = self._stats(plugin_id, hook_name)
        stats.calls += 1
        started = time.perf_counter()
        try:
            result = impl.function(**{name: kwargs[name] for name in impl.argnames})
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, time_limit)
            return result
        except TimeoutError:
            stats.timeouts += 1
            stats.failures += 1
            log.warning(
                "plugin hook timed out",
                extra={"plugin": plugin_id, "hook": hook_name, "timeout_s": time_limit},
            )
            failures.append(
                HookFailure(plugin_id, hook_name, "timeout", f"timed out after {time_limit:g} s")
            )
        except Exception as exc:
            stats.failures += 1
            log.exception("plugin hook failed", extra={"plugin": plugin_id, "hook": hook_name})
            failures.append(HookFailure(plugin_id, hook_name, "error", _describe(exc)))
        finally:
            stats.seconds += time.perf_counter() - started
        return FAILED

    # ---- points

    async def adjust_earned_points(
        self,
        tenant_id: uuid.UUID,
        store_id: uuid.UUID | None,
        context: EarnContext,
        *,
        session: AsyncSession | None = None,
    ) -> list[tuple[str, EarnAdjustment]]:
        """Ask the plugins enabled for this store for earn-rule adjustments.

        Costs nothing when no loaded plugin implements the hook, and no query while the
        tenant's enablement snapshot is cached. A failing plugin is skipped and recorded
        (in ``session`` when given, so the record commits with the order; otherwise in a
        background write of its own).
        """
        hook = "nestpoint_adjust_earned_points"
        if not self._implemented(hook):
            return []
        enabled = await self.enabled_plugins(tenant_id, store_id, session=session, fresh=False)
        if not enabled:
            return []
        results: list[tuple[str, EarnAdjustment]] = []
        failures: list[HookFailure] = []
        timeout = self.settings.plugins_earn_timeout_seconds
        for impl in reversed(self._caller(hook, enabled).get_hookimpls()):
            plugin_id = impl.plugin_name
            ctx = dataclasses.replace(context, config=dict(enabled[plugin_id]))
            result = await self._call(impl, hook, {"context": ctx}, timeout, failures)
            if result is FAILED or result is None:
                continue
            if not isinstance(result, EarnAdjustment):
                failures.append(
                    HookFailure(plugin_id, hook, "error", f"returned {type(result).__name__}")
                )
                continue
            results.append((plugin_id, result))
        if failures:
            self.record_failures(tenant_id, store_id, failures, session=session)
        return results

    # ---- channels

    async def choose_channel(
        self, tenant_id: uuid.UUID, store_id: uuid.UUID | None, choice: ChannelChoice
    ) -> str | None:
        """First-result: the first enabled plugin that names an available channel wins."""
        hook = "nestpoint_choose_channel"
        if not self._implemented(hook):
            return None
        enabled = await self.enabled_plugins(tenant_id, store_id)
        failures: list[HookFailure] = []
        timeout = self.settings.plugins_earn_timeout_seconds
        chosen: str | None = None
        for impl in reversed(self._caller(hook, enabled).get_hookimpls()):
            result = await self._call(impl, hook, {"choice": choice}, timeout, failures)
            if isinstance(result, str) and result in choice.available:
                chosen = result
                break
        if failures:
            self.record_failures(tenant_id, store_id, failures)
        return chosen

    # ---- the demo

    async def seed_demo(
        self, tenant_id: uuid.UUID, store_ids: list[uuid.UUID], member_ids: list[str]
    ) -> list[HookFailure]:
        """Let each plugin enabled at each store seed its demo data there."""
        hook = "nestpoint_seed_demo"
        failures: list[HookFailure] = []
        if not self._implemented(hook):
            return failures
        for store_id in store_ids:
            enabled = await self.enabled_plugins(tenant_id, store_id)
            with tenant_context(tenant_id, store_id):
                for impl in reversed(self._caller(hook, enabled).get_hookimpls()):
                    plugin_id = impl.plugin_name
                    plugin = PluginContext(plugin_id, tenant_id, store_id, enabled[plugin_id])
                    kwargs = {"plugin": plugin, "member_ids": member_ids}
                    await self._call(impl, hook, kwargs, DEMO_SEED_SECONDS, failures)
        return failures

    # ---- members' rights

    async def collect_member_data(
        self,
        tenant_id: uuid.UUID,
        member_id: uuid.UUID,
        *,
        jsonable: Callable[[Any], bool],
    ) -> dict[str, Any]:
        """``{plugin id: data}`` from every plugin enabled for the chain or any of its stores
        (a member's data export). A plugin answering ``None`` is left out; one that raises,
        times out or answers something that is not a dict ``jsonable`` accepts is recorded
        as a failure and its part is :data:`UNAVAILABLE`: the export never fails for it."""
        hook = "nestpoint_collect_member_data"
        collected: dict[str, Any] = {}
        if not self._implemented(hook):
            return collected
        enabled = await self.enabled_plugins(tenant_id, None, anywhere=True)
        if not enabled:
            return collected
        failures: list[HookFailure] = []
        with tenant_context(tenant_id):
            for impl in reversed(self._caller(hook, enabled).get_hookimpls()):
                plugin_id = impl.plugin_name
                plugin = PluginContext(plugin_id, tenant_id, None, enabled[plugin_id])
                kwargs = {"member_id": str(member_id), "plugin": plugin}
                result = await self._call(impl, hook, kwargs, MEMBER_DATA_SECONDS, failures)
                if result is None:
                    continue
                if result is not FAILED and not (isinstance(result, dict) and jsonable(result)):
                    self._stats(plugin_id, hook).failures += 1
                    failures.append(
                        HookFailure(
                            plugin_id, hook, "error", f"returned {type(result).__name__}: not JSON"
                        )
                    )
                    result = FAILED
                collected[plugin_id] = dict(UNAVAILABLE) if result is FAILED else result
        if failures:
            self.record_failures(tenant_id, None, failures)
        return dict(sorted(collected.items()))

    async def erase_member_data(
        self, tenant_id: uuid.UUID, member_id: uuid.UUID
    ) -> tuple[dict[str, Any], list[str]]:
        """Ask every plugin enabled for the chain or any of its stores to erase what it
        keeps about an erased member: ``({plugin id: its answer}, [plugins that failed])``.
        A failure is recorded as any hook's is; the caller asks again later."""
        hook = "nestpoint_erase_member_data"
        answers: dict[str, Any] = {}
        failed: list[str] = []
        if not self._implemented(hook):
            return answers, failed
        enabled = await self.enabled_plugins(tenant_id, None, anywhere=True)
        if not enabled:
            return answers, failed
        failures: list[HookFailure] = []
        with tenant_context(tenant_id):
            for impl in reversed(self._caller(hook, enabled).get_hookimpls()):
                plugin_id = impl.plugin_name
                plugin = PluginContext(plugin_id, tenant_id, None, enabled[plugin_id])
                kwargs = {"member_id": str(member_id), "plugin": plugin}
                result = await self._call(impl, hook, kwargs, MEMBER_DATA_SECONDS, failures)
                if result is FAILED:
                    failed.append(plugin_id)
                else:
                    answers[plugin_id] = result if isinstance(result, dict) else {}
        if failures:
            self.record_failures(tenant_id, None, failures)
        return dict(sorted(answers.items())), failed

    # ---- events

    def event_hooks(self, event_type: str) -> list[str]:
        """Hooks an event goes to: its own (when it has one), then the generic one."""
        specific = hookspecs.event_hook_name(event_type)
        hooks = [specific] if hasattr(self.pm.hook, specific) else []
        return [*hooks, GENERIC_EVENT_HOOK]

    async def deliver_event(
        self,
        event: Event,
        *,
        enabled: Mapping[str, Mapping[str, Any]] | None = None,
        skip: frozenset[tuple[str, str]] = frozenset(),
    ) -> DeliveryOutcome:
        """Hand one outbox event to the plugins enabled for its tenant and store.

        ``enabled`` is ``{plugin id: merged config}`` (read from the cache when omitted);
        ``skip`` lists (plugin id, hook) pairs that already took the event on an earlier
        attempt. Never raises for a plugin's failure: the outcome lists them.
        """
        tenant_id = uuid.UUID(event.tenant_id)
        store_id = uuid.UUID(event.store_id) if event.store_id else None
        if enabled is None:
            enabled = await self.enabled_plugins(tenant_id, store_id)
        outcome = DeliveryOutcome()
        if not enabled:
            return outcome
        timeout = self.settings.plugins_event_timeout_seconds
        with tenant_context(tenant_id, store_id):
            for hook in self.event_hooks(event.type):
                for impl in reversed(self._caller(hook, enabled).get_hookimpls()):
                    plugin_id = impl.plugin_name
                    if (plugin_id, hook) in skip:
                        continue
                    plugin = PluginContext(plugin_id, tenant_id, store_id, enabled[plugin_id])
                    result = await self._call(
                        impl, hook, {"event": event, "plugin": plugin}, timeout, outcome.failures
                    )
                    if result is not FAILED:
                        outcome.delivered.append((plugin_id, hook))
        return outcome

    # ---- the console

    async def console_panels(
        self,
        page: str,
        tenant_id: uuid.UUID,
        store_id: uuid.UUID | None,
        subject_id: str | None,
        viewer: ConsoleViewer | None = None,
    ) -> list[RenderedPanel]:
        """The panels the plugins enabled here add to a console ``page`` (``dashboard``,
        ``member``, ``store``), rendered for ``subject_id`` and ``viewer`` (the user: their
        role, language and whether they see the member's personal data), in their
        ``order``, titled in the viewer's language. Each render is isolated: one that fails
        or takes longer than ``CONSOLE_PANEL_SECONDS`` is left out (and recorded as a
        plugin failure); one that renders nothing is left out; the page still opens."""
        contributed = await self.contributed("console_panels", tenant_id, store_id)
        enabled = await self.enabled_plugins(tenant_id, store_id)
        wanted = sorted(
            ((name, panel) for name, panel in contributed.items() if panel.page == page),
            key=lambda item: (item[1].order, item[0]),
        )
        locale = viewer.locale if viewer else "en"
        rendered: list[RenderedPanel] = []
        failures: list[HookFailure] = []
        for name, panel in wanted:
            plugin_id = name.split(".", 1)[0]
            config = enabled.get(plugin_id, {})
            context = PluginContext(plugin_id, tenant_id, store_id, config, viewer)
            html = await self._render_panel(plugin_id, panel, context, subject_id, failures)
            if html:
                rendered.append(RenderedPanel(name, panel.title_in(locale), html))
        if failures:
            self.record_failures(tenant_id, store_id, failures)
        return rendered

    async def _render_panel(
        self,
        plugin_id: str,
        panel: Any,
        context: PluginContext,
        subject_id: str | None,
        failures: list[HookFailure],
    ) -> str | None:
        hook = f"console_panel:{panel.key}"
        try:
            html = await asyncio.wait_for(panel.render(context, subject_id), CONSOLE_PANEL_SECONDS)
        except TimeoutError:
            failures.append(HookFailure(plugin_id, hook, "timeout", "the panel took too long"))
            return None
        except Exception as exc:
            log.exception("console panel failed", extra={"plugin": plugin_id, "panel": panel.key})
            failures.append(HookFailure(plugin_id, hook, "error", _describe(exc)))
            return None
        return html if isinstance(html, str) else None

    # ------------------------------------------------------------------ failure records

    def record_failures(
        self,
        tenant_id: uuid.UUID,
        store_id: uuid.UUID | None,
        failures: list[HookFailure],
        *,
        session: AsyncSession | None = None,
    ) -> None:
        """Keep a row per failure of a call made once (an earn rule, a channel choice):
        recorded as final, since nothing calls it again (an event's failed delivery is
        retried and recorded by ``plugins.delivery``). In ``session`` if given, else in a
        background write."""
        rows = [
            PluginFailure(
                tenant_id=tenant_id,
                plugin_id=f.plugin_id,
                hook=f.hook,
                store_id=store_id,
                kind=f.kind,
                error=f.error,
                final=True,
            )
            for f in failures
        ]
        if session is not None:
            session.add_all(rows)
            return
        task = asyncio.get_running_loop().create_task(self._write_failures(tenant_id, rows))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _write_failures(self, tenant_id: uuid.UUID, rows: list[Any]) -> None:
        try:
            with tenant_context(tenant_id):
                async with scoped_session() as session:
                    session.add_all(rows)
        except Exception:
            log.exception("could not record plugin failures", extra={"count": len(rows)})

    async def drain(self) -> None:
        """Wait for background failure writes (tests; graceful shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # ------------------------------------------------------------------ contributions

    async def contributed(
        self,
        kind: str,
        tenant_id: uuid.UUID,
        store_id: uuid.UUID | None,
        *,
        anywhere: bool = False,
    ) -> dict[str, Any]:
        """What the plugins enabled here registered, by ``<plugin-id>.<key>``.

        ``kind`` is ``benefit_types``, ``channels``, ``question_types`` or
        ``console_panels``: the core features that offer them ask through this. With
        ``anywhere``, the plugins enabled for the chain or any of its stores (what a
        chain-level feature, such as a survey, may use).
        """
        if kind not in ("benefit_types", "channels", "question_types", "console_panels"):
            raise ValueError(f"unknown contribution kind {kind!r}")
        enabled = await self.enabled_plugins(tenant_id, store_id, anywhere=anywhere)
        return {
            f"{pid}.{key}": item
            for pid in sorted(enabled)
            for key, item in getattr(self.contributions[pid], kind).items()
        }

    def migration_locations(self) -> list[Path]:
        return [
            path
            for pid in sorted(self.loaded)
            for path in self.contributions.get(pid, Contributions(pid)).migrations
        ]

    def jobs(self) -> list[PluginJob]:
        return [job for pid in sorted(self.loaded) for job in self.contributions[pid].jobs]

    def periodic_jobs(self) -> list[PeriodicJob]:
        return [p for pid in sorted(self.loaded) for p in self.contributions[pid].periodic]


_host: PluginHost | None = None


def get_plugin_host() -> PluginHost:
    """The process-wide host, with the installed plugins loaded on first use."""
    global _host
    if _host is None:
        _host = PluginHost()
        _host.load_entry_points()
    return _host


def set_plugin_host(host: PluginHost | None) -> PluginHost | None:
    """Replace the process-wide host (the test kit does); returns the previous one."""
    global _host
    previous, _host = _host, host
    return previous
