"""A campaign's results, computed in SQL from its grants, the points ledger, the coupons and
the orders, so they add up to them (tests/campaigns/test_results.py checks that they do).

* **Window**: from ``starts_at`` (or the campaign's creation) to ``ends_at`` or now,
  whichever is earlier.
* **Arms**: the members with a ``granted`` grant (treated) and those with a ``holdout``
  grant (control: chosen by the hash, they received nothing). A member refused by the
  budget or a cap is in neither.
* **Orders and revenue** of each arm's members in the window: counted orders (paid or
  partly refunded), revenue net of refunds; a member without an order counts as 0.
* **Uplift** of a per-member mean (revenue, orders): the treated mean minus the control
  mean, ``d = m_t - m_c``, with a 95% confidence interval by Welch's normal approximation,
  ``d +- 1.96 * sqrt(s_t^2 / n_t + s_c^2 / n_c)`` (``s^2``: each arm's sample variance,
  ``(sum x^2 - (sum x)^2 / n) / (n - 1)``); no interval when an arm has fewer than two
  members.
* **Cost**: the points the ledger holds for the campaign (cause ``campaign``) and the value
  of its coupons redeemed (``coupons.amount_fen``).
* **Recruited**: treated members who joined in the window; of them, those who ordered again
  within 30 days of their first order (first-month repurchase).
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, and_, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.campaigns.models import Campaign, CampaignGrant
from nestpoint.campaigns.schemas import ArmResult, Attainment, CampaignResults, Uplift
from nestpoint.context import require_tenant
from nestpoint.coupons.models import Coupon
from nestpoint.db.base import utcnow
from nestpoint.members.models import Member
from nestpoint.orders.models import Order
from nestpoint.points.models import PointEntry
from nestpoint.segments.rules import COUNTED

Z_95 = 1.96
REPURCHASE_DAYS = 30


def welch(n_t: int, sum_t: float, sq_t: float, n_c: int, sum_c: float, sq_c: float) -> Uplift:
    """Difference of means with its 95% interval (Welch's normal approximation)."""
    mean_t = sum_t / n_t if n_t else 0.0
    mean_c = sum_c / n_c if n_c else 0.0
    difference = mean_t - mean_c
    if n_t < 2 or n_c < 2:
        return Uplift(difference=difference, low=None, high=None)
    var_t = max(0.0, (sq_t - sum_t * sum_t / n_t) / (n_t - 1))
    var_c = max(0.0, (sq_c - sum_c * sum_c / n_c) / (n_c - 1))
    half = Z_95 * math.sqrt(var_t / n_t + var_c / n_c)
    return Uplift(difference=difference, low=difference - half, high=difference + half)


def window(campaign: Campaign, now: datetime) -> tuple[datetime, datetime]:
    start = campaign.starts_at or campaign.created_at
    end = campaign.ends_at if campaign.ends_at is not None and campaign.ends_at < now else now
    return start, max(start, end)


async def results(
    session: AsyncSession, campaign: Campaign, now: datetime | None = None
) -> CampaignResults:
    tenant_id = require_tenant().tenant_id
    start, end = window(campaign, now or utcnow())
    prefix = f"{campaign.id}:%"
    grants = select(CampaignGrant.member_id, CampaignGrant.status).where(
        CampaignGrant.tenant_id == tenant_id, CampaignGrant.campaign_id == campaign.id
    )
    statuses = (
        await session.execute(
            select(CampaignGrant.status, func.count(func.distinct(CampaignGrant.member_id)))
            .where(CampaignGrant.tenant_id == tenant_id, CampaignGrant.campaign_id == campaign.id)
            .group_by(CampaignGrant.status)
        )
    ).all()
    by_status = {status: int(n) for status, n in statuses}
    refused = int(
        await session.scalar(
            select(func.count()).where(
                CampaignGrant.tenant_id == tenant_id,
                CampaignGrant.campaign_id == campaign.id,
                CampaignGrant.status.in_(("over_budget", "capped")),
            )
        )
        or 0
    )
    points_granted = int(
        await session.scalar(
            select(func.coalesce(func.sum(PointEntry.amount), 0)).where(
                PointEntry.tenant_id == tenant_id,
                PointEntry.cause_type == "campaign",
                PointEntry.cause_id.like(prefix),
            )
        )
        or 0
    )
    coupon_row = (
        await session.execute(
            select(
                func.count(Coupon.id),
                func.coalesce(func.sum(case((Coupon.status == "redeemed", 1), else_=0)), 0),
                func.coalesce(
                    func.sum(case((Coupon.status == "redeemed", Coupon.amount_fen), else_=0)), 0
                ),
            ).where(
                Coupon.tenant_id == tenant_id,
                Coupon.cause_type == "campaign",
                Coupon.cause_id.like(prefix),
            )
        )
    ).one()
    arms = await _arms(session, tenant_id, campaign.id, start, end)
    treated, control = arms.get("granted", _EMPTY), arms.get("holdout", _EMPTY)
    recruited, repurchased = await _recruited(session, tenant_id, grants, start, end)
    issued, redeemed = int(coupon_row[0]), int(coupon_row[1])
    reach = by_status.get("granted", 0)
    actual = {
        "reach": reach,
        "redemptions": redeemed,
        "orders": treated.orders,
        "revenue_fen": treated.revenue,
        "recruited": recruited,
    }
    goal = campaign.goal or {}
    attainment = None
    if goal.get("metric") in actual:
        value = actual[goal["metric"]]
        attainment = Attainment(
            metric=goal["metric"], target=goal["target"], actual=value, ratio=value / goal["target"]
        )
    return CampaignResults(
        campaign_code=campaign.code,
        window_start=start,
        window_end=end,
        reach=reach,
        holdout_members=by_status.get("holdout", 0),
        refused=refused,
        coupons_issued=issued,
        coupons_redeemed=redeemed,
        redemption_rate=redeemed / issued if issued else None,
        points_granted=points_granted,
        coupon_value_redeemed_fen=int(coupon_row[2]),
        treated=treated.read(),
        holdout=control.read(),
        revenue_uplift_fen=welch(
            treated.members,
            treated.revenue,
            treated.revenue_sq,
            control.members,
            control.revenue,
            control.revenue_sq,
        ),
        orders_uplift=welch(
            treated.members,
            treated.orders,
            treated.orders_sq,
            control.members,
            control.orders,
            control.orders_sq,
        ),
        recruited=recruited,
        recruited_repurchased=repurchased,
        attainment=attainment,
    )


class _Arm:
    def __init__(self, row: Any = None) -> None:
        self.members = int(row.members) if row else 0
        self.buyers = int(row.buyers or 0) if row else 0
        self.orders = int(row.orders or 0) if row else 0
        self.revenue = int(row.revenue or 0) if row else 0
        self.orders_sq = float(row.orders_sq or 0) if row else 0.0
        self.revenue_sq = float(row.revenue_sq or 0) if row else 0.0

    def read(self) -> ArmResult:
        n = self.members
        return ArmResult(
            members=n,
            buyers=self.buyers,
            orders=self.orders,
            revenue_fen=self.revenue,
            revenue_per_member_fen=self.revenue / n if n else 0.0,
            orders_per_member=self.orders / n if n else 0.0,
        )


_EMPTY = _Arm()


async def _arms(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    campaign_id: uuid.UUID,
    start: datetime,
    end: datetime,
) -> dict[str, _Arm]:
    """Per arm: members, buyers, orders, revenue and their sums of squares (per member)."""
    arm = (
        select(CampaignGrant.member_id, CampaignGrant.status)
        .where(
            CampaignGrant.tenant_id == tenant_id,
            CampaignGrant.campaign_id == campaign_id,
            CampaignGrant.status.in_(("granted", "holdout")),
        )
        .distinct()
        .subquery("arm")
    )
    per_member = (
        select(
            arm.c.member_id,
            arm.c.status,
            func.count(Order.id).label("orders"),
            func.coalesce(func.sum(Order.total_fen - Order.refunded_fen), 0).label("revenue"),
        )
        .select_from(arm)
        .outerjoin(
            Order,
            and_(
                Order.tenant_id == tenant_id,
                Order.member_id == arm.c.member_id,
                Order.status.in_(COUNTED),
                Order.paid_at >= start,
                Order.paid_at < end,
            ),
        )
        .group_by(arm.c.member_id, arm.c.status)
        .subquery("per_member")
    )
    orders_f, revenue_f = cast(per_member.c.orders, Float), cast(per_member.c.revenue, Float)
    rows = await session.execute(
        select(
            per_member.c.status,
            func.count().label("members"),
            func.sum(case((per_member.c.orders > 0, 1), else_=0)).label("buyers"),
            func.sum(per_member.c.orders).label("orders"),
            func.sum(per_member.c.revenue).label("revenue"),
            func.sum(orders_f * orders_f).label("orders_sq"),
            func.sum(revenue_f * revenue_f).label("revenue_sq"),
        ).group_by(per_member.c.status)
    )
    return {row.status: _Arm(row) for row in rows}


async def _recruited(
    session: AsyncSession, tenant_id: uuid.UUID, grants: Any, start: datetime, end: datetime
) -> tuple[int, int]:
    """Treated members who joined in the window, and those of them who ordered again within
    :data:`REPURCHASE_DAYS` days of their first order."""
    treated = grants.where(CampaignGrant.status == "granted").with_only_columns(
        CampaignGrant.member_id
    )
    recruited = (
        select(Member.id)
        .where(
            Member.tenant_id == tenant_id,
            Member.id.in_(treated),
            Member.joined_at >= start,
            Member.joined_at < end,
        )
        .subquery("recruited")
    )
    count = int(await session.scalar(select(func.count()).select_from(recruited)) or 0)
    rows = await session.execute(
        select(Order.member_id, Order.paid_at)
        .where(
            Order.tenant_id == tenant_id,
            Order.member_id.in_(select(recruited.c.id)),
            Order.status.in_(COUNTED),
        )
        .order_by(Order.member_id, Order.paid_at)
    )
    paid: dict[uuid.UUID, list[datetime]] = defaultdict(list)
    for member_id, paid_at in rows:
        if member_id is not None:
            paid[member_id].append(paid_at)
    again = sum(
        1
        for times in paid.values()
        if len(times) > 1 and times[1] - times[0] <= timedelta(days=REPURCHASE_DAYS)
    )
    return count, again
