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
