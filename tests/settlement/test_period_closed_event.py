"""Closing a settlement month writes one ``settlement.period_closed`` event to the outbox,
with the month and its totals, however often the close is retried or raced; it reaches its
own hook. A draft computation is audited when its figures move (PostgreSQL and SQLite)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from loyalty.support import all_pages, audit, refund
from nestpoint.plugins.hookspecs import EVENT_TYPES
from nestpoint.plugins.manager import PluginHost
from nestpoint.settlement import service
from nestpoint.settlement.service import window

from .test_settlement import after, buy, close, compute, this_month

EVENT = "settlement.period_closed"


async def events(client: Any, t: Any) -> list[dict[str, Any]]:
    return await all_pages(client, "/api/v1/events", t.hq(), type=EVENT)


async def test_a_close_writes_one_event_with_the_month_and_its_totals(
    client, chain, enrol, settlement_clock
) -> None:
    t = await chain()
    m1 = await enrol(t.hq())
    earned = await buy(client, t, "A", m1["id"], 50_000)  # earned at A ...
    await buy(client, t, "B", m1["id"], 20_000, 300)  # ... redeemed at B
    month, zone = await this_month(client, t)
    settlement_clock.at(after(month, zone))

    r = await close(client, t, month, "close-event-01")
    assert r.status_code == 200, r.text
    closed = r.json()

    found = await events(client, t)
    assert len(found) == 1
    event = found[0]
    assert (event["type"], event["store_id"]) == (EVENT, None)  # a chain-level event
    assert event["subject_type"] == "settlement_period"
    payload = event["payload"]
    lines = closed["lines"]
    assert payload["month"] == month
    assert payload["point_value_fen"] == closed["period"]["point_value_fen"] == 1
    assert payload["carried_months"] == []
    for column in ("points_issued", "points_redeemed", "points_expired", "benefit_uses"):
        assert payload[column] == sum(x[column] for x in lines), column
    assert payload["points_redeemed"] == 300
    assert payload["net_fen"] == {x["store_code"] or "HQ": x["net_fen"] for x in lines}
    assert sum(payload["net_fen"].values()) == 0
    b = next(x for x in lines if x["store_code"] == "B")
    assert payload["net_fen"]["B"] == 300 - b["points_issued"]  # 1 fen a point

    # Retried with the same key (a replay), with another key, computed again: no new event.
    again = await close(client, t, month, "close-event-01")
    assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (200, "true")
    assert (await close(client, t, month, "close-event-02")).status_code == 200
    assert (await compute(client, t, month)) == closed
    assert len(await events(client, t)) == 1
    assert len(await audit(client, t.hq(), "settlement.closed")) == 1

    # A refund written after the close, dated inside the closed month: the next month
    # settles it, and its event names the month it carries.
    r = await refund(client, t.hq(), earned, {"external_id": "LATE-EVENT-1"})
    assert r.status_code == 201, r.text
    following = service.next_month(month)
    settlement_clock.at(after(following, zone))
    r = await close(client, t, following, "close-event-03")
    assert r.status_code == 200, r.text
    found = sorted(await events(client, t), key=lambda e: e["payload"]["month"])
    assert [e["payload"]["month"] for e in found] == [month, following]
    late = found[1]["payload"]
    assert late["carried_months"] == [month]
    assert late["points_issued"] == -earned["points_earned"]  # the clawback, carried
    points = earned["points_earned"]
    assert late["net_fen"] == {"A": points, "B": 0, "D": 0, "HQ": -points}


async def test_racing_closes_write_one_event(
    client, concurrent_client, chain, enrol, settlement_clock
) -> None:
    t = await chain()
    m1 = await enrol(t.hq())
    await buy(client, t, "A", m1["id"], 50_000)
    month, zone = await this_month(client, t)
    settlement_clock.at(after(month, zone))

    answers = await asyncio.gather(
        *(
            concurrent_client.post(
                f"/api/v1/settlements/{month}/close",
                json={"idempotency_key": f"race-event-{i % 3}"},
                headers=t.hq(),
            )
            for i in range(6)
        )
    )

    assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
    found = await events(client, t)
    assert len(found) == 1
    assert found[0]["payload"]["month"] == month
    assert len(await audit(client, t.hq(), "settlement.closed")) == 1


async def test_a_draft_is_audited_when_its_figures_move(
    client, chain, enrol, settlement_clock
) -> None:
    t = await chain()
    m1 = await enrol(t.hq())
    await buy(client, t, "A", m1["id"], 50_000)
    month, zone = await this_month(client, t)
    settlement_clock.at(window(month, zone)[0] + timedelta(days=1))

    first = await compute(client, t, month)
    assert (await compute(client, t, month))["lines"] == first["lines"]
    computed = await audit(client, t.hq(), "settlement.computed")
    assert len(computed) == 1  # the same ledgers, the same draft: nothing to audit again
    assert computed[0]["changes"]["month"] == [None, month]
    assert computed[0]["changes"]["lines"][0] == {}
    assert computed[0]["changes"]["lines"][1]["A"][0] == 500

    await buy(client, t, "B", m1["id"], 20_000, 300)
    await compute(client, t, month)
    computed = await audit(client, t.hq(), "settlement.computed")
    assert len(computed) == 2
    assert {c["changes"]["lines"][1]["B"][1] for c in computed} == {0, 300}
    assert await events(client, t) == []  # a draft announces nothing


def test_the_event_has_its_own_hook() -> None:
    assert EVENT in EVENT_TYPES
    assert PluginHost().event_hooks(EVENT) == [
        "nestpoint_on_settlement_period_closed",
        "nestpoint_on_event",
    ]
