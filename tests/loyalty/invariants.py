"""The ledger's invariants, checked straight against the tables (raw SQL, one tenant)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession


async def check_ledger(session: AsyncSession, member_ids: list[uuid.UUID]) -> None:
    """Assert every invariant of the points ledger for these members.

    * the account balance equals the sum of the member's ledger entries;
    * it also equals the sum of lot remainders less the clawback debt;
    * lot remainders stay within 0..amount;
    * a negative balance only ever comes with clawback debt, and only while the debt equals
      its magnitude (no lot has points left while there is debt: available never goes below
      zero);
    * the held total equals the open holds;
    * every earn entry traces to exactly one order line, and each line's earn entries add
      up to the points the line recorded.
    """
    from sqlalchemy import func, select

    from nestpoint.orders.models import OrderLine
    from nestpoint.points.models import PointAccount, PointEntry, PointHold, PointLot

    for member_id in member_ids:
        account = (
            await session.execute(select(PointAccount).where(PointAccount.member_id == member_id))
        ).scalar_one()
        entries = (
            await session.execute(
                select(
                    PointEntry.kind,
                    PointEntry.amount,
                    PointEntry.balance_after,
                    PointEntry.cause_type,
                    PointEntry.cause_id,
                    PointEntry.line_no,
                )
                .where(PointEntry.member_id == member_id)
                .order_by(PointEntry.created_at, PointEntry.balance_after)
            )
        ).all()
        total = sum(e.amount for e in entries)
        assert account.balance == total, (account.balance, total)
        lots = (
            await session.execute(
                select(PointLot.amount, PointLot.remaining).where(PointLot.member_id == member_id)
            )
        ).all()
        assert all(0 <= lot.remaining <= lot.amount for lot in lots), lots
        remaining = sum(lot.remaining for lot in lots)
        assert account.balance == remaining - account.debt, (
            account.balance,
            remaining,
            account.debt,
        )
        assert account.debt >= 0
        if account.debt == 0:
            assert account.balance >= 0
        else:
            # Debt is repaid before points go back into any lot: while there is debt, no lot
            # has points left (so nothing is available) and the balance is exactly -debt.
            assert remaining == 0, (remaining, account.debt)
            assert account.balance == -account.debt, (account.balance, account.debt)
        open_holds = await session.scalar(
            select(func.coalesce(func.sum(PointHold.amount), 0)).where(
                PointHold.member_id == member_id, PointHold.status == "held"
            )
        )
        assert account.held == open_holds, (account.held, open_holds)
        earns: dict[tuple[str, int], int] = {}
        for e in entries:
            if e.kind == "earn":
                assert e.cause_type == "order", e
                assert e.line_no is not None, e
                key = (e.cause_id, e.line_no)
                earns[key] = earns.get(key, 0) + e.amount
        for (order_id, line_no), amount in earns.items():
            line_points = await session.scalar(
                select(OrderLine.points_earned).where(
                    OrderLine.order_id == uuid.UUID(order_id), OrderLine.line_no == line_no
                )
            )
            assert line_points == amount, (order_id, line_no, line_points, amount)


async def check_benefits(session: AsyncSession, member_ids: list[uuid.UUID]) -> None:
    """Assert the benefits' invariants for these members (every entitlement they hold or
    held, the uses ledger, and the points that exchanges and bundles moved):

    * each entitlement's net uses in every period stay within 0..its quota;
    * a reversal names a use of the same entitlement and negates it, and no use is
      reversed twice;
    * an exchange's points: one redemption of its price, and one return of it exactly when
      the exchange was undone (revoked); an undone exchange has no net uses;
    * a bundle's points are credited once per grant, as much as the grant says.
    """
    from sqlalchemy import func, select

    from nestpoint.benefits.models import Benefit, BenefitUse, BundleGrant, Entitlement
    from nestpoint.points.models import PointEntry

    held = (
        await session.execute(
            select(Entitlement, Benefit.quota)
            .join(Benefit, Benefit.id == Entitlement.benefit_id)
            .where(Entitlement.member_id.in_(member_ids))
        )
    ).all()
    for entitlement, quota in held:
        rows = (
            await session.scalars(
                select(BenefitUse).where(BenefitUse.entitlement_id == entitlement.id)
            )
        ).all()
        by_id = {row.id: row for row in rows}
        per_period: dict[str, int] = {}
        for row in rows:
            per_period[row.period_key] = per_period.get(row.period_key, 0) + row.amount
            if row.kind == "reverse":
                original = by_id[row.reverses_id]
                assert original.kind == "use", row
                assert original.amount == -row.amount, row
        assert all(0 <= n <= quota for n in per_period.values()), (entitlement.id, per_period)
        reversed_ids = [row.reverses_id for row in rows if row.kind == "reverse"]
        assert len(reversed_ids) == len(set(reversed_ids))
        if entitlement.source == "exchange":
            moved = (
                await session.execute(
                    select(PointEntry.kind, PointEntry.amount).where(
                        PointEntry.cause_type == "exchange",
                        PointEntry.cause_id == str(entitlement.id),
                    )
                )
            ).all()
            expected = [("redeem", -entitlement.points_paid)]
            if entitlement.status == "revoked":
                expected.append(("reverse", entitlement.points_paid))
                assert sum(per_period.values()) == 0
            assert sorted(map(tuple, moved)) == sorted(expected), (entitlement.id, moved)
    for grant in (
        await session.scalars(select(BundleGrant).where(BundleGrant.member_id.in_(member_ids)))
    ).all():
        credited = await session.scalar(
            select(func.coalesce(func.sum(PointEntry.amount), 0)).where(
                PointEntry.cause_type == "bundle", PointEntry.cause_id == str(grant.id)
            )
        )
        assert credited == grant.points, (grant.id, credited, grant.points)
    await _check_order_uses(session, member_ids)


async def _check_order_uses(session, member_ids) -> None:  # type: ignore[no-untyped-def]
    """An order's pricing benefits: one use per benefit on its lines while the order stands,
    none left once it is refunded in full."""
    from sqlalchemy import select

    from nestpoint.benefits.models import Benefit, BenefitUse
    from nestpoint.orders.models import Order, OrderLine

    orders = (await session.scalars(select(Order).where(Order.member_id.in_(member_ids)))).all()
    for order in orders:
        reference = f"order:{order.channel}/{order.external_id}"
        rows = (
            await session.execute(
                select(BenefitUse.id, BenefitUse.kind, BenefitUse.reverses_id, Benefit.code)
                .join(Benefit, Benefit.id == BenefitUse.benefit_id)
                .where(BenefitUse.reference == reference)
            )
        ).all()
        reversed_ids = {r.reverses_id for r in rows if r.kind == "reverse"}
        standing = sorted(r.code for r in rows if r.kind == "use" and r.id not in reversed_ids)
        claimed = (
            await session.scalars(
                select(OrderLine.benefit_code)
                .where(OrderLine.order_id == order.id, OrderLine.benefit_code != "")
                .distinct()
            )
        ).all()
        expected = [] if order.status == "refunded" else sorted(claimed)
        assert standing == expected, (order.external_id, order.status, standing, claimed)


# A coupon's status after each event of its ledger (``coupons.models``).
_COUPON_STATUS_AFTER = {
    "issue": "available",
    "hold": "held",
    "release": "available",
    "redeem": "redeemed",
    "restore": "available",
    "void": "void",
}


async def check_coupons(session: AsyncSession, member_ids: list[uuid.UUID]) -> None:
    """Assert the coupons' invariants for these members.

    * each template's ``issued`` counts its coupons;
    * a coupon's status is the one its ledger's last event leaves;
    * a redeemed coupon names its order and what it paid, and that order lists exactly that
      coupon and amount; an unredeemed coupon names no order;
    * every coupon an order lists is redeemed by it, or was restored once it was refunded
      in full.
    """
    from sqlalchemy import func, select

    from nestpoint.coupons.models import Coupon, CouponEvent, CouponTemplate
    from nestpoint.orders.models import Order

    counted = dict(
        (
            await session.execute(
                select(Coupon.template_id, func.count()).group_by(Coupon.template_id)
            )
        ).all()
    )
    for template in (await session.scalars(select(CouponTemplate))).all():
        assert template.issued == counted.get(template.id, 0), template.code
    coupons = (await session.scalars(select(Coupon).where(Coupon.member_id.in_(member_ids)))).all()
    by_code = {c.code: c for c in coupons}
    for coupon in coupons:
        kinds = (
            await session.scalars(
                select(CouponEvent.kind)
                .where(CouponEvent.coupon_id == coupon.id)
                .order_by(CouponEvent.created_at, CouponEvent.id)
            )
        ).all()
        assert kinds[0] == "issue"
        assert coupon.status == _COUPON_STATUS_AFTER[kinds[-1]], (coupon.code, kinds)
        if coupon.status == "redeemed":
            order = await session.get(Order, (coupon.tenant_id, coupon.order_id))
            assert order is not None
            assert {"code": coupon.code, "template_code": order.coupons[0]["template_code"],
                    "amount_fen": coupon.amount_fen} in order.coupons  # fmt: skip
        else:
            assert coupon.order_id is None
            assert coupon.amount_fen is None
    orders = (await session.scalars(select(Order).where(Order.member_id.in_(member_ids)))).all()
    for order in orders:
        for listed in order.coupons:
            coupon = by_code[listed["code"]]
            if order.status == "refunded":
                assert coupon.order_id != order.id or coupon.status == "redeemed"
            else:
                assert coupon.order_id == order.id
                assert coupon.amount_fen == listed["amount_fen"]


async def check_wallet(session: AsyncSession, member_ids: list[uuid.UUID]) -> None:
    """Assert the stored-value ledger's invariants for these members.

    * principal and bonus each equal the sum of the member's entries, and the sum of what
      is left of their lots (a merged-away member holds nothing);
    * neither is ever below zero, and every lot stays within 0..amount;
    * each entry's balances after are the running sums of the member's entries;
    * every order a member's stored value paid has its ``spend`` entry of that amount (the
      bonus part as recorded on the order); its refunds gave back no more principal and no
      more bonus than it paid, and all of both once it is refunded in full.
    """
    from sqlalchemy import func, select

    from nestpoint.orders.models import Order, Refund
    from nestpoint.wallet.models import WalletAccount, WalletEntry, WalletLot

    for member_id in member_ids:
        account = await session.scalar(
            select(WalletAccount).where(WalletAccount.member_id == member_id)
        )
        principal = account.principal_fen if account else 0
        bonus = account.bonus_fen if account else 0
        assert min(principal, bonus) >= 0, (member_id, principal, bonus)
        rows = (
            await session.scalars(select(WalletEntry).where(WalletEntry.member_id == member_id))
        ).all()
        assert principal == sum(e.principal_fen for e in rows), member_id
        assert bonus == sum(e.bonus_fen for e in rows), member_id
        # Entries of one transaction share a time: replay the running sums in an order that
        # reaches each recorded "after" (sorted by time, then by the balances they reached).
        running_p = running_b = 0
        for e in rows:
            assert min(e.principal_after, e.bonus_after) >= 0, e.id
        by_time: dict[object, list[WalletEntry]] = {}
        for e in rows:
            by_time.setdefault(e.created_at, []).append(e)
        for moment in sorted(by_time):
            group = by_time[moment]
            running_p += sum(e.principal_fen for e in group)
            running_b += sum(e.bonus_fen for e in group)
            assert (running_p, running_b) in {(e.principal_after, e.bonus_after) for e in group}
        lots = (
            await session.execute(
                select(WalletLot.bucket, func.sum(WalletLot.remaining))
                .where(WalletLot.member_id == member_id)
                .group_by(WalletLot.bucket)
            )
        ).all()
        left = {bucket: int(total) for bucket, total in lots}
        assert left.get("principal", 0) == principal, (member_id, left, principal)
        assert left.get("bonus", 0) == bonus, (member_id, left, bonus)
        bad = await session.scalar(
            select(func.count())
            .select_from(WalletLot)
            .where(
                WalletLot.member_id == member_id,
                (WalletLot.remaining < 0) | (WalletLot.remaining > WalletLot.amount),
            )
        )
        assert bad == 0, member_id
    await _check_stripe_topups(session, member_ids)
    orders = (
        await session.scalars(
            select(Order).where(Order.member_id.in_(member_ids), Order.stored_value_fen > 0)
        )
    ).all()
    for order in orders:
        spent = (
            await session.scalars(
                select(WalletEntry).where(
                    WalletEntry.cause_type == "order", WalletEntry.cause_id == str(order.id)
                )
            )
        ).all()
        assert [(e.kind, -e.principal_fen - e.bonus_fen, -e.bonus_fen) for e in spent] == [
            ("spend", order.stored_value_fen, order.stored_value_bonus_fen)
        ], order.id
        refund_ids = (
            await session.scalars(select(Refund.id).where(Refund.order_id == order.id))
        ).all()
        back = (
            await session.scalars(
                select(WalletEntry).where(
                    WalletEntry.cause_type == "refund",
                    WalletEntry.cause_id.in_([str(r) for r in refund_ids]),
                )
            )
        ).all()
        back_p = sum(e.principal_fen for e in back)
        back_b = sum(e.bonus_fen for e in back)
        paid_b = order.stored_value_bonus_fen
        assert 0 <= back_p <= order.stored_value_fen - paid_b, order.id
        assert 0 <= back_b <= paid_b, order.id
        if order.status == "refunded":  # all of it came back
            assert (back_p, back_b) == (order.stored_value_fen - paid_b, paid_b), order.id


async def _check_stripe_topups(session: AsyncSession, member_ids: list[uuid.UUID]) -> None:
    """A top-up paid through Stripe is credited exactly when its payment succeeded: once
    (one ``topup`` entry of its amount, its bonus once), and never while pending or failed."""
    from sqlalchemy import select

    from nestpoint.payments.models import Payment
    from nestpoint.wallet.models import WalletEntry, WalletTopup

    # Every top-up of the chain (not only these members'), each with its payment and its
    # entries, in two queries: the property test checks after every step, and the chain's
    # top-ups pile up over its examples (a query or two per top-up made that quadratic).
    topups = (
        await session.execute(
            select(WalletTopup, Payment.id, Payment.status).outerjoin(
                Payment, Payment.id == WalletTopup.payment_id
            )
        )
    ).all()
    credited: dict[str, list[tuple[str, int, int]]] = {}
    for cause_id, kind, principal_fen, bonus_fen in (
        await session.execute(
            select(
                WalletEntry.cause_id,
                WalletEntry.kind,
                WalletEntry.principal_fen,
                WalletEntry.bonus_fen,
            ).where(WalletEntry.cause_type == "topup")
        )
    ).all():
        credited.setdefault(cause_id, []).append((kind, principal_fen, bonus_fen))
    for topup, payment_id, payment_status in topups:
        assert payment_id is not None, topup.id
        paid = payment_status == "succeeded"
        assert (topup.status == "credited") == paid, (topup.id, topup.status, payment_status)
        expected = [("topup", topup.amount_fen, 0)] + (
            [("bonus", 0, topup.bonus_fen)] if topup.bonus_fen else []
        )
        got = sorted(credited.get(str(topup.id), []))
        assert got == (sorted(expected) if paid else []), (topup.id, got)
