"""Small API readers and job runners shared by the loyalty tests (no assertions on rules)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.jobs.tenants import run_for_tenant


async def all_pages(client: Any, url: str, headers: dict[str, str], **params: Any) -> list[Any]:
    """Every item of a cursor-paginated listing."""
    items: list[Any] = []
    cursor = None
    while True:
        query = {"limit": 200, **params} | ({"cursor": cursor} if cursor else {})
        r = await client.get(url, params=query, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            return items


async def events(client: Any, headers: dict[str, str], type_: str) -> list[dict[str, Any]]:
    return await all_pages(client, "/api/v1/events", headers, type=type_)


async def audit(client: Any, headers: dict[str, str], action: str) -> list[dict[str, Any]]:
    return [e for e in await all_pages(client, "/api/v1/audit", headers) if e["action"] == action]


async def entries(client: Any, headers: dict[str, str], member_id: str) -> list[dict[str, Any]]:
    return await all_pages(client, f"/api/v1/members/{member_id}/points/entries", headers)


async def balances(client: Any, headers: dict[str, str], member_id: str) -> dict[str, Any]:
    r = await client.get(f"/api/v1/members/{member_id}/points", headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def member(client: Any, headers: dict[str, str], member_id: str) -> dict[str, Any]:
    r = await client.get(f"/api/v1/members/{member_id}", headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def without_ids(identities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A member's identities as kind and value (each also has an ``id``, to unlink it)."""
    return [{k: v for k, v in i.items() if k != "id"} for i in identities]


async def post_order(client: Any, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    r = await client.post("/api/v1/orders", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def refund(
    client: Any, headers: dict[str, str], order: dict[str, Any], body: dict[str, Any]
) -> Any:
    url = f"/api/v1/orders/{order['channel']}/{order['external_id']}/refunds"
    return await client.post(url, json=body, headers=headers)


async def adjust(
    client: Any, headers: dict[str, str], member_id: str, amount: int, key: str | None = None
) -> Any:
    body = {"amount": amount, "reason": "goodwill", "idempotency_key": key or uuid.uuid4().hex}
    return await client.post(
        f"/api/v1/members/{member_id}/points/adjustments", json=body, headers=headers
    )


async def run_job(
    tenant_id: uuid.UUID, job: Callable[[AsyncSession], Awaitable[Any]], name: str = "tests"
) -> Any:
    """Run a periodic job for one tenant, as the scheduler does."""
    return await run_for_tenant(tenant_id, job, name=name)


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_running_balance(items: list[dict[str, Any]]) -> None:
    """Each entry's balance_after is the previous one plus its amount, from zero."""
    running = 0
    for item in items:
        running += item["amount"]
        assert item["balance_after"] == running, items
