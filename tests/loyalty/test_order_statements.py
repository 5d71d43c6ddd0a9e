"""The till's order, statement by statement: the named steps send what the one long
function sent. The idempotency key is claimed (``ON CONFLICT DO NOTHING``) before anything
is written, then every write goes out together (one statement on PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from conftest import BACKEND
from loyalty.helpers import order_body
from loyalty.support import adjust
from nestpoint.db import raw

WRITES = ("INSERT", "UPDATE", "DELETE", "WITH")


@contextmanager
def statements_sent() -> Iterator[list[str]]:
    sent: list[str] = []
    engine = Engine  # every engine: the app's own included

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(" ".join(statement.split()))

    def record_raw(statement: str, args: Any) -> None:  # nestpoint.db.raw's statements
        sent.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    raw.statement_observers.append(record_raw)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)
        raw.statement_observers.remove(record_raw)


async def test_an_order_claims_its_key_first_and_writes_in_one_batch(
    client, make_tenant, enrol
) -> None:  # type: ignore[no-untyped-def]
    t = await make_tenant(("S1",))
    m = await enrol(t.hq())
    assert (await adjust(client, t.hq(), m["id"], 1_000)).status_code == 201
    member = {"id": m["id"]}
    warm = await client.post("/api/v1/orders", json=order_body(member=member), headers=t.hq())
    assert warm.status_code == 201  # the key, store and programme caches are warm now

    with statements_sent() as sent:
        r = await client.post(
            "/api/v1/orders",
            json=order_body(member=member, points_used=500),
            headers=t.hq(),
        )
    assert r.status_code == 201, r.text
    claims = [i for i, s in enumerate(sent) if s.startswith("INSERT INTO idempotency_keys")]
    assert len(claims) == 1
    claim = claims[0]
    assert "ON CONFLICT" in sent[claim]
    assert "DO NOTHING" in sent[claim]
    assert not [s for s in sent[:claim] if s.startswith(WRITES)]  # nothing written before
    after = [s for s in sent[claim + 1 :] if s.startswith(WRITES)]
    if BACKEND == "postgresql":
        # BEGIN with the tenant (one round trip), the member's lock, the lots to spend, the
        # claim, the batch, COMMIT
        assert sent[0].startswith("BEGIN ISOLATION LEVEL READ COMMITTED; SELECT set_config(")
        assert len(sent) == 6
        assert sent[-1] == "COMMIT"
        assert after == [sent[-2]]
        assert sent[-2].startswith("WITH")
    else:  # SQLite: the writes one after another, after the claim
        assert after
        assert all(s.startswith(WRITES) for s in after)
