"""Referrals (邀请有礼) and friend assists (好友助力) through the API: codes, binds and
their abuse checks, both sides rewarded once after the invitee's first qualifying purchase
(also when two runs race), review of invite farms, the inviter's monthly cap, assists."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from loyalty.helpers import order_body
from loyalty.support import entries, post_order

SETTINGS = {
    "enabled": True,
    "inviter_points": 200,
    "invitee_points": 100,
    "inviter_coupon": "THANKS",
    "min_order_fen": 5_000,
    "assist_goal": 3,
    "assist_points": 50,
}
COUPON = {"name": "邀请有礼 满100减15", "kind": "amount_off", "threshold_fen": 10_000,
          "amount_off_fen": 1_500, "valid_days": 30}  # fmt: skip


async def set_up(client: Any, t: Any, **changes: Any) -> None:
    r = await client.put("/api/v1/coupon-templates/THANKS", json=COUPON, headers=t.hq())
    assert r.status_code in (200, 201), r.text
    r = await client.put("/api/v1/referrals/settings", json=SETTINGS | changes, headers=t.hq())
    assert r.status_code == 200, r.text


async def code_of(client: Any, t: Any, member_id: str) -> str:
    r = await client.get(f"/api/v1/members/{member_id}/referral-code", headers=t.hq())
    assert r.status_code == 200, r.text
    return str(r.json()["code"])


async def bind(
    client: Any, headers: dict[str, str], code: str, invitee: str, device: str | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"code": code, "invitee_id": invitee}
    if device:
        body["device_id"] = device
    return await client.post("/api/v1/referrals", json=body, headers=headers)


async def run_rewards(client: Any, t: Any) -> dict[str, int]:
    r = await client.post("/api/v1/referrals/rewards/run", headers=t.hq())
    assert r.status_code == 200, r.text
    return dict(r.json())


async def bonus(client: Any, t: Any, member_id: str) -> list[int]:
    return [e["amount"] for e in await entries(client, t.hq(), member_id) if e["kind"] == "bonus"]


async def test_binds_and_their_abuse_checks(client, make_tenant, enrol):
    t = await make_tenant()
    inviter = await enrol(t.hq())
    invitee = await enrol(t.hq())
    code = await code_of(client, t, inviter["id"])
    assert await code_of(client, t, inviter["id"]) == code
    r = await bind(client, t.hq(), code, invitee["id"])
    assert r.status_code == 409  # referrals are off until HQ sets them
    await set_up(client, t)
    r = await bind(client, t.hq(), code, inviter["id"])
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "invitee_id"
    r = await bind(client, t.hq(), "NOSUCHCODE", invitee["id"])
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "code"
    r = await bind(client, t.hq(), code, invitee["id"], device="device-0001")
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "pending"
    r = await bind(client, t.hq(), code, invitee["id"])
    assert r.status_code == 409
    assert r.json()["errors"][0]["field"] == "invitee_id"
    other = await enrol(t.hq())
    r = await bind(client, t.hq(), code, other["id"], device="device-0001")
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "device_id"
    await set_up(client, t, join_window_days=0)  # nobody is new any more
    r = await bind(client, t.hq(), code, other["id"])
    assert r.status_code == 422
    assert "joined in the last 0 days" in r.text


async def test_both_sides_are_rewarded_once_after_the_first_purchase(
    client, make_tenant, enrol, set_program
):
    t = await make_tenant()
    await set_program(t.hq(), points={"pending_days": 0})
    await set_up(client, t)
    inviter, invitee = await enrol(t.hq()), await enrol(t.hq())
    code = await code_of(client, t, inviter["id"])
    assert (await bind(client, t.hq(), code, invitee["id"])).status_code == 201
    small = order_body(member={"id": invitee["id"]}, lines=[
        {"sku": "S", "category": "toys", "quantity": 1, "unit_price_fen": 4_000, "paid_fen": 4_000}
    ])  # fmt: skip
    await post_order(client, t.hq(), small)
    assert await run_rewards(client, t) == {"rewarded": 0, "expired": 0}  # below the minimum
    order = await post_order(client, t.hq(), order_body(member={"id": invitee["id"]}))
    assert await run_rewards(client, t) == {"rewarded": 1, "expired": 0}
    assert await run_rewards(client, t) == {"rewarded": 0, "expired": 0}
    assert await bonus(client, t, inviter["id"]) == [200]
    assert await bonus(client, t, invitee["id"]) == [100]
    r = await client.get(f"/api/v1/members/{inviter['id']}/coupons", headers=t.hq())
    assert [c["template_code"] for c in r.json()] == ["THANKS"]
    assert r.json()[0]["cause_type"] == "referral"
    r = await client.get("/api/v1/referrals", params={"status": "rewarded"}, headers=t.hq())
    [referral] = r.json()
    assert referral["order_id"] == order["id"]
    assert (referral["inviter_points"], referral["invitee_points"]) == (200, 100)


async def test_an_invite_farm_at_one_store_goes_to_review(client, make_tenant, enrol):
    t = await make_tenant()
    await set_up(client, t, farm_limit_per_day=2)
    r = await client.post(
        "/api/v1/api-keys",
        json={"name": "till", "kind": "store", "store_code": "S1"},
        headers=t.hq(),
    )
    till = {"Authorization": f"Bearer {r.json()['key']}"}
    inviter = await enrol(t.hq())
    code = await code_of(client, t, inviter["id"])
    statuses = []
    for _ in range(3):
        invitee = await enrol(t.hq())
        r = await bind(client, till, code, invitee["id"])
        assert r.status_code == 201, r.text
        statuses.append(r.json()["status"])
    assert statuses == ["pending", "pending", "review"]
    held = r.json()["id"]
    r = await client.post(
        f"/api/v1/referrals/{held}/review",
        json={"approve": True, "reason": "a real baby fair"},
        headers=t.hq(),
    )
    assert r.status_code == 200
    assert r.json()["status"] == "pending"
    r = await client.post(
        f"/api/v1/referrals/{held}/review", json={"approve": False, "reason": "x"}, headers=t.hq()
    )
    assert r.status_code == 409


async def test_the_inviters_monthly_cap(client, make_tenant, enrol, set_program):
    t = await make_tenant()
    await set_program(t.hq(), points={"pending_days": 0})
    await set_up(client, t, max_rewards_per_month=1, inviter_coupon=None)
    inviter = await enrol(t.hq())
    code = await code_of(client, t, inviter["id"])
    for _ in range(2):
        invitee = await enrol(t.hq())
        assert (await bind(client, t.hq(), code, invitee["id"])).status_code == 201
        await post_order(client, t.hq(), order_body(member={"id": invitee["id"]}))
    assert (await run_rewards(client, t))["rewarded"] == 2
    assert await bonus(client, t, inviter["id"]) == [200]  # the second was over the cap
    r = await client.get("/api/v1/referrals", headers=t.hq())
    assert sorted(x["inviter_points"] for x in r.json()) == [0, 200]
    assert any("monthly cap" in x["reason"] for x in r.json())


async def test_a_friend_assist(client, make_tenant, enrol, set_program):
    t = await make_tenant()
    await set_program(t.hq(), points={"pending_days": 0})
    await set_up(client, t)
    asker = await enrol(t.hq())
    friends = [await enrol(t.hq()) for _ in range(4)]
    body = {"idempotency_key": "assist-0001"}
    r = await client.post(f"/api/v1/members/{asker['id']}/assists", json=body, headers=t.hq())
    assert r.status_code == 201, r.text
    assist = r.json()["id"]
    again = await client.post(f"/api/v1/members/{asker['id']}/assists", json=body, headers=t.hq())
    assert again.status_code == 201
    assert again.json()["id"] == assist
    second = {"idempotency_key": "assist-0002"}
    r = await client.post(f"/api/v1/members/{asker['id']}/assists", json=second, headers=t.hq())
    assert r.status_code == 409  # one open assist at a time
    url = f"/api/v1/assists/{assist}/helpers"

    async def helps(member: dict[str, Any], device: str) -> httpx.Response:
        return await client.post(
            url, json={"helper_id": member["id"], "device_id": device}, headers=t.hq()
        )

    r = await helps(asker, "phone-asker")
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "helper_id"
    assert (await helps(friends[0], "phone-0000")).json()["helpers"] == 1
    assert (await helps(friends[0], "phone-0009")).status_code == 409
    r = await helps(friends[1], "phone-0000")
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "device_id"
    assert (await helps(friends[1], "phone-0001")).json()["status"] == "open"
    done = await helps(friends[2], "phone-0002")
    assert done.json()["status"] == "completed"
    assert done.json()["reward_points"] == 50
    assert (await helps(friends[3], "phone-0003")).status_code == 409
    assert await bonus(client, t, asker["id"]) == [50]


@pytest.fixture
def racing(concurrent_client: httpx.AsyncClient) -> httpx.AsyncClient:
    return concurrent_client


async def test_racing_reward_runs_reward_once(racing, make_tenant, enrol, set_program):
    client = racing
    t = await make_tenant()
    await set_program(t.hq(), points={"pending_days": 0})
    await set_up(client, t)
    inviter = await enrol(t.hq())
    code = await code_of(client, t, inviter["id"])
    invitees = [await enrol(t.hq()) for _ in range(3)]
    for invitee in invitees:
        assert (await bind(client, t.hq(), code, invitee["id"])).status_code == 201
        await post_order(client, t.hq(), order_body(member={"id": invitee["id"]}))
    runs = await asyncio.gather(*(run_rewards(client, t) for _ in range(4)))
    assert sum(run["rewarded"] for run in runs) == 3
    assert await bonus(client, t, inviter["id"]) == [200, 200, 200]
    r = await client.get(f"/api/v1/members/{inviter['id']}/coupons", headers=t.hq())
    assert len(r.json()) == 3


async def test_racing_binds_of_one_device_bind_once(racing, make_tenant, enrol):
    client = racing
    t = await make_tenant()
    await set_up(client, t)
    inviter = await enrol(t.hq())
    code = await code_of(client, t, inviter["id"])
    invitees = [await enrol(t.hq()) for _ in range(4)]
    device = f"device-{uuid.uuid4().hex}"
    answers = await asyncio.gather(*(bind(client, t.hq(), code, i["id"], device) for i in invitees))
    assert sorted(r.status_code for r in answers) == [201, 422, 422, 422]


async def test_an_erasure_forgets_the_members_device(client, make_tenant, enrol):
    t = await make_tenant()
    await set_up(client, t)
    inviter, invitee, later = await enrol(t.hq()), await enrol(t.hq()), await enrol(t.hq())
    code = await code_of(client, t, inviter["id"])
    assert (await bind(client, t.hq(), code, invitee["id"], "device-0042")).status_code == 201
    assert (await bind(client, t.hq(), code, later["id"], "device-0042")).status_code == 422
    r = await client.post(
        f"/api/v1/members/{invitee['id']}/erasure", json={"reason": "PIPL #7"}, headers=t.hq()
    )
    assert r.status_code in (200, 201), r.text
    assert r.json()["summary"]["devices_forgotten"] == 1
    assert (await bind(client, t.hq(), code, later["id"], "device-0042")).status_code == 201
