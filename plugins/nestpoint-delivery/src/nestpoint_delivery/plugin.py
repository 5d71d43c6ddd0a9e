"""The delivery plugin's hook implementations (the entry point names this module)."""

from __future__ import annotations

import uuid
from pathlib import Path

from nestpoint.plugins.api import (
    BenefitType,
    BenefitTypeRegistry,
    ConfigSchemaRegistry,
    Conflict,
    Invalid,
    MigrationRegistry,
    PluginContext,
    RouteRegistry,
    chain_now,
    hookimpl,
)
from nestpoint_delivery import service
from nestpoint_delivery.routes import HANDLERS
from nestpoint_delivery.schemas import DeliveryConfig, DeliveryIn, InstallOptions
from nestpoint_delivery.service import bookable_window


@hookimpl
def nestpoint_register_config_schema(registry: ConfigSchemaRegistry) -> None:
    registry.use(DeliveryConfig)


@hookimpl
def nestpoint_register_migrations(registry: MigrationRegistry) -> None:
    registry.add(Path(__file__).parent / "migrations" / "versions")


@hookimpl
def nestpoint_register_routes(registry: RouteRegistry) -> None:
    registry.add(*HANDLERS)


@hookimpl
def nestpoint_register_benefit_types(registry: BenefitTypeRegistry) -> None:
    """``delivery.home_delivery``: a free home delivery, usable where the plugin is on."""
    registry.add(
        BenefitType(
            "home_delivery",
            "送货上门 Home delivery",
            options=InstallOptions,
            description="A free delivery from the store, with installation guidance.",
        )
    )


@hookimpl
async def nestpoint_seed_demo(plugin: PluginContext, member_ids: list[str]) -> None:
    """A few deliveries at the store for the demo, one per member (idempotent by key)."""
    config = DeliveryConfig.model_validate(plugin.config)
    for n, member in enumerate(member_ids[:4]):
        async with plugin.session() as db:
            first, _ = bookable_window(await chain_now(db), config)
        data = DeliveryIn(
            idempotency_key=f"demo-delivery-{plugin.store_id}-{n}",
            member_id=uuid.UUID(member),
            order_ref=f"demo-order-{n + 1}",
            address=f"上海市徐汇区衡山路 88 号 {n + 1}01 室",
            slot_date=first,
            slot=config.slots[n % len(config.slots)].code,
            install_guidance=n % 2 == 0,
        )
        try:
            async with plugin.session() as db:
                await service.create(db, plugin, data)
        except (Invalid, Conflict):  # full, or booked on an earlier start for another day
            continue
