"""Every benchmark in one run (``make bench``): HTTP (order-and-earn, lookup by phone, each
against its pgbench ceiling), the relay draining a backlog, then batch (expiry and tier
evaluation against psql) and orders while the jobs run.

Results: a table on stdout, and ``bench/results/<benchmark>.json``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 5 s windows, 2 s warm-up, 100,000 batch members",
    )
    p.add_argument("--skip-http", action="store_true")
    p.add_argument("--skip-batch", action="store_true")
    p.add_argument("--workers", type=int, help="server processes (default: CPUs)")
    p.add_argument("--duration", type=int, help="seconds per measurement (default 20)")
    p.add_argument("--batch-members", type=int, help="members for the batch (default 1,000,000)")
    p.add_argument("--skip-import", action="store_true")
    p.add_argument(
        "--import-members", type=int, help="members in the import's file (default 1,000,000)"
    )
    args = p.parse_args()
    if args.quick and not os.environ.get("BENCH_RESULTS_DIR"):
        # trial runs never overwrite the committed results
        os.environ["BENCH_RESULTS_DIR"] = str(
            Path(__file__).resolve().parent.parent / "var" / "bench" / "results-quick"
        )
    import batch_bench
    import http_bench
    import import_bench
    import mixed_bench
    import relay_bench
    from common import RESULTS_DIR, table

    started = time.perf_counter()
    http_args: list[str] = []
    batch_args: list[str] = []
    mixed_args: list[str] = []
    import_args: list[str] = []
    if args.quick:
        http_args += ["--duration", "5", "--warmup", "2"]
        batch_args += ["--members", "100000"]
        mixed_args += ["--members", "100000", "--order-members", "50000"]
        mixed_args += ["--duration", "5", "--warmup", "2"]
        import_args += ["--members", "20000"]
    if args.workers:
        http_args += ["--workers", str(args.workers)]
    if args.duration:
        http_args += ["--duration", str(args.duration)]
    if args.import_members:
        import_args += ["--members", str(args.import_members)]
    if args.batch_members:
        batch_args += ["--members", str(args.batch_members)]
        mixed_args += ["--members", str(args.batch_members)]

    http = {} if args.skip_http else http_bench.main(http_args)
    # the outbox backlog the orders left, then events for a plugin (no target)
    relay = {} if args.skip_http else relay_bench.main(["--events", "2000"] if args.quick else [])
    batch = {} if args.skip_batch else batch_bench.main(batch_args)
    # orders while the jobs run over the batch template (1,000,000 members)
    mixed = {} if args.skip_batch or args.skip_http else mixed_bench.main(mixed_args)
    # a legacy export (members, children, balances) imported, against COPY of the same files
    imported = {} if args.skip_import else import_bench.main(import_args)

    rows = []
    for name, r in http.items():
        rows.append(
            [
                name,
                f"{r['rps']:.0f} req/s",
                f"p50 {r['p50_ms']:.1f} ms",
                f"p99 {r['p99_ms']:.1f} ms",
                f"ceiling {r['ceiling_tps']:.0f} tps" if r["ceiling_tps"] else "-",
                f"ratio {r['ratio']:.3f}" if r["ratio"] is not None else "-",
                f"{r['http']['cpu']['server_ms_per_request']:.2f} ms CPU/req",
                ", ".join(f"{k} {'ok' if v else 'MISSED'}" for k, v in r["targets_met"].items())
                + ("" if r["valid"] else "  (INVALID RUN)"),
            ]
        )
    for name, r in batch.items():
        rows.append(
            [
                f"batch-{name}",
                f"job {r['job_seconds']:.2f} s",
                f"SQL {r['sql_seconds']:.2f} s",
                "",
                "",
                f"ratio {r['ratio']:.2f}",
                "",
                "ratio ok" if r["target_met"] else "ratio MISSED",
            ]
        )
    for name in ("no_plugin", "delivered") if relay else ():
        r = relay[name]
        label = f"relay drain ({name.replace('_', ' ')})"
        rows.append([label, f"{r['events_per_s']:.0f} events/s", f"{r['events']} events"])
        rows[-1] += [""] * 5
    if mixed:
        rows.append(
            [
                "orders during jobs",
                f"{mixed['during_rps']:.0f} req/s",
                f"solo {mixed['solo_rps']:.0f} req/s",
                "",
                "",
                f"ratio {mixed['ratio']:.2f}",
                "",
                "ratio ok" if mixed["target_met"] else "ratio MISSED",
            ]
        )
    if imported:
        rows.append(
            [
                f"import ({imported['members']:,} members)",
                f"import {imported['import_seconds']:.2f} s",
                f"COPY {imported['copy_seconds']:.2f} s",
                "",
                "",
                f"ratio {imported['ratio']:.2f}",
                "",
                "ratio ok" if imported["target_met"] else "ratio MISSED",
            ]
        )
    print()
    print("=" * 30, "summary", "=" * 30)
    headers = ["benchmark", "throughput", "p50", "p99", "ceiling", "ratio", "server CPU"]
    print(table(rows, [*headers, "targets"]))
    print(f"\n{RESULTS_DIR}/*.json written; {time.perf_counter() - started:.0f} s in all")
    missed = any(not all(r["targets_met"].values()) for r in http.values()) or any(
        not r["target_met"] for r in batch.values()
    )
    missed = missed or bool(mixed and not mixed["target_met"])
    missed = missed or bool(imported and not imported["target_met"])
    if missed:
        print("(some targets are missed: the run itself succeeded)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
