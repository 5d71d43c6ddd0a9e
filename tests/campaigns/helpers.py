"""Campaign test helpers: campaigns made through the service, runs on a controlled clock,
and reads of grants, ledger entries, coupons and messages (each scoped to the tenant)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from nestpoint.benefits.models import Entitlement
from nestpoint.campaigns import jobs, service
from nestpoint.campaigns.models import Campaign, CampaignGrant
from nestpoint.campaigns.schemas import CampaignIn
from nestpoint.coupons import service as coupons
from nestpoint.coupons.models import Coupon
from nestpoint.coupons.schemas import TemplateIn
from nestpoint.jobs.tenants import run_for_tenant
from nestpoint.messaging.models import Message
from nestpoint.points.models import PointAccount, PointEntry

NOW = datetime.now(UTC)


def body(code: str, **extra: Any) -> dict[str, Any]:
    """A one-off campaign granting 100 points now, to everyone, unless ``extra`` says."""
    return {
        "code": code,
        "name": f"Campaign {code}",
        "schedule": {"kind": "one_off", "at": (NOW - timedelta(hours=1)).isoformat()},
        "actions": [{"type": "grant_points", "points": 100}],
        **extra,
    }


async def make(tenant_id: uuid.UUID, data: dict[str, Any], *, activate: bool = True) -> uuid.UUID:
    parsed = CampaignIn.model_validate(data)

    async def create(session: Any) -> uuid.UUID:
        answer = await service.create_campaign(session, parsed)
        assert answer.status_code == 201
        if activate:
            await service.activate(session, parsed.code)
        return uuid.UUID(answer.body["id"])

    return await run_for_tenant(tenant_id, create, name="test")


async def run(
    tenant_id: uuid.UUID, campaign_id: uuid.UUID, key: str = "once", now: datetime | None = None
) -> service.Counts:
    async def go(session: Any) -> service.Counts:
        return (await jobs.run_campaign(session, campaign_id, key, now or NOW)).counts

    return await run_for_tenant(tenant_id, go, name="test")


async def campaign(tenant_id: uuid.UUID, campaign_id: uuid.UUID) -> Campaign:
    async def read(session: Any) -> Campaign:
        found = await session.scalar(select(Campaign).where(Campaign.id == campaign_id))
        assert found is not None
        return found

    return await run_for_tenant(tenant_id, read, name="test")


async def grants(tenant_id: uuid.UUID, campaign_id: uuid.UUID) -> list[CampaignGrant]:
    async def read(session: Any) -> list[CampaignGrant]:
        return await service.grants_of(session, campaign_id)

    return await run_for_tenant(tenant_id, read, name="test")


async def ledger(tenant_id: uuid.UUID, campaign_id: uuid.UUID) -> dict[str, int]:
    """{member id: points} of the ledger's entries caused by the campaign."""

    async def read(session: Any) -> dict[str, int]:
        rows = await session.execute(
            select(PointEntry.member_id, func.sum(PointEntry.amount))
            .where(
                PointEntry.cause_type == "campaign",
                PointEntry.cause_id.like(f"{campaign_id}:%"),
            )
            .group_by(PointEntry.member_id)
        )
        return {str(m): int(total) for m, total in rows}

    return await run_for_tenant(tenant_id, read, name="test")


async def balances(tenant_id: uuid.UUID) -> dict[str, int]:
    async def read(session: Any) -> dict[str, int]:
        rows = await session.execute(select(PointAccount.member_id, PointAccount.balance))
        return {str(m): int(b) for m, b in rows}

    return await run_for_tenant(tenant_id, read, name="test")


async def coupons_of(tenant_id: uuid.UUID, campaign_id: uuid.UUID) -> list[Coupon]:
    async def read(session: Any) -> list[Coupon]:
        rows = await session.scalars(
            select(Coupon).where(
                Coupon.cause_type == "campaign", Coupon.cause_id.like(f"{campaign_id}:%")
            )
        )
        return list(rows.all())

    return await run_for_tenant(tenant_id, read, name="test")


async def messages_of(tenant_id: uuid.UUID, campaign_id: uuid.UUID) -> list[Message]:
    async def read(session: Any) -> list[Message]:
        rows = await session.scalars(
            select(Message).where(Message.message_key.like(f"campaign:{campaign_id}:%"))
        )
        return list(rows.all())

    return await run_for_tenant(tenant_id, read, name="test")


async def entitlements_of(tenant_id: uuid.UUID, campaign_id: uuid.UUID) -> list[Entitlement]:
    async def read(session: Any) -> list[Entitlement]:
        rows = await session.scalars(
            select(Entitlement).where(
                Entitlement.source == "campaign",
                Entitlement.source_ref.like(f"{campaign_id}:%"),
            )
        )
        return list(rows.all())

    return await run_for_tenant(tenant_id, read, name="test")


async def message_template(client: Any, tenant: Any, key: str) -> None:
    r = await client.put(
        f"/api/v1/messaging/templates/{key}/zh-CN",
        json={"body": "{{ member_name }}您好，活动来啦"},
        headers=tenant.hq(),
    )
    assert r.status_code in (200, 201), r.text


async def coupon_template(tenant_id: uuid.UUID, code: str, **extra: Any) -> None:
    """A 满减 template (20 yuan off above 100), made through the coupons service."""
    data = TemplateIn.model_validate(
        {
            "name": f"Coupon {code}",
            "kind": "amount_off",
            "amount_off_fen": 2000,
            "threshold_fen": 10000,
            "valid_days": 30,
            **extra,
        }
    )

    async def put(session: Any) -> None:
        await coupons.put_template(session, code, data)

    await run_for_tenant(tenant_id, put, name="test")
