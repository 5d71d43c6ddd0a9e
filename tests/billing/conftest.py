"""Helpers of the tenant-billing tests: plans and subscriptions through the operator's API."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from loyalty.helpers import new_phone
from nestpoint.testing import STORE_KEY_SCOPES

UNLIMITED: dict[str, int | None] = {
    "max_members": None,
    "max_stores": None,
    "max_plugins": None,
    "max_messages": None,
}


@pytest.fixture
def billing(client, platform_headers):  # type: ignore[no-untyped-def]
    """The operator's billing calls, and an enrolment through the API."""

    class Billing:
        async def plan(self, price_fen: int = 9_900, **limits: int | None) -> str:
            """A new plan (a fresh code: plans are the platform's, shared by every test)."""
            code = f"p-{uuid.uuid4().hex[:12]}"
            body = {"name": f"Plan {code}", "price_fen": price_fen, **UNLIMITED, **limits}
            r = await client.put(
                f"/api/v1/billing/plans/{code}", json=body, headers=platform_headers
            )
            assert r.status_code == 200, r.text
            return code

        async def subscribe(self, tenant_id: uuid.UUID, code: str) -> dict[str, Any]:
            r = await client.put(
                f"/api/v1/tenants/{tenant_id}/billing/subscription",
                json={"plan_code": code},
                headers=platform_headers,
            )
            assert r.status_code == 200, r.text
            return dict(r.json())

        async def refresh(self, tenant_id: uuid.UUID) -> dict[str, Any]:
            r = await client.put(
                f"/api/v1/tenants/{tenant_id}/billing/usage", headers=platform_headers
            )
            assert r.status_code == 200, r.text
            return dict(r.json())

        async def view(self, tenant_id: uuid.UUID) -> dict[str, Any]:
            r = await client.get(f"/api/v1/tenants/{tenant_id}/billing", headers=platform_headers)
            assert r.status_code == 200, r.text
            return dict(r.json())

        async def till(self, t: Any, code: str = "S1") -> dict[str, str]:
            """Headers of a till's key at store ``code`` (a till's default scopes)."""
            r = await client.post(
                "/api/v1/api-keys",
                json={
                    "name": "till",
                    "kind": "store",
                    "store_code": code,
                    "scopes": STORE_KEY_SCOPES,
                },
                headers=t.hq(),
            )
            assert r.status_code == 201, r.text
            return {"Authorization": f"Bearer {r.json()['key']}"}

        async def enrol(self, headers: dict[str, str], c: Any = None) -> Any:
            return await (c or client).post(
                "/api/v1/members", json={"phone": new_phone(), "name": "王芳"}, headers=headers
            )

    return Billing()


def limits(view: dict[str, Any]) -> dict[str, tuple[int, int | None, str]]:
    return {item["name"]: (item["used"], item["limit"], item["state"]) for item in view["limits"]}


def refused(response: Any, limit: str, field: str) -> None:
    """A 409 ``plan-limit-reached`` naming the limit and the request's field."""
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["type"] == "https://nestpoint.dev/problems/plan-limit-reached"
    assert f"plan limit {limit!r} reached" in body["detail"]
    assert [e["field"] for e in body["errors"]] == [field]
