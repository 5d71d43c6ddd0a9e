"""Where the CPU went during a measurement: the server, PostgreSQL, the load generator, and
everything else on the machine (other users of the shared cores).

A thread samples ``/proc`` every 0.2 s: each process's user + system time, classified by
process; the machine's busy time comes from ``/proc/stat``. Processes that start during the
window count from zero; one that exits loses at most its last 0.2 s.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _machine_busy() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / TICK


def _proc(pid: int) -> tuple[int, str, float] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return None
    rest = stat[stat.rindex(")") + 2 :].split()
    ppid, utime, stime = int(rest[1]), int(rest[11]), int(rest[12])
    return ppid, cmdline, (utime + stime) / TICK


class CpuMeter:
    """``with CpuMeter(...) as m: ...`` then ``m.report(requests)``."""

    def __init__(self, *, server_pid: int | None, database: str, client_name: str) -> None:
        self.server_pid = server_pid
        self.database = database
        self.client_name = client_name
        self.me = os.getpid()
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._group: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _classify(self, pid: int, ppid: int, cmdline: str, parents: dict[int, int]) -> str:
        if pid == self.me:
            return "bench"
        if self.server_pid is not None:
            p = pid
            while p > 1:
                if p == self.server_pid:
                    return "server"
                p = parents.get(p, 0)
        if cmdline.startswith("postgres:") or cmdline.startswith("/usr/lib/postgresql"):
            if f" {self.database} " in cmdline or cmdline.endswith(f" {self.database}"):
                return "postgres"
            words = cmdline.split()
            # background processes serve every database: counted as PostgreSQL's
            if (
                len(words) >= 2
                and words[1]
                in (
                    "checkpointer",
                    "background",
                    "walwriter",
                    "autovacuum",
                    "logical",
                    "stats",
                )
            ) or cmdline.startswith("/usr/lib/postgresql"):
                return "postgres"
            return "other"
        exe = cmdline.split(" ", 1)[0].rsplit("/", 1)[-1]
        if exe == self.client_name:
            return "client"
        return "other"

    def _sample(self, initial: bool) -> None:
        rows: dict[int, tuple[int, str, float]] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                info = _proc(int(entry.name))
                if info is not None:
                    rows[int(entry.name)] = info
        parents = {pid: row[0] for pid, row in rows.items()}
        for pid, (ppid, cmdline, cpu) in rows.items():
            if pid not in self._group:
                self._group[pid] = self._classify(pid, ppid, cmdline, parents)
                self._first[pid] = cpu if initial else 0.0
            self._last[pid] = cpu

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self._sample(False)

    def __enter__(self) -> CpuMeter:
        self._sample(True)
        self._busy0 = _machine_busy()
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(False)
        self.wall = time.perf_counter() - self._t0
        self.busy = _machine_busy() - self._busy0

    def groups(self) -> dict[str, float]:
        totals: dict[str, float] = defaultdict(float)
        for pid, group in self._group.items():
            totals[group] += self._last[pid] - self._first[pid]
        return dict(totals)

    def report(self, requests: int) -> dict[str, object]:
        """CPU seconds by group, as cores busy and as milliseconds per request."""
        groups = self.groups()
        ours = sum(v for k, v in groups.items() if k != "other")
        # Everything else the machine did: other users of the shared cores, the kernel.
        groups["other"] = max(0.0, self.busy - ours)
        out: dict[str, object] = {
            "window_s": round(self.wall, 2),
            "machine_busy_cores": round(self.busy / self.wall, 2),
        }
        for name in ("server", "postgres", "client", "bench", "other"):
            seconds = groups.get(name, 0.0)
            out[f"{name}_cores"] = round(seconds / self.wall, 2)
            if requests and name != "other":
                out[f"{name}_ms_per_request"] = round(seconds * 1000 / requests, 3)
        return out
