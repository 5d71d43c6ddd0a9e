"""A chain's benefit catalog, set up through the API, shared by the benefits tests."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

CATALOG: dict[str, dict[str, Any]] = {
    "consult": {
        "name": "育儿顾问咨询 Parenting consultation",
        "type": "core.service",
        "options": {"minutes": 45},
        "quota": 1,
        "tier_quotas": {"gold": 2},
        "period": "month",
    },
    "s1-delivery": {
        "name": "次日达 Next-day delivery (S1 only)",
        "type": "core.free_shipping",
        "store_codes": ["S1"],
        "quota": 5,
    },
    "massage": {
        "name": "婴儿抚触 Baby massage",
        "type": "core.service",
        "child_stages": ["0-6m"],
        "quota": 1,
    },
    "newborn-delivery": {
        "name": "新生儿送货上门 Newborn delivery",
        "type": "core.free_shipping",
        "quota": 1,
        "period": "grant",
        "valid_days": 90,
    },
    "bottle": {
        "name": "奶瓶 Feeding bottle",
        "type": "core.gift",
        "options": {"sku": "BOTTLE-1", "value_fen": 8900},
        "exchange_points": 500,
        "stock": 2,
        "per_member_limit": 1,
        "period": "grant",
    },
}
BUNDLE = {
    "name": "新生儿家庭礼包 Newborn family pack",
    "trigger": "child_born",
    "within_days": 90,
    "benefits": ["newborn-delivery", "consult"],
    "points": 200,
}
GOLD_TIERS = [
    {"code": "bronze", "name": "Bronze", "threshold": 0, "earn_rate_percent": 100,
     "redeem_cap_percent": 10},
    {"code": "gold", "name": "Gold", "threshold": 5000, "earn_rate_percent": 150,
     "redeem_cap_percent": 20, "benefits": ["consult", "s1-delivery"]},
]  # fmt: skip


async def set_up_catalog(client, hq: dict[str, str], set_program) -> None:  # type: ignore[no-untyped-def]
    await set_program(hq, tiers=GOLD_TIERS, points={"pending_days": 0})
    for code, body in CATALOG.items():
        r = await client.put(f"/api/v1/benefits/{code}", json=body, headers=hq)
        assert r.status_code == 200, r.text
    r = await client.put("/api/v1/benefit-bundles/newborn", json=BUNDLE, headers=hq)
    assert r.status_code == 200, r.text


async def make_gold(client, hq: dict[str, str], member_id: str) -> None:  # type: ignore[no-untyped-def]
    r = await client.post(
        f"/api/v1/members/{member_id}/growth",
        json={"amount": 5000, "reason": "test", "idempotency_key": uuid.uuid4().hex},
        headers=hq,
    )
    assert r.status_code == 201, r.text
    assert r.json()["tier_code"] == "gold", r.text


def newborn(days_old: int = 10) -> dict[str, Any]:
    """Member fields for a parent of a child born ``days_old`` days ago."""
    return {
        "guardian_consent": {"granted": True, "source": "pos"},
        "children": [{"nickname": "宝宝", "birth_date": str(date.today() - timedelta(days_old))}],
    }


async def benefits(client, headers, member_id: str, **params: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = await client.get(f"/api/v1/members/{member_id}/benefits", headers=headers, params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def held(view: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["benefit_code"], e["source"]): e for e in view["entitlements"]}


async def use(client, headers, member_id: str, code: str, key: str | None = None, **extra: Any):  # type: ignore[no-untyped-def]
    body = {"idempotency_key": key or uuid.uuid4().hex} | extra
    return await client.post(
        f"/api/v1/members/{member_id}/benefits/{code}/uses", json=body, headers=headers
    )
