"""Synthetic members, children and orders for the demo, made through the real services.

Deterministic per tenant (seeded by its slug) and only once: a tenant that already has
members is left alone, so ``nestpoint demo`` can be run again and again.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.benefits import service as benefits
from nestpoint.benefits.schemas import ExchangeIn, UseIn
from nestpoint.context import tenant_context
from nestpoint.coupons import service as coupons
from nestpoint.coupons.schemas import CheckIn, IssueIn
from nestpoint.db import scoped_session
from nestpoint.errors import Conflict, NestpointError
from nestpoint.members.models import Member
from nestpoint.members.schemas import MemberCreate
from nestpoint.members.service import create_member
from nestpoint.orders.schemas import OrderIn, PreviewIn, RefundIn
from nestpoint.orders.service import create_order, create_refund, preview
from nestpoint.tenancy.models import Store

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = ["芳", "静", "丽", "敏", "婷", "雪", "琳", "悦", "欣", "佳", "晨", "萌"]
CATALOGUE = [  # (sku, name, category, price in fen)
    ("MILK-S1", "婴儿配方奶粉 1段 800g", "feeding", 29800),
    ("MILK-S3", "幼儿配方奶粉 3段 800g", "feeding", 25800),
    ("BOTTLE-1", "宽口径玻璃奶瓶", "feeding", 12900),
    ("DIAPER-M", "纸尿裤 M 码 64 片", "diapers", 13900),
    ("DIAPER-L", "拉拉裤 L 码 44 片", "diapers", 11900),
    ("WIPES-80", "婴儿湿巾 80 抽 x 6", "diapers", 5900),
    ("LOTION-1", "婴儿润肤乳 200ml", "care", 8800),
    ("TOY-BLOCK", "早教积木 100 粒", "toys", 15900),
    ("NURSE-PAD", "防溢乳垫 100 片", "nursing", 4900),
    ("GIFT-CARD", "门店礼品卡 200 元", "gift-card", 20000),
]


def _phone(rng: random.Random) -> str:
    prefix = rng.choice(["135", "136", "138", "139", "150", "158", "186", "188"])
    return f"{prefix}{rng.randrange(10**8):08d}"


def _child(rng: random.Random, today: date) -> dict[str, object]:
    if rng.random() < 0.15:  # a pregnancy
        return {
            "due_date": (today + timedelta(days=rng.randrange(10, 250))).isoformat(),
            "nickname": "宝宝",
        }
    age_days = rng.choice(
        [
            rng.randrange(0, 180),
            rng.randrange(180, 365),
            rng.randrange(365, 1095),
            rng.randrange(1095, 2190),
        ]
    )
    return {
        "birth_date": (today - timedelta(days=age_days)).isoformat(),
        "gender": rng.choice(["female", "male"]),
        "nickname": rng.choice(["豆豆", "糖糖", "乐乐"]),
    }


async def seed_members(
    tenant_id: uuid.UUID, slug: str, count: int, batch: int = 100
) -> tuple[int, int]:
    """Enrol ``count`` members with children and past orders; returns (members, orders)."""
    rng = random.Random(slug)
    today = datetime.now(UTC).date()
    with tenant_context(tenant_id):
        async with scoped_session() as session:
            if await session.scalar(select(func.count()).select_from(Member)):
                return 0, 0
            stores = list(
                (
                    await session.scalars(
                        select(Store.code).where(Store.active).order_by(Store.code)
                    )
                ).all()
            )
        members = orders = 0
        seen: set[str] = set()
        while members < count:
            async with scoped_session() as session:
                for _ in range(min(batch, count - members)):
                    phone = _phone(rng)
                    while phone in seen:
                        phone = _phone(rng)
                    seen.add(phone)
                    has_children = rng.random() < 0.75
                    member = await create_member(
                        session,
                        MemberCreate.model_validate(
                            {
                                "phone": phone,
                                "name": rng.choice(SURNAMES) + rng.choice(GIVEN),
                                "gender": "female" if rng.random() < 0.85 else "male",
                                "home_store_code": rng.choice(stores),
                                "join_channel": rng.choice(["pos", "pos", "mini_program", "mall"]),
                                "tags": rng.sample(
                                    ["新客", "二胎", "奶粉", "纸尿裤", "会员日"],
                                    k=rng.randrange(0, 3),
                                ),
                                "consents": [
                                    {
                                        "channel": "sms",
                                        "granted": rng.random() < 0.7,
                                        "source": "till",
                                    }
                                ],
                                "guardian_consent": (
                                    {"granted": True, "source": "till"} if has_children else None
                                ),
                                "children": (
                                    [_child(rng, today) for _ in range(rng.choice([1, 1, 2]))]
                                    if has_children
                                    else []
                                ),
                            }
                        ),
                    )
                    members += 1
                    for _ in range(rng.choice([0, 1, 1, 2, 3, 5])):
                        await _order(session, rng, member.id, stores, today)
                        orders += 1
        # Walk-ins (no member) with a random generator of their own, so the members above
        # stay as they were: the analytics compare members with them (docs/analytics.md).
        orders += await _walk_ins(random.Random(f"{slug}:walk-ins"), stores, today, count // 2)
    return members, orders


async def _walk_ins(rng: random.Random, stores: list[str], today: date, count: int) -> int:
    """``count`` orders without a member over the last 180 days, at any hour from 08:00 to
    21:00 Shanghai time, every fifth refunded (one unit); returns how many."""
    async with scoped_session() as session:
        for n in range(count):
            sku, name, category, price = rng.choice(CATALOGUE)
            quantity = rng.randrange(1, 3)
            day = today - timedelta(days=rng.randrange(0, 180))
            paid_at = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(
                minutes=rng.randrange(0, 13 * 60)  # 00:00-13:00 UTC
            )
            paid_at = min(paid_at, datetime.now(UTC) - timedelta(minutes=1))
            order = OrderIn.model_validate(
                {
                    "channel": "pos",
                    "external_id": f"demo-walk-in-{uuid.UUID(int=rng.getrandbits(128)).hex}",
                    "store_code": rng.choice(stores),
                    "lines": [{"sku": sku, "name": name, "category": category,
                               "quantity": quantity, "unit_price_fen": price,
                               "paid_fen": price * quantity}],
                    "paid_at": paid_at.isoformat(),
                    "payment": {"cash_fen": price * quantity, "points_used": 0},
                }
            )  # fmt: skip
            await create_order(session, order)
            if n % 5 == 4:
                refund = RefundIn.model_validate(
                    {"external_id": "demo-refund", "lines": [{"line_no": 1, "quantity": 1}]}
                )
                await create_refund(session, "pos", order.external_id, refund)
    return count


async def _order(
    session: AsyncSession,
    rng: random.Random,
    member_id: uuid.UUID,
    stores: list[str],
    today: date,
) -> None:
    picks = rng.sample(CATALOGUE, k=rng.randrange(1, 4))
    lines: list[dict[str, Any]] = []
    for sku, name, category, price in picks:
        quantity = rng.randrange(1, 3)
        paid = price * quantity * rng.choice([100, 100, 95, 90]) // 100
        lines.append(
            {
                "sku": sku,
                "name": name,
                "category": category,
                "quantity": quantity,
                "unit_price_fen": price,
                "paid_fen": paid,
            }
        )
    total = sum(line["paid_fen"] for line in lines)
    paid_at = datetime.combine(
        today - timedelta(days=rng.randrange(0, 180)), datetime.min.time(), tzinfo=UTC
    ) + timedelta(hours=rng.randrange(2, 13))
    # Today's orders are paid before now: before 13:00 UTC some of those hours are ahead.
    paid_at = min(paid_at, datetime.now(UTC) - timedelta(minutes=1))
    await create_order(
        session,
        OrderIn.model_validate(
            {
                "channel": rng.choice(["pos", "pos", "pos", "mini_program", "mall"]),
                "external_id": f"demo-{uuid.UUID(int=rng.getrandbits(128)).hex}",
                "store_code": rng.choice(stores),
                "member": {"id": str(member_id)},
                "lines": lines,
                "paid_at": paid_at.isoformat(),
                "payment": {"cash_fen": total, "points_used": 0},
            }
        ),
    )


async def seed_benefits(tenant_id: uuid.UUID, count: int = 60) -> tuple[int, int, int]:
    """Benefit activity for the first ``count`` members: their benefits granted (a first
    look-up at their home store), one use of a core benefit they can use there, an exchange
    for points where they have enough, and an order priced as the till would (preview, then
    the order claiming what it offered); returns (uses, exchanges, priced orders).
    Idempotent: the keys are the members'."""
    used = exchanged = priced = 0
    with tenant_context(tenant_id):
        async with scoped_session() as session:
            rows = (
                await session.execute(
                    select(Member.id, Store.code)
                    .join(Store, Store.id == Member.home_store_id)
                    .where(Member.status == "active")  # not the erased, nor the merged away
                    .order_by(Member.joined_at, Member.id)
                    .limit(count)
                )
            ).all()
        for member_id, store_code in rows:
            used += await _use_one(member_id, store_code)
            exchanged += await _exchange_one(member_id, store_code)
            priced += await _priced_order(member_id, store_code)
    return used, exchanged, priced


async def _use_one(member_id: uuid.UUID, store_code: str) -> int:
    try:
        async with scoped_session() as session:
            view = await benefits.member_benefits(session, member_id, store_code)
            usable = [e for e in view.entitlements if e.usable_here and e.type.startswith("core.")]
            if not usable:
                return 0
            data = UseIn(idempotency_key=f"demo-use-{member_id}", store_code=store_code)
            await benefits.use(session, member_id, usable[0].benefit_code, data)
            return 1
    except Conflict:  # used on an earlier run (its key, another benefit now): as it was
        return 0


async def _exchange_one(member_id: uuid.UUID, store_code: str) -> int:
    try:
        async with scoped_session() as session:
            view = await benefits.member_benefits(session, member_id, store_code)
            if not view.exchange:
                return 0
            data = ExchangeIn(idempotency_key=f"demo-exchange-{member_id}", store_code=store_code)
            await benefits.exchange(session, member_id, view.exchange[0].benefit_code, data)
            return 1
    except NestpointError:  # not enough points, the limit: a member who cannot, as in life
        return 0


async def _priced_order(member_id: uuid.UUID, store_code: str) -> int:
    """A basket of formula and diapers, previewed for the member and recorded with the
    discounts the preview offered (会员价, 会员日): 1 when a benefit priced it."""
    lines = [
        {"sku": sku, "name": name, "category": category, "quantity": 1,
         "unit_price_fen": price, "paid_fen": price}
        for sku, name, category, price in (CATALOGUE[0], CATALOGUE[3])
    ]  # fmt: skip
    basket = {"store_code": store_code, "member": {"id": str(member_id)}, "lines": lines}
    async with scoped_session() as session:
        offer = await preview(session, PreviewIn.model_validate(basket))
    if not offer.discount_fen:
        return 0
    for line, priced in zip(lines, offer.lines, strict=True):
        if priced.benefit_code:
            line |= {"paid_fen": priced.paid_fen, "benefit_code": priced.benefit_code,
                     "discount_fen": priced.discount_fen}  # fmt: skip
    order = basket | {
        "channel": "pos",
        "external_id": f"demo-priced-{member_id.hex}",
        "lines": lines,
        "paid_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "payment": {"cash_fen": offer.payable_fen, "points_used": 0},
    }
    try:
        async with scoped_session() as session:
            await create_order(session, OrderIn.model_validate(order))
        return 1
    except NestpointError:  # seeded before (a different paid_at): as it was
        return 0


async def seed_coupons(tenant_id: uuid.UUID, count: int = 40) -> tuple[int, int]:
    """Coupons for the first ``count`` members: each is granted one of the chain's first
    amount-off template valid everywhere, and about half of them pay a basket with it (as a
    till would: check, then the order); returns (granted, redeemed). Idempotent: the grant's
    key and the order's id are the member's."""
    with tenant_context(tenant_id):
        async with scoped_session() as session:
            templates = [
                t for t in await coupons.list_templates(session)
                if t.kind == "amount_off" and not t.store_codes and not t.categories
                and t.active and t.valid_from is None
            ]  # fmt: skip
            rows = (
                await session.execute(
                    select(Member.id, Store.code)
                    .join(Store, Store.id == Member.home_store_id)
                    .where(Member.status == "active")
                    .order_by(Member.joined_at, Member.id)
                    .limit(count)
                )
            ).all()
        if not templates:
            return 0, 0
        granted = redeemed = 0
        for member_id, store_code in rows:
            code = await _grant_one(member_id, templates[0].code)
            granted += code is not None
            if code is not None and member_id.int % 2 == 0:  # half of them, stably
                redeemed += await _coupon_order(member_id, store_code, code)
    return granted, redeemed


async def _grant_one(member_id: uuid.UUID, template: str) -> str | None:
    data = IssueIn(template_code=template, idempotency_key=f"demo-coupon-{member_id}")
    try:
        async with scoped_session() as session:
            answer = await coupons.grant_or_exchange(session, member_id, data, may_grant=True)
        return str(answer.body["code"])
    except NestpointError:  # the member's limit, the stock: as in life
        return None


async def _coupon_order(member_id: uuid.UUID, store_code: str, code: str) -> int:
    """A basket of formula and wipes paid partly with the coupon (what the check offers)."""
    lines = [
        {"sku": sku, "name": name, "category": category, "quantity": 1,
         "unit_price_fen": price, "paid_fen": price}
        for sku, name, category, price in (CATALOGUE[1], CATALOGUE[5])
    ]  # fmt: skip
    async with scoped_session() as session:
        offers = await coupons.check(session, CheckIn.model_validate(
            {"member_id": str(member_id), "store_code": store_code, "lines": lines, "codes": [code]}
        ))  # fmt: skip
    if not offers or not offers[0].usable:
        return 0
    total = sum(int(line["paid_fen"]) for line in lines)  # type: ignore[call-overload]
    order = {
        "channel": "pos",
        "external_id": f"demo-coupon-{member_id.hex}",
        "store_code": store_code,
        "member": {"id": str(member_id)},
        "lines": lines,
        "paid_at": datetime.now(UTC).isoformat(),  # not before the coupon was issued
        "payment": {
            "cash_fen": total - offers[0].amount_fen,
            "coupons": [{"code": code, "amount_fen": offers[0].amount_fen}],
        },
    }
    try:
        async with scoped_session() as session:
            await create_order(session, OrderIn.model_validate(order))
        return 1
    except NestpointError:  # redeemed on an earlier run: as it was
        return 0
