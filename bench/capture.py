"""What one request sends to PostgreSQL, observed: every statement with its parameters, and
BEGIN and COMMIT.

The application runs in process (the same ``create_app`` the server uses, the same
settings); a listener on SQLAlchemy's ``Engine`` and one on ``nestpoint.db.raw`` (the raw
statements, and BEGIN and COMMIT) record each statement as sent. For
each kind of request a first one warms the per-process caches (programme, store codes, API
keys, plugin enablement); the second, in steady state, is the one kept. ``ceiling.py`` turns
the kept statements into the pgbench scripts of the ceiling.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from common import (
    CHECK_COUPONS,
    HTTP_DB,
    MEMBER_PRICE_PERCENT,
    ORDER_COUPON_OFF_FEN,
    admin,
    coupon_order_members,
    member_id,
    member_phone,
    use_app_env,
)

MARKERS = ("BEGIN", "COMMIT", "ROLLBACK")


@dataclass
class Statement:
    sql: str
    params: list[Any] | None = None  # one execution
    rows: list[list[Any]] | None = None  # executemany: one entry per row

    def describe(self) -> str:
        many = f" -- executemany: {len(self.rows)} rows" if self.rows is not None else ""
        return self.sql + many


@dataclass
class Captured:
    name: str
    status: int
    member_n: int
    external_id: str | None
    statements: list[Statement] = field(default_factory=list)

    @property
    def round_trips(self) -> int:
        return len(self.statements)

    @property
    def sql(self) -> list[Statement]:
        return [s for s in self.statements if s.sql not in MARKERS]

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "round_trips": self.round_trips,
            "sql_statements": len(self.sql),
            # BEGIN alone, or first in a compound (BEGIN ...; SELECT set_config(...))
            "transactions": sum(s.sql.startswith("BEGIN") for s in self.statements),
            "rows_written_by_executemany": sum(len(s.rows or []) for s in self.statements),
            "statements": [s.describe() for s in self.statements],
        }


def _one_line(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip()


CATALOGUE = {
    "MILK-900": ("Formula 900g", "feeding", 25800),
    "WIPE-80": ("Wipes 80", "care", 1990),
}


def order_body(
    n: int, external_id: str, *, by_phone: bool = False, quantity: int = 1
) -> dict[str, Any]:
    """Two lines (the mean of the benchmark's 1-3), the feeding one at the member price as
    order.lua claims it; ``quantity=4`` makes an upgrade."""
    lines = [
        {"sku": sku, "name": name, "category": category, "quantity": quantity,
         "unit_price_fen": price, "paid_fen": price * quantity}
        for sku, (name, category, price) in CATALOGUE.items()
    ]  # fmt: skip
    for line in lines:
        if line["category"] == "feeding":
            off = line["paid_fen"] - line["paid_fen"] * MEMBER_PRICE_PERCENT // 100
            line |= {"paid_fen": line["paid_fen"] - off, "benefit_code": "member-price",
                     "discount_fen": off}  # fmt: skip
    total = sum(line["paid_fen"] for line in lines)
    member = {"phone": member_phone(n)} if by_phone else {"id": member_id(n)}
    return {
        "channel": "pos",
        "external_id": external_id,
        "member": member,
        "lines": lines,
        "paid_at": "2026-11-23T10:00:00+08:00",
        "payment": {"cash_fen": total, "points_used": 0},
    }


def check_body(n: int) -> dict[str, Any]:
    """The till's coupon check for member ``n`` on the captured order's two lines."""
    return {"member_id": member_id(n), "lines": order_body(n, "check")["lines"]}


def coupon_order_body(n: int, external_id: str, code: str) -> dict[str, Any]:
    """An order by id whose payment includes one of the member's order coupons (it takes
    ``ORDER_COUPON_OFF_FEN`` off any basket), paid now (a coupon is valid from its issue)."""
    import datetime as dt

    body = order_body(n, external_id)
    body["paid_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    body["payment"]["cash_fen"] -= ORDER_COUPON_OFF_FEN
    body["payment"]["coupons"] = [{"code": code, "amount_fen": ORDER_COUPON_OFF_FEN}]
    return body


async def available_order_coupon(n: int, database: str = HTTP_DB) -> str:
    """An unused order coupon of member ``n`` (a run with ``--reuse`` used some)."""
    rows = await admin(
        "SELECT c.code FROM coupons c JOIN coupon_templates t ON t.id = c.template_id"
        f" WHERE t.code = 'bench-order' AND c.member_id = '{member_id(n)}'"
        " AND c.status = 'available' ORDER BY c.code LIMIT 1",
        database=database,
    )
    if not rows:
        raise SystemExit(f"capture: member {n} has no order coupon left")
    return str(rows[0][0])


def member_codes(database: str, tenant_id: str, members: int) -> list[str]:
    """A fresh card code for members 1 to ``members``, made with the server's key (this
    process's settings are pointed at ``database``)."""
    use_app_env(database)
    return [card_code(tenant_id, n) for n in range(1, members + 1)]


def card_code(tenant_id: str, n: int) -> str:
    """Member ``n``'s card code as the member app shows it now (nestpoint.memberapi.codes)."""
    from nestpoint.db.base import utcnow
    from nestpoint.memberapi.codes import make_code

    return make_code(uuid.UUID(tenant_id), uuid.UUID(member_id(n)), utcnow()).code


def capture(database: str, key: str, members: int) -> dict[str, Captured]:
    """Statements of: an order naming the member by id, one by phone, one whose growth
    upgrades the member's tier, a lookup by phone, a member's benefits, the till's coupon
    check, and an order paying with a coupon. Uses the last members (never the benchmark's
    busiest); for the coupon order, the last of those holding order coupons."""
    use_app_env(database)
    from litestar.testing import AsyncTestClient
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from nestpoint.api.app import create_app
    from nestpoint.db import get_database, raw

    current: list[Statement] | None = None

    def on_execute(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        if current is None:
            return
        if many:
            current.append(Statement(_one_line(statement), rows=[list(p) for p in params]))
        else:
            current.append(Statement(_one_line(statement), params=list(params or ())))

    def on_raw(statement: str, params: Any) -> None:  # nestpoint.db.raw's statements
        if current is None:
            return
        sql = _one_line(statement)
        current.append(Statement(sql) if sql in MARKERS else Statement(sql, list(params or ())))

    raw.statement_observers.append(on_raw)
    # BEGIN (with the tenant binding), COMMIT and ROLLBACK are sent by the application's
    # transaction events on PostgreSQL, which report them to raw.statement_observers.
    listeners = [("before_cursor_execute", on_execute)]
    for name, fn in listeners:
        event.listen(Engine, name, fn)

    async def go() -> dict[str, Captured]:
        nonlocal current
        headers = {"Authorization": f"Bearer {key}"}
        run = uuid.uuid4().hex[:12]
        found: dict[str, Captured] = {}
        tenant_id = str((await admin("SELECT id FROM tenants LIMIT 1", database=database))[0][0])
        app = create_app(configure_logs=False)
        async with AsyncTestClient(app=app) as client:
            kinds = {
                "order": {"by_phone": False},
                "order_by_phone": {"by_phone": True},
                "order_upgrade": {"quantity": 4},
                "lookup": None,
                "lookup_code": None,
                "benefits": None,
                "coupons": None,
                "order_coupon": None,
            }
            n = members
            for name, options in kinds.items():
                if name == "order_coupon":
                    n = coupon_order_members(members)
                for _ in range(2):  # the first warms the caches; the second is kept
                    n -= 1
                    ext = None
                    code = await available_order_coupon(n) if name == "order_coupon" else None
                    current = []
                    if name == "coupons":
                        response = await client.post(
                            "/api/v1/coupons/check", json=check_body(n), headers=headers
                        )
                    elif code is not None:
                        ext = f"capture-{run}-{name}-{n}"
                        body = coupon_order_body(n, ext, code)
                        response = await client.post("/api/v1/orders", json=body, headers=headers)
                    elif name == "lookup_code":
                        response = await client.post(
                            "/api/v1/members/lookup-by-code",
                            json={"code": card_code(tenant_id, n)},
                            headers=headers,
                        )
                    elif name == "benefits":
                        response = await client.get(
                            f"/api/v1/members/{member_id(n)}/benefits", headers=headers
                        )
                    elif options is None:
                        response = await client.get(
                            "/api/v1/members/lookup",
                            params={"phone": member_phone(n)},
                            headers=headers,
                        )
                    else:
                        ext = f"capture-{run}-{name}-{n}"
                        body = order_body(n, ext, **options)
                        response = await client.post("/api/v1/orders", json=body, headers=headers)
                    found[name] = Captured(name, response.status_code, n, ext, current)
                    current = None
                    expected = 200 if options is None and code is None else 201
                    if response.status_code != expected:
                        raise SystemExit(
                            f"capture: {name} answered {response.status_code}: {response.text}"
                        )
                    if name == "coupons" and len(response.json()) != CHECK_COUPONS:
                        raise SystemExit(f"capture: the check answered {response.text}")
            paid = found["order_coupon"]
            if not any("UPDATE coupons" in s.sql for s in paid.statements):
                raise SystemExit("capture: the coupon order did not redeem its coupon")
            upgraded = found["order_upgrade"]
            if not any("INSERT INTO tier_changes" in s.sql for s in upgraded.statements):
                raise SystemExit("capture: the upgrade order did not upgrade the member")
        await get_database().dispose()
        return found

    try:
        return asyncio.run(go())
    finally:
        for name, fn in listeners:
            event.remove(Engine, name, fn)
        raw.statement_observers.remove(on_raw)
