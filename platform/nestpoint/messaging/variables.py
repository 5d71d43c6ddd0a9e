"""The variables a template is rendered with, for one member (personal data stays here:
it is decrypted for the rendering and never stored on the message)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.context import require_tenant
from nestpoint.db.base import utcnow
from nestpoint.loyalty.service import get_program
from nestpoint.members.models import Child, Member, MemberIdentity
from nestpoint.members.service import (
    cipher_of,
    decrypt_name,
    decrypt_phone,
    get_active_member,
    stage_of,
    unseal,
)
from nestpoint.points.service import balances
from nestpoint.tenancy.models import Store, Tenant

_MEMBER = {"zh-CN": "会员", "en": "member"}


def _age(birth: date | None, today: date, locale: str) -> str:
    if birth is None:
        return ""
    months = (today.year - birth.year) * 12 + today.month - birth.month - (today.day < birth.day)
    if months < 24:
        return f"{months}个月" if locale == "zh-CN" else f"{months} months"
    years = months // 12
    return f"{years}岁" if locale == "zh-CN" else f"{years} years"


async def member_variables(
    session: AsyncSession, member_id: uuid.UUID, store_id: uuid.UUID | None, locale: str
) -> dict[str, Any]:
    """The member's name, points, youngest child's stage and age, store and chain."""
    member = await get_active_member(session, member_id)
    program = await get_program(session)
    today = utcnow().astimezone(program.zone).date()
    tenant = await session.get(Tenant, require_tenant().tenant_id)
    store = (
        await session.get(Store, (member.tenant_id, store_id or member.home_store_id))
        if (store_id or member.home_store_id)
        else None
    )
    points = await balances(session, program, member.id)
    child = (
        await session.execute(
            select(Child.birth_date, Child.due_date)
            .where(Child.member_id == member.id)
            .order_by(Child.birth_date.desc().nulls_first())
            .limit(1)
        )
    ).first()
    return {
        "member_name": decrypt_name(member) or _MEMBER.get(locale, "member"),
        "chain_name": tenant.name if tenant else "",
        "store_name": store.name if store else "",
        "points_balance": points.balance,
        "points_expiring": points.expiring_soon,
        "points_expiring_on": points.expiring_before.astimezone(program.zone).date().isoformat(),
        "child_stage": stage_of(child[0], today, child[1]) if child else "",
        "child_age": _age(child[0], today, locale) if child else "",
    }


def sample_variables(locale: str) -> dict[str, Any]:
    """Made-up values for a preview without a member."""
    zh = locale == "zh-CN"
    return {
        "member_name": "王芳" if zh else "Fang Wang",
        "chain_name": "贝贝母婴" if zh else "Beibei Baby",
        "store_name": "徐汇店" if zh else "Xuhui store",
        "points_balance": 1280,
        "points_expiring": 300,
        "points_expiring_on": "2026-12-31",
        "child_stage": "6-12m",
        "child_age": "8个月" if zh else "8 months",
    }


async def member_address(session: AsyncSession, member: Member, kind: str) -> str | None:
    """The member's address for a connector: the phone, or an identity of ``kind``."""
    if kind == "phone":
        return decrypt_phone(member)
    identity = await session.scalar(
        select(MemberIdentity)
        .where(MemberIdentity.member_id == member.id, MemberIdentity.kind == kind)
        .order_by(MemberIdentity.created_at.desc())
        .limit(1)
    )
    if identity is None:
        return None
    return unseal(cipher_of(member), "member_identities", identity.id, identity.value_enc)
