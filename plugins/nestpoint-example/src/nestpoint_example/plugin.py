"""The example plugin's hook implementations (the entry point names this module)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from litestar import get
from pydantic import BaseModel, Field
from sqlalchemy import select

from nestpoint.plugins.api import (
    ConfigSchemaRegistry,
    Db,
    EarnAdjustment,
    EarnContext,
    Event,
    MigrationRegistry,
    Plugin,
    PluginContext,
    RouteRegistry,
    hookimpl,
)
from nestpoint_example.models import TierCelebration


class ExampleConfig(BaseModel):
    """Every field has a default: the plugin works as soon as it is enabled."""

    birthday_multiplier: int = Field(
        default=2, ge=1, le=5, description="Points multiplier in a child's birthday month."
    )
    celebrate_tiers: list[str] = Field(
        default_factory=list,
        description="Tier codes whose reaching is celebrated; empty means every change up.",
    )
    greeting: str = Field(default="生日快乐!", max_length=100)


@hookimpl
def nestpoint_register_config_schema(registry: ConfigSchemaRegistry) -> None:
    registry.use(ExampleConfig)


@hookimpl
def nestpoint_register_migrations(registry: MigrationRegistry) -> None:
    registry.add(Path(__file__).parent / "migrations" / "versions")


# ------------------------------------------------------------------ earn-rule adjustment


@hookimpl
def nestpoint_adjust_earned_points(context: EarnContext) -> EarnAdjustment | None:
    """Multiply the order's points in the month one of the member's children was born."""
    config = ExampleConfig.model_validate(context.config)
    if config.birthday_multiplier <= 1 or context.base_points <= 0:
        return None
    month = context.paid_at.month
    if not any(born.month == month for born in context.children_birth_dates):
        return None
    extra = context.base_points * (config.birthday_multiplier - 1)
    return EarnAdjustment(extra, f"child's birthday month: points x{config.birthday_multiplier}")


# ------------------------------------------------------------------ event hook


@hookimpl
async def nestpoint_on_tier_changed(event: Event, plugin: PluginContext) -> None:
    """Keep a celebration when a member reaches one of the configured tiers."""
    config = ExampleConfig.model_validate(plugin.config)
    to_tier = event.payload.get("to_tier")
    if not to_tier or (config.celebrate_tiers and to_tier not in config.celebrate_tiers):
        return
    event_id = uuid.UUID(event.id)
    async with plugin.session() as db:
        if await db.scalar(select(TierCelebration.id).where(TierCelebration.event_id == event_id)):
            return  # delivered before: at-least-once delivery, idempotent consumer
        db.add(
            TierCelebration(
                event_id=event_id,
                member_id=str(event.payload.get("member_id", event.subject_id)),
                store_id=plugin.store_id,
                from_tier=event.payload.get("from_tier"),
                to_tier=to_tier,
                message=f"{config.greeting} {to_tier}",
            )
        )


# ------------------------------------------------------------------ routes of its own


class Hello(BaseModel):
    plugin: str
    tenant_id: uuid.UUID
    store_id: uuid.UUID | None
    greeting: str
    config: dict[str, Any]


class Celebration(BaseModel):
    member_id: str
    from_tier: str | None
    to_tier: str
    message: str
    store_id: uuid.UUID | None


@get(
    "/hello",
    summary="Who is asking, and the plugin's configuration there",
    operation_id="getExampleHello",
    description=(
        "Answers the caller's tenant and store and the plugin's merged configuration there; writes "
        "nothing."
    ),
)
async def hello(plugin: Plugin) -> Hello:
    config = ExampleConfig.model_validate(plugin.config)
    return Hello(
        plugin=plugin.plugin_id,
        tenant_id=plugin.tenant_id,
        store_id=plugin.store_id,
        greeting=config.greeting,
        config=dict(plugin.config),
    )


@get(
    "/celebrations",
    summary="Celebrated tier changes (a store key sees its store's)",
    operation_id="listExampleCelebrations",
    description=(
        "Tier changes the plugin celebrated, oldest first; an HQ key sees the whole chain's."
    ),
)
async def celebrations(plugin: Plugin, db: Db) -> list[Celebration]:
    stmt = select(TierCelebration).order_by(TierCelebration.created_at, TierCelebration.id)
    if plugin.store_id is not None:
        stmt = stmt.where(TierCelebration.store_id == plugin.store_id)
    rows = (await db.scalars(stmt)).all()
    return [
        Celebration(
            member_id=r.member_id,
            from_tier=r.from_tier,
            to_tier=r.to_tier,
            message=r.message,
            store_id=r.store_id,
        )
        for r in rows
    ]


@hookimpl
def nestpoint_register_routes(registry: RouteRegistry) -> None:
    registry.add(hello, celebrations)
