"""Request builders shared by the loyalty tests."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from typing import Any

_phones = itertools.count(10_000_000)


def new_phone() -> str:
    """A distinct valid mainland mobile number per call (138xxxxxxxx)."""
    return f"138{next(_phones) % 100_000_000:08d}"


def order_body(
    external_id: str | None = None,
    *,
    member: dict[str, Any] | None = None,
    lines: list[dict[str, Any]] | None = None,
    store_code: str | None = "S1",
    points_used: int = 0,
    hold_id: str | None = None,
    cash_fen: int | None = None,
    channel: str = "pos",
) -> dict[str, Any]:
    lines = lines or [
        {
            "sku": "MILK-1",
            "name": "Formula",
            "category": "feeding",
            "quantity": 1,
            "unit_price_fen": 10000,
            "paid_fen": 10000,
        }
    ]
    total = sum(line["paid_fen"] for line in lines)
    body: dict[str, Any] = {
        "channel": channel,
        "external_id": external_id or uuid.uuid4().hex,
        "lines": lines,
        "paid_at": datetime.now(UTC).isoformat(),
        "payment": {
            "cash_fen": total - points_used if cash_fen is None else cash_fen,
            "points_used": points_used,
        },
    }
    if store_code:
        body["store_code"] = store_code
    if member is not None:
        body["member"] = member
    if hold_id:
        body["payment"]["hold_id"] = hold_id
    return body
