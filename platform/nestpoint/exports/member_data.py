"""One member's data, whole, as a JSON document: the file of a ``member_data`` export (the
right of access and copy, ``docs/exports.md``, "Members' rights: access and copy").

Everything the core keeps about the member, read in one transaction, personal data
decrypted; then what the plugins enabled for the chain contribute through the
``nestpoint_collect_member_data`` hook (asked after that transaction, each plugin in its
own). Never another member's data: every query is by this member's id, within the tenant.
Messages are listed as delivery records only: their ``params`` (what was rendered into the
text: links, codes) are not stored data about the member and are left out.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.benefits.models import Benefit, BenefitUse, Entitlement
from nestpoint.members import pii
from nestpoint.members.models import Child, Member, MemberConsent, MemberIdentity
from nestpoint.members.service import (
    cipher_of,
    decrypt_name,
    decrypt_phone,
    get_member,
    stage_of,
    unseal,
)
from nestpoint.messaging.models import Message
from nestpoint.orders.models import Order, OrderLine, Refund
from nestpoint.points.models import PointAccount, PointEntry, PointLot
from nestpoint.tenancy.models import Store
from nestpoint.tiers.models import GrowthEntry, TierChange

FORMAT_VERSION = 1
# The top-level keys of the file, in order (docs/exports.md describes each).
SECTIONS = (
    "format_version",
    "generated_at",
    "tenant_id",
    "member",
    "children",
    "consents",
    "identities",
    "points",
    "tier_history",
    "growth",
    "orders",
    "benefits",
    "messages",
    "plugins",
)


def _jsonable(value: Any) -> Any:
    """``json.dumps``'s fallback: times and dates as ISO 8601, ids and decimals as text."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def encode(document: dict[str, Any]) -> bytes:
    """The file: UTF-8 JSON (Chinese kept as is), indented for a person to read."""
    return json.dumps(document, ensure_ascii=False, indent=2, default=_jsonable).encode("utf-8")


def is_jsonable(value: Any) -> bool:
    try:
        json.dumps(value, default=_jsonable)
    except (TypeError, ValueError):
        return False
    return True


def _open(cipher: pii.MemberCipher, table: str, row_id: uuid.UUID, token: str | None) -> str | None:
    return None if token is None else unseal(cipher, table, row_id, token)


async def core_sections(
    session: AsyncSession, tenant_id: uuid.UUID, member_id: uuid.UUID, today: date
) -> dict[str, Any]:
    """Every section the core keeps (all but ``plugins``), for one member of the tenant."""
    member = await get_member(session, member_id)
    cipher = cipher_of(member)
    stores = dict((await session.execute(select(Store.id, Store.code))).all())

    def code(store_id: uuid.UUID | None) -> str | None:
        return stores.get(store_id) if store_id is not None else None

    children = (
        await session.scalars(
            select(Child).where(Child.member_id == member_id).order_by(Child.created_at, Child.id)
        )
    ).all()
    consents = (
        await session.scalars(
            select(MemberConsent)
            .where(MemberConsent.member_id == member_id)
            .order_by(MemberConsent.channel)
        )
    ).all()
    identities = (
        await session.scalars(
            select(MemberIdentity)
            .where(MemberIdentity.member_id == member_id)
            .order_by(MemberIdentity.created_at, MemberIdentity.id)
        )
    ).all()
    return {
        "member": _member(member, code),
        "children": [
            {
                "id": c.id,
                "nickname": _open(cipher, "children", c.id, c.nickname_enc),
                "gender": c.gender,
                "birth_date": c.birth_date,
                "due_date": c.due_date,
                "stage": stage_of(c.birth_date, today, c.due_date),
                "created_at": c.created_at,
                "updated_at": c.updated_at,
            }
            for c in children
        ],
        "consents": {
            "guardian_consent": {
                "at": member.child_data_consent_at,
                "source": member.child_data_consent_source,
            },
            "channels": [
                {
                    "channel": c.channel,
                    "granted": c.granted,
                    "source": c.source,
                    "updated_at": c.updated_at,
                }
                for c in consents
            ],
        },
        "identities": [
            {
                "id": i.id,
                "kind": i.kind,
                "value": _open(cipher, "member_identities", i.id, i.value_enc),
                "created_at": i.created_at,
            }
            for i in identities
        ],
        "points": await _points(session, member_id),
        "tier_history": [
            {
                "from_tier": t.from_tier,
                "to_tier": t.to_tier,
                "reason": t.reason,
                "growth_value": t.growth_value,
                "changed_at": t.changed_at,
            }
            for t in await _all(session, TierChange, member_id, TierChange.changed_at)
        ],
        "growth": [
            {
                "amount": g.amount,
                "source": g.source,
                "cause_id": g.cause_id,
                "occurred_at": g.occurred_at,
            }
            for g in await _all(session, GrowthEntry, member_id, GrowthEntry.occurred_at)
        ],
        "orders": await _orders(session, member_id, code),
        "benefits": await _benefits(session, member_id, code),
        "messages": [
            {
                "id": m.id,
                "purpose": m.purpose,
                "template": m.template,
                "store": code(m.store_id),
                "status": m.status,
                "reason": m.reason,
                "channel": m.channel,
                "channels_tried": list(m.tried),
                "attempts": m.attempts,
                "created_at": m.created_at,
                "sent_at": m.sent_at,
                "delivered_at": m.delivered_at,
            }
            for m in await _all(session, Message, member_id, Message.created_at)
        ],
    }


def _member(member: Member, code: Any) -> dict[str, Any]:
    return {
        "id": member.id,
        "phone": decrypt_phone(member),
        "name": decrypt_name(member),
        "gender": member.gender,
        "birthday": member.birthday,
        "status": member.status,
        "merged_into_id": member.merged_into_id,
        "tier_code": member.tier_code,
        "tier_since": member.tier_since,
        "growth_value": member.growth_value,
        "tags": list(member.tags),
        "join_channel": member.join_channel,
        "joined_at": member.joined_at,
        "join_store": code(member.join_store_id),
        "home_store": code(member.home_store_id),
        "family_id": member.family_id,
        "last_order_at": member.last_order_at,
        "created_at": member.created_at,
        "updated_at": member.updated_at,
    }


async def _all(session: AsyncSession, model: Any, member_id: uuid.UUID, when: Any) -> list[Any]:
    stmt = select(model).where(model.member_id == member_id).order_by(when, model.id)
    return list((await session.scalars(stmt)).all())


async def _points(session: AsyncSession, member_id: uuid.UUID) -> dict[str, Any]:
    account = await session.scalar(select(PointAccount).where(PointAccount.member_id == member_id))
    return {
        "balance": account.balance if account else 0,
        "debt": account.debt if account else 0,
        "held": account.held if account else 0,
        "lifetime_earned": account.lifetime_earned if account else 0,
        "entries": [
            {
                "id": e.id,
                "kind": e.kind,
                "amount": e.amount,
                "balance_after": e.balance_after,
                "cause_type": e.cause_type,
                "cause_id": e.cause_id,
                "line_no": e.line_no,
                "reason": e.reason,
                "created_at": e.created_at,
            }
            for e in await _all(session, PointEntry, member_id, PointEntry.created_at)
        ],
        "lots": [
            {
                "id": lot.id,
                "amount": lot.amount,
                "remaining": lot.remaining,
                "source": lot.source,
                "order_id": lot.order_id,
                "earned_at": lot.earned_at,
                "available_at": lot.available_at,
                "expires_at": lot.expires_at,
            }
            for lot in await _all(session, PointLot, member_id, PointLot.earned_at)
        ],
    }


async def _orders(session: AsyncSession, member_id: uuid.UUID, code: Any) -> list[dict[str, Any]]:
    orders = await _all(session, Order, member_id, Order.paid_at)
    ids = [o.id for o in orders]
    lines: dict[uuid.UUID, list[OrderLine]] = {i: [] for i in ids}
    refunds: dict[uuid.UUID, list[Refund]] = {i: [] for i in ids}
    if ids:
        stmt = select(OrderLine).where(OrderLine.order_id.in_(ids))
        for line in (await session.scalars(stmt.order_by(OrderLine.line_no))).all():
            lines[line.order_id].append(line)
        stmt2 = select(Refund).where(Refund.order_id.in_(ids)).order_by(Refund.created_at)
        for refund in (await session.scalars(stmt2)).all():
            refunds[refund.order_id].append(refund)
    return [
        {
            "id": o.id,
            "channel": o.channel,
            "external_id": o.external_id,
            "store": code(o.store_id),
            "status": o.status,
            "paid_at": o.paid_at,
            "total_fen": o.total_fen,
            "cash_fen": o.cash_fen,
            "discount_fen": o.discount_fen,
            "points_used": o.points_used,
            "points_value_fen": o.points_value_fen,
            "points_earned": o.points_earned,
            "refunded_fen": o.refunded_fen,
            "coupons": o.coupons,
            "lines": [
                {
                    "line_no": li.line_no,
                    "sku": li.sku,
                    "name": li.name,
                    "category": li.category,
                    "quantity": li.quantity,
                    "unit_price_fen": li.unit_price_fen,
                    "paid_fen": li.paid_fen,
                    "discount_fen": li.discount_fen,
                    "benefit_code": li.benefit_code,
                    "points_earned": li.points_earned,
                    "refunded_quantity": li.refunded_quantity,
                    "refunded_fen": li.refunded_fen,
                    "points_reversed": li.points_reversed,
                }
                for li in lines[o.id]
            ],
            "refunds": [
                {
                    "id": r.id,
                    "external_id": r.external_id,
                    "amount_fen": r.amount_fen,
                    "points_reversed": r.points_reversed,
                    "points_returned": r.points_returned,
                    "created_at": r.created_at,
                }
                for r in refunds[o.id]
            ],
        }
        for o in orders
    ]


async def _benefits(session: AsyncSession, member_id: uuid.UUID, code: Any) -> dict[str, Any]:
    catalog = dict((await session.execute(select(Benefit.id, Benefit.code))).all())
    return {
        "entitlements": [
            {
                "id": e.id,
                "benefit_code": catalog.get(e.benefit_id),
                "source": e.source,
                "status": e.status,
                "points_paid": e.points_paid,
                "granted_at": e.granted_at,
                "expires_at": e.expires_at,
                "lapsed_at": e.lapsed_at,
                "ended_at": e.ended_at,
            }
            for e in await _all(session, Entitlement, member_id, Entitlement.granted_at)
        ],
        "uses": [
            {
                "id": u.id,
                "entitlement_id": u.entitlement_id,
                "benefit_code": catalog.get(u.benefit_id),
                "kind": u.kind,
                "amount": u.amount,
                "period_key": u.period_key,
                "store": code(u.store_id),
                "reference": u.reference,
                "reverses_id": u.reverses_id,
                "reason": u.reason,
                "created_at": u.created_at,
            }
            for u in await _all(session, BenefitUse, member_id, BenefitUse.created_at)
        ],
    }
