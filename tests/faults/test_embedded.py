"""Fault tolerance of the embedded set-up: ``nestpoint serve`` on SQLite, its worker and
scheduler inside the same process (the in-process broker), killed in the middle of requests.

Whatever the server was doing when it died (answering orders, relaying their events to the
plugins), the orders it committed are kept, each once, a till that sends again what got no
answer gets each order recorded once, and the restarted server delivers every event (the
probe plugin and the example plugin consume them, as in test_postgres_redis.py).

Only the SQLite run (``NESTPOINT_TEST_DATABASE=sqlite``, the default) runs it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from conftest import BACKEND
from faults.checks import (
    Faults,
    check_answers,
    check_deliveries,
    check_ledgers,
    check_orders,
    drain,
)
from faults.load import Load, Till
from faults.stack import (
    PROBE_ID,
    enable_plugins,
    enrol,
    make_tenant,
    sqlite_stack,
    wait_until,
)
from loyalty.helpers import new_phone

pytestmark = pytest.mark.skipif(
    BACKEND != "sqlite",
    reason="the embedded set-up (SQLite, serve with its in-process worker) is the SQLite "
    "run's; the PostgreSQL run kills serve and worker processes on Redis instead "
    "(test_postgres_redis.py)",
)


def test_the_embedded_server_killed_mid_request_keeps_its_orders_and_delivers_its_events() -> None:
    stack = sqlite_stack()
    faults = Faults()
    timeline: dict[str, Any] = {}
    try:
        with stack.explained():
            api = stack.serve()
            stack.wait_healthy(api)
            tenant = make_tenant(stack.url, stack.platform_key, ("S1", "S2"))
            enable_plugins(stack.url, tenant, PROBE_ID, "example")
            members = enrol(stack.url, tenant, 20)
            tills = [Till(code, tenant.store(code)) for code in ("S1", "S2")]
            load = Load(lambda: stack.url, tills, members)
            try:
                load.start()
                load.wait_answered(30, since=0)

                # SIGKILL with requests in flight; its in-process worker dies with it.
                wait_until(lambda: load.in_flight >= 2, 30, "requests in flight", every=0.001)
                killed_at = time.time()
                stack.kill(api)
                faults.relay_kills.append(killed_at)  # the server relays events itself
                api = stack.serve()
                stack.wait_healthy(api)
                faults.api_down.append((killed_at, time.time()))
                cut = [a for a in load.attempts if a.status is None and a.started < killed_at]
                assert cut, "no request was in flight when the server was killed"
                load.wait_answered(30, since=time.time())
            finally:
                load.stop()
            retried = load.retry_unanswered()

            check_answers(
                load.attempts,
                unavailable_allowed=[],
                no_answer_allowed=[(s - 1, e + 1) for s, e in faults.api_down],
            )
            found = check_orders(stack.database, tenant.id, load)
            check_ledgers(stack.database, members)

            def relay_now() -> None:
                # Any commit that writes an event asks for a relay of the tenant's due events.
                r = httpx.post(
                    f"{stack.url}/api/v1/members",
                    json={"phone": new_phone(), "name": "王芳"},
                    headers=tenant.hq(),
                    timeout=60,
                )
                assert r.status_code == 201, r.text

            drained = drain(stack.database, tenant.id, faults, sweep_now=relay_now)
            deliveries = check_deliveries(stack, tenant.id, faults)
            timeline |= {
                "orders": len(found),
                "requests cut by the server's death": len(cut),
                "orders sent again": len({a.external_id for a in retried}),
                "of which committed (replayed)": sum(1 for a in retried if a.replayed),
                "outbox drained, seconds after the restart": round(
                    time.time() - faults.api_down[0][1], 1
                ),
                "claims of the killed relay let lapse": drained.leases_let_lapse,
                "events delivered": deliveries.events,
                "events delivered again after the kill": deliveries.redelivered,
            }
            print("timeline:", json.dumps(timeline, indent=1))
    finally:
        stack.close()
