"""Running a job for one tenant, or fanning it out to every active tenant."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.context import Actor, acting_as, tenant_context
from nestpoint.db import Database, scoped_session
from nestpoint.tenancy.models import Tenant

T = TypeVar("T")


async def run_for_tenant(
    tenant_id: uuid.UUID,
    job: Callable[[AsyncSession], Awaitable[T]],
    *,
    name: str,
    database: Database | None = None,
) -> T:
    """Run ``job`` in one transaction for one tenant, as the system actor."""
    with acting_as(Actor("system", name=name)), tenant_context(tenant_id):
        async with scoped_session(database) as session:
            return await job(session)


async def active_tenant_ids(database: Database | None = None) -> list[uuid.UUID]:
    async with scoped_session(database) as session:
        return list((await session.scalars(select(Tenant.id).where(Tenant.active))).all())
