"""A consumer plugin for the fault-tolerance suite only: it writes one line per call.

It is not installed: ``stack.install_probe`` copies this file into a temporary folder with a
``dist-info`` that declares it in the ``nestpoint`` entry-point group, and the suite's
processes get that folder on ``PYTHONPATH``. Its one hook takes every event and appends
``<event id> <type> <pid> <unix time>`` to the file ``FAULTS_PROBE_LOG`` names, outside any
transaction and without deduplicating: the file shows every delivery the relay made, so a
test sees an event handed twice to the same consumer, which an idempotent consumer (the
example plugin's celebrations) would hide.
"""

from __future__ import annotations

import os
import time

from nestpoint.plugins.api import Event, hookimpl


@hookimpl
def nestpoint_on_event(event: Event) -> None:
    line = f"{event.id} {event.type} {os.getpid()} {time.time():.3f}\n".encode()
    fd = os.open(os.environ["FAULTS_PROBE_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one short write with O_APPEND: lines never interleave
    finally:
        os.close(fd)
