"""Hook specifications: the whole contract between Nestpoint and its plugins.

Every hook is prefixed ``nestpoint_``. The core never calls ``pm.hook`` itself: it goes
through :class:`nestpoint.plugins.manager.PluginHost`, which awaits async implementations,
isolates failing plugins and records what failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

from nestpoint.plugins import PROJECT_NAME

if TYPE_CHECKING:
    from nestpoint.events.service import Event

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


# ---------------------------------------------------------------------------------------
# Events: delivered from the outbox, after the change that raised them has committed.
# ---------------------------------------------------------------------------------------


@hookspec
def nestpoint_on_event(event: Event) -> Any:
    """Receive one domain event from the outbox.

    Called by the ``events.relay`` actor after the transaction that wrote the event has
    committed, once per event and implementation, in the order events occurred within a
    tenant. Delivery is at least once: deduplicate on ``event.id``.

    :param event: the serialisable event (``id``, ``type``, ``tenant_id``, ``store_id``,
        ``subject_type``, ``subject_id``, ``occurred_at`` ISO-8601 UTC, ``payload``).
    :returns: nothing; the return value is ignored.

    May be async (a coroutine is awaited). Results are collected from every implementation.
    Runs per tenant: the tenant's context is set while it runs. An exception does not stop
    other plugins; the event stays pending and is retried with back-off.
    """
