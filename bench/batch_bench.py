"""Batch benchmark: points expiry, tier evaluation and the recomputation of the built-in
segments over 1,000,000 members (and 10,000,000 orders), against the same SQL run directly
with psql.

1. A template database with one tenant and ``members`` members, made with bulk SQL
   (``generate_series``) as the owner role inside a transaction bound to the tenant:
   members (encrypted phones, stored growth values and tiers), points accounts, lots (a share
   of members has a lot due to expire), the earn entries of those lots, growth entries inside
   and outside the growth window (a tenth of the members have growth that rolls off),
   orders (``ORDERS_PER_MEMBER`` a member on average over the last 500 days, one in fifty
   refunded, every twentieth member without any).
2. For each job, two fresh copies of the template (``CREATE DATABASE ... TEMPLATE``):
   - on one, ``nestpoint jobs run <job> --tenant <slug>`` (the job's own time, as printed);
   - on the other, the job's statements (``expiry_statements`` / ``tiers.jobs.statements``
     / ``segments.jobs.statements``, with the parameters bound literally), chunk by chunk
     as the job runs them, one transaction per chunk, through ``psql`` as the app role.
   Both must write the same rows; ratio = job seconds / SQL seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import seed
from common import (
    APP_ROLE,
    OWNER_ROLE,
    STATE_DIR,
    TENANT_SLUG,
    Stopwatch,
    admin_sync,
    app_env,
    base_settings,
    create_database,
    drop_database,
    migrate,
    nestpoint_cmd,
    pg_env,
    pg_host_port,
    table,
    tool,
    write_result,
)

TEMPLATE_DB = "nestpoint_bench_batch"
# The job against its SQL measures what the job adds to its statements: without the pause a
# job takes between chunks to leave the tills their share (mixed_bench.py keeps it).
NO_PAUSE = {"NESTPOINT_JOB_CHUNK_PAUSE_RATIO": "0"}
RUN_DB = "nestpoint_bench_batch_run"
TARGET_RATIO = 1.2
JOBS = {"expire-points": "expiry", "evaluate-tiers": "tiers", "recompute-segments": "segments"}
DEFAULT_EXPIRING_PCT = 25
ORDERS_PER_MEMBER = 10  # on average: 10,000,000 orders for 1,000,000 members
QUICK_MEMBERS = 100_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--members", type=int, default=int(os.environ.get("BENCH_BATCH_MEMBERS", 1_000_000))
    )
    p.add_argument(
        "--expiring-pct",
        type=int,
        default=DEFAULT_EXPIRING_PCT,
        help="share of members with a lot due to expire",
    )
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="rebuild the template database even when an identical one exists",
    )
    p.add_argument("--only", choices=sorted(JOBS), action="append")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_MEMBERS:,} members (a smoke run)")
    args = p.parse_args(argv)
    if args.quick:
        args.members = QUICK_MEMBERS
    return args


# ------------------------------------------------------------------ the data

TIER_OF_GROWTH = (
    "CASE WHEN {g} >= 15000 THEN 'diamond' WHEN {g} >= 5000 THEN 'gold'"
    " WHEN {g} >= 1000 THEN 'silver' ELSE 'bronze' END"
)
# In-window growth of member n, and growth that has left the window for every tenth member.
GROWTH_IN = "(({n})::bigint * 7919 % 20000)"
GROWTH_OLD = "(CASE WHEN {n} % 10 = 0 THEN 3000 ELSE 0 END)"


def build_template(members: int, expiring_pct: int) -> dict[str, Any]:
    started = time.perf_counter()
    print(f"==> batch set-up: {TEMPLATE_DB} with {members:,} members", flush=True)
    create_database(TEMPLATE_DB)
    migrate(TEMPLATE_DB)
    tenant = seed.make_tenant(TEMPLATE_DB)
    now = datetime.now(UTC).replace(microsecond=0)
    stored = f"({GROWTH_IN.format(n='s.n')} + {GROWTH_OLD.format(n='s.n')})"
    overrides = {
        "growth_value": stored,
        "tier_code": TIER_OF_GROWTH.format(g=stored),
        # half the members' tiers are still protected (no downgrade yet)
        "tier_protected_until": "CASE WHEN s.n % 20 < 10 THEN NULL"
        " ELSE p.now + interval '30 days' END",
    }
    asyncio.run(
        seed.insert_members(
            TEMPLATE_DB,
            tenant.id,
            list(tenant.stores.values()),
            members,
            entry_tier="bronze",
            names=False,
            accounts=False,
            overrides=overrides,
            progress=True,
            now=now,
        )
    )
    print(f"    members in {time.perf_counter() - started:.0f} s", flush=True)
    asyncio.run(_ledgers(tenant.id, members, expiring_pct, now))
    asyncio.run(_orders(tenant.id, next(iter(tenant.stores.values())), members, now))
    admin_sync("VACUUM ANALYZE", database=TEMPLATE_DB)
    print(f"    done in {time.perf_counter() - started:.0f} s", flush=True)
    return {"tenant": tenant.as_dict(), "setup_s": round(time.perf_counter() - started, 1)}


async def _ledgers(tenant_id: str, members: int, expiring_pct: int, now: datetime) -> None:
    """Lots, their earn entries, accounts and growth entries, as the owner, in bulk SQL."""
    import asyncpg

    host, port = pg_host_port()
    conn = await asyncpg.connect(host=host, port=int(port), user=OWNER_ROLE, database=TEMPLATE_DB)
    member = "md5('nestpoint-bench:' || n)::uuid"
    due = f"(n % 100 < {expiring_pct})"
    steps = {
        "lots": f"""
            INSERT INTO point_lots (tenant_id, id, member_id, amount, remaining, source,
                                    order_id, line_no, earned_at, available_at, expires_at)
            SELECT $1::uuid, md5('lot-a:' || n)::uuid, {member}, 100 + n % 900, 100 + n % 900,
                   'earn', NULL::uuid, NULL::int, $2::timestamptz - interval '700 days',
                   $2::timestamptz - interval '693 days',
                   $2::timestamptz - interval '1 day' - make_interval(hours => n % 240)
            FROM generate_series(1, $3::int) n WHERE {due}
            UNION ALL
            SELECT $1::uuid, md5('lot-b:' || n)::uuid, {member}, 50 + n % 500, 50 + n % 500,
                   'earn', NULL::uuid, NULL::int, $2::timestamptz - interval '100 days',
                   $2::timestamptz - interval '93 days', $2::timestamptz + interval '400 days'
            FROM generate_series(1, $3::int) n""",
        "entries": f"""
            INSERT INTO point_entries (tenant_id, id, member_id, kind, amount, balance_after,
                                       lot_id, cause_type, cause_id, line_no, reason, actor,
                                       idempotency_key, created_at)
            SELECT $1::uuid, gen_random_uuid(), {member}, 'earn', 100 + n % 900, 100 + n % 900,
                   md5('lot-a:' || n)::uuid, 'order', md5('order-a:' || n), 1, '', '', NULL::text,
                   $2::timestamptz - interval '700 days'
            FROM generate_series(1, $3::int) n WHERE {due}
            UNION ALL
            SELECT $1::uuid, gen_random_uuid(), {member}, 'earn', 50 + n % 500,
                   CASE WHEN {due} THEN 100 + n % 900 ELSE 0 END + 50 + n % 500,
                   md5('lot-b:' || n)::uuid, 'order', md5('order-b:' || n), 1, '', '', NULL::text,
                   $2::timestamptz - interval '100 days'
            FROM generate_series(1, $3::int) n""",
        "accounts": f"""
            INSERT INTO point_accounts (tenant_id, member_id, balance, debt, held,
                                        lifetime_earned, earned_day, earned_today, updated_at)
            SELECT $1::uuid, {member},
                   CASE WHEN {due} THEN 100 + n % 900 ELSE 0 END + 50 + n % 500, 0, 0,
                   CASE WHEN {due} THEN 100 + n % 900 ELSE 0 END + 50 + n % 500, '', 0,
                   $2::timestamptz - interval '100 days'
            FROM generate_series(1, $3::int) n""",
        "growth": f"""
            INSERT INTO growth_entries (tenant_id, id, member_id, amount, source, cause_id,
                                        occurred_at)
            SELECT $1::uuid, gen_random_uuid(), {member}, {GROWTH_IN.format(n="n")}, 'order',
                   md5('order-b:' || n), $2::timestamptz - make_interval(days => n % 300)
            FROM generate_series(1, $3::int) n
            UNION ALL
            SELECT $1::uuid, gen_random_uuid(), {member}, {GROWTH_OLD.format(n="n")}, 'order',
                   md5('order-old:' || n), $2::timestamptz - interval '400 days'
            FROM generate_series(1, $3::int) n WHERE n % 10 = 0""",
    }
    try:
        for name, sql in steps.items():
            t0 = time.perf_counter()
            async with conn.transaction():
                await conn.execute("SELECT set_config('nestpoint.tenant_id', $1, true)", tenant_id)
                status = await conn.execute(sql, uuid.UUID(tenant_id), now, members)
            print(
                f"    {name}: {status.split()[-1]} rows in {time.perf_counter() - t0:.0f} s",
                flush=True,
            )
    finally:
        await conn.close()


async def _orders(tenant_id: str, store_id: str, members: int, now: datetime) -> None:
    """Orders of the members (for the built-in segments), as the owner, in bulk SQL: member
    n has 1 to 2 * ORDERS_PER_MEMBER - 1 orders spread over the last 500 days."""
    import asyncpg

    host, port = pg_host_port()
    conn = await asyncpg.connect(host=host, port=int(port), user=OWNER_ROLE, database=TEMPLATE_DB)
    sql = f"""
        INSERT INTO orders (tenant_id, id, channel, external_id, store_id, member_id, status,
                            paid_at, total_fen, cash_fen, points_used, points_value_fen,
                            coupons, points_earned, refunded_fen, response, created_at)
        SELECT $1::uuid, md5('order-s:' || n || ':' || k)::uuid, 'pos',
               'bench-' || n || '-' || k, $4::uuid, md5('nestpoint-bench:' || n)::uuid,
               CASE WHEN (n + k) % 50 = 0 THEN 'refunded' ELSE 'paid' END,
               $2::timestamptz - make_interval(days => ((n::bigint * 31 + k * 97) % 500)::int,
                                               hours => (n + k) % 24),
               1000 + (n::bigint * 13 + k * 7919) % 60000,
               1000 + (n::bigint * 13 + k * 7919) % 60000, 0, 0, '[]'::json, 0,
               CASE WHEN (n + k) % 50 = 0 THEN 1000 + (n::bigint * 13 + k * 7919) % 60000
                    ELSE 0 END,
               '{{}}'::json, $2::timestamptz
        FROM generate_series(1, $3::int) n
        CROSS JOIN LATERAL generate_series(1, n % {2 * ORDERS_PER_MEMBER - 1} + 1) k
        WHERE n % 20 <> 0"""
    try:
        t0 = time.perf_counter()
        async with conn.transaction():
            await conn.execute("SELECT set_config('nestpoint.tenant_id', $1, true)", tenant_id)
            status = await conn.execute(
                sql, uuid.UUID(tenant_id), now, members, uuid.UUID(store_id)
            )
        print(
            f"    orders: {status.split()[-1]} rows in {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    finally:
        await conn.close()


def fingerprint(members: int, expiring_pct: int) -> str:
    """What the template depends on: the schema's migrations, the set-up code, the sizes.

    An identical template is reused (building it takes minutes); ``--rebuild`` forces it.
    """
    import hashlib
    import inspect

    from common import ROOT

    digest = hashlib.sha256(f"{members}:{expiring_pct}".encode())
    files = sorted(ROOT.glob("migrations/versions/*.py")) + sorted(
        ROOT.glob("plugins/**/versions/*.py")
    )
    for path in [*files, Path(seed.__file__)]:
        digest.update(path.read_bytes())
    for fn in (build_template, _ledgers, _orders):
        digest.update(inspect.getsource(fn).encode())
    digest.update((TIER_OF_GROWTH + GROWTH_IN + GROWTH_OLD + str(ORDERS_PER_MEMBER)).encode())
    return digest.hexdigest()[:16]


def template_fingerprint() -> str | None:
    rows = admin_sync(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database"
        f" WHERE datname = '{TEMPLATE_DB}'"
    )
    comment = rows[0][0] if rows else None
    return comment.removeprefix("bench:") if comment else None


# ------------------------------------------------------------------ the two ways to run a job


def copy_template(target: str = RUN_DB) -> None:
    """A fresh ``target`` database, a file copy of the template."""
    admin_sync(
        f"DROP DATABASE IF EXISTS {target} WITH (FORCE)",
        f"CREATE DATABASE {target} OWNER {OWNER_ROLE} TEMPLATE {TEMPLATE_DB} STRATEGY FILE_COPY",
        "CHECKPOINT",
    )


def run_job(job: str) -> dict[str, Any]:
    """``nestpoint jobs run <job> --tenant <slug>``: the job's time as the CLI prints it."""
    cmd = [*nestpoint_cmd(), "jobs", "run", job, "--tenant", TENANT_SLUG]
    with Stopwatch() as sw:
        result = subprocess.run(
            cmd, env=app_env(RUN_DB, **NO_PAUSE), capture_output=True, text=True, check=False
        )
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")
    match = re.search(r": (.*) in ([\d.]+) s$", result.stdout.strip(), re.MULTILINE)
    if not match:
        raise SystemExit(f"unexpected output: {result.stdout}")
    return {
        "seconds": float(match.group(2)),
        "process_seconds": round(sw.seconds, 2),
        "output": match.group(1),
    }


class PsqlVariable(str):
    """A parameter psql fills in from its own variable (``:'name'``), set by ``\\gset``."""


def _literal(value: object) -> str:
    if isinstance(value, PsqlVariable):
        return f":'{value}'::uuid"
    if isinstance(value, datetime):
        return f"'{value.astimezone(UTC).isoformat()}'::timestamptz"
    if isinstance(value, uuid.UUID):
        return f"'{value}'::uuid"
    return "'" + str(value).replace("'", "''") + "'"


class Prepared:
    """A job statement as the job's driver sends it: compiled for asyncpg (``$n`` parameters
    with the casts SQLAlchemy adds), prepared once in psql and executed with each chunk's
    values, so the server plans it as it plans the job's own prepared statement (a literal
    in its place can get another plan altogether)."""

    def __init__(self, name: str, sql: str, types: dict[str, Any]) -> None:
        from sqlalchemy.dialects.postgresql.asyncpg import dialect

        from nestpoint.db.sql import typed_text

        compiled = typed_text(sql, types).compile(dialect=dialect())
        self.name, self.sql, self.positions = name, compiled.string, list(compiled.positiontup)

    def prepare(self) -> str:
        return f"PREPARE {self.name} AS {self.sql};"

    def execute(self, params: dict[str, object]) -> str:
        args = ", ".join(_literal(params[p]) for p in self.positions)
        return f"EXECUTE {self.name}({args})"


def sql_script(job: str, tenant_id: uuid.UUID, now: datetime) -> str:
    """The job's statements as the job sends them: each prepared once (:class:`Prepared`),
    then for each chunk of members, in its own transaction, the advisory lock, the chunk's
    upper end (``members.jobs.NEXT_UPTO_SQL``, kept in a psql variable), the job's
    statements, and the rest only when the first ones found work (as the job skips them).
    Each statement is named (``\\echo``) and timed."""
    from common import use_app_env

    from nestpoint.members.jobs import CHUNK_TYPES, FIRST_AFTER, NEXT_UPTO_SQL, chunk_params
    from nestpoint.points.jobs import EXPIRED_TOTAL, PARAMETER_TYPES, expiry_statements
    from nestpoint.settings import get_settings
    from nestpoint.tiers.jobs import evaluation_params, parameter_types, statements

    use_app_env(RUN_DB)  # the job's settings (its chunk size)
    run = uuid.uuid4().hex
    if job == "expire-points":
        sql = expiry_statements("postgresql") | {"total": EXPIRED_TOTAL}
        params: dict[str, object] = {"tenant": tenant_id, "now": now}
        types = dict(PARAMETER_TYPES)
        first, rest = ["lock", "entries"], ["total", "accounts", "lots", "events"]
        lock_key = f"points.expire:{tenant_id}"
    elif job == "recompute-segments":
        from nestpoint.segments import jobs as segment_jobs
        from nestpoint.segments.builtin import Thresholds

        zone = _program().zone
        today = now.astimezone(zone).date()
        sql = segment_jobs.statements("postgresql")
        params = segment_jobs.recompute_params(Thresholds(), tenant_id, today, zone)
        types = segment_jobs.parameter_types()
        first, rest = ["upsert", "stale"], []
        lock_key = f"segments.recompute:{tenant_id}"
    else:
        program = _program()
        sql = statements("postgresql", program)
        params = evaluation_params(program, tenant_id, now, run)
        types = parameter_types(params)
        first, rest = ["growth", "growth_zero", "changes"], ["events", "apply"]
        lock_key = f"tiers.evaluate:{tenant_id}"
    prepared = {name: Prepared(name, sql[name], types) for name in first + rest}
    next_upto = Prepared("next_upto", NEXT_UPTO_SQL, CHUNK_TYPES)
    size = get_settings().job_chunk_members
    members = int(admin_sync("SELECT count(*) FROM members", database=RUN_DB)[0][0])
    lines = ["\\timing on", f"\\set after {FIRST_AFTER}", next_upto.prepare()]
    lines += [statement.prepare() for statement in prepared.values()]
    for number in range(members // size + 1):  # as many chunks as the job runs
        chunk = params | {"run": f"{run}.{number}", "after": PsqlVariable("after")}
        chunk |= {"upto": PsqlVariable("upto")}
        bound = chunk_params(tenant_id, FIRST_AFTER, size) | {"after": PsqlVariable("after")}
        lines += [
            "\\echo begin", "BEGIN;",
            "\\echo set_config",
            f"SELECT set_config('nestpoint.tenant_id', '{tenant_id}', true),"
            " set_config('nestpoint.store_id', '', true);",
            "\\echo advisory_lock", f"SELECT pg_advisory_xact_lock(hashtext('{lock_key}'));",
            "\\echo next_upto", next_upto.execute(bound) + " \\gset", "\\set upto :coalesce",
        ]  # fmt: skip
        for name in first:
            lines += [f"\\echo {name}", prepared[name].execute(chunk) + ";"]
        lines += ["SELECT :ROW_COUNT > 0 AS found \\gset", "\\if :found"]
        for name in rest:
            lines += [f"\\echo {name}", prepared[name].execute(chunk) + ";"]
        lines += ["\\endif", "\\echo commit", "COMMIT;", "\\set after :upto"]
    return "\n".join([*lines, ""])


def _program() -> Any:
    """The tenant's programme, loaded the way the job loads it (``load_program``)."""
    from common import use_app_env

    use_app_env(RUN_DB)
    tenant_id = uuid.UUID(str(admin_sync("SELECT id FROM tenants", database=RUN_DB)[0][0]))

    async def go() -> Any:
        from nestpoint.context import tenant_context
        from nestpoint.db import get_database, scoped_session
        from nestpoint.loyalty.service import load_program

        try:
            with tenant_context(tenant_id):
                async with scoped_session() as session:
                    return await load_program(session)
        finally:
            await get_database().dispose()

    return asyncio.run(go())


def run_sql(job: str) -> dict[str, Any]:
    tenant_id = uuid.UUID(str(admin_sync("SELECT id FROM tenants", database=RUN_DB)[0][0]))
    script = sql_script(job, tenant_id, datetime.now(UTC))
    path = STATE_DIR / f"{JOBS[job]}.sql"
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(script)
    cmd = [tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(path)]
    with Stopwatch() as sw:
        result = subprocess.run(
            cmd, env=pg_env(APP_ROLE, RUN_DB), capture_output=True, text=True, check=False
        )
    if result.returncode != 0:
        raise SystemExit(f"psql failed:\n{result.stdout}\n{result.stderr}")
    return {
        "seconds": round(sw.seconds, 3),
        "statement_ms": statement_times(result.stdout),
        "chunks": result.stdout.splitlines().count("commit"),
        "script": str(path.relative_to(STATE_DIR.parent.parent)),
    }


def statement_times(output: str) -> dict[str, float]:
    """Each named statement's total time over the chunks: psql prints the name (``\\echo``),
    maybe the statement's rows, then its time."""
    totals: dict[str, float] = {}
    name = None
    for line in output.splitlines():
        if re.fullmatch(r"[a-z_]+", line):
            name = line
        elif line.startswith("Time: ") and name:
            totals[name] = round(totals.get(name, 0.0) + float(line.split()[1]), 1)
            name = None
    return totals


def outcome() -> dict[str, int]:
    """What a run wrote, to check both ways did the same work."""
    row = admin_sync(
        """SELECT
            (SELECT count(*) FROM point_entries WHERE kind = 'expire'),
            (SELECT coalesce(sum(balance), 0) FROM point_accounts),
            (SELECT count(*) FROM point_lots WHERE remaining > 0),
            (SELECT count(*) FROM tier_changes WHERE reason <> 'join'),
            (SELECT coalesce(sum(growth_value), 0) FROM members),
            (SELECT count(*) FROM outbox_events WHERE type IN ('points.expired', 'tier.changed')),
            (SELECT count(*) FROM member_segments),
            (SELECT count(*) FROM member_segments WHERE rfm_group = 'important_value'),
            (SELECT count(*) FROM member_segments WHERE value_circle = 'core'),
            (SELECT count(*) FROM member_segments WHERE lifecycle = 'silent'),
            (SELECT coalesce(sum(monetary_fen + frequency + coalesce(recency_days, 0)), 0)
             FROM member_segments)
        """,
        database=RUN_DB,
    )[0]
    keys = (
        "expire_entries",
        "points_balance_total",
        "lots_with_points",
        "tier_changes",
        "growth_total",
        "events",
        "segment_rows",
        "important_value",
        "core_circle",
        "silent",
        "segment_values_total",
    )
    return {k: int(v) for k, v in zip(keys, row, strict=True)}


# ------------------------------------------------------------------ main


def ensure_template(
    members: int, expiring_pct: int = DEFAULT_EXPIRING_PCT, *, rebuild: bool = False
) -> str:
    """The template database for ``members`` members, built unless an identical one exists
    (its set-up details in ``TEMPLATE_SETUP``); returns its name."""
    global TEMPLATE_DB
    if members != 1_000_000:  # other sizes keep templates of their own
        TEMPLATE_DB = f"nestpoint_bench_batch_{members}"
    wanted = fingerprint(members, expiring_pct)
    TEMPLATE_SETUP.clear()
    if rebuild or template_fingerprint() != wanted:
        TEMPLATE_SETUP.update(build_template(members, expiring_pct))
        admin_sync(f"COMMENT ON DATABASE {TEMPLATE_DB} IS 'bench:{wanted}'")
    else:
        TEMPLATE_SETUP["reused_template"] = True
        print(f"==> reusing {TEMPLATE_DB}: built from the same migrations and set-up code")
    return TEMPLATE_DB


TEMPLATE_SETUP: dict[str, Any] = {}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    ensure_template(args.members, args.expiring_pct, rebuild=args.rebuild)
    setup = TEMPLATE_SETUP
    sizes = admin_sync(
        f"SELECT pg_size_pretty(pg_database_size('{TEMPLATE_DB}'))",
    )[0][0]
    counts = admin_sync(
        "SELECT (SELECT count(*) FROM members), (SELECT count(*) FROM point_lots),"
        " (SELECT count(*) FROM growth_entries), (SELECT count(*) FROM point_entries),"
        " (SELECT count(*) FROM orders)",
        database=TEMPLATE_DB,
    )[0]
    results: dict[str, Any] = {}
    for job in args.only or list(JOBS):
        name = JOBS[job]
        print(
            f"==> {job}: the job on a fresh copy, then its SQL through psql on another", flush=True
        )
        copy_template()
        job_run = run_job(job)
        job_outcome = outcome()
        copy_template()
        sql_run = run_sql(job)
        sql_outcome = outcome()
        drop_database(RUN_DB)
        ratio = round(job_run["seconds"] / sql_run["seconds"], 3)
        same = job_outcome == sql_outcome
        print(
            f"    job {job_run['seconds']:.2f} s, SQL {sql_run['seconds']:.2f} s,"
            f" ratio {ratio:.2f}{'' if same else '  (OUTCOMES DIFFER)'}",
            flush=True,
        )
        results[name] = {
            "benchmark": f"batch-{name}",
            "job": job,
            "job_seconds": job_run["seconds"],
            "sql_seconds": sql_run["seconds"],
            "ratio": ratio,
            "target_ratio": TARGET_RATIO,
            "target_met": ratio <= TARGET_RATIO,
            "job_run": job_run,
            "sql_run": sql_run,
            "same_outcome": same,
            "outcome": job_outcome,
            "sql_outcome": sql_outcome,
            "settings": base_settings()
            | {
                "members": int(counts[0]),
                "point_lots": int(counts[1]),
                "growth_entries": int(counts[2]),
                "point_entries": int(counts[3]),
                "orders": int(counts[4]),
                "expiring_pct": args.expiring_pct,
                "database_size": sizes,
                "template_setup_s": setup.get("setup_s"),
                "template_reused": bool(setup.get("reused_template")),
                "job_command": f"nestpoint jobs run {job} --tenant {TENANT_SLUG}",
                "sql_command": "psql -X -f <script> as nestpoint_app (one transaction per chunk)",
            },
        }
        path = write_result(f"batch-{name}", results[name])
        print(f"    wrote {path}")
    print()
    print(summary_table(results))
    return results


def summary_table(results: dict[str, Any]) -> str:
    rows = [
        [
            f"batch {name}",
            f"{r['job_seconds']:.2f}",
            f"{r['sql_seconds']:.2f}",
            f"{r['ratio']:.2f}",
            "ok" if r["target_met"] else "MISSED",
        ]
        for name, r in results.items()
    ]
    return table(rows, ["benchmark", "job s", "SQL s", "ratio", f"target <= {TARGET_RATIO}"])


if __name__ == "__main__":
    main()
