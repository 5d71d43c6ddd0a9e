"""Running the retention rules for one chain, in short transactions.

A run is one ``retention_runs`` row (its report): the children past the age limit go in
batches, the inactive members one transaction each (an erasure is a member's own unit),
then the run is marked finished. Started again (a retried job, a second click), it erases
what is still due and nothing twice: erased members are no longer active, and deleted
children no longer exist.
"""

from __future__ import annotations

import uuid

from nestpoint.context import Actor, acting_as, tenant_context
from nestpoint.db import Database, scoped_session
from nestpoint.privacy import service
from nestpoint.privacy.models import RetentionRun

CHILD_BATCH = 1000


async def has_rules(database: Database | None = None) -> bool:
    """Whether the current tenant set any retention rule."""
    async with scoped_session(database) as session:
        policy = await service.get_policy(session)
    return bool(policy.inactive_member_years or policy.child_data_age_years)


async def start(trigger: str, database: Database | None = None) -> uuid.UUID:
    """A new run of the current tenant's rules (its report row); returns its id."""
    async with scoped_session(database) as session:
        return (await service.start_run(session, trigger)).id


async def run(run_id: uuid.UUID, database: Database | None = None) -> RetentionRun:
    """Erase what the rules make due today, in the run's name; the finished report."""
    async with scoped_session(database) as session:
        report = await service.get_run(session, run_id)
        policy = await service.get_policy(session)
        due = await service.due_for_retention(session, policy, report.run_on)
        years = policy.inactive_member_years or 0
    for start_at in range(0, len(due.child_ids), CHILD_BATCH):
        async with scoped_session(database) as session:
            batch = due.child_ids[start_at : start_at + CHILD_BATCH]
            await service.erase_children(session, run_id, batch)
    for member_id in due.member_ids:
        async with scoped_session(database) as session:
            await service.erase_for_retention(session, run_id, member_id, years)
    async with scoped_session(database) as session:
        return await service.finish_run(session, run_id)


async def apply(tenant_id: uuid.UUID, run_id: uuid.UUID | None = None) -> RetentionRun | None:
    """What the ``privacy.retention`` job does for one chain: the run HQ asked for
    (``run_id``), or the daily one, which writes no report for a chain without rules."""
    with acting_as(Actor("system", name="privacy.retention")), tenant_context(tenant_id):
        if run_id is None and not await has_rules():
            return None
        return await run(run_id or await start("daily"))
