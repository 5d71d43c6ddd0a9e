"""The delivery plugin's hook implementations (the entry point names this module)."""

from __future__ import annotations

from pathlib import Path

from nestpoint.plugins.api import (
    BenefitType,
    BenefitTypeRegistry,
    ConfigSchemaRegistry,
    MigrationRegistry,
    RouteRegistry,
    hookimpl,
)
from nestpoint_delivery.routes import HANDLERS
from nestpoint_delivery.schemas import DeliveryConfig, InstallOptions


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
