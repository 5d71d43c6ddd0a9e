"""Typed registries the ``nestpoint_register_*`` hooks fill in.

At start-up the plugin host calls each registration hook once per plugin, handing it a
registry bound to that plugin's id; what the plugin adds is kept in its
:class:`Contributions`. Keys are namespaced by the plugin id where they are global
(``<plugin-id>.<key>``), so two plugins never collide.

Plugins import these through :mod:`nestpoint.plugins.api`, never from here.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from nestpoint.jobs.broker import JobRef
from nestpoint.plugins.types import (
    BenefitType,
    ChannelConnector,
    ConsolePanel,
    PluginContext,
    QuestionType,
)

_KEY = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class RegistrationError(ValueError):
    """A plugin registered something malformed; the plugin is not loaded."""


def _check_key(kind: str, key: str) -> str:
    if not _KEY.match(key):
        raise RegistrationError(f"{kind} key {key!r} must match {_KEY.pattern}")
    return key


JobFunction = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class PluginJob:
    """A Dramatiq actor of a plugin, named ``plugins.<plugin-id>.<name>``.

    The function is ``async def job(plugin: PluginContext, **kwargs)``; it runs in the
    tenant's context. Send it with :meth:`send` (after your transaction commits).
    """

    plugin_id: str
    name: str
    function: JobFunction
    queue: str = "default"
    max_retries: int = 3

    @property
    def actor_name(self) -> str:
        return f"plugins.{self.plugin_id}.{self.name}"

    def send(self, plugin: PluginContext, **kwargs: Any) -> None:
        """Enqueue the job for ``plugin``'s tenant (and store); its actor is declared by the
        worker (``nestpoint.plugins.jobs``), so it is addressed by name here."""
        JobRef(self.actor_name, queue_name=self.queue).send(
            str(plugin.tenant_id), str(plugin.store_id) if plugin.store_id else None, kwargs
        )


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    """A plugin job the scheduler runs every ``seconds``, once for each tenant where the
    plugin is enabled (``plugin.store_id`` is ``None``, ``plugin.config`` the chain's)."""

    job: PluginJob
    seconds: int


@dataclass
class Contributions:
    """Everything one plugin registered at start-up."""

    plugin_id: str
    routes: list[Any] = field(default_factory=list)
    public_routes: list[Any] = field(default_factory=list)
    member_routes: list[Any] = field(default_factory=list)
    jobs: list[PluginJob] = field(default_factory=list)
    periodic: list[PeriodicJob] = field(default_factory=list)
    migrations: list[Path] = field(default_factory=list)
    config_schema: type[BaseModel] | None = None
    secrets: dict[str, str] = field(default_factory=dict)
    benefit_types: dict[str, BenefitType] = field(default_factory=dict)
    channels: dict[str, ChannelConnector] = field(default_factory=dict)
    question_types: dict[str, QuestionType] = field(default_factory=dict)
    console_panels: dict[str, ConsolePanel] = field(default_factory=dict)


class _Registry:
    def __init__(self, contributions: Contributions) -> None:
        self._contributions = contributions

    @property
    def plugin_id(self) -> str:
        """The id of the plugin this registry belongs to."""
        return self._contributions.plugin_id


class RouteRegistry(_Registry):
    """Litestar route handlers (functions decorated with ``@get``/``@post``..., controllers
    or routers), mounted under ``/api/v1/plugins/<plugin-id>/``."""

    def add(self, *handlers: Any) -> None:
        self._contributions.routes.extend(handlers)

    def add_public(self, *handlers: Any) -> None:
        """Public routes: no API key, for anyone who has the link (a QR code on a product,
        a page a member opens). Mounted under ``/public/<tenant-slug>/<plugin-id>/``: the
        core finds the chain by its slug (404 for an unknown or inactive one, or where the
        plugin is not enabled anywhere in the chain), sets the tenant's context (so ``db``
        is scoped to it; ``plugin.store_id`` is ``None`` and ``plugin.config`` the
        chain's), and counts every request against the per-client-address limit
        ``NESTPOINT_PUBLIC_RATE_LIMIT`` (429 with ``Retry-After`` over it). Answer nothing
        a stranger may not see: no member's data, no staff-only fields."""
        self._contributions.public_routes.extend(handlers)

    def add_member(self, *handlers: Any) -> None:
        """Member routes: for one member of the chain, with a member token (``npm_...``,
        the member API: ``docs/member-api.md``), from the chain's mini-program or app.
        Mounted under ``/api/v1/me/plugins/<plugin-id>/``: an API key there is 403, no or a
        dead token 401; 404 where the plugin is not enabled for the chain or any of its
        stores. The request runs in the member's chain (``db`` scoped to it;
        ``plugin.store_id`` is ``None`` and ``plugin.config`` the chain's) and counts
        against the member's limit ``NESTPOINT_MEMBER_RATE_LIMIT`` (429 with
        ``Retry-After``). :func:`nestpoint.plugins.api.current_member_id` is the caller;
        take no member id from the request, and answer only the member's own rows (404
        for another's). Something of one store (a consultant, a class) is acted on with
        :func:`nestpoint.plugins.api.plugin_at_store` and ``acting_at_store``."""
        self._contributions.member_routes.extend(handlers)


class JobRegistry(_Registry):
    """Dramatiq actors and periodic jobs of the plugin."""

    def actor(
        self, function: JobFunction, *, name: str | None = None, max_retries: int = 3
    ) -> PluginJob:
        job = PluginJob(
            self.plugin_id,
            _check_key("job", name or function.__name__),
            function,
            max_retries=max_retries,
        )
        self._contributions.jobs.append(job)
        return job

    def periodic(
        self, function: JobFunction, *, seconds: int, name: str | None = None
    ) -> PluginJob:
        if seconds < 10:
            raise RegistrationError("a periodic job runs at most every 10 seconds")
        job = self.actor(function, name=name, max_retries=0)
        self._contributions.periodic.append(PeriodicJob(job, seconds))
        return job


class MigrationRegistry(_Registry):
    """The plugin's own Alembic version location (a folder of revision files)."""

    def add(self, versions_dir: str | Path) -> None:
        path = Path(versions_dir).resolve()
        if not path.is_dir():
            raise RegistrationError(f"migration folder {path} does not exist")
        self._contributions.migrations.append(path)


class ConfigSchemaRegistry(_Registry):
    """The plugin's configuration schema: a pydantic model with a default for every field."""

    def use(self, model: type[BaseModel]) -> None:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise RegistrationError("the configuration schema must be a pydantic model class")
        try:
            model()
        except Exception as exc:
            raise RegistrationError(
                "every configuration field needs a default, so an enabled plugin works "
                f"before it is configured: {exc}"
            ) from exc
        self._contributions.config_schema = model

    def secret(self, name: str, description: str) -> None:
        """Declare a write-only credential (an SMTP password, a gateway's signing key).

        HQ sets it with ``PUT /api/v1/tenant/plugins/<id>/secrets/<name>``; it is stored
        encrypted, never answered back nor logged, and the plugin reads it with
        :func:`nestpoint.plugins.api.plugin_secret`. Keep credentials out of the
        configuration schema, which every ``plugins:read`` key can see."""
        key = _check_key("secret", name)
        if len(key) > 64:
            raise RegistrationError("a secret's name has at most 64 characters")
        self._contributions.secrets[key] = description


class BenefitTypeRegistry(_Registry):
    def add(self, benefit_type: BenefitType) -> None:
        key = _check_key("benefit type", benefit_type.key)
        self._contributions.benefit_types[key] = benefit_type


class ChannelRegistry(_Registry):
    def add(self, connector: ChannelConnector) -> None:
        key = _check_key("channel", connector.key)
        self._contributions.channels[key] = connector


class SurveyTypeRegistry(_Registry):
    def add(self, question_type: QuestionType) -> None:
        key = _check_key("question type", question_type.key)
        self._contributions.question_types[key] = question_type


class ConsolePanelRegistry(_Registry):
    def add(self, panel: ConsolePanel) -> None:
        if panel.page not in ("dashboard", "member", "store"):
            raise RegistrationError("a console panel's page is dashboard, member or store")
        if not isinstance(panel.title, str) and (
            not panel.title or not all(isinstance(t, str) and t for t in panel.title.values())
        ):
            raise RegistrationError("a console panel's title is a text or {locale: text}")
        key = _check_key("console panel", panel.key)
        self._contributions.console_panels[key] = panel
