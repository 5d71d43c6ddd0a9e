"""HTTP benchmarks: order-and-earn and member lookup by phone, against their SQL ceiling.

1. Set up ``nestpoint_bench``: migrate, a tenant, stores, keys, a programme, members.
2. Capture the statements one request of each kind sends (``capture.py``).
3. Start ``nestpoint serve --workers N`` with production settings (PostgreSQL as the app
   role, Redis broker, WARNING logs) and drive each endpoint with ``wrk`` (C, epoll, a Lua
   script per request) from ``clients`` connections for ``duration`` seconds after a warm-up.
4. Stop the server; run the same statements with ``pgbench -M prepared`` from the same number
   of clients for the same time: the ceiling. ratio = rps / ceiling_tps.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import capture
import ceiling
import seed
from common import (
    APP_ROLE,
    BENCH_DIR,
    HTTP_DB,
    ORDER_COUPONS,
    RESULTS_DIR,
    STATE_DIR,
    admin_sync,
    app_env,
    base_settings,
    coupon_order_members,
    create_database,
    flush_redis,
    member_id,
    migrate,
    nestpoint_cmd,
    pg_env,
    table,
    tool,
    write_result,
)
from cpu import CpuMeter
from prometheus_client.parser import text_string_to_metric_families

# The hot path's targets (issue 8): a share of the same statements' pgbench ceiling, p99 at
# 32 clients, and the server's CPU per request. A hot member (32 clients ordering for one
# member) and /healthz (the framework's own ceiling) are reported, with no target but "no
# error" (a run with errors is invalid).
TARGETS: dict[str, dict[str, float]] = {
    "order": {"ratio": 0.35, "p99_ms": 50, "server_ms": 1.5},
    "lookup": {"ratio": 0.30, "server_ms": 0.5},
    "lookup_code": {},
    "order_hot": {},
    "healthz": {},
    "lookup_bare": {},
    "benefits": {},
    "coupons": {},
    "order_coupon": {},
}
ENDPOINTS = {
    "order": ("POST /api/v1/orders", "order.lua"),
    "lookup": ("GET /api/v1/members/lookup?phone=", "lookup.lua"),
    "lookup_code": (
        "POST /api/v1/members/lookup-by-code (the till scans the member app's QR code)",
        "lookup_code.lua",
    ),
    "order_hot": ("POST /api/v1/orders, every order for one member", "order.lua"),
    "healthz": ("GET /healthz (no key, no database: the framework's ceiling)", "healthz.lua"),
    "lookup_bare": (
        "the lookup's statement in a bare Litestar handler (bench/bare_app.py): the bound",
        "lookup.lua",
    ),
    "benefits": (
        "GET /api/v1/members/{id}/benefits (what the member can use here now)",
        "benefits.lua",
    ),
    "coupons": (
        "POST /api/v1/coupons/check (what each of the member's coupons pays on a basket)",
        "coupons.lua",
    ),
    "order_coupon": (
        "POST /api/v1/orders paying with a coupon (a fresh one per order)",
        "order_coupon.lua",
    ),
}
DEFAULT_BENCHMARKS = ["order", "lookup", "lookup_code", "order_hot", "healthz", "lookup_bare",
                      "benefits", "coupons", "order_coupon"]  # fmt: skip
BARE = {"lookup_bare"}  # served by bench/bare_app.py, not by nestpoint
SCRIPTS_DIR = RESULTS_DIR / "pgbench"  # the generated ceiling scripts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    cpus = os.cpu_count() or 2
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("BENCH_WORKERS", cpus)),
        help="server processes (default: the number of CPUs)",
    )
    p.add_argument("--clients", type=int, default=int(os.environ.get("BENCH_CLIENTS", 32)))
    p.add_argument("--threads", type=int, default=2, help="wrk and pgbench threads")
    p.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_DURATION", 20)))
    p.add_argument("--warmup", type=int, default=int(os.environ.get("BENCH_WARMUP", 5)))
    p.add_argument("--members", type=int, default=int(os.environ.get("BENCH_MEMBERS", 10_000)))
    p.add_argument(
        "--phone-pct",
        type=int,
        default=50,
        help="share of orders naming the member by phone (the rest by id)",
    )
    p.add_argument("--port", type=int, default=int(os.environ.get("BENCH_PORT", 8765)))
    p.add_argument(
        "--only",
        choices=sorted(ENDPOINTS),
        action="append",
        help="run only this benchmark (repeatable)",
    )
    p.add_argument(
        "--reuse",
        action="store_true",
        help="keep the existing nestpoint_bench database (skip the set-up)",
    )
    p.add_argument("--no-ceiling", action="store_true", help="skip pgbench")
    p.add_argument(
        "--pool-size",
        type=int,
        help="NESTPOINT_DATABASE_POOL_SIZE for the server (default: the application's, 10)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="also record a py-spy profile of one server worker (needs py-spy)",
    )
    return p.parse_args(argv)


# ------------------------------------------------------------------ set-up


def setup(members: int) -> seed.Tenant:
    started = time.perf_counter()
    print(f"==> set-up: database {HTTP_DB}, tenant, {members:,} members", flush=True)
    create_database(HTTP_DB)
    migrate(HTTP_DB)
    tenant = seed.make_tenant(HTTP_DB)
    seed.enable_pgcrypto(HTTP_DB)
    import asyncio

    asyncio.run(
        seed.insert_members(
            HTTP_DB, tenant.id, list(tenant.stores.values()), members, entry_tier=tenant.tiers[0]
        )
    )
    asyncio.run(seed.grant_tier_benefits(HTTP_DB, tenant.id))
    asyncio.run(seed.issue_coupons(HTTP_DB, tenant.id, members, coupon_order_members(members)))
    admin_sync("VACUUM ANALYZE", database=HTTP_DB)
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    (STATE_DIR / "http-tenant.json").write_text(json.dumps(tenant.as_dict(), indent=2))
    print(f"    done in {time.perf_counter() - started:.1f} s", flush=True)
    return tenant


def order_coupons_file() -> Path:
    """The order coupons nobody used yet, one ``<member id> <code>`` a line (wrk/order_coupon.lua
    offers each once), by coupon (k) then member, so that requests in a row name different
    members. Written again before each run: the warm-up used some."""
    rows = admin_sync(
        "SELECT c.member_id::text, c.code FROM coupons c"
        " JOIN coupon_templates t ON t.tenant_id = c.tenant_id AND t.id = c.template_id"
        f" WHERE t.code = '{seed.ORDER_COUPON['code']}' AND c.status = 'available'"
        " ORDER BY c.cause_id, c.member_id",
        database=HTTP_DB,
    )
    path = STATE_DIR / "order-coupons.txt"
    path.write_text("".join(f"{member} {code}\n" for member, code in rows))
    return path


def member_codes_file(tenant: seed.Tenant, members: int) -> Path:
    """A fresh card code (the member app's QR code) for each member, line n for member n.
    Written again before each run: a code is accepted for 60 s."""
    path = STATE_DIR / "member-codes.txt"
    codes = capture.member_codes(HTTP_DB, tenant.id, members)
    path.write_text("".join(code + "\n" for code in codes))
    return path


def members_file(members: int) -> Path:
    path = STATE_DIR / f"members-{members}.txt"
    if not path.exists():
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(member_id(n) + "\n" for n in range(1, members + 1)))
    return path


# ------------------------------------------------------------------ server


class Server:
    def __init__(
        self, workers: int, port: int, pool_size: int | None = None, database: str = HTTP_DB
    ) -> None:
        self.database = database
        self.workers = workers
        self.port = port
        self.pool_size = pool_size
        self.log = STATE_DIR / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> tuple[list[str], dict[str, str]]:
        cmd = [*nestpoint_cmd(), "serve", "--workers", str(self.workers),
               "--host", "127.0.0.1", "--port", str(self.port)]  # fmt: skip
        extra = {"NESTPOINT_DATABASE_POOL_SIZE": str(self.pool_size)} if self.pool_size else {}
        return cmd, app_env(self.database, **extra)

    def __enter__(self) -> Server:
        cmd, env = self.command()
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited; see {self.log}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        else:
            self.__exit__()  # stop its process group: a failed start leaves nothing running
            raise SystemExit(f"the server did not become ready; see {self.log}")
        return self

    def errors(self) -> dict[str, dict[str, int]]:
        """Errors the server logged, by endpoint (from the traceback) and last line."""
        found: dict[str, dict[str, int]] = {}
        if not self.log.exists():
            return found
        for raw in self.log.read_bytes().splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if entry.get("level") not in ("error", "critical"):
                continue
            text = entry.get("exception") or entry.get("event") or ""
            lines = text.strip().splitlines()
            key = (lines[-1] if lines else "?")[:160]
            if "client disconnected prematurely" in key:
                key = "client disconnected (wrk stopping mid-request)"
            endpoint = (
                "order" if "orders/routes.py" in text
                else "lookup" if "members/routes.py" in text
                else "lookup_code" if "memberapi/routes.py" in text
                else "coupons" if "coupons/routes.py" in text
                else "benefits" if "benefits/" in text
                else "other"
            )  # fmt: skip
            counts = found.setdefault(endpoint, {})
            counts[key] = counts.get(key, 0) + 1
        return found

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.proc.pid)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        pids = [int(x) for x in out.split()]
        # uvicorn's multiprocess supervisor also forks a resource tracker: keep the servers
        return [
            p for p in pids if "multiprocessing" not in _cmdline(p) or "spawn_main" in _cmdline(p)
        ]

    def __exit__(self, *exc: object) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class BareServer(Server):
    """``bench/bare_app.py`` under uvicorn, as many workers, the same database and role."""

    def __init__(self, workers: int, port: int, tenant: seed.Tenant) -> None:
        super().__init__(workers, port)
        self.tenant = tenant
        self.log = STATE_DIR / "bare-server.log"

    def command(self) -> tuple[list[str], dict[str, str]]:
        from common import PII_HASH_KEY, db_url

        cmd = [sys.executable, "-m", "uvicorn", "bare_app:app", "--app-dir", str(BENCH_DIR),
               "--workers", str(self.workers), "--host", "127.0.0.1", "--port", str(self.port),
               "--no-access-log", "--log-level", "warning"]  # fmt: skip
        env = app_env(self.database) | {
            "BARE_DSN": db_url(APP_ROLE, self.database, driver="postgresql"),
            "BARE_TENANT": self.tenant.id,
            "BARE_STORE": self.tenant.stores[self.tenant.store_key_store],
            "BARE_HASH_KEY": PII_HASH_KEY,
        }
        return cmd, env


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# ------------------------------------------------------------------ load generators


def run_wrk(
    script: str, url: str, *, clients: int, threads: int, duration: int, args: list[str]
) -> tuple[dict[str, Any], int, Any]:
    """Run wrk; returns its JSON summary (from the Lua ``done``), its pid and rusage."""
    cmd = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(clients),
        "-d",
        f"{duration}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(BENCH_DIR / "wrk" / script),
        url,
        "--",
        *args,
    ]
    env = dict(os.environ, BENCH_WRK_DIR=str(BENCH_DIR / "wrk"))
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, rusage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"wrk failed:\n{text}")
    match = re.search(r"^BENCH_JSON (.*)$", text, re.MULTILINE)
    if not match:
        raise SystemExit(f"no summary from wrk:\n{text}")
    return json.loads(match.group(1)), proc.pid, rusage


def key_hash(tenant: seed.Tenant) -> str:
    import hashlib

    return hashlib.sha256(tenant.store_key.encode()).hexdigest()


def refresh_statistics() -> None:
    """ANALYZE, as autovacuum keeps a live database: each window writes thousands of rows
    into tables that began empty (benefit uses, orders), and a plan made for an empty
    table (a scan of the tenant's uses instead of the member's entitlements' index) would
    measure the planner's statistics, not the request."""
    admin_sync("ANALYZE", database=HTTP_DB)


def pgbench_vars(tenant: seed.Tenant, members: int, first: int = 1) -> list[str]:
    """The scripts' variables; each transaction's member is drawn from ``first`` to
    ``members``."""
    from common import PII_HASH_KEY

    values = {
        "tenant": tenant.id,
        "store": tenant.stores[tenant.store_key_store],
        "keyhash": key_hash(tenant),
        "hashkey": PII_HASH_KEY,
        "first": first,
        "members": members,
    }
    out: list[str] = []
    for key, value in values.items():
        out += ["-D", f"{key}={value}"]
    return out


def run_pgbench(
    scripts: list[tuple[Path, int]],
    *,
    clients: int,
    threads: int,
    duration: int,
    variables: list[str],
) -> dict[str, Any]:
    """pgbench over weighted scripts; tps, and p50/p99 from its per-transaction log."""
    files: list[str] = []
    for path, weight in scripts:
        if weight > 0:
            files += ["-f", f"{path}@{weight}"]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [tool("pgbench"), "-n", "-M", "prepared", *files, "-c", str(clients),
               "-j", str(threads), "-T", str(duration), "-l", "--log-prefix", f"{tmp}/tx",
               *variables]  # fmt: skip
        result = subprocess.run(
            cmd, env=pg_env(APP_ROLE, HTTP_DB), capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise SystemExit(f"pgbench failed:\n{result.stdout}\n{result.stderr}")
        latencies: list[int] = []
        for log in Path(tmp).glob("tx*"):
            for line in log.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 3:
                    latencies.append(int(parts[2]))
    text = result.stdout
    tps = float(re.search(r"tps = ([\d.]+) \(without initial", text).group(1))  # type: ignore[union-attr]
    processed = int(re.search(r"actually processed: (\d+)", text).group(1))  # type: ignore[union-attr]
    failed = re.search(r"number of failed transactions: (\d+)", text)
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(len(latencies) * p))] / 1000, 2)

    return {
        "tps": round(tps, 1),
        "transactions": processed,
        "failed": int(failed.group(1)) if failed else 0,
        "p50_ms": pct(0.50) if latencies else None,
        "p99_ms": pct(0.99) if latencies else None,
        "scripts": {f"pgbench/{Path(p).name}": w for p, w in scripts if w > 0},
    }


def ceiling_members(name: str, members: int) -> tuple[int, int]:
    """The members (first, last) a benchmark's requests name, as its ceiling draws them: the
    hot member; the order coupons' holders; the others, who hold only the check's coupons."""
    if name == "order_hot":
        return 1, 1
    if name == "order_coupon":
        return 1, coupon_order_members(members)
    if name == "coupons":
        return coupon_order_members(members) + 1, members
    return 1, members


def ceiling_mix(name: str, phone_pct: int, upgrade_permille: int) -> list[tuple[str, int]]:
    """Which captured requests the ceiling replays, and how often (pgbench weights): the
    HTTP run's shares of orders by phone and of orders that upgraded a tier."""
    if name in ("lookup", "lookup_bare"):
        return [("lookup", 1)]
    if name in ("benefits", "coupons", "order_coupon", "lookup_code"):
        return [(name, 1)]
    if name == "healthz":
        return []  # no statements: /healthz is itself the framework's ceiling
    keep = 1000 - upgrade_permille
    return [
        ("order", (100 - phone_pct) * keep),
        ("order_by_phone", phone_pct * keep),
        ("order_upgrade", 100 * upgrade_permille),
    ]


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    args = parse_args(argv)
    names = args.only or DEFAULT_BENCHMARKS
    if args.reuse and (STATE_DIR / "http-tenant.json").exists():
        tenant = seed.Tenant(**json.loads((STATE_DIR / "http-tenant.json").read_text()))
    else:
        tenant = setup(args.members)
    ids = members_file(args.members)
    flush_redis()

    print("==> capturing the statements of one request of each kind", flush=True)
    captured = capture.capture(HTTP_DB, tenant.store_key, args.members)
    for name, c in captured.items():
        d = c.as_dict()
        print(
            f"    {name}: {d['round_trips']} round trips ({d['sql_statements']} SQL statements"
            f" in {d['transactions']} transactions)"
        )
    catalog = admin_sync(f"SELECT id::text FROM benefits WHERE tenant_id = '{tenant.id}'"
                         " UNION ALL SELECT id::text FROM coupon_templates"
                         f" WHERE tenant_id = '{tenant.id}'", database=HTTP_DB)  # fmt: skip
    scripts = ceiling.write_scripts(
        captured,
        SCRIPTS_DIR,
        tenant.id,
        tenant.stores[tenant.store_key_store],
        key_hash(tenant),
        frozenset(row[0] for row in catalog),
    )

    settings = base_settings() | {
        "workers": args.workers,
        "clients": args.clients,
        "load_threads": args.threads,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "members": args.members,
        "database_pool_size": args.pool_size or "default (10, overflow 10, per worker)",
        "api_key": f"store key ({tenant.store_key_store}), orders without store_code",
        "order_member_by_phone_pct": args.phone_pct,
        "order_lines": "1-3 random lines from a 6-item catalogue, all earning points",
        "coupons": f"every member holds {len(seed.COUPON_TEMPLATES)} coupons (one of each"
        f" check template: {', '.join(t['code'] for t in seed.COUPON_TEMPLATES)}); members 1.."
        f"{coupon_order_members(args.members)} also hold {ORDER_COUPONS} of"
        f" {seed.ORDER_COUPON['code']} (order_coupon pays each order with a fresh one); the"
        f" check asks about members {coupon_order_members(args.members) + 1}..{args.members}"
        " with 2 lines",
        "server": f"nestpoint serve --workers {args.workers} (uvicorn), log level WARNING,"
        " Redis broker, PostgreSQL as nestpoint_app (RLS)",
        "load_generator": f"wrk -t{args.threads} -c{args.clients} (Lua scripts in bench/wrk)",
        "ceiling": f"pgbench -M prepared -c {args.clients} -j {args.threads} -T {args.duration}"
        " as nestpoint_app; scripts generated from the captured statements (results/pgbench)",
    }
    http: dict[str, dict[str, Any]] = {}
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    with Server(args.workers, args.port, args.pool_size) as server:
        for name in [n for n in names if n not in BARE]:
            # the hot member is member 1 (a members file of one line), by id or by phone
            members = members_file(1) if name == "order_hot" else ids
            refresh_statistics()
            http[name] = measure_http(name, server, tenant, members, prefix, args)
        # Requests still waiting when wrk stops finish (or fail) later: give them the
        # pool's 30 s timeout, so that their errors are in the log.
        if any(h["effective_concurrency"] < 0.8 * args.clients for h in http.values()):
            print("    (some connections were stuck: waiting 32 s for the server's timeouts)")
            time.sleep(32)
        else:
            time.sleep(2)
        after_load = scrape_metrics(server, args.workers)
    errors = server.errors()
    if BARE & set(names):
        with BareServer(args.workers, args.port, tenant) as bare:
            for name in [n for n in names if n in BARE]:
                http[name] = measure_http(name, bare, tenant, ids, prefix, args)
    for name in names:
        # errors are told apart by route: the order runs share the orders route's
        route = "order" if name in ("order_hot", "order_coupon") else name
        http[name]["server_errors"] = errors.get(route, {})
        serious = {
            k: v for k, v in http[name]["server_errors"].items() if not k.startswith("client")
        }
        if serious:
            print(f"WARNING: the server logged errors on {name} requests: {serious}")
    other = {k: v for k, v in errors.get("other", {}).items() if not k.startswith("client")}
    if other:
        print(f"WARNING: the server logged other errors: {other}")
    flush_redis()

    checks = _order_checks(prefix) if "order" in names else {}
    if checks:
        checks["metrics_after_load"] = after_load
    hot_checks = _order_checks(prefix, "order_hot") if "order_hot" in names else {}
    coupon_checks = _coupon_order_checks(prefix) if "order_coupon" in names else {}
    ceilings: dict[str, dict[str, Any]] = {}
    refresh_statistics()
    if not args.no_ceiling:
        for name in names:
            if not ceiling_mix(name, args.phone_pct, 0):
                continue
            if name in BARE and name.removesuffix("_bare") in ceilings:
                ceilings[name] = ceilings[name.removesuffix("_bare")]  # the same statements
                continue
            # the hot member's ceiling orders for member 1 only, as wrk did
            first, last = ceiling_members(name, args.members)
            variables = pgbench_vars(tenant, last, first)
            mix = [
                (scripts[script], weight)
                for script, weight in ceiling_mix(
                    name,
                    args.phone_pct,
                    (checks if name == "order" else {}).get("upgrade_permille", 0),
                )
            ]
            print(
                f"==> {name} ceiling: pgbench, warm-up {min(args.warmup, 3)} s,"
                f" then {args.duration} s",
                flush=True,
            )
            run_pgbench(mix, clients=args.clients, threads=args.threads,
                        duration=min(args.warmup, 3), variables=variables)  # fmt: skip
            admin_sync("CHECKPOINT")
            with CpuMeter(server_pid=None, database=HTTP_DB, client_name="pgbench") as meter:
                result = run_pgbench(mix, clients=args.clients, threads=args.threads,
                                     duration=args.duration, variables=variables)  # fmt: skip
            result["cpu"] = meter.report(result["transactions"])
            ceilings[name] = result
            print(
                f"    {result['tps']:.0f} transactions/s, p50 {result['p50_ms']} ms,"
                f" p99 {result['p99_ms']} ms",
                flush=True,
            )

    results: dict[str, dict[str, Any]] = {}
    for name in names:
        endpoint, _ = ENDPOINTS[name]
        h, c = http[name], ceilings.get(name)
        ratio = round(h["rps"] / c["tps"], 3) if c and c["tps"] else None
        targets = TARGETS[name]
        met = {}
        if "p99_ms" in targets:
            met["p99_ms"] = h["p99_ms"] < targets["p99_ms"]
        if "ratio" in targets and ratio is not None:
            met["ratio"] = ratio >= targets["ratio"]
        if "server_ms" in targets:
            met["server_ms"] = h["cpu"]["server_ms_per_request"] <= targets["server_ms"]
        problems = []
        if h["effective_concurrency"] < 0.8 * args.clients:
            problems.append(
                f"only {h['effective_concurrency']} of {args.clients} connections active on"
                " average: requests stuck past the window (their latency is not counted)"
            )
        serious = {k: v for k, v in h["server_errors"].items() if not k.startswith("client")}
        if serious or any(h["errors"].values()):
            problems.append(f"errors: server {serious}, wrk {h['errors']}")
        results[name] = {
            "benchmark": name,
            "endpoint": endpoint,
            "rps": h["rps"],
            "p50_ms": h["p50_ms"],
            "p99_ms": h["p99_ms"],
            "ceiling_tps": c["tps"] if c else None,
            "ratio": ratio,
            "targets": targets,
            "targets_met": met,
            # a run with stuck requests or errors does not measure the hot path
            "valid": not problems,
            "problems": problems,
            "http": h,
            "ceiling": c,
            "checks": {"order": checks, "order_hot": hot_checks, "order_coupon": coupon_checks}.get(
                name, {}
            ),
            "observed_statements": (
                captured[{"order_hot": "order", "lookup_bare": "lookup"}.get(name, name)].as_dict()
                if name != "healthz"
                else None
            ),
            "settings": settings,
        }
        if name == "order":
            results[name]["observed_statements_by_phone"] = captured["order_by_phone"].as_dict()
            results[name]["observed_statements_upgrade"] = captured["order_upgrade"].as_dict()
        for problem in problems:
            print(f"WARNING: {name}: {problem}")
        path = write_result(name, results[name])
        print(f"    wrote {path}")
    print()
    print(summary_table(results))
    return results


def measure_http(
    name: str,
    server: Server,
    tenant: seed.Tenant,
    ids: Path,
    prefix: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """wrk against one endpoint: a warm-up, then the measured window with CPU sampling."""
    _, lua = ENDPOINTS[name]
    wrk_args = [str(ids), tenant.store_key, str(args.phone_pct)]
    claims = "0" if name == "order_hot" else "1"  # the member price: see wrk/order.lua
    print(
        f"==> {name}: warm-up {args.warmup} s, then {args.duration} s with {args.clients} clients",
        flush=True,
    )
    warmup = [*wrk_args, f"{prefix}-w-{name}", claims, *wrk_extra(name, args, tenant)]
    run_wrk(lua, server.url, clients=args.clients, threads=args.threads, duration=args.warmup,
            args=warmup)  # fmt: skip
    admin_sync("CHECKPOINT")
    extra = wrk_extra(name, args, tenant)  # after the warm-up: the coupons it left
    sessions0 = _sessions()
    profile = _start_profile(server, args.duration) if args.profile else None
    server_pid = server.proc.pid if server.proc else None
    with CpuMeter(server_pid=server_pid, database=HTTP_DB, client_name="wrk") as meter:
        window = [*wrk_args, f"{prefix}-{name}", claims, *extra]
        summary, _, rusage = run_wrk(lua, server.url, clients=args.clients,
                                     threads=args.threads, duration=args.duration,
                                     args=window)  # fmt: skip
    if profile is not None:
        _finish_profile(profile, name)
    requests = summary["requests"]
    result = {
        "requests": requests,
        "rps": round(requests / (summary["duration_us"] / 1e6), 1),
        "p50_ms": round(summary["p50_us"] / 1000, 2),
        "p75_ms": round(summary["p75_us"] / 1000, 2),
        "p90_ms": round(summary["p90_us"] / 1000, 2),
        "p99_ms": round(summary["p99_us"] / 1000, 2),
        "max_ms": round(summary["max_us"] / 1000, 2),
        "mean_ms": round(summary["mean_us"] / 1000, 2),
        # Little's law: requests in flight on average; far below the clients means that
        # connections sat waiting on requests that never completed inside the window.
        "effective_concurrency": round(
            requests / (summary["duration_us"] / 1e6) * summary["mean_us"] / 1e6, 1
        ),
        "errors": {k[7:]: v for k, v in summary.items() if k.startswith("errors_")},
        "new_db_connections": _sessions() - sessions0,
        "cpu": meter.report(requests),
        "wrk_cpu_s": round(rusage.ru_utime + rusage.ru_stime, 2),
    }
    print(
        f"    {result['rps']:.0f} requests/s, p50 {result['p50_ms']} ms,"
        f" p99 {result['p99_ms']} ms, errors {result['errors']}",
        flush=True,
    )
    return result


def wrk_extra(name: str, args: argparse.Namespace, tenant: seed.Tenant) -> list[str]:
    """The arguments of a script after the common ones (wrk/common.lua): the check's first
    member (wrk/coupons.lua), the unused order coupons and wrk's threads
    (wrk/order_coupon.lua), fresh card codes (wrk/lookup_code.lua)."""
    if name == "lookup_code":
        return [str(member_codes_file(tenant, args.members))]
    if name == "coupons":
        return [str(coupon_order_members(args.members) + 1)]
    if name == "order_coupon":
        _settle_coupons()
        return [str(order_coupons_file()), str(args.threads)]
    return []


def _settle_coupons(timeout: float = 30.0) -> None:
    """Wait for the orders still running when wrk stopped (the server finishes them): until
    the redeemed coupons stop changing for 3 s, so that the next run is not offered theirs."""
    deadline, last, still = time.monotonic() + timeout, -1, 0
    while time.monotonic() < deadline and still < 3:
        sql = "SELECT count(*) FROM coupons WHERE status = 'redeemed'"
        redeemed = admin_sync(sql, database=HTTP_DB)[0][0]
        still, last = (still + 1 if redeemed == last else 0), redeemed
        time.sleep(1)


# What /metrics said after the load: the series an operator would watch (docs/operations.md).
WATCHED = (
    "nestpoint_orders_total",
    "nestpoint_points_earned_total",
    "nestpoint_points_redeemed_total",
    "nestpoint_http_requests_total",
    "nestpoint_http_request_duration_seconds_count",
    "nestpoint_db_pool_checked_out",
    "nestpoint_queue_lag_seconds",
    "nestpoint_plugin_hook_calls_total",
    "nestpoint_cache_hits_total",
    "nestpoint_cache_misses_total",
)


def scrape_metrics(server: Server, processes: int) -> dict[str, Any]:
    """``/metrics`` of each server process (told apart by its start time: each answers for
    itself), summed: the counters of the whole load, and the series count."""
    seen: dict[float, dict[str, float]] = {}
    for _ in range(50):
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as r:
            text = r.read().decode()
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        started = samples.get(("process_start_time_seconds", ()), 0.0)
        this_process: dict[str, float] = {}  # each series over its labels: summed, or the max
        for (name, _), value in samples.items():
            if name in WATCHED:
                before = this_process.get(name, 0.0)
                lag = name == "nestpoint_queue_lag_seconds"
                this_process[name] = max(before, value) if lag else before + value
        seen[started] = this_process  # the latest scrape of that process
        if len(seen) >= processes:
            break
    totals: dict[str, float] = {}
    for per_process in seen.values():
        for name, value in per_process.items():
            # The queue's lag is Redis's, the same in every process: not a sum.
            both = (max if name == "nestpoint_queue_lag_seconds" else sum)(
                (totals.get(name, 0.0), value)
            )
            totals[name] = round(both, 3)
    return {"processes_scraped": len(seen), "series_summed": totals}


def summary_table(results: dict[str, dict[str, Any]]) -> str:
    rows = []
    for name, r in results.items():
        c = r["ceiling"] or {}
        rows.append(
            [
                name,
                f"{r['rps']:.0f}",
                f"{r['p50_ms']:.1f}",
                f"{r['p99_ms']:.1f}",
                f"{c['tps']:.0f}" if c else "-",
                f"{r['ratio']:.3f}" if r["ratio"] is not None else "-",
                f"{r['http']['cpu']['server_ms_per_request']:.2f}",
                ", ".join(f"{k} {'ok' if v else 'MISSED'}" for k, v in r["targets_met"].items())
                + ("" if r["valid"] else "  (INVALID RUN: see problems)"),
            ]
        )
    headers = ["benchmark", "rps", "p50 ms", "p99 ms", "ceiling tps", "ratio", "server ms/req"]
    return table(rows, [*headers, "targets"])


def _sessions() -> int:
    rows = admin_sync(f"SELECT sessions FROM pg_stat_database WHERE datname = '{HTTP_DB}'")
    return int(rows[0][0]) if rows else 0


def _order_checks(prefix: str, name: str = "order") -> dict[str, Any]:
    """What the ``name`` run wrote: orders, lots, events, member-price uses; and the share
    that upgraded a tier."""
    rows = admin_sync(
        f"""SELECT
              (SELECT count(*) FROM orders WHERE external_id LIKE '{prefix}-{name}-%'),
              (SELECT count(*) FROM tier_changes WHERE reason = 'upgrade'),
              (SELECT count(*) FROM orders),
              (SELECT count(*) FROM point_lots),
              (SELECT count(*) FROM outbox_events WHERE type IN ('order.paid', 'points.earned')),
              (SELECT count(*) FROM benefit_uses
                WHERE reference LIKE 'order:pos/{prefix}-{name}-%')
        """,
        database=HTTP_DB,
    )
    mine, upgrades, orders, lots, events, priced = rows[0]
    return {
        "orders_written_by_http_runs": mine,
        # Orders with a feeding line at the member price: one benefit use each.
        "member_price_uses_by_http_runs": priced,
        "orders_total": orders,
        "point_lots_total": lots,
        "order_events_total": events,
        "tier_upgrades_total": upgrades,
        "upgrade_permille": round(1000 * upgrades / orders) if orders else 0,
    }


def _coupon_order_checks(prefix: str) -> dict[str, Any]:
    """What the order_coupon run wrote: orders, each paying with one coupon, and the coupons
    they redeemed (each once, for the amount the order names; its ledger says so)."""
    like = f"{prefix}-order_coupon-%"
    rows = admin_sync(
        f"""SELECT
              (SELECT count(*) FROM orders WHERE external_id LIKE '{like}'),
              (SELECT count(*) FROM orders WHERE external_id LIKE '{like}'
                 AND json_array_length(coupons) = 1),
              (SELECT count(*) FROM coupons c JOIN orders o
                 ON o.tenant_id = c.tenant_id AND o.id = c.order_id
                WHERE o.external_id LIKE '{like}' AND c.status = 'redeemed'
                  AND c.amount_fen = (o.coupons -> 0 ->> 'amount_fen')::bigint),
              (SELECT count(*) FROM coupon_events e JOIN orders o
                 ON o.tenant_id = e.tenant_id AND o.id = e.order_id
                WHERE o.external_id LIKE '{like}' AND e.kind = 'redeem'),
              (SELECT count(*) FROM coupons WHERE status = 'available' AND cause_id
                 NOT IN ('bench:1', 'bench:2', 'bench:3'))
        """,
        database=HTTP_DB,
    )
    orders, with_coupon, redeemed, events, left = rows[0]
    return {
        "orders_written_by_http_runs": orders,
        "orders_paying_with_one_coupon": with_coupon,
        "coupons_redeemed_by_them": redeemed,
        "redeem_events": events,
        "order_coupons_left": left,
    }


def _py_spy() -> str | None:
    import shutil

    for candidate in (
        shutil.which("py-spy"),
        str(Path(sys.executable).with_name("py-spy")),
        str(Path.home() / ".local" / "bin" / "py-spy"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def _start_profile(server: Server, duration: int) -> subprocess.Popen[bytes] | None:
    spy = _py_spy()
    if spy is None:
        print("    (py-spy not found: `uv tool install py-spy`; no profile)")
        return None
    pid = server.worker_pids()[0]
    out = STATE_DIR / "profile"
    out.mkdir(parents=True, exist_ok=True)
    # --gil: only samples holding the GIL, so waiting on the database does not count.
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--duration", str(max(1, duration - 2)), "--gil",
         "--format", "raw", "--output", str(out / "raw.txt"), "--rate", "100"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _finish_profile(proc: subprocess.Popen[bytes], name: str) -> None:
    proc.wait(timeout=60)
    raw = STATE_DIR / "profile" / "raw.txt"
    if not raw.exists():
        return
    target = STATE_DIR / "profile" / f"{name}.txt"
    raw.rename(target)
    summary = summarise_profile(target)
    (STATE_DIR / "profile" / f"{name}-summary.txt").write_text(summary)
    print(f"    profile of one worker: {target} (summary: {name}-summary.txt)")


def summarise_profile(path: Path, top: int = 40) -> str:
    """Self and inclusive shares of py-spy's raw (collapsed) stacks."""
    from collections import Counter

    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    lines = [f"{total} samples", "", "self:"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines += ["", "inclusive (nestpoint frames):"]
    lines += [
        f"{100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common() if "nestpoint/" in f
    ][:top]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
