"""Every actor a worker runs, and the periodic jobs, in one place.

The core's actors are imported here by name (each module declares its actors on
``nestpoint.jobs.broker.broker`` explicitly); the installed plugins' actors are declared
from the plugin host when a worker starts (``declare_actors``). A new context with actors
adds its module to ``ACTOR_MODULES``; a periodic job adds a line to ``PERIODIC_JOBS``
(actor, APScheduler trigger and its arguments, in UTC); a job due once a day at each
chain's local time, to ``DAILY_JOBS`` in ``nestpoint.jobs.daily``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import dramatiq

from nestpoint.benefits import actors as benefits
from nestpoint.billing import actors as billing
from nestpoint.campaigns import actors as campaigns
from nestpoint.console import actors as console
from nestpoint.db import models
from nestpoint.exports import actors as exports
from nestpoint.imports import actors as imports
from nestpoint.jobs import actors as jobs
from nestpoint.memberapi import actors as memberapi
from nestpoint.members import actors as members
from nestpoint.membership import actors as membership
from nestpoint.messaging import actors as messaging
from nestpoint.payments import actors as payments
from nestpoint.plugins import actors as outbox
from nestpoint.plugins import jobs as plugin_jobs
from nestpoint.points import actors as points
from nestpoint.privacy import actors as privacy
from nestpoint.referrals import actors as referrals
from nestpoint.segments import actors as segments
from nestpoint.settlement import actors as settlement
from nestpoint.tiers import actors as tiers
from nestpoint.wallet import actors as wallet

ACTOR_MODULES: tuple[ModuleType, ...] = (
    benefits,
    billing,
    campaigns,
    console,
    exports,
    imports,
    jobs,
    memberapi,
    members,
    membership,
    messaging,
    outbox,
    payments,
    plugin_jobs,
    points,
    privacy,
    referrals,
    segments,
    settlement,
    tiers,
    wallet,
)

# (actor, trigger, trigger arguments). One scheduler enqueues them (the elected leader,
# ``nestpoint.jobs.scheduler``); each job is idempotent besides.
PERIODIC_JOBS: tuple[tuple[dramatiq.Actor[..., Any], str, dict[str, Any]], ...] = (
    (outbox.sweep, "interval", {"seconds": 30}),
    (points.release_holds_all, "interval", {"minutes": 1}),
    (points.expire_all, "interval", {"hours": 1}),
    (jobs.enqueue_due, "interval", {"minutes": 1}),  # the daily jobs, at local times
    (benefits.expire_all, "interval", {"hours": 1}),
    (benefits.sync_recent_all, "interval", {"minutes": 5}),
    (messaging.sweep_all, "interval", {"minutes": 1}),
    (exports.sweep_all, "interval", {"minutes": 5}),
    (privacy.sweep_all, "interval", {"minutes": 5}),
    (imports.sweep_all, "interval", {"minutes": 5}),
    (referrals.reward_all, "interval", {"minutes": 5}),
    # Campaigns: scheduled runs, event triggers (the outbox past a cursor), ends.
    (campaigns.tick_all, "interval", {"minutes": 1}),
    # Payments: unfinished charges, refunds and webhook events (a lost message, a dead worker).
    (payments.sweep_all, "interval", {"minutes": 1}),
    (wallet.expire_bonus_all, "interval", {"hours": 1}),  # bonus past the chain's validity
    (memberapi.purge_tokens_all, "interval", {"hours": 6}),  # member tokens long expired
    (console.purge_sessions_all, "interval", {"hours": 6}),  # console sessions long expired
    (members.purge_phone_changes_all, "interval", {"hours": 6}),  # phone changes long ended
    # Tenant billing: plan choices Stripe has not confirmed yet; every chain's usage.
    (billing.sync_due, "interval", {"minutes": 1}),
    (billing.refresh_usage_all, "interval", {"minutes": 15}),
)


def load_actors() -> None:
    """Declare the installed plugins' actors too (the core's are declared on import).

    Every table is known by now (``nestpoint.db.models``): a worker imports no routes, and
    the ORM can flush a row (an outbox event) only once the tables its foreign keys name
    (tenants) are known."""
    assert models.metadata.tables
    plugin_jobs.declare_actors()
