"""The API's numeric limits, in one place, each chosen to fit the column that stores it.

Money and points columns are 64-bit (``BigInteger``); a few counters are 32-bit. A value the
schema accepts must fit its column even at the maximum, and so must what it adds to a
running total (a balance, a member's growth value) for any realistic number of requests,
or PostgreSQL answers "integer out of range" and the request fails with a 500.

- One order pays at most ``MAX_ORDER_FEN`` (1 亿 yuan) over all its lines. At the highest
  multipliers (tier, category and store each ×100) it earns at most 10^14 points, so a
  64-bit balance holds 90,000 such orders: no member reaches that.
- Growth value (成长值, 64-bit since migration 0006) grows by at most 10^8 per order.
- Tier thresholds stay 32-bit: ``MAX_THRESHOLD`` (10^9 yuan over the growth window) is far
  above any real ladder.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

MAX_FEN = 10**10  # one amount: a line, a coupon, the cash paid
MAX_ORDER_FEN = 10**10  # all lines of one order together
MAX_LINES = 200  # lines per order
MAX_QUANTITY = 100_000  # units per line (a 32-bit column)
MAX_POINTS = 10**9  # one adjustment, transfer, hold or payment in points
MAX_GROWTH_BONUS = 1_000_000  # one bonus growth grant
MAX_THRESHOLD = 10**9  # a tier's growth threshold (a 32-bit column)
MAX_POINTS_CAP = 10**14  # an earn cap per order or per day

MAX_BODY_BYTES = 1_048_576  # a request body; the largest programme is a few hundred KiB
MAX_JSON_DEPTH = 32  # nesting of a request body or a plugin's configuration
MAX_CONFIG_BYTES = 16_384  # a plugin's configuration (chain or store), as compact JSON

Fen = Annotated[int, Field(ge=0, le=MAX_FEN)]
Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY)]
LineNo = Annotated[int, Field(ge=1, le=MAX_LINES)]
Points = Annotated[int, Field(ge=1, le=MAX_POINTS)]


def json_depth(value: Any) -> int:
    """Nesting depth of a decoded JSON value (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def bounded_json(value: dict[str, Any]) -> dict[str, Any]:
    """A plugin configuration within :data:`MAX_CONFIG_BYTES` and :data:`MAX_JSON_DEPTH`."""
    if json_depth(value) > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_CONFIG_BYTES:
        raise ValueError(f"{size} bytes of JSON; at most {MAX_CONFIG_BYTES}")
    return value
