"""One idempotency mechanism for every write a client may retry. No HTTP; never commits.

How a guarded write runs (see docs/guarantees.md):

1. take the effect's lock (the member's points account; the order row for a refund);
2. :func:`replay`: a stored answer for this key is returned as it was first given (same
   status, same body), or a conflict when the key came with a different request;
3. do the effect;
4. :func:`claim`: insert the key with the answer (``ON CONFLICT DO NOTHING``), in the same
   transaction. A concurrent attempt with the same key that did not share the lock (an
   order without a member) waits here on the unique key until the first one commits, and
   then replays it; if the first rolled back, this one claims the key.

Only answers are stored, never failures: a request refused by a rule (422) rolls back and
may be retried. The hot path (orders) skips step 2 and claims before writing anything, so a
new order pays for one statement, not two.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import bindparam, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.context import require_tenant
from nestpoint.db import utcnow
from nestpoint.db.base import table_of
from nestpoint.db.raw import Statement
from nestpoint.errors import Conflict, FieldError
from nestpoint.idempotency.models import IdempotencyKey

keys = table_of(IdempotencyKey)
CLAIMED_COLUMNS = (
    "tenant_id", "scope", "key", "request_hash", "status_code", "response", "created_at"
)  # fmt: skip


ResultT = TypeVar("ResultT")
ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Answer(Generic[ResultT]):
    """A write's answer: its HTTP status and body (JSON, as stored), whether it is a replay,
    and, when the answer was made now, the typed result the body was dumped from (a route
    validates a replayed body into that type instead)."""

    status_code: int
    body: dict[str, Any]
    replayed: bool = False
    result: ResultT | None = None


def created(result: ModelT) -> Answer[ModelT]:
    """A 201 answer for ``result`` (its JSON dump is what is stored and replayed)."""
    return Answer(201, result.model_dump(mode="json"), result=result)


REQUEST = "request"  # the scope of keys a client chooses


def fingerprint(request: Any) -> str:
    """SHA-256 of a request's canonical JSON (pydantic models: their JSON dump)."""
    if hasattr(request, "model_dump_json"):
        raw = request.model_dump_json()
    else:
        raw = json.dumps(request, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


async def replay(
    session: AsyncSession, scope: str, key: str, request_hash: str, *, field: str
) -> Answer[Any] | None:
    """The stored answer for ``key``, or None; a conflict when the request differs."""
    row = (
        await session.execute(
            select(keys.c.request_hash, keys.c.status_code, keys.c.response).where(
                keys.c.tenant_id == require_tenant().tenant_id,
                keys.c.scope == scope,
                keys.c.key == key,
            )
        )
    ).one_or_none()
    if row is None:
        return None
    if row.request_hash != request_hash:
        raise Conflict(
            f"{field}: already used for a different request",
            errors=[FieldError(field, "already used for a different request")],
        )
    return Answer(row.status_code, dict(row.response), replayed=True)


async def claim(
    session: AsyncSession,
    scope: str,
    key: str,
    request_hash: str,
    answer: Answer[Any],
    *,
    field: str,
) -> Answer[Any] | None:
    """Store ``answer`` under ``key``. None when claimed now; otherwise the answer a
    concurrent attempt committed first (which the caller returns instead of writing)."""
    claimed = await CLAIM.one_or_none(
        session,
        tenant_id=require_tenant().tenant_id,
        scope=scope,
        key=key,
        request_hash=request_hash,
        status_code=answer.status_code,
        response=answer.body,
        created_at=utcnow(),
    )
    if claimed is not None:
        return None
    earlier = await replay(session, scope, key, request_hash, field=field)
    if earlier is None:  # cannot happen: the conflicting row is committed before we see it
        raise _in_use(field)
    return earlier


# INSERT ... ON CONFLICT DO NOTHING RETURNING: the same SQL on PostgreSQL and SQLite, built
# once and run as a raw statement (``nestpoint.db.raw``): it is on every order's path.
CLAIM = Statement(
    postgresql.insert(keys)
    .values({c: bindparam(c, type_=keys.c[c].type) for c in CLAIMED_COLUMNS})
    .on_conflict_do_nothing(index_elements=["tenant_id", "scope", "key"])
    .returning(keys.c.key)
)


def _in_use(field: str) -> Conflict:
    return Conflict(
        f"{field}: in use by a concurrent request", errors=[FieldError(field, "in use")]
    )


async def record(
    session: AsyncSession,
    scope: str,
    key: str,
    request_hash: str,
    answer: Answer[ResultT],
    *,
    field: str,
) -> Answer[ResultT]:
    """Claim ``key`` for an effect already written under the lock that :func:`replay` was
    checked under. Losing the claim there means another request holds the key (a different
    one: the same request would have shared the lock and replayed), so it is a conflict and
    the caller's transaction rolls back."""
    earlier = await claim(session, scope, key, request_hash, answer, field=field)
    if earlier is not None:
        raise _in_use(field)
    return answer
