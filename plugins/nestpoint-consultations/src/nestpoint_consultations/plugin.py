"""The consultations plugin's hook implementations (the entry point names this module)."""

from __future__ import annotations

import html
import uuid
from datetime import time, timedelta
from pathlib import Path
from typing import Any

from nestpoint.plugins.api import (
    BenefitType,
    BenefitTypeRegistry,
    ConfigSchemaRegistry,
    Conflict,
    ConsolePanel,
    ConsolePanelRegistry,
    Invalid,
    JobRegistry,
    MigrationRegistry,
    PluginContext,
    RouteRegistry,
    chain_now,
    hookimpl,
    utcnow,
)
from nestpoint_consultations import service
from nestpoint_consultations.routes import HANDLERS, MEMBER_HANDLERS
from nestpoint_consultations.schemas import (
    BookingIn,
    ConsultantIn,
    ConsultationsConfig,
    Hours,
    Strict,
)


class ConsultationOptions(Strict):
    """Options of the ``consultations.consultation`` benefit type."""

    kinds: list[str] = []  # consultant kinds it covers; empty: any


@hookimpl
def nestpoint_register_config_schema(registry: ConfigSchemaRegistry) -> None:
    registry.use(ConsultationsConfig)


@hookimpl
def nestpoint_register_migrations(registry: MigrationRegistry) -> None:
    registry.add(Path(__file__).parent / "migrations" / "versions")


@hookimpl
def nestpoint_register_routes(registry: RouteRegistry) -> None:
    registry.add(*HANDLERS)
    registry.add_member(*MEMBER_HANDLERS)  # /api/v1/me/plugins/consultations/...


@hookimpl
def nestpoint_register_benefit_types(registry: BenefitTypeRegistry) -> None:
    """``consultations.consultation``: a free consultation, where the plugin is on."""
    registry.add(
        BenefitType(
            "consultation",
            "育儿咨询 Consultation",
            options=ConsultationOptions,
            description="A free consultation with a parenting consultant or specialist.",
        )
    )


async def remind(plugin: PluginContext, **_: Any) -> None:
    """Periodic: ``consultations.reminder`` a day before each booking, once."""
    async with plugin.session() as db:
        await service.send_reminders(db, plugin, utcnow())


async def no_shows(plugin: PluginContext, **_: Any) -> None:
    """Periodic: bookings left open two hours after they ended become no-shows."""
    async with plugin.session() as db:
        await service.mark_no_shows(db, plugin, utcnow())


PANEL_TITLE = {"zh_CN": "育儿咨询预约", "en": "Consultations"}
PANEL_HEADS = {
    "zh_CN": ("开始", "顾问", "分钟", "状态", "备注"),
    "en": ("Starts", "Consultant", "Minutes", "Status", "Notes"),
}


@hookimpl
def nestpoint_register_console_panels(registry: ConsolePanelRegistry) -> None:
    """The member's consultations (bookings) on their page in the console."""
    registry.add(ConsolePanel("bookings", PANEL_TITLE, "member", render=member_bookings, order=50))


async def member_bookings(plugin: PluginContext, subject_id: str | None) -> str:
    """A table of the member's consultations, newest first, in the user's language. Notes
    only for HQ (the service leaves them out at a store) and only for a user who sees the
    member's personal data (not the HQ analyst)."""
    if subject_id is None:
        return ""
    async with plugin.session() as db:
        booked = await service.member_consultations(db, plugin, uuid.UUID(subject_id))
    viewer = plugin.viewer
    locale = viewer.locale if viewer and viewer.locale in PANEL_HEADS else "en"
    if not booked:
        return '<p class="muted">—</p>'
    show_notes = viewer is None or viewer.personal_data
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(cell))}</td>"
            for cell in (
                c.starts_at.strftime("%Y-%m-%d %H:%M"),
                c.consultant_code,
                c.minutes,
                c.status,
                (c.notes or "") if show_notes else "—",
            )
        )
        + "</tr>"
        for c in reversed(booked)
    )
    head = "".join(f"<th>{h}</th>" for h in PANEL_HEADS[locale])
    return f'<table class="list"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


@hookimpl
def nestpoint_register_jobs(registry: JobRegistry) -> None:
    registry.periodic(remind, seconds=600, name="remind")
    registry.periodic(no_shows, seconds=1800, name="no_shows")


@hookimpl
async def nestpoint_seed_demo(plugin: PluginContext, member_ids: list[str]) -> None:
    """A consultant at the store with hours every day, and a few bookings in two days."""
    code = f"demo-{str(plugin.store_id)[:8]}"
    weekly = [Hours(weekday=d, start=time(10), end=time(17)) for d in range(1, 8)]
    consultant = ConsultantIn(name="王老师 育儿顾问", kind="parenting", weekly=weekly)
    async with plugin.session() as db:
        await service.put_consultant(db, plugin, code, consultant)
        day = (await chain_now(db)).date() + timedelta(days=2)
        slots = (await service.free_slots(db, plugin, code, day)).slots
    for member, slot in zip(member_ids[:3], slots, strict=False):
        data = BookingIn(
            idempotency_key=f"demo-consult-{code}-{member}",
            member_id=uuid.UUID(member),
            starts_at=slot.starts_at,
        )
        try:
            async with plugin.session() as db:
                await service.book(db, plugin, code, data)
        except (Invalid, Conflict):  # booked on an earlier start, for another day
            continue
