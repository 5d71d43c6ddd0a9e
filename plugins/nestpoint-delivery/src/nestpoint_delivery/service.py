"""The delivery rules: the bookable window, slot capacity, the free benefit, statuses.

A request locks its slot's row (``delivery_slots``, made on first use) and then counts the
slot's active requests, so concurrent requests never overfill it. The free benefit is used
in the same transaction through the core (``use_benefit``), keyed by the request, so a
retried request never uses two; cancelling gives the use back (``reverse_benefit_use``).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.plugins.api import (
    Conflict,
    FieldError,
    Invalid,
    NotFound,
    PluginContext,
    chain_now,
    emit_event,
    member_benefits,
    remember,
    replayed,
    reverse_benefit_use,
    seal,
    unseal,
    use_benefit,
    utcnow,
)
from nestpoint_delivery.models import DeliveryRequest, DeliverySlot, DeliveryStatusChange
from nestpoint_delivery.schemas import (
    DayLoad,
    DeliveryConfig,
    DeliveryIn,
    DeliveryRead,
    SlotLoad,
    Status,
)

ACTIVE: tuple[Status, ...] = ("requested", "scheduled", "out_for_delivery", "delivered")
# Which status may follow which: a failed delivery may be scheduled again or cancelled.
NEXT: dict[str, tuple[Status, ...]] = {
    "requested": ("scheduled", "cancelled", "failed"),
    "scheduled": ("out_for_delivery", "cancelled", "failed"),
    "out_for_delivery": ("delivered", "failed"),
    "failed": ("scheduled", "cancelled"),
    "delivered": (),
    "cancelled": (),
}
TABLE = DeliveryRequest.__tablename__


def bookable_window(now_local: datetime, config: DeliveryConfig) -> tuple[date, date]:
    """The first and last day a delivery can be booked for now: tomorrow before the
    cut-off (次日达), the day after once it has passed."""
    first = now_local.date() + timedelta(days=1 if now_local.time() < config.cutoff else 2)
    return first, now_local.date() + timedelta(days=config.max_days_ahead)


def _slot(config: DeliveryConfig, code: str) -> Any:
    for slot in config.slots:
        if slot.code == code:
            return slot
    raise Invalid.field("slot", f"no slot {code!r} (slots: {[s.code for s in config.slots]})")


async def _lock_slot(
    db: AsyncSession, plugin: PluginContext, store_id: uuid.UUID, day: date, slot: str
) -> None:
    """The slot's row, made on first use, locked until the request commits."""
    await db.execute(
        postgresql.insert(DeliverySlot)
        .values(
            tenant_id=plugin.tenant_id, id=uuid.uuid4(), store_id=store_id, slot_date=day, slot=slot
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "store_id", "slot_date", "slot"])
    )
    await db.execute(
        select(DeliverySlot.id)
        .where(
            DeliverySlot.store_id == store_id,
            DeliverySlot.slot_date == day,
            DeliverySlot.slot == slot,
        )
        .with_for_update()
    )


async def _booked(db: AsyncSession, store_id: uuid.UUID, day: date) -> dict[str, int]:
    rows = await db.execute(
        select(DeliveryRequest.slot, func.count())
        .where(
            DeliveryRequest.store_id == store_id,
            DeliveryRequest.slot_date == day,
            DeliveryRequest.status.in_(ACTIVE),
        )
        .group_by(DeliveryRequest.slot)
    )
    return {slot: int(n) for slot, n in rows.all()}


async def create(
    db: AsyncSession, plugin: PluginContext, data: DeliveryIn
) -> tuple[int, dict[str, Any], bool]:
    """Book a delivery from the caller's store: (status, body, whether it is a replay of
    the first answer to the same key)."""
    if plugin.store_id is None:
        raise Invalid.field("store", "a delivery is booked with a store's key")
    config = DeliveryConfig.model_validate(plugin.config)
    slot = _slot(config, data.slot)
    first, last = bookable_window(await chain_now(db), config)
    if not first <= data.slot_date <= last:
        raise Invalid.field("slot_date", f"bookable from {first} to {last}")
    await _lock_slot(db, plugin, plugin.store_id, data.slot_date, data.slot)
    request = data.model_dump(mode="json", exclude={"idempotency_key"})
    earlier = await replayed(db, plugin, data.idempotency_key, request)
    if earlier is not None:
        return *earlier, True
    booked = (await _booked(db, plugin.store_id, data.slot_date)).get(data.slot, 0)
    if booked >= slot.capacity:
        raise Invalid.field("slot", f"{slot.label} on {data.slot_date} is full")
    row = _new_request(plugin.store_id, data)
    row.benefit_use_id = await _use_free_benefit(db, config, data, row.id)
    row.fee_fen = 0 if row.benefit_use_id else config.fee_fen
    db.add(row)
    _history(db, row, None, "requested", "")
    await db.flush()
    body = read(row)
    emit_event(db, plugin, "status_changed", "member", row.member_id, _payload(row, None))
    await remember(db, plugin, data.idempotency_key, request, 201, body)
    return 201, body.model_dump(mode="json"), False


def _new_request(store_id: uuid.UUID, data: DeliveryIn) -> DeliveryRequest:
    request_id = uuid.uuid4()
    return DeliveryRequest(
        id=request_id,
        request_key=data.idempotency_key,
        store_id=store_id,
        member_id=data.member_id,
        order_ref=data.order_ref,
        address_enc=seal(TABLE, request_id, data.address),
        slot_date=data.slot_date,
        slot=data.slot,
        install_guidance=data.install_guidance,
        status="requested",
        created_at=utcnow(),
        updated_at=utcnow(),
    )


async def _use_free_benefit(
    db: AsyncSession, config: DeliveryConfig, data: DeliveryIn, request_id: uuid.UUID
) -> uuid.UUID | None:
    """Use the first free-delivery benefit the member can use here (the configured order:
    a newborn pack's before the tier's); none usable: the fee applies."""
    if not config.free_benefits:
        return None
    held = await member_benefits(db, data.member_id)
    usable = {e.benefit_code for e in held.entitlements if e.usable_here}
    code = next((c for c in config.free_benefits if c in usable), None)
    if code is None:
        return None
    used = await use_benefit(
        db,
        data.member_id,
        code,
        idempotency_key=f"delivery:{data.idempotency_key}",
        reference=f"delivery:{request_id}",
    )
    return used.id


async def change_status(
    db: AsyncSession, plugin: PluginContext, request_id: uuid.UUID, to: Status, note: str
) -> DeliveryRead:
    """Move a request along its statuses; cancelling gives a used benefit back. Setting
    the status it has is a no-op (a retried call)."""
    row = await _get(db, plugin, request_id, for_update=True)
    if row.status == to:
        return read(row)
    if to not in NEXT[row.status]:
        raise Conflict(
            f"status: a {row.status} delivery cannot become {to}",
            errors=[FieldError("status", f"not after {row.status}")],
        )
    if to == "cancelled" and row.benefit_use_id is not None:
        await reverse_benefit_use(db, row.benefit_use_id, "delivery cancelled")
    before = row.status
    row.status, row.updated_at = to, utcnow()
    _history(db, row, before, to, note)
    emit_event(db, plugin, "status_changed", "member", row.member_id, _payload(row, before))
    return read(row)


async def _get(
    db: AsyncSession, plugin: PluginContext, request_id: uuid.UUID, *, for_update: bool = False
) -> DeliveryRequest:
    stmt = select(DeliveryRequest).where(DeliveryRequest.id == request_id)
    if plugin.store_id is not None:  # a store sees its own queue only
        stmt = stmt.where(DeliveryRequest.store_id == plugin.store_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = await db.scalar(stmt)
    if row is None:
        raise NotFound("no such delivery")
    return row


async def get(db: AsyncSession, plugin: PluginContext, request_id: uuid.UUID) -> DeliveryRead:
    return read(await _get(db, plugin, request_id))


async def queue(
    db: AsyncSession, plugin: PluginContext, day: date, status: Status | None
) -> list[DeliveryRead]:
    """A day's deliveries by slot and booking time: the store's own, or the chain's."""
    stmt = select(DeliveryRequest).where(DeliveryRequest.slot_date == day)
    if plugin.store_id is not None:
        stmt = stmt.where(DeliveryRequest.store_id == plugin.store_id)
    if status is not None:
        stmt = stmt.where(DeliveryRequest.status == status)
    rows = (await db.scalars(stmt.order_by(DeliveryRequest.slot, DeliveryRequest.created_at))).all()
    return [read(row) for row in rows]


async def day_load(db: AsyncSession, plugin: PluginContext, day: date) -> DayLoad:
    """What is left of each slot of a day at the caller's store."""
    if plugin.store_id is None:
        raise Invalid.field("store", "slots are a store's: use a store's key")
    config = DeliveryConfig.model_validate(plugin.config)
    first, last = bookable_window(await chain_now(db), config)
    booked = await _booked(db, plugin.store_id, day)
    return DayLoad(
        slot_date=day,
        bookable=first <= day <= last,
        slots=[
            SlotLoad(
                slot=s.code,
                label=s.label,
                capacity=s.capacity,
                booked=booked.get(s.code, 0),
                left=max(0, s.capacity - booked.get(s.code, 0)),
            )
            for s in config.slots
        ],
    )


def _history(
    db: AsyncSession, row: DeliveryRequest, before: str | None, after: str, note: str
) -> None:
    db.add(
        DeliveryStatusChange(
            request_id=row.id, from_status=before, to_status=after, note=note, changed_at=utcnow()
        )
    )


def _payload(row: DeliveryRequest, before: str | None) -> dict[str, Any]:
    return {
        "delivery_id": str(row.id),
        "member_id": str(row.member_id),
        "order_ref": row.order_ref,
        "from_status": before,
        "status": row.status,
        "slot_date": row.slot_date.isoformat(),
        "slot": row.slot,
    }


def read(row: DeliveryRequest) -> DeliveryRead:
    return DeliveryRead(
        id=row.id,
        store_id=row.store_id,
        member_id=row.member_id,
        order_ref=row.order_ref,
        address=unseal(TABLE, row.id, row.address_enc),
        slot_date=row.slot_date,
        slot=row.slot,
        install_guidance=row.install_guidance,
        status=row.status,
        fee_fen=row.fee_fen,
        free_by_benefit=row.benefit_use_id is not None,
        created_at=row.created_at,
    )
