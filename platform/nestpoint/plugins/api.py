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

import uuid

from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.benefits import service as _benefits
from nestpoint.benefits.schemas import EntitlementRead, MemberBenefits, UseIn, UseRead
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

# ---- benefits: what a plugin's own routes use (a booking and its use commit together)

BenefitUse = UseRead
"""A use (or its reversal) of a member's benefit: ``id``, ``entitlement_id``, ``benefit_code``,
``kind``, ``amount``, ``period_key``, ``remaining`` (left in the period after it)..."""
Entitlement = EntitlementRead
MemberBenefitsView = MemberBenefits


async def member_benefits(db: AsyncSession, member_id: uuid.UUID) -> MemberBenefits:
    """What the member holds, each entitlement saying whether it can be used at the
    request's store now (the same answer as ``GET /members/{id}/benefits``)."""
    return await _benefits.member_benefits(db, member_id, None)


async def use_benefit(
    db: AsyncSession,
    member_id: uuid.UUID,
    benefit_code: str,
    *,
    idempotency_key: str,
    reference: str = "",
    quantity: int = 1,
) -> UseRead:
    """Use a member's benefit at the request's store, in the request's transaction (so the
    plugin's own row, a booking, and the use commit or roll back together). Idempotent by
    ``idempotency_key`` (derive it from your own id: ``f"booking:{booking.id}"``). Raises the
    core's 422 problems (``benefit-not-held``, ``benefit-unavailable``, ``benefit-used-up``)
    and 404 for an unknown code, which the API answers as problem details."""
    data = UseIn(idempotency_key=idempotency_key, reference=reference, quantity=quantity)
    answer = await _benefits.use(db, member_id, benefit_code, data)
    return answer.result if answer.result is not None else UseRead.model_validate(answer.body)


async def reverse_benefit_use(db: AsyncSession, use_id: uuid.UUID, reason: str = "") -> UseRead:
    """Give a use back (a cancelled booking), exactly once; again answers the same."""
    return await _benefits.reverse_use(db, use_id, reason)


__all__ = [
    "ENTRY_POINT_GROUP",
    "PROJECT_NAME",
    "Base",
    "BenefitType",
    "BenefitTypeRegistry",
    "BenefitUse",
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
    "Entitlement",
    "Event",
    "JobRegistry",
    "MemberBenefitsView",
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
    "member_benefits",
    "new_id",
    "reverse_benefit_use",
    "rls",
    "use_benefit",
    "utcnow",
]
