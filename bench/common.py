"""Shared pieces of the benchmarks: settings, environment, database administration, results.

Every benchmark runs against databases of its own on the PostgreSQL server named by
``BENCH_PG_ADMIN_URL`` (a superuser; default ``postgresql://root@127.0.0.1:5432/postgres``).
The application connects as ``nestpoint_app`` (bound by row-level security) and migrations run
as ``nestpoint_owner``, exactly as in production and in the PostgreSQL test run.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
# Where results go: bench/results (committed), or elsewhere for trial runs (run.py --quick).
RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS_DIR") or BENCH_DIR / "results")
STATE_DIR = ROOT / "var" / "bench"  # run-time files (member lists, generated scripts)

PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://root@127.0.0.1:5432/postgres")
OWNER_ROLE = "nestpoint_owner"
APP_ROLE = "nestpoint_app"
HTTP_DB = os.environ.get("BENCH_HTTP_DB", "nestpoint_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
TENANT_SLUG = "bench-chain"
# The member price (会员价) every benchmark member holds; the orders' feeding lines claim it.
MEMBER_PRICE_PERCENT = 95
# The entry tier's benefits: every member holds them (bench/seed.py grants them).
TIER_BENEFITS = ["free-shipping", "birthday-gift", "member-price"]
STORE_CODES = ("BJ-01", "SH-02", "GZ-03")

# Fixed, benchmark-only PII keys, so the set-up, the server and pgbench agree on the phone
# lookup hash across runs. Never use these anywhere else.
PII_KEYS = "bench1:" + base64.b64encode(hashlib.sha256(b"nestpoint-bench-aes").digest()).decode()
PII_HASH_KEY = base64.b64encode(hashlib.sha256(b"nestpoint-bench-hmac").digest()).decode()

# Members' phones are 138 0000 0000 + n, so the benchmark clients and pgbench can name any
# member by n alone; their ids are md5('nestpoint-bench:' || n)::uuid for the same reason.
PHONE_BASE = 13_800_000_000
MEMBER_ID_SQL = "md5('nestpoint-bench:' || {n})::uuid"


# Coupons (bench/seed.py): every member holds one coupon of each of the three check
# templates (k = 1..3: what POST /coupons/check answers about), and the first half of the
# members (1..members // 2) also holds ORDER_COUPONS coupons of the order template
# (k = 4..3 + ORDER_COUPONS), so that each order of the order_coupon benchmark pays with a
# fresh one (ORDER_COUPON_OFF_FEN off any basket). Coupon k of member n has the id
# COUPON_ID_SQL and the code COUPON_CODE_SQL (16 hex digits, upper case: characters of the
# application's alphabet), so that pgbench can name it by n and k.
CHECK_COUPONS = 3
ORDER_COUPONS = 30
ORDER_COUPON_OFF_FEN = 500
COUPON_ID_SQL = "md5('nestpoint-bench-coupon:' || {n} || ':' || {k})::uuid"
COUPON_CODE_SQL = "upper(left(md5('nestpoint-bench-coupon-code:' || {n} || ':' || {k}), 16))"


def coupon_order_members(members: int) -> int:
    """Members 1..this hold the order coupons; the check's members are the others."""
    return members // 2


def coupon_id(n: int, k: int) -> str:
    """Member ``n``'s coupon ``k`` (``COUPON_ID_SQL``)."""
    return _md5_uuid(f"nestpoint-bench-coupon:{n}:{k}")


def coupon_code(n: int, k: int) -> str:
    """Member ``n``'s coupon ``k``'s code (``COUPON_CODE_SQL``)."""
    return hashlib.md5(f"nestpoint-bench-coupon-code:{n}:{k}".encode()).hexdigest()[:16].upper()


def pg_host_port() -> tuple[str, str]:
    rest = PG_ADMIN_URL.split("@", 1)[1].rsplit("/", 1)[0]
    host, _, port = rest.partition(":")
    return host, port or "5432"


def db_url(user: str, database: str, driver: str = "postgresql+asyncpg") -> str:
    host, port = pg_host_port()
    return f"{driver}://{user}@{host}:{port}/{database}"


def member_id(n: int) -> str:
    """The id the set-up gives member ``n`` (same as ``MEMBER_ID_SQL``)."""
    return _md5_uuid(f"nestpoint-bench:{n}")


def entitlement_id(code: str, n: int) -> str:
    """The id the set-up gives member ``n``'s entitlement to the tier benefit ``code``
    (``md5(code || ':' || member id)`` in bench/seed.py): the ceiling's replay names it."""
    return _md5_uuid(f"{code}:{member_id(n)}")


def _md5_uuid(text: str) -> str:
    digest = hashlib.md5(text.encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:]}"


def member_phone(n: int) -> str:
    return str(PHONE_BASE + n)


def app_env(database: str, **extra: str) -> dict[str, str]:
    """The environment of the server, the CLI and the set-up: production settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("NESTPOINT_") or k == "NESTPOINT_MIGRATIONS_DIR"
    }
    env |= {
        "NESTPOINT_DATABASE_URL": db_url(APP_ROLE, database),
        "NESTPOINT_MIGRATION_DATABASE_URL": db_url(OWNER_ROLE, database),
        "NESTPOINT_APP_ROLE": APP_ROLE,
        "NESTPOINT_REDIS_URL": REDIS_URL,
        "NESTPOINT_LOG_LEVEL": "WARNING",
        "NESTPOINT_LOG_JSON": "true",
        "NESTPOINT_PII_KEYS": PII_KEYS,
        "NESTPOINT_PII_HASH_KEY": PII_HASH_KEY,
        # The rate limit is counted in Redis on every request, as in production, at a
        # ceiling the benchmark's few keys (hundreds of requests a second each) stay under.
        "NESTPOINT_RATE_LIMIT": "1000000/second",
    }
    env |= extra
    return env


def use_app_env(database: str) -> None:
    """Point this process's settings at ``database`` (for in-process set-up and capture)."""
    for key in [k for k in os.environ if k.startswith("NESTPOINT_")]:
        del os.environ[key]
    os.environ.update({k: v for k, v in app_env(database).items() if k.startswith("NESTPOINT_")})
    from nestpoint.db.session import reset_database
    from nestpoint.settings import get_settings

    get_settings.cache_clear()  # the PII keyring follows the settings' values
    reset_database()


# ------------------------------------------------------------------ database administration


async def admin(*statements: str, database: str = "postgres") -> list[Any]:
    """Run statements as the superuser; returns the rows of the last one."""
    import asyncpg

    host, port = pg_host_port()
    user = PG_ADMIN_URL.split("://", 1)[1].split("@", 1)[0]
    conn = await asyncpg.connect(host=host, port=int(port), user=user, database=database)
    try:
        rows: list[Any] = []
        for statement in statements:
            rows = await conn.fetch(statement)
        return rows
    finally:
        await conn.close()


def admin_sync(*statements: str, database: str = "postgres") -> list[Any]:
    return asyncio.run(admin(*statements, database=database))


def create_database(name: str) -> None:
    """Drop and recreate ``name`` owned by the owner role (created if missing)."""
    admin_sync(
        f"DROP DATABASE IF EXISTS {name} WITH (FORCE)",
        f"""DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{OWNER_ROLE}') THEN
                CREATE ROLE {OWNER_ROLE} LOGIN CREATEROLE NOSUPERUSER NOBYPASSRLS;
            END IF;
        END $$""",
        f"CREATE DATABASE {name} OWNER {OWNER_ROLE}",
    )


def drop_database(name: str) -> None:
    admin_sync(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def migrate(database: str) -> None:
    """``nestpoint migrate`` with NESTPOINT_MIGRATION_DATABASE_URL, as a new process."""
    run([*nestpoint_cmd(), "migrate"], env=app_env(database), quiet=True)


def nestpoint_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("nestpoint")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "nestpoint.cli"]


def run(
    cmd: list[str], *, env: dict[str, str] | None = None, quiet: bool = False, **kw: Any
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, env=env, text=True, capture_output=True, check=False, **kw)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"command failed ({result.returncode}): {' '.join(cmd)}")
    if not quiet and result.stdout:
        sys.stdout.write(result.stdout)
    return result


def tool(name: str) -> str:
    """A PostgreSQL client tool: on PATH, else from the server's bin directory."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise SystemExit(f"{name} not found: install the postgresql client (Debian: postgresql-15)")


def pg_env(user: str, database: str) -> dict[str, str]:
    host, port = pg_host_port()
    env = dict(os.environ)
    env |= {"PGHOST": host, "PGPORT": port, "PGUSER": user, "PGDATABASE": database}
    env.pop("PGPASSWORD", None)
    return env


def flush_redis() -> None:
    """Empty the benchmark's Redis database (the relay messages the orders enqueued)."""
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


# ------------------------------------------------------------------ results


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "platform", "migrations"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "postgres": admin_sync("SHOW server_version")[0][0],
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def base_settings() -> dict[str, Any]:
    return {
        "git_commit": git_commit(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return path


def table(rows: Iterable[list[str]], header: list[str]) -> str:
    rows = [header, *rows]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    lines = []
    for j, r in enumerate(rows):
        lines.append(
            "  ".join(
                str(c).rjust(w) if i else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
