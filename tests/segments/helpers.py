"""A small population of members for segment tests, made through the API (orders at past
dates through POST /api/v1/orders; only joining dates are backdated in the database)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta
from sqlalchemy import update

from loyalty.helpers import new_phone, order_body
from nestpoint.context import tenant_context
from nestpoint.db import scoped_session
from nestpoint.members.models import Member

ZONE = ZoneInfo("Asia/Shanghai")  # a new chain's time zone
CONSENT = {"granted": True, "source": "pos"}


def local_today() -> date:
    return datetime.now(ZONE).date()


def local_noon(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=ZONE).astimezone(UTC)


def line(category: str, fen: int, sku: str = "SKU-1") -> dict[str, Any]:
    return {
        "sku": sku,
        "name": category,
        "category": category,
        "quantity": 1,
        "unit_price_fen": fen,
        "paid_fen": fen,
    }


@dataclass
class Population:
    """Member ids by role."""

    silent: str  # female, home S1, tag vip, birthday in March, never ordered
    lapsed: str  # male, home S2, ordered 120 days ago only
    recent: str  # ordered today: 50,000 fen of feeding and 10,000 of toys
    core: str  # 520,000 fen over two orders in the last year (one 200 days ago)
    pregnant: str  # due in 5 weeks
    baby: str  # a child turning 6 months in 3 days; joined 40 days ago

    def all(self) -> set[str]:
        return {
            self.silent,
            self.lapsed,
            self.recent,
            self.core,
            self.pregnant,
            self.baby,
        }


async def enrol(client: Any, tenant: Any, **body: Any) -> str:
    r = await client.post(
        "/api/v1/members", json={"phone": new_phone(), **body}, headers=tenant.hq()
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def order(
    client: Any, tenant: Any, member_id: str, lines: list[dict[str, Any]], days_ago: int = 0
) -> None:
    body = order_body(member={"id": member_id}, lines=lines)
    if days_ago:
        body["paid_at"] = local_noon(local_today() - timedelta(days=days_ago)).isoformat()
    r = await client.post("/api/v1/orders", json=body, headers=tenant.hq())
    assert r.status_code == 201, r.text


async def backdate_joined(tenant_id: uuid.UUID, member_id: str, days: int) -> None:
    """Time must pass: a member who joined ``days`` days ago (local dates)."""
    with tenant_context(tenant_id):
        async with scoped_session() as session:
            await session.execute(
                update(Member)
                .where(Member.id == uuid.UUID(member_id))
                .values(joined_at=local_noon(local_today() - timedelta(days=days)))
            )


async def populate(client: Any, tenant: Any) -> Population:
    today = local_today()
    silent = await enrol(
        client,
        tenant,
        name="王芳",
        gender="female",
        home_store_code="S1",
        tags=["vip"],
        birthday="1990-03-08",
    )
    lapsed = await enrol(client, tenant, gender="male", home_store_code="S2")
    await order(client, tenant, lapsed, [line("toys", 8000)], days_ago=120)
    recent = await enrol(client, tenant, gender="female", home_store_code="S2")
    await order(client, tenant, recent, [line("feeding", 50000), line("toys", 10000, "SKU-2")])
    core = await enrol(client, tenant, gender="female", tags=["vip"])
    await order(client, tenant, core, [line("feeding", 300000)], days_ago=200)
    await order(client, tenant, core, [line("diapers", 220000)], days_ago=10)
    pregnant = await enrol(
        client,
        tenant,
        guardian_consent=CONSENT,
        children=[{"due_date": (today + timedelta(weeks=5)).isoformat()}],
    )
    born = today + timedelta(days=3) - relativedelta(months=6)
    baby = await enrol(
        client,
        tenant,
        guardian_consent=CONSENT,
        children=[{"birth_date": born.isoformat()}],
    )
    for member_id in (silent, lapsed, recent, core, pregnant):
        await backdate_joined(tenant.id, member_id, 400)
    await backdate_joined(tenant.id, baby, 40)
    return Population(silent, lapsed, recent, core, pregnant, baby)
