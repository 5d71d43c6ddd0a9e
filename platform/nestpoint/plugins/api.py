"""The public extension API: the one module a plugin imports from Nestpoint.

Everything a plugin needs is here, and nothing else in the core is a promise: an
import-linter contract keeps first-party plugins on this module (tests may also use
:mod:`nestpoint.testing`). Typical use::

    from nestpoint.plugins.api import EarnAdjustment, EarnContext, hookimpl

    @hookimpl
    def nestpoint_adjust_earned_points(context: EarnContext) -> EarnAdjustment | None:
        ...

See ``docs/plugins/`` for the tutorial, the how-tos and the reference of every hook.
"""

from __future__ import annotations

from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.db import rls
from nestpoint.db.base import Base, TenantOwned, UTCDateTime, new_id, utcnow
from nestpoint.events.service import Event
from nestpoint.plugins import ENTRY_POINT_GROUP, PROJECT_NAME, hookimpl
from nestpoint.plugins.registries import (
    BenefitTypeRegistry,
    ChannelRegistry,
    ConfigSchemaRegistry,
    ConsolePanelRegistry,
    JobRegistry,
    MigrationRegistry,
    PeriodicJob,
    PluginJob,
    RegistrationError,
    RouteRegistry,
    SurveyTypeRegistry,
)
from nestpoint.plugins.types import (
    BenefitType,
    ChannelChoice,
    ChannelConnector,
    ConsolePanel,
    DeliveryReceipt,
    EarnAdjustment,
    EarnContext,
    EarnLine,
    OutboundMessage,
    PluginContext,
    QuestionType,
)

# Parameter types for a plugin's route handlers: ``async def h(plugin: Plugin, db: Db)``.
Plugin = NamedDependency[PluginContext]
"""The caller's :class:`PluginContext` (tenant, store, merged config) in a route handler."""
Db = NamedDependency[AsyncSession]
"""The request's database session (scoped to the tenant; commits after the handler)."""

__all__ = [
    "ENTRY_POINT_GROUP",
    "PROJECT_NAME",
    "Base",
    "BenefitType",
    "BenefitTypeRegistry",
    "ChannelChoice",
    "ChannelConnector",
    "ChannelRegistry",
    "ConfigSchemaRegistry",
    "ConsolePanel",
    "ConsolePanelRegistry",
    "Db",
    "DeliveryReceipt",
    "EarnAdjustment",
    "EarnContext",
    "EarnLine",
    "Event",
    "JobRegistry",
    "MigrationRegistry",
    "OutboundMessage",
    "PeriodicJob",
    "Plugin",
    "PluginContext",
    "PluginJob",
    "QuestionType",
    "RegistrationError",
    "RouteRegistry",
    "SurveyTypeRegistry",
    "TenantOwned",
    "UTCDateTime",
    "hookimpl",
    "new_id",
    "rls",
    "utcnow",
]
