"""Built-in segments: RFM groups, value circles and lifecycle stages, their codes and
labels, a chain's thresholds, and the groups' counts.

Every active member of a chain has one row in ``member_segments``, rewritten by the daily
job ``segments.recompute`` (``segments.jobs``): their recency (days since the last counted
order, local dates), frequency (counted orders) and monetary value (spend in fen, net of
refunds) over the window (365 days), a high/low score for each against the chain's
thresholds, their RFM group, value circle and lifecycle stage (docs/segments.md,
"Built-in segments", states each rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Literal

from pydantic import Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.audit.service import record
from nestpoint.context import require_tenant
from nestpoint.db import utcnow
from nestpoint.schemas import Strict
from nestpoint.segments.models import MemberSegment, SegmentThresholdsRow

JOB = "segments.recompute"

# (code, English label, Chinese label); R, F, M high (True) or low for each RFM group.
RFM_GROUPS: dict[str, tuple[str, str, tuple[bool, bool, bool]]] = {
    "important_value": ("Important value", "重要价值", (True, True, True)),
    "important_winback": ("Important win-back", "重要唤回", (False, True, True)),
    "important_development": ("Important development", "重要深耕", (True, False, True)),
    "important_retention": ("Important retention", "重要挽留", (False, False, True)),
    "general_value": ("General value", "一般价值", (True, True, False)),
    "general_winback": ("General win-back", "一般唤回", (False, True, False)),
    "general_development": ("General development", "一般发展", (True, False, False)),
    "general_retention": ("General retention", "一般挽留", (False, False, False)),
}
NO_ORDERS = ("no_orders", "No orders yet", "尚未消费")
VALUE_CIRCLES: dict[str, tuple[str, str]] = {
    "core": ("Core circle", "核心圈"),
    "potential": ("Potential circle", "潜力圈"),
    "churn_warning": ("Churn warning circle", "流失预警圈"),
    "none": ("No circle", "未入圈"),
}
LIFECYCLES: dict[str, tuple[str, str]] = {
    "welcome": ("Welcome", "欢迎期"),
    "growing": ("Growing", "成长期"),
    "stable": ("Stable", "稳定期"),
    "silent": ("Silent", "沉默期"),
}
RFM_CODES = (*RFM_GROUPS, NO_ORDERS[0])
RfmGroup = Literal[
    "important_value",
    "important_winback",
    "important_development",
    "important_retention",
    "general_value",
    "general_winback",
    "general_development",
    "general_retention",
    "no_orders",
]
ValueCircle = Literal["core", "potential", "churn_warning", "none"]
Lifecycle = Literal["welcome", "growing", "stable", "silent"]
KINDS = ("rfm_group", "value_circle", "lifecycle")

Days = Annotated[int, Field(ge=1, le=3650)]
Count = Annotated[int, Field(ge=1, le=100_000)]
Fen = Annotated[int, Field(ge=0, le=10**15)]


class Thresholds(Strict):
    """A chain's thresholds of the built-in segments; the defaults are the source
    documents' (R 15 days, F 3 orders, M 200 yuan; core over 5,000 yuan a year; potential:
    a repurchase within 90 days; churn warning: 12 months without a purchase)."""

    window_days: Days = Field(
        365, description="F and M are counted over the last N days (today included)."
    )
    recency_days: Days = Field(
        15, description="R is high when the last order is fewer than N days ago."
    )
    frequency_orders: Count = Field(3, description="F is high from N orders in the window.")
    monetary_fen: Fen = Field(20000, description="M is high from N fen spent in the window.")
    core_fen: Fen = Field(500000, description="Core circle: more than N fen spent in the window.")
    potential_days: Days = Field(90, description="Potential circle: over the last N days...")
    potential_orders: Count = Field(2, description="... at least N orders (a repurchase).")
    churn_days: Days = Field(
        365, description="Churn warning: no order in the last N days, a member N days or more."
    )
    welcome_days: Days = Field(30, description="Welcome: joined fewer than N days ago...")
    welcome_max_orders: Annotated[int, Field(ge=0, le=100_000)] = Field(
        1, description="... with at most N orders in the window."
    )
    silent_days: Days = Field(90, description="Silent: no order in the last N days.")
    stable_orders: Count = Field(
        3, description="Stable: ordered within `silent_days`, N or more orders in the window."
    )


# ---------------------------------------------------------------------------- thresholds


async def get_thresholds(session: AsyncSession) -> Thresholds:
    row = await session.get(SegmentThresholdsRow, require_tenant().tenant_id)
    return Thresholds.model_validate(row.thresholds) if row else Thresholds()


async def put_thresholds(session: AsyncSession, data: Thresholds) -> Thresholds:
    """Replace the chain's thresholds (audited when they change); they apply from the next
    recomputation."""
    tenant_id = require_tenant().tenant_id
    row = await session.get(SegmentThresholdsRow, tenant_id)
    before = Thresholds.model_validate(row.thresholds) if row else Thresholds()
    after = data.model_dump()
    if row is None:
        session.add(SegmentThresholdsRow(tenant_id=tenant_id, thresholds=after))
    elif row.thresholds != after:
        row.thresholds, row.updated_at = after, utcnow()
    if before.model_dump() != after:
        record(
            session,
            "segments.thresholds_changed",
            "segment_thresholds",
            tenant_id,
            {"before": before.model_dump(), "after": after},
        )
    await session.flush()
    return data


# ---------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class BuiltinGroup:
    kind: str  # rfm_group, value_circle, lifecycle
    code: str
    label_en: str
    label_zh: str
    count: int


def labels() -> dict[str, dict[str, tuple[str, str]]]:
    rfm = {code: (en, zh) for code, (en, zh, _) in RFM_GROUPS.items()}
    rfm[NO_ORDERS[0]] = (NO_ORDERS[1], NO_ORDERS[2])
    return {"rfm_group": rfm, "value_circle": VALUE_CIRCLES, "lifecycle": LIFECYCLES}


async def builtin_groups(session: AsyncSession) -> tuple[list[BuiltinGroup], date | None]:
    """Each built-in group with its number of members (as of the last run), and the local
    date of that run (None: never run)."""
    tenant_id = require_tenant().tenant_id
    groups: list[BuiltinGroup] = []
    for kind, names in labels().items():
        column = getattr(MemberSegment, kind)
        rows = await session.execute(
            select(column, func.count())
            .where(MemberSegment.tenant_id == tenant_id)
            .group_by(column)
        )
        counts = {code: int(n) for code, n in rows.all()}
        groups += [
            BuiltinGroup(kind, code, en, zh, counts.get(code, 0))
            for code, (en, zh) in names.items()
        ]
    computed_on = await session.scalar(
        select(func.max(MemberSegment.computed_on)).where(MemberSegment.tenant_id == tenant_id)
    )
    return groups, computed_on
