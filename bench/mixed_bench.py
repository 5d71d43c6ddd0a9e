"""Orders while the expiry and tier jobs run over 1,000,000 members (issue 8).

1. A fresh copy of the batch template (``batch_bench.py`` builds it: 1,000,000 members, a
   quarter with points due to expire, every tenth member's growth dropping) and a new store
   key for its tenant.
2. ``nestpoint serve`` on the copy, as in ``http_bench.py``; ``wrk`` orders (``order.lua``:
   32 clients, members 1..``--order-members``, half by phone) for ``--duration`` seconds:
   the solo figure.
3. Then the two jobs, one after the other as the scheduler would start them (expiry, then
   tier evaluation), in a process that has loaded the application already, as a worker
   has (``job_runner.py``), while wrk keeps ordering in windows of ``--window`` seconds
   until both have finished: the figure during the jobs. ratio = during / solo (target: at
   least 0.7).

Result: ``results/orders-during-jobs.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import batch_bench
from common import (
    BENCH_DIR,
    TENANT_SLUG,
    app_env,
    base_settings,
    drop_database,
    table,
    write_result,
)
from cpu import CpuMeter
from http_bench import Server, members_file, run_wrk
from seed import new_store_key

MIXED_DB = "nestpoint_bench_mixed"
TARGET_RATIO = 0.7
JOBS = ["expire-points", "evaluate-tiers"]  # as bench/job_runner.py runs them


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--duration", type=int, default=20, help="seconds of solo orders")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--window", type=int, default=2, help="wrk windows while the jobs run (s)")
    p.add_argument("--order-members", type=int, default=200_000, help="members ordered for")
    p.add_argument("--phone-pct", type=int, default=50)
    p.add_argument("--port", type=int, default=8766)
    p.add_argument("--members", type=int, default=1_000_000, help="the batch template's size")
    return p.parse_args(argv)


def wrk_orders(server: Server, args: argparse.Namespace, key: str, tag: str, seconds: int) -> Any:
    ids = members_file(args.order_members)
    summary, _, _ = run_wrk(
        "order.lua",
        server.url,
        clients=args.clients,
        threads=args.threads,
        duration=seconds,
        # "0": the batch copy's members hold no member price (wrk/order.lua claims none)
        args=[str(ids), key, str(args.phone_pct), f"mixed-{tag}-{uuid.uuid4().hex[:6]}", "0"],
    )
    return summary


class Jobs:
    """Both jobs, one after the other, in a process that loaded the application first (as a
    worker has): ``start`` returns when they begin, ``running`` says whether they still do."""

    def __init__(self) -> None:
        cmd = [sys.executable, str(BENCH_DIR / "job_runner.py"), TENANT_SLUG]
        self.proc = subprocess.Popen(
            cmd, env=app_env(MIXED_DB), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        assert self.proc.stdin is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit("the job runner did not start")
        self.result: dict[str, Any] = {}
        self._reader = threading.Thread(target=self._read_result)

    def start(self) -> None:
        assert self.proc.stdin is not None
        self.started = time.perf_counter()
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        self._reader.start()

    def _read_result(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        self.result = json.loads(line[5:]) if line.startswith("done ") else {"error": line}
        self.result["seconds"] = round(time.perf_counter() - self.started, 2)
        self.result["returncode"] = self.proc.wait()

    @property
    def running(self) -> bool:
        return self._reader.is_alive()


def totals(windows: list[dict[str, Any]]) -> dict[str, Any]:
    requests = sum(w["requests"] for w in windows)
    seconds = sum(w["duration_us"] for w in windows) / 1e6
    errors = {k[7:]: sum(w[k] for w in windows) for k in windows[0] if k.startswith("errors_")}
    return {
        "requests": requests,
        "seconds": round(seconds, 2),
        "rps": round(requests / seconds, 1) if seconds else 0.0,
        "p99_ms_worst_window": round(max(w["p99_us"] for w in windows) / 1000, 2),
        "max_ms": round(max(w["max_us"] for w in windows) / 1000, 2),
        "errors": errors,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    template = batch_bench.ensure_template(args.members)
    print(f"==> orders during jobs: a copy of {template}, a store key", flush=True)
    batch_bench.copy_template(MIXED_DB)
    key = new_store_key(MIXED_DB)
    with Server(args.workers, args.port, database=MIXED_DB) as server:
        print(f"==> solo: warm-up {args.warmup} s, then {args.duration} s of orders", flush=True)
        wrk_orders(server, args, key, "warm", args.warmup)
        with CpuMeter(server_pid=server.proc.pid if server.proc else None,
                      database=MIXED_DB, client_name="wrk") as meter:  # fmt: skip
            solo = totals([wrk_orders(server, args, key, "solo", args.duration)])
        solo["cpu"] = meter.report(solo["requests"])
        print(f"    {solo['rps']:.0f} orders/s", flush=True)
        print(f"==> during {' then '.join(JOBS)}: orders in {args.window} s windows", flush=True)
        jobs = Jobs()
        windows = []
        with CpuMeter(server_pid=server.proc.pid if server.proc else None,
                      database=MIXED_DB, client_name="wrk") as meter:  # fmt: skip
            jobs.start()
            while jobs.running:
                windows.append(wrk_orders(server, args, key, "during", args.window))
        during = totals(windows)
        during["cpu"] = meter.report(during["requests"])
        print(f"    {during['rps']:.0f} orders/s; jobs took {jobs.result} s", flush=True)
    failed = [] if jobs.result.get("returncode") == 0 else ["job runner"]
    drop_database(MIXED_DB)
    ratio = round(during["rps"] / solo["rps"], 3) if solo["rps"] else 0.0
    problems = [f"the jobs failed: {jobs.result}" for _ in failed]
    problems += [
        f"{name}: wrk errors {r['errors']}"
        for name, r in (("solo", solo), ("during", during))
        if any(r["errors"].values())
    ]
    result = {
        "benchmark": "orders-during-jobs",
        "solo_rps": solo["rps"],
        "during_rps": during["rps"],
        "ratio": ratio,
        "target_ratio": TARGET_RATIO,
        "target_met": ratio >= TARGET_RATIO and not problems,
        "valid": not problems,
        "problems": problems,
        "solo": solo,
        "during": during,
        "jobs": jobs.result,
        "settings": base_settings()
        | {
            "template": template,
            "members": args.members,
            "order_members": args.order_members,
            "clients": args.clients,
            "workers": args.workers,
            "window_s": args.window,
            "note": "the last window may run up to --window seconds past the jobs' end",
        },
    }
    path = write_result("orders-during-jobs", result)
    print(f"    wrote {path}")
    print(
        table(
            [[
                "orders during jobs", f"{solo['rps']:.0f}", f"{during['rps']:.0f}",
                f"{ratio:.2f}", "ok" if result["target_met"] else "MISSED",
            ]],
            ["benchmark", "solo rps", "during rps", "ratio", f"target >= {TARGET_RATIO}"],
        )
    )  # fmt: skip
    return result


if __name__ == "__main__":
    main()
