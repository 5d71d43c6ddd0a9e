"""Import benchmark: ``nestpoint import`` of a legacy export (members with children and
opening balances) against a raw ``COPY`` of the same files into plain tables.

1. A fresh database (``nestpoint_bench_import``) migrated, with the bench tenant and its
   stores (``seed.make_tenant``).
2. Three CSV files in ``var/bench/import/``: ``members.csv`` (``--members`` rows: legacy id,
   phone, name, gender, birthday, home store, joined at, tags, guardian's consent),
   ``children.csv`` (a child for every other member) and ``balances.csv`` (an opening
   balance with its expiry for every member).
3. ``nestpoint import members|children|balances FILE --tenant bench-chain``, one process
   each, as the application role (every row checked, encrypted, staged with ``COPY`` and
   merged set-based): the seconds from start to exit, summed.
4. ``COPY`` of the same three files into tables of text columns in the same database
   (asyncpg ``copy_to_table``): the seconds, summed. ratio = import / COPY.

``make bench`` runs 1,000,000 members; ``--members 20000`` is a quick run.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import subprocess
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import seed
from common import (
    STATE_DIR,
    STORE_CODES,
    TENANT_SLUG,
    admin,
    admin_sync,
    app_env,
    base_settings,
    create_database,
    member_phone,
    migrate,
    nestpoint_cmd,
    pg_host_port,
    write_result,
)

IMPORT_DB = "nestpoint_bench_import"
TARGET_RATIO = 2.0  # issue 15: the import within twice the raw COPY of the same file
KINDS = ("members", "children", "balances")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--members", type=int, default=1_000_000, help="members in the file")
    p.add_argument("--keep", action="store_true", help="keep the database afterwards")
    return p.parse_args(argv)


def write_files(members: int, directory: Path) -> dict[str, Path]:
    """The legacy export: members, a child for every other member, a balance each."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {kind: directory / f"{kind}.csv" for kind in KINDS}
    today = datetime.now(UTC).date()
    stores = STORE_CODES
    with (
        paths["members"].open("w", newline="") as m,
        paths["children"].open("w", newline="") as c,
        paths["balances"].open("w", newline="") as b,
    ):
        mw, cw, bw = csv.writer(m), csv.writer(c), csv.writer(b)
        mw.writerow(
            [
                "legacy_id",
                "phone",
                "name",
                "gender",
                "birthday",
                "home_store",
                "joined_at",
                "tags",
                "guardian_consent_at",
            ]
        )
        cw.writerow(["member_legacy_id", "legacy_id", "nickname", "gender", "birth_date"])
        bw.writerow(["member_legacy_id", "legacy_id", "points", "expires_at", "earned_at"])
        for n in range(members):
            joined = date(2019, 1, 1) + timedelta(days=n % 1800)
            mw.writerow(
                [
                    f"M{n}",
                    member_phone(n),
                    f"会员{n}",
                    "female" if n % 3 else "male",
                    date(1985 + n % 15, 1 + n % 12, 1 + n % 28).isoformat(),
                    stores[n % len(stores)],
                    f"{joined.isoformat()} 10:00:00",
                    "vip;formula" if n % 5 == 0 else "",
                    f"{joined.isoformat()} 10:05:00" if n % 2 == 0 else "",
                ]
            )
            if n % 2 == 0:
                born = today - timedelta(days=30 + n % 1000)
                cw.writerow([f"M{n}", f"C{n}", "宝宝", "female", born.isoformat()])
            expiry = today + timedelta(days=30 + n % 700)
            bw.writerow([f"M{n}", f"B{n}", 100 + n % 5000, expiry.isoformat(), joined.isoformat()])
    return paths


def run_import(kind: str, path: Path) -> dict[str, Any]:
    cmd = [*nestpoint_cmd(), "import", kind, str(path), "--tenant", TENANT_SLUG]
    started = time.perf_counter()
    done = subprocess.run(cmd, env=app_env(IMPORT_DB), capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"import {kind} failed: {done.stdout}{done.stderr}")
    print(f"    import {kind}: {seconds:.2f} s ({done.stdout.strip()})", flush=True)
    return {"seconds": round(seconds, 3), "output": done.stdout.strip()}


async def raw_copy(paths: dict[str, Path]) -> dict[str, float]:
    """COPY each file into a plain table of text columns (as the superuser)."""
    seconds: dict[str, float] = {}
    for kind, path in paths.items():
        with path.open(newline="") as f:
            header = next(csv.reader(f))
        columns = ", ".join(f"{c} text" for c in header)
        await admin(
            f"DROP TABLE IF EXISTS raw_{kind}",
            f"CREATE TABLE raw_{kind} ({columns})",
            database=IMPORT_DB,
        )
        host, port = pg_host_port()
        conn = await asyncpg.connect(host=host, port=int(port), database=IMPORT_DB)
        try:
            started = time.perf_counter()
            await conn.copy_to_table(
                f"raw_{kind}", source=str(path), format="csv", header=True, encoding="utf-8"
            )
            seconds[kind] = round(time.perf_counter() - started, 3)
        finally:
            await conn.close()
        print(f"    COPY {kind}: {seconds[kind]:.2f} s", flush=True)
    return seconds


def counts() -> dict[str, int]:
    row = admin_sync(
        "SELECT (SELECT count(*) FROM members), (SELECT count(*) FROM children),"
        " (SELECT count(*) FROM point_lots), (SELECT coalesce(sum(balance), 0) FROM"
        " point_accounts), (SELECT count(*) FROM point_entries WHERE kind = 'migration')",
        database=IMPORT_DB,
    )[0]
    return dict(
        zip(
            ["members", "children", "point_lots", "points", "migration_entries"],
            map(int, row),
            strict=True,
        )
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    print(f"==> import: {args.members:,} members with children and balances", flush=True)
    create_database(IMPORT_DB)
    migrate(IMPORT_DB)
    seed.make_tenant(IMPORT_DB)
    started = time.perf_counter()
    paths = write_files(args.members, STATE_DIR / "import")
    generate_s = time.perf_counter() - started
    sizes = {kind: path.stat().st_size for kind, path in paths.items()}
    imports = {kind: run_import(kind, path) for kind, path in paths.items()}
    import_s = sum(r["seconds"] for r in imports.values())
    outcome = counts()
    again = run_import("members", paths["members"])  # a second run changes nothing
    unchanged = counts() == outcome
    copy = asyncio.run(raw_copy(paths))
    copy_s = sum(copy.values())
    ratio = round(import_s / copy_s, 2)
    print(
        f"    import {import_s:.2f} s, COPY {copy_s:.2f} s, ratio {ratio:.2f}"
        f" ({args.members / import_s:,.0f} members/s end to end)",
        flush=True,
    )
    result = {
        "benchmark": "import",
        "members": args.members,
        "import_seconds": round(import_s, 3),
        "copy_seconds": round(copy_s, 3),
        "ratio": ratio,
        "target_ratio": TARGET_RATIO,
        "target_met": ratio <= TARGET_RATIO,
        "imports": imports,
        "copy": copy,
        "outcome": outcome,
        "second_run": again,
        "second_run_changed_nothing": unchanged,
        "settings": base_settings()
        | {
            "file_bytes": sizes,
            "generate_s": round(generate_s, 2),
            "import_command": f"nestpoint import <kind> FILE --tenant {TENANT_SLUG}",
            "copy_command": "asyncpg copy_to_table(format=csv) into text columns",
        },
    }
    path = write_result("import", result)
    print(f"    wrote {path}")
    if not args.keep:
        admin_sync(f"DROP DATABASE IF EXISTS {IMPORT_DB} WITH (FORCE)")
    return result


if __name__ == "__main__":
    main()
