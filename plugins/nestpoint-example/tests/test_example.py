"""The example plugin, tested with Nestpoint's test kit (``nestpoint.testing``)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

PLUGIN = "example"


async def test_birthday_month_doubles_points_only_where_enabled(
    nestpoint_tenant, nestpoint_enable_plugin, nestpoint_adjust_points
):
    await nestpoint_enable_plugin(nestpoint_tenant, PLUGIN, store="S1")
    may = datetime(2026, 5, 20, 10, 0, tzinfo=UTC)
    child = (date(2024, 5, 3),)

    adjusted = await nestpoint_adjust_points(
        nestpoint_tenant, "S1", base_points=120, paid_at=may, children_birth_dates=child
    )
    assert [(pid, a.points) for pid, a in adjusted] == [(PLUGIN, 120)]
    # Another month, or another store: nothing.
    june = datetime(2026, 6, 20, tzinfo=UTC)
    assert (
        await nestpoint_adjust_points(
            nestpoint_tenant, "S1", paid_at=june, children_birth_dates=child
        )
        == []
    )
    assert (
        await nestpoint_adjust_points(
            nestpoint_tenant, "S2", paid_at=may, children_birth_dates=child
        )
        == []
    )


async def test_store_config_overrides_the_chain(
    nestpoint_tenant, nestpoint_enable_plugin, nestpoint_adjust_points
):
    await nestpoint_enable_plugin(nestpoint_tenant, PLUGIN, config={"birthday_multiplier": 3})
    await nestpoint_enable_plugin(
        nestpoint_tenant, PLUGIN, store="S2", config={"birthday_multiplier": 5}
    )
    may = datetime(2026, 5, 1, tzinfo=UTC)
    child = (date(2025, 5, 30),)
    s1 = await nestpoint_adjust_points(
        nestpoint_tenant, "S1", base_points=10, paid_at=may, children_birth_dates=child
    )
    s2 = await nestpoint_adjust_points(
        nestpoint_tenant, "S2", base_points=10, paid_at=may, children_birth_dates=child
    )
    assert s1[0][1].points == 20
    assert s2[0][1].points == 40


async def test_tier_change_is_celebrated_and_served_by_the_route(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin, nestpoint_emit_event
):
    t = nestpoint_tenant
    await nestpoint_enable_plugin(t, PLUGIN, store="S1", config={"celebrate_tiers": ["gold"]})
    payload = {"member_id": "m-1", "from_tier": "silver", "to_tier": "gold"}
    await nestpoint_emit_event(t, "tier.changed", payload, store="S1")
    await nestpoint_emit_event(t, "tier.changed", {**payload, "to_tier": "silver"}, store="S1")
    await nestpoint_emit_event(t, "tier.changed", payload, store="S2")  # not enabled there

    r = await nestpoint_client.get("/api/v1/plugins/example/celebrations", headers=t.store("S1"))
    assert r.status_code == 200, r.text
    assert [(c["member_id"], c["to_tier"]) for c in r.json()] == [("m-1", "gold")]
    r = await nestpoint_client.get("/api/v1/plugins/example/celebrations", headers=t.store("S2"))
    assert r.status_code == 404


async def test_hello_route_and_disabling(
    nestpoint_tenant, nestpoint_client, nestpoint_enable_plugin, nestpoint_disable_plugin
):
    t = nestpoint_tenant
    await nestpoint_enable_plugin(t, PLUGIN, store="S2", config={"greeting": "你好"})
    r = await nestpoint_client.get("/api/v1/plugins/example/hello", headers=t.store("S2"))
    assert r.status_code == 200
    assert r.json()["greeting"] == "你好"
    await nestpoint_disable_plugin(t, PLUGIN)
    r = await nestpoint_client.get("/api/v1/plugins/example/hello", headers=t.store("S2"))
    assert r.status_code == 404


async def test_invalid_config_names_the_field(nestpoint_tenant, nestpoint_client):
    r = await nestpoint_client.put(
        "/api/v1/tenant/plugins/example",
        json={"enabled": True, "config": {"birthday_multiplier": 9}},
        headers=nestpoint_tenant.hq(),
    )
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["config.birthday_multiplier"]


async def test_the_birthday_month_is_the_chains_month(
    nestpoint_tenant, nestpoint_enable_plugin, nestpoint_adjust_points
):
    """20:00 UTC on 31 May is 1 June in the chain's zone (Asia/Shanghai): a June child."""
    await nestpoint_enable_plugin(nestpoint_tenant, PLUGIN, store="S1")
    late_may_utc = datetime(2026, 5, 31, 20, 0, tzinfo=UTC)
    june_child = (date(2024, 6, 3),)
    adjusted = await nestpoint_adjust_points(
        nestpoint_tenant, "S1", paid_at=late_may_utc, children_birth_dates=june_child
    )
    assert [pid for pid, _ in adjusted] == [PLUGIN]
    in_utc = await nestpoint_adjust_points(
        nestpoint_tenant, "S1", paid_at=late_may_utc, children_birth_dates=june_child,
        time_zone="UTC",
    )  # fmt: skip
    assert in_utc == []


async def test_a_store_key_records_an_order_with_the_birthday_bonus(
    nestpoint_client, nestpoint_tenant, nestpoint_enable_plugin
):
    """The kit's store keys can do what a till's can: enrol a member and record an order."""
    await nestpoint_enable_plugin(nestpoint_tenant, PLUGIN, store="S1")
    till = nestpoint_tenant.store("S1")
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()  # the chain's month
    r = await nestpoint_client.post(
        "/api/v1/members",
        json={
            "phone": "13912345678",
            "children": [
                {"nickname": "豆豆", "birth_date": f"{today.year - 1}-{today.month:02d}-01"}
            ],
            "guardian_consent": {"granted": True, "source": "pos"},
        },
        headers=till,
    )
    assert r.status_code == 201, r.text
    line = {"sku": "MILK-1", "name": "Formula", "category": "feeding", "quantity": 1,
            "unit_price_fen": 10000, "paid_fen": 10000}  # fmt: skip
    order = {
        "channel": "pos",
        "external_id": "till-1",
        "member": {"id": r.json()["id"]},
        "lines": [line],
        "paid_at": datetime.now(UTC).isoformat(),
        "payment": {"cash_fen": 10000, "points_used": 0},
    }
    r = await nestpoint_client.post("/api/v1/orders", json=order, headers=till)
    assert r.status_code == 201, r.text
    assert r.json()["points_earned"] == 200  # 100, doubled in the child's birthday month
