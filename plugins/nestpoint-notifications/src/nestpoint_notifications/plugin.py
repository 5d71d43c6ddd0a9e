"""The notifications plugin: the chain's transactional messages, from domain events.

Each event below becomes one message to its member through the core's pipeline
(``send_message``: the chain's templates, channels, consent, quiet hours and cap), keyed by
the event's id so a redelivered event never sends twice. Which of them the chain sends is
the core's ``messaging.settings.transactional`` switch per purpose.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from nestpoint.plugins.api import Event, PluginContext, chain_now, hookimpl, send_message

Params = dict[str, Any]


def _local(iso: str, now: datetime) -> str:
    """An ISO moment as the chain's wall-clock time (``2026-12-01 10:30``)."""
    return datetime.fromisoformat(iso).astimezone(now.tzinfo).strftime("%Y-%m-%d %H:%M")


def _expiring(p: Params, now: datetime) -> Params:
    return {
        "points_expiring": p.get("points", 0),
        "points_expiring_on": _local(p["expires_by"], now)[:10] if p.get("expires_by") else "",
    }


def _earned(p: Params, now: datetime) -> Params:
    return {"points_earned": p.get("points", 0)}


def _tier(p: Params, now: datetime) -> Params | None:
    return {"tier_name": p.get("to_tier") or ""} if p.get("reason") == "upgrade" else None


def _class(p: Params, now: datetime) -> Params | None:
    if p.get("status") != "booked":
        return None
    return {"booking_title": p.get("session_code", ""), "booking_time": _local(p["starts_at"], now)}


def _consultation(p: Params, now: datetime) -> Params:
    return {"booking_title": "育儿咨询", "booking_time": _local(p["starts_at"], now)}


def _delivery(p: Params, now: datetime) -> Params | None:
    if p.get("status") != "scheduled":
        return None
    return {"delivery_date": p.get("slot_date", ""), "delivery_slot": p.get("slot", "")}


# event type -> (purpose, the template's extra variables; None: no message for this event)
ROUTES: dict[str, tuple[str, Callable[[Params, datetime], Params | None]]] = {
    "points.expiring": ("points_expiring", _expiring),
    "points.earned": ("points_earned", _earned),
    "tier.changed": ("tier_up", _tier),
    "classes.booking_booked": ("booking_confirmed", _class),
    "consultations.booked": ("booking_confirmed", _consultation),
    "consultations.reminder": ("booking_reminder", _consultation),
    "delivery.status_changed": ("delivery_scheduled", _delivery),
}


@hookimpl
async def nestpoint_on_event(event: Event, plugin: PluginContext) -> None:
    """Queue the message an event calls for (see ``ROUTES``); other events pass by."""
    route = ROUTES.get(event.type)
    member_id = event.payload.get("member_id")
    if route is None or not member_id:
        return
    purpose, params_of = route
    async with plugin.session() as db:
        params = params_of(event.payload, await chain_now(db))
        if params is None:
            return
        await send_message(
            db,
            plugin,
            uuid.UUID(str(member_id)),
            key=f"event:{event.id}",
            purpose=purpose,
            template=purpose,
            params=params,
        )
