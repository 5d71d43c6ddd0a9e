"""The classes plugin's hook implementations (the entry point names this module)."""

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
from nestpoint_classes.routes import HANDLERS
from nestpoint_classes.schemas import ClassesConfig, Strict


class SeatOptions(Strict):
    """Options of the ``classes.class_seat`` benefit type: none yet (any session)."""


@hookimpl
def nestpoint_register_config_schema(registry: ConfigSchemaRegistry) -> None:
    registry.use(ClassesConfig)


@hookimpl
def nestpoint_register_migrations(registry: MigrationRegistry) -> None:
    registry.add(Path(__file__).parent / "migrations" / "versions")


@hookimpl
def nestpoint_register_routes(registry: RouteRegistry) -> None:
    registry.add(*HANDLERS)


@hookimpl
def nestpoint_register_benefit_types(registry: BenefitTypeRegistry) -> None:
    """``classes.class_seat``: a free place in a parent-child class, where the plugin is on."""
    registry.add(
        BenefitType(
            "class_seat",
            "亲子课名额 Parent-child class place",
            options=SeatOptions,
            description="A free place in a parent-child class session.",
        )
    )
