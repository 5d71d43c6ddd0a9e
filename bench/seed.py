"""Benchmark data: a tenant made through the services, members made in bulk.

The tenant, its stores, its API keys and its loyalty programme go through the same service
functions the API calls. Members are written in bulk, as the owner role inside a transaction
bound to the tenant (so row-level security checks every row), producing the rows
``members.service.create_member`` would: the phone sealed under the member's own data key
(wrapped by ``pii.keyring()``) and bound to tenant and member, the keyed phone hash, the
entry tier, a ``point_accounts`` row and the ``join`` tier change.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from common import (
    CHECK_COUPONS,
    COUPON_CODE_SQL,
    COUPON_ID_SQL,
    MEMBER_ID_SQL,
    MEMBER_PRICE_PERCENT,
    ORDER_COUPON_OFF_FEN,
    ORDER_COUPONS,
    OWNER_ROLE,
    PII_HASH_KEY,
    STORE_CODES,
    TENANT_SLUG,
    TIER_BENEFITS,
    admin_sync,
    member_id,
    member_phone,
    pg_host_port,
    use_app_env,
)


@dataclass
class Tenant:
    id: str
    slug: str
    stores: dict[str, str]
    hq_key: str
    store_key: str
    store_key_store: str
    tiers: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def enable_pgcrypto(database: str) -> None:
    """pgbench computes the phone's keyed hash with pgcrypto's hmac() (see README)."""
    admin_sync("CREATE EXTENSION IF NOT EXISTS pgcrypto", database=database)
    check = admin_sync(
        "SELECT encode(hmac(convert_to('+86' || '13800000001', 'UTF8'),"
        f" decode('{PII_HASH_KEY}', 'base64'), 'sha256'), 'hex')",
        database=database,
    )[0][0]
    from nestpoint.members.pii import keyring

    if check != keyring().lookup_hash("+8613800000001"):
        raise SystemExit("pgcrypto's hmac does not match the keyring's lookup hash")


# The catalog of the benefits benchmark: the entry tier holds three benefits (every member
# holds them: common.TIER_BENEFITS), and one gift is on the points exchange. The member
# price is what the order benchmark's feeding lines claim (benefits.pricing): each order
# records one use of it.
BENEFITS: list[dict[str, Any]] = [
    {"code": "member-price", "name": "会员价", "type": "core.member_price",
     "options": {"discount_percent": MEMBER_PRICE_PERCENT, "categories": ["feeding"]},
     "quota": 10_000, "period": "day"},
    {"code": "free-shipping", "name": "包邮", "type": "core.free_shipping", "quota": 4},
    {"code": "birthday-gift", "name": "生日礼", "type": "core.birthday_gift", "period": "year"},
    {"code": "bottle", "name": "奶瓶", "type": "core.gift", "exchange_points": 500,
     "stock": 10000, "per_member_limit": 1, "period": "grant"},
]  # fmt: skip

# The coupons benchmark's templates (docs/coupons.md): every member holds one coupon of each
# of the three (bench/common.py), which the till's check answers about: a 满199减30 (usable
# on a basket of at least 199 yuan), 12% off at most 50 yuan (always usable), and 20 yuan off
# at another store than the till's (never usable there). The order_coupon benchmark pays
# each order with a coupon of the fourth (满10减5: every basket of order.lua reaches it).
COUPON_TEMPLATES: list[dict[str, Any]] = [
    {"code": "bench-199-30", "name": "满199减30", "kind": "amount_off", "threshold_fen": 19900,
     "amount_off_fen": 3000, "valid_days": 365},
    {"code": "bench-88", "name": "88折 最高减50", "kind": "percent_off", "percent_off": 12,
     "max_off_fen": 5000, "valid_days": 365},
    {"code": "bench-sh-20", "name": "上海店立减20", "kind": "amount_off", "amount_off_fen": 2000,
     "store_codes": [STORE_CODES[1]], "valid_days": 365},
]  # fmt: skip
assert len(COUPON_TEMPLATES) == CHECK_COUPONS
ORDER_COUPON: dict[str, Any] = {
    "code": "bench-order", "name": "满10减5", "kind": "amount_off", "threshold_fen": 1000,
    "amount_off_fen": ORDER_COUPON_OFF_FEN, "valid_days": 365,
}  # fmt: skip


def make_tenant(database: str) -> Tenant:
    """Tenant, stores, HQ key, a store key and a programme with earn rules, via services."""
    use_app_env(database)

    async def go() -> Tenant:
        from nestpoint.benefits.schemas import BenefitSpec
        from nestpoint.benefits.service import put_benefit
        from nestpoint.context import Actor, acting_as, tenant_context
        from nestpoint.coupons.schemas import TemplateIn
        from nestpoint.coupons.service import put_template
        from nestpoint.db import get_database, scoped_session
        from nestpoint.loyalty.schemas import DEFAULT_TIERS, EarnRules, ProgramSpec
        from nestpoint.loyalty.service import put_program
        from nestpoint.tenancy import service
        from nestpoint.tenancy.schemas import ApiKeyCreate, StoreCreate, TenantCreate

        try:
            with acting_as(Actor("system", name="bench")):
                async with scoped_session() as session:
                    tenant = await service.create_tenant(
                        session, TenantCreate(slug=TENANT_SLUG, name="Bench Chain 基准连锁")
                    )
                    tenant_id = tenant.id
                stores: dict[str, str] = {}
                with tenant_context(tenant_id):
                    async with scoped_session() as session:
                        for code in STORE_CODES:
                            store = await service.create_store(
                                session, StoreCreate(code=code, name=f"Store {code}")
                            )
                            stores[code] = str(store.id)
                        spec = ProgramSpec(
                            earn_rules=EarnRules(
                                category_multipliers={"feeding": 200, "toys": 50},
                                store_multipliers={STORE_CODES[1]: 150},
                                excluded_categories=["gift"],
                            ),
                            tiers=[
                                DEFAULT_TIERS[0].model_copy(update={"benefits": TIER_BENEFITS}),
                                *DEFAULT_TIERS[1:],
                            ],
                        )
                        program, _ = await put_program(session, spec)
                        for benefit in BENEFITS:
                            await put_benefit(session, BenefitSpec.model_validate(benefit))
                        for template in [*COUPON_TEMPLATES, ORDER_COUPON]:
                            fields = {k: v for k, v in template.items() if k != "code"}
                            await put_template(
                                session, template["code"], TemplateIn.model_validate(fields)
                            )
                        _, hq_key = await service.create_api_key(
                            session, ApiKeyCreate(name="bench HQ"), "bench"
                        )
                        _, store_key = await service.create_api_key(
                            session,
                            ApiKeyCreate(
                                name=f"bench till {STORE_CODES[0]}",
                                kind="store",
                                store_code=STORE_CODES[0],
                            ),
                            "bench",
                        )
            return Tenant(
                id=str(tenant_id),
                slug=TENANT_SLUG,
                stores=stores,
                hq_key=hq_key,
                store_key=store_key,
                store_key_store=STORE_CODES[0],
                tiers=[t.code for t in program.tiers],
            )
        finally:
            await get_database().dispose()

    return asyncio.run(go())


def new_store_key(database: str) -> str:
    """A new store key (store ``STORE_CODES[0]``) for the bench tenant of ``database`` (a
    copy of a template whose keys were shown once, when it was built)."""
    use_app_env(database)

    async def go() -> str:
        from sqlalchemy import select

        from nestpoint.context import Actor, acting_as, tenant_context
        from nestpoint.db import get_database, scoped_session
        from nestpoint.tenancy import service
        from nestpoint.tenancy.models import Tenant as TenantRow
        from nestpoint.tenancy.schemas import ApiKeyCreate

        try:
            with acting_as(Actor("system", name="bench")):
                async with scoped_session() as session:
                    tenant_id = await session.scalar(
                        select(TenantRow.id).where(TenantRow.slug == TENANT_SLUG)
                    )
                with tenant_context(tenant_id):
                    async with scoped_session() as session:
                        _, key = await service.create_api_key(
                            session,
                            ApiKeyCreate(
                                name="bench till (mixed)", kind="store", store_code=STORE_CODES[0]
                            ),
                            "bench",
                        )
            return key
        finally:
            await get_database().dispose()

    return asyncio.run(go())


# ------------------------------------------------------------------ members in bulk

MEMBER_COLUMNS = {
    # column: SQL over the staging row s (n, phone_hash, phone_enc, name_enc, data_key) and the
    # parameters p (tenant, stores, now, entry_tier)
    "tenant_id": "p.tenant",
    "id": "md5('nestpoint-bench:' || s.n)::uuid",
    "phone_hash": "s.phone_hash",
    "phone_enc": "s.phone_enc",
    "name_enc": "s.name_enc",
    "data_key": "s.data_key",
    "gender": "'unknown'",
    "birthday": "NULL",
    "home_store_id": "p.stores[1 + s.n % array_length(p.stores, 1)]",
    "join_channel": "'pos'",
    "join_store_id": "p.stores[1 + s.n % array_length(p.stores, 1)]",
    "joined_at": "p.now - make_interval(mins => s.n % 525600)",
    "tags": "'[]'::json",
    "status": "'active'",
    "merged_into_id": "NULL",
    "child_data_consent_at": "NULL",
    "child_data_consent_source": "NULL",
    "family_id": "NULL",
    "tier_code": "p.entry_tier",
    "growth_value": "0",
    "tier_since": "p.now - make_interval(mins => s.n % 525600)",
    "tier_protected_until": "NULL",
    "last_order_at": "NULL",
    "created_at": "p.now - make_interval(mins => s.n % 525600)",
    "updated_at": "p.now - make_interval(mins => s.n % 525600)",
}


def _pii_rows(tenant_id: uuid.UUID, start: int, stop: int, names: bool) -> list[tuple[Any, ...]]:
    """(n, phone_hash, phone_enc, name_enc, data_key) as ``create_member`` computes them:
    the phone and name sealed under the member's own data key, wrapped by the keyring."""
    from nestpoint.members import pii

    ring = pii.keyring()
    # The E.164 form is "+86" + the 11 digits; the parser confirms it for the batch's ends.
    for n in (start, stop - 1):
        assert pii.normalize_phone(member_phone(n)) == "+86" + member_phone(n)
    rows = []
    for n in range(start, stop):
        e164 = "+86" + member_phone(n)
        member = uuid.UUID(member_id(n))
        context = f"{tenant_id}:{member}".encode()
        data_key = pii.new_data_key(tenant_id, member)
        cipher = pii.member_cipher(tenant_id, member, data_key)
        rows.append(
            (
                n,
                ring.lookup_hash(e164),
                cipher.encrypt(e164, context=context),
                cipher.encrypt(f"会员{n}", context=context) if names else None,
                data_key,
            )
        )
    return rows


async def insert_members(
    database: str,
    tenant_id: str,
    store_ids: list[str],
    count: int,
    *,
    entry_tier: str,
    names: bool = True,
    accounts: bool = True,
    overrides: dict[str, str] | None = None,
    batch: int = 50_000,
    progress: bool = False,
    now: datetime | None = None,
) -> None:
    """Members 1..count with their points accounts and join tier changes, as the owner.

    ``overrides`` replaces the SQL of member columns (over the staging row ``s``, with
    ``$3`` the set-up's time); ``accounts=False`` leaves the points accounts to the caller.
    """
    import asyncpg

    from nestpoint.db import utcnow

    host, port = pg_host_port()
    conn = await asyncpg.connect(host=host, port=int(port), user=OWNER_ROLE, database=database)
    tid = uuid.UUID(tenant_id)
    columns = MEMBER_COLUMNS | (overrides or {})
    now = now or utcnow()
    try:
        await conn.execute(
            "CREATE TEMP TABLE bench_pii (n int PRIMARY KEY, phone_hash text, phone_enc text,"
            " name_enc text, data_key text)"
        )
        # Encryption is the slow part: batches in worker processes, copied in order.
        loop = asyncio.get_running_loop()
        with ProcessPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            pending = [
                loop.run_in_executor(
                    pool, _pii_rows, tid, start, min(count + 1, start + batch), names
                )
                for start in range(1, count + 1, batch)
            ]
            done = 0
            for future in pending:
                rows = await future
                await conn.copy_records_to_table("bench_pii", records=rows)
                done += len(rows)
                if progress:
                    print(f"    members: {done:,} of {count:,} encrypted", flush=True)
        async with conn.transaction():
            await conn.execute("SELECT set_config('nestpoint.tenant_id', $1, true)", str(tenant_id))
            await conn.execute(
                f"INSERT INTO members ({', '.join(columns)})"
                " WITH p AS (SELECT $1::uuid AS tenant, $2::uuid[] AS stores,"
                " $3::timestamptz AS now, $4::text AS entry_tier)"
                f" SELECT {', '.join(columns.values())} FROM bench_pii s, p ORDER BY s.n",
                tid,
                [uuid.UUID(s) for s in store_ids],
                now,
                entry_tier,
            )
            if accounts:
                await conn.execute(
                    "INSERT INTO point_accounts (tenant_id, member_id, balance, debt, held,"
                    " lifetime_earned, earned_day, earned_today, updated_at)"
                    " SELECT m.tenant_id, m.id, 0, 0, 0, 0, '', 0, m.created_at FROM members m"
                )
            await conn.execute(
                "INSERT INTO tier_changes (tenant_id, id, member_id, from_tier, to_tier, reason,"
                " growth_value, run_id, changed_at)"
                " SELECT m.tenant_id, gen_random_uuid(), m.id, NULL, $1, 'join', 0, '',"
                " m.joined_at FROM members m",
                entry_tier,
            )
        await conn.execute("DROP TABLE bench_pii")
    finally:
        await conn.close()


async def grant_tier_benefits(database: str, tenant_id: str) -> None:
    """Every member's entitlements to the entry tier's benefits, as the reconciliation
    (``benefits.service.sync_member``) would have written them at a first look-up: the
    benchmark measures the till's steady state, a member already seen."""
    import asyncpg

    host, port = pg_host_port()
    conn = await asyncpg.connect(host=host, port=int(port), user=OWNER_ROLE, database=database)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('nestpoint.tenant_id', $1, true)", tenant_id)
            await conn.execute(
                "INSERT INTO entitlements (tenant_id, id, member_id, benefit_id, source,"
                " source_ref, status, points_paid, granted_at)"
                " SELECT m.tenant_id, md5(b.code || ':' || m.id::text)::uuid, m.id, b.id,"
                " 'tier', '', 'active', 0,"
                " now() FROM members m JOIN benefits b ON b.code = ANY($1::text[])",
                TIER_BENEFITS,
            )
    finally:
        await conn.close()


async def issue_coupons(database: str, tenant_id: str, members: int, order_members: int) -> None:
    """Every member's coupons, with the rows ``coupons.service.issue`` writes (the coupon,
    valid ``valid_days`` from its issue; its ``issue`` event; the template's ``issued``
    count), as the owner in a transaction bound to the tenant: coupon k = 1..3 of every
    member from the check's templates, and k = 4.. (``ORDER_COUPONS`` of them) from the
    order template for members 1..``order_members``. Ids and codes as in bench/common.py;
    issued as an import (cause ``import``, ``bench:<k>``)."""
    import asyncpg

    host, port = pg_host_port()
    conn = await asyncpg.connect(host=host, port=int(port), user=OWNER_ROLE, database=database)
    n, k = "g.n", "g.k"
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('nestpoint.tenant_id', $1, true)", tenant_id)
            await conn.execute(
                "INSERT INTO coupons (tenant_id, id, template_id, member_id, code, status,"
                " valid_from, valid_until, cause_type, cause_id, issued_at)"
                f" SELECT t.tenant_id, {COUPON_ID_SQL.format(n=n, k=k)}, t.id,"
                f" {MEMBER_ID_SQL.format(n=n)}, {COUPON_CODE_SQL.format(n=n, k=k)}, 'available',"
                " p.at, p.at + make_interval(days => t.valid_days), 'import', 'bench:' || g.k,"
                " p.at"
                " FROM (SELECT n, k FROM generate_series(1, $1) n, generate_series(1, $2) k"
                "       UNION ALL SELECT n, k FROM generate_series(1, $3) n,"
                "       generate_series($2 + 1, $2 + $4) k) g"
                " JOIN coupon_templates t"
                "   ON t.code = CASE WHEN g.k <= $2 THEN ($5::text[])[g.k] ELSE $6 END,"
                " (SELECT now() AS at) p"
                " ORDER BY g.n, g.k",
                members,
                CHECK_COUPONS,
                order_members,
                ORDER_COUPONS,
                [t["code"] for t in COUPON_TEMPLATES],
                ORDER_COUPON["code"],
            )
            await conn.execute(
                "INSERT INTO coupon_events (tenant_id, id, coupon_id, kind, order_id, store_id,"
                " amount_fen, reason, created_at)"
                " SELECT c.tenant_id, gen_random_uuid(), c.id, 'issue', NULL, NULL, 0,"
                " c.cause_type || ':' || c.cause_id, c.issued_at FROM coupons c"
            )
            await conn.execute(
                "UPDATE coupon_templates t SET issued = t.issued + c.issued, updated_at = now()"
                " FROM (SELECT template_id, count(*) AS issued FROM coupons GROUP BY template_id) c"
                " WHERE t.id = c.template_id"
            )
    finally:
        await conn.close()
