"""The outbox backlog as the last sweep saw it, shared by every process that exports it.

Row-level security lets a process read one tenant's events at a time, so the backlog is
summed where every tenant is visited anyway: the periodic ``events.sweep``. It stores the
sum in Redis (the broker's), so the API's ``/metrics`` and every worker's show the same
figures; with the in-process broker (one process) it stays in memory.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass

from nestpoint.jobs.broker import broker, is_in_process

log = logging.getLogger("nestpoint.metrics")

KEY = "nestpoint:metrics:outbox-backlog"
# An old snapshot (no sweep for this long: no worker) is dropped, not shown as current.
TTL_SECONDS = 600


@dataclass(frozen=True)
class Backlog:
    pending: int  # events not yet published, every tenant
    oldest_pending_at: float | None  # when the oldest of them happened (Unix time)
    swept_at: float  # when the sweep counted them


_local: Backlog | None = None


def publish(pending: int, oldest_pending_at: float | None) -> None:
    global _local
    snapshot = Backlog(pending, oldest_pending_at, time.time())
    if is_in_process():
        _local = snapshot
        return
    try:
        client = broker.client  # type: ignore[attr-defined]
        client.set(KEY, json.dumps(asdict(snapshot)), ex=TTL_SECONDS)
    except Exception as exc:  # the metric waits for the next sweep; the sweep goes on
        log.warning("could not store the outbox backlog", extra={"error": str(exc)})


def read() -> Backlog | None:
    if is_in_process():
        return _local
    raw = broker.client.get(KEY)  # type: ignore[attr-defined]
    return Backlog(**json.loads(raw)) if raw else None
