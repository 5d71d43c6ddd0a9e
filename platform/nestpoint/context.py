"""The current tenant (and store) and the actor behind the current request or job.

Resolved once per request from the API key (see ``tenancy.auth``) or set explicitly by a
job with :func:`tenant_context`. Everything tenant-owned is scoped by it: the ORM adds a
``tenant_id`` criterion to every query, and on PostgreSQL the session writes it into the
transaction-local setting that row-level security reads.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal

# "member": a member token (the member API, /api/v1/me/...): key_id is the member's id.
ActorKind = Literal["platform", "tenant", "store", "system", "member"]


@dataclass(frozen=True, slots=True)
class Actor:
    kind: ActorKind
    key_id: uuid.UUID | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    name: str = ""
    # A store actor that sees personal data only of its own store's members (home store),
    # whatever its reach: the console's store roles. API keys keep False.
    own_members_pii_only: bool = False

    def has(self, scope: str) -> bool:
        return scope in self.scopes


@dataclass(frozen=True, slots=True)
class TenantContext:
    tenant_id: uuid.UUID
    store_id: uuid.UUID | None = None


SYSTEM = Actor(kind="system", name="system")

_tenant: ContextVar[TenantContext | None] = ContextVar("nestpoint_tenant", default=None)
_actor: ContextVar[Actor] = ContextVar("nestpoint_actor", default=SYSTEM)
request_id: ContextVar[str | None] = ContextVar("nestpoint_request_id", default=None)


class TenantContextMissing(RuntimeError):
    """A tenant-owned table was queried with no tenant set: fail closed."""


def current_tenant() -> TenantContext | None:
    return _tenant.get()


def require_tenant() -> TenantContext:
    ctx = _tenant.get()
    if ctx is None:
        raise TenantContextMissing("no tenant in context")
    return ctx


def current_actor() -> Actor:
    return _actor.get()


@contextmanager
def tenant_context(
    tenant_id: uuid.UUID | None, store_id: uuid.UUID | None = None
) -> Iterator[TenantContext | None]:
    """Run a block for one tenant (or none), restoring the previous context on exit."""
    ctx = TenantContext(tenant_id, store_id) if tenant_id is not None else None
    token = _tenant.set(ctx)
    try:
        yield ctx
    finally:
        _tenant.reset(token)


@contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    token = _actor.set(actor)
    try:
        yield actor
    finally:
        _actor.reset(token)


def set_request_context(tenant: TenantContext | None, actor: Actor) -> None:
    """Bind the request's tenant and actor for the rest of the request's task."""
    _tenant.set(tenant)
    _actor.set(actor)
