"""The classes plugin's hook implementations (the entry point names this module)."""

from __future__ import annotations

import contextlib
import html
import uuid
from datetime import datetime, time, timedelta
from pathlib import Path

from nestpoint.plugins.api import (
    BenefitType,
    BenefitTypeRegistry,
    ConfigSchemaRegistry,
    Conflict,
    ConsolePanel,
    ConsolePanelRegistry,
    Invalid,
    MigrationRegistry,
    PluginContext,
    RouteRegistry,
    chain_now,
    hookimpl,
    member_facts,
)
from nestpoint_classes import service
from nestpoint_classes.routes import HANDLERS, MEMBER_HANDLERS
from nestpoint_classes.schemas import BookingIn, ClassesConfig, SessionIn, Strict


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
    registry.add_member(*MEMBER_HANDLERS)  # /api/v1/me/plugins/classes/...


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


PANEL_TITLE = {"zh_CN": "亲子课预约", "en": "Classes"}
PANEL_HEADS = {
    "zh_CN": ("上课时间", "课程", "教室", "状态", "费用"),
    "en": ("Starts", "Class", "Room", "Status", "Fee"),
}
FREE_BY_BENEFIT = {"zh_CN": "权益免费", "en": "free (benefit)"}


@hookimpl
def nestpoint_register_console_panels(registry: ConsolePanelRegistry) -> None:
    """The member's class bookings on their page in the console."""
    registry.add(ConsolePanel("classes", PANEL_TITLE, "member", render=member_classes, order=55))


async def member_classes(plugin: PluginContext, subject_id: str | None) -> str:
    """A table of the member's class bookings, latest session first, in the user's
    language; at a store, only the store's sessions. No child's name: the class says
    enough."""
    if subject_id is None:
        return ""
    async with plugin.session() as db:
        booked = await service.member_bookings(db, plugin, uuid.UUID(subject_id))
    if not booked:
        return '<p class="muted">—</p>'
    viewer = plugin.viewer
    locale = viewer.locale if viewer and viewer.locale in PANEL_HEADS else "en"

    def fee(booking_fee: int, free: bool) -> str:
        return FREE_BY_BENEFIT[locale] if free else f"¥{booking_fee / 100:,.2f}"

    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(cell))}</td>"
            for cell in (
                session.starts_at.strftime("%Y-%m-%d %H:%M"),
                session.title,
                session.room or "—",
                booking.status,
                fee(booking.fee_fen, booking.benefit_use_id is not None),
            )
        )
        + "</tr>"
        for booking, session in booked
    )
    head = "".join(f"<th>{h}</th>" for h in PANEL_HEADS[locale])
    return f'<table class="list"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


@hookimpl
async def nestpoint_seed_demo(plugin: PluginContext, member_ids: list[str]) -> None:
    """A music class in three days at the store, booked by the first toddlers' parents."""
    code = f"demo-{str(plugin.store_id)[:8]}-music"
    async with plugin.session() as db:
        now = await chain_now(db)
        starts = datetime.combine(now.date() + timedelta(days=3), time(10), now.tzinfo)
        session = SessionIn(
            title="亲子音乐 Music together",
            room="亲子教室 A",
            starts_at=starts,
            capacity=4,
            stages=["1-3y", "3-6y"],
            price_fen=9900,
            opens_at=now - timedelta(days=1),
        )
        # Invalid: more booked than the capacity would allow: keep the session as it is.
        with contextlib.suppress(Invalid):
            await service.put_session(db, plugin, code, session)
    for member in member_ids:
        async with plugin.session() as db:
            facts = await member_facts(db, uuid.UUID(member))
        child = next((c for c in facts.children if c.stage in ("1-3y", "3-6y")), None)
        if child is None:
            continue
        data = BookingIn(
            idempotency_key=f"demo-class-{member}", member_id=facts.member_id, child_id=child.id
        )
        try:
            async with plugin.session() as db:
                await service.book(db, plugin, code, data)
        except (Invalid, Conflict):  # started, or the child is in another session then
            continue
