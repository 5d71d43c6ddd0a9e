"""The ceiling's pgbench scripts, made from the statements a request was seen to send.

Each captured statement keeps its text (the one the application prepared, ``$n``
placeholders and casts included) and runs as one round trip; BEGIN and COMMIT stay where
they were; several commands sent as one simple query (``BEGIN ...; SELECT set_config(...)``)
become a pgbench pipeline (one round trip; pgbench cannot prepare them together); an
``executemany`` (asyncpg pipelines its rows: one round trip) becomes a pgbench
pipeline of one statement per row. Each parameter is replaced by what makes every
transaction a new request for a random member:

* the tenant, the key's store and the key's hash: pgbench variables (``-D``);
* the member's id: ``md5('nestpoint-bench:' || :n)::uuid`` (how the set-up made it), its
  phone hash: pgcrypto's ``hmac()`` of its phone, with ``n`` random per transaction; its
  entitlements to the tier's benefits likewise (``md5('<code>:' || <member id>)``), and its
  coupons' ids and codes (bench/common.py), an order coupon's with ``k`` random per
  transaction; ``n`` is drawn from ``:first`` to ``:members``;
* the external id: ``'pgbench-' || :ext`` with ``ext`` random per transaction (and the order's
  idempotency key, ``'pos/' || <that>``);
* the chain's catalog ids (a benefit's): the same literal (they name existing rows);
* every other UUID the request made (order, lots, entries, events): ``md5('<k>:' || :ext)``,
  so that references between rows stay the same (an entry names its lot);
* any other value (amounts, timestamps, JSON documents, hashes): the captured value, as a
  literal of the same size.

So the ceiling is the same statements, with the same rows, as tight as a C client can send
them; only the Python work between them is gone.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import uuid
from pathlib import Path
from typing import Any

from capture import MARKERS, Captured
from common import (
    CHECK_COUPONS,
    COUPON_CODE_SQL,
    COUPON_ID_SQL,
    ORDER_COUPONS,
    PHONE_BASE,
    TIER_BENEFITS,
    coupon_code,
    coupon_id,
    entitlement_id,
    member_id,
)

MEMBER = "md5('nestpoint-bench:' || :n)"
# An order coupon of the member: k random per transaction among the member's order coupons
# (one already redeemed is locked and updated all the same: the same statements, the same rows)
ORDER_COUPON_K = f"\\set k random({CHECK_COUPONS + 1}, {CHECK_COUPONS + ORDER_COUPONS})"
PHONE_HASH = (
    f"encode(hmac(convert_to('+86' || ({PHONE_BASE} + :n)::text, 'UTF8'),"
    " decode(:hashkey, 'base64'), 'sha256'), 'hex')"
)
EXTERNAL_ID = "('pgbench-' || :ext)"


def literal(value: Any) -> str:
    """A SQL literal pgbench leaves alone (it would read ``:word`` in a string as a
    variable, so colons are escaped)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | decimal.Decimal):
        return repr(value) if not isinstance(value, decimal.Decimal) else str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        text = value.isoformat()
    elif isinstance(value, bytes):
        return "'\\x" + value.hex() + "'::bytea"
    else:
        text = str(value)
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace(":", "\\x3a")
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r")
    return f"E'{escaped}'"


class Binder:
    """Turns one request's parameter values into pgbench expressions."""

    def __init__(
        self,
        captured: Captured,
        tenant_id: str,
        store_id: str,
        key_hash: str,
        constants: frozenset[str] = frozenset(),
    ) -> None:
        from nestpoint.members.pii import keyring

        n = captured.member_n
        self.known: dict[str, str] = {
            tenant_id: ":tenant",
            store_id: ":store",
            key_hash: ":keyhash",
            member_id(n): f"{MEMBER}::uuid",
            keyring().lookup_hash(f"+86{PHONE_BASE + n}"): PHONE_HASH,
        }
        for code in TIER_BENEFITS:  # a use names the member's entitlement (the seed's id)
            self.known[entitlement_id(code, n)] = f"md5('{code}:' || ({MEMBER}::uuid)::text)::uuid"
        for k in range(1, CHECK_COUPONS + ORDER_COUPONS + 1):  # the member's coupons (the seed's)
            var = str(k) if k <= CHECK_COUPONS else ":k"
            self.known[coupon_id(n, k)] = COUPON_ID_SQL.format(n=":n", k=var)
            self.known[coupon_code(n, k)] = COUPON_CODE_SQL.format(n=":n", k=var)
        if captured.external_id:
            self.known[captured.external_id] = EXTERNAL_ID
            # The order's idempotency key is its channel and external id.
            self.known[f"pos/{captured.external_id}"] = f"('pos/' || {EXTERNAL_ID})"
        for value in constants:  # the chain's own rows (its catalog): the same in every request
            self.known[value] = f"'{value}'::uuid"
        self.generated: dict[str, str] = {}

    def expression(self, value: Any) -> str:
        if isinstance(value, uuid.UUID) or (isinstance(value, str) and _is_uuid(value)):
            text = str(value)
            expr = self.known.get(text)
            if expr is None:
                expr = self.generated.get(text)
            if expr is None:
                expr = f"md5('{len(self.generated) + 1}/' || :ext)::uuid"
                self.generated[text] = expr
            if isinstance(value, str):  # a UUID sent as text (set_config, subject_id)
                return expr if expr.startswith((":", "'")) else f"({expr})::text"
            return f"({expr})" if not expr.startswith((":", "'")) else expr
        if isinstance(value, str) and value in self.known:
            return self.known[value]
        return literal(value)

    def bind(self, sql: str, params: list[Any]) -> str:
        def sub(m: re.Match[str]) -> str:
            return self.expression(params[int(m.group(1)) - 1])

        return re.sub(r"\$(\d+)", sub, sql)


def _is_uuid(text: str) -> bool:
    if len(text) != 36:
        return False
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def script(
    captured: Captured,
    tenant_id: str,
    store_id: str,
    key_hash: str,
    constants: frozenset[str] = frozenset(),
) -> str:
    binder = Binder(captured, tenant_id, store_id, key_hash, constants)
    lines = [
        f"-- Generated by bench/ceiling.py from the statements of one {captured.name} request",
        f"-- ({captured.round_trips} round trips), captured by bench/capture.py. Do not edit.",
        "\\set n random(:first, :members)",
        "\\set ext random(1, 9000000000000000000)",
    ]
    header = len(lines)
    for statement in captured.statements:
        if statement.sql in MARKERS:
            lines.append(statement.sql + ";")
        elif "; " in statement.sql and not statement.params:
            # Several commands in one simple query (BEGIN and the tenant binding): one round
            # trip, which pgbench -M prepared sends as a pipeline.
            lines.append("\\startpipeline")
            lines += [command.strip() + ";" for command in statement.sql.split("; ")]
            lines.append("\\endpipeline")
        elif statement.rows is not None:
            lines.append("\\startpipeline")
            lines += [binder.bind(statement.sql, row) + ";" for row in statement.rows]
            lines.append("\\endpipeline")
        else:
            lines.append(binder.bind(statement.sql, statement.params or []) + ";")
    if any(re.search(r"(?<!:):k\b", line) for line in lines[header:]):  # an order coupon
        lines.insert(header, ORDER_COUPON_K)
    return "\n".join(lines) + "\n"


def write_scripts(
    captured: dict[str, Captured],
    directory: Path,
    tenant_id: str,
    store_id: str,
    key_hash: str,
    constants: frozenset[str] = frozenset(),
) -> dict[str, Path]:
    """One script per kind; ``constants``: UUIDs sent as they are (the catalog's ids)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, c in captured.items():
        path = directory / f"{name}.sql"
        path.write_text(script(c, tenant_id, store_id, key_hash, constants))
        paths[name] = path
    return paths
