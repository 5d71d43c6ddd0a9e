"""The console's analytics page (``/console/analytics``): every figure HQ watches, with its
target, as charts with their tables under them (each table a CSV).

The figures come from ``nestpoint.analytics.service``, the functions behind
``GET /api/v1/analytics/*``, for the same period and store, so the page shows the API's
numbers. The period and store are read like the API's ``from``, ``to`` and ``store`` (the
same defaults: the 30 days ending today); a store manager always sees their own store.
A chart is a Chart.js description (``data-chart`` on its canvas, drawn by
``static/insights.js``) built here from the same figures its table shows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated, Any

from litestar import Request, get
from litestar.params import QueryParameter
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.analytics import service as analytics
from nestpoint.analytics.schemas import (
    REPURCHASE_UPLIFT_TARGET,
    AnalyticsSummary,
    Funnel,
    HourlySales,
    RepurchaseByCategory,
    TierMix,
)
from nestpoint.api.deps import Db
from nestpoint.console import service
from nestpoint.console.pages import ANALYTICS_DAYS, allow, render
from nestpoint.console.web import Me, _, me_of
from nestpoint.errors import Invalid
from nestpoint.tenancy.service import store_codes

FromDay = Annotated[str, QueryParameter(name="from", required=False, max_length=32)]
ToDay = Annotated[str, QueryParameter(name="to", required=False, max_length=32)]
StoreCode = Annotated[str, QueryParameter(name="store", required=False, max_length=32)]


@dataclass(frozen=True, slots=True)
class Filters:
    """The period and store the figures are for (``store_code`` empty: the whole chain)."""

    start: date
    end: date
    store_id: uuid.UUID | None
    store_code: str


def _day(text: str, field: str) -> date | None:
    if not text.strip():
        return None
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise Invalid.field(field, _("Enter a date such as 2026-11-30")) from None
    analytics.check_day(day, field)
    return day


async def _filters(db: AsyncSession, me: Me, start: str, end: str, store: str) -> Filters:
    """The form's period and store, with the API's defaults; 422 naming the field."""
    first, last = _day(start, "from"), _day(end, "to")
    last = last or (
        first + timedelta(days=ANALYTICS_DAYS - 1) if first else await analytics.today(db)
    )
    first = first or last - timedelta(days=ANALYTICS_DAYS - 1)
    analytics.check_period(first, last, ("from", "to"))
    if not me.is_hq:  # a store manager: their own store, whatever the query says
        own = me.signed.store_id
        codes = await service.user_store_codes(db)
        return Filters(first, last, own, codes.get(own, "") if own else "")
    if not store:
        return Filters(first, last, None, "")
    ids = await store_codes(db)
    if store not in ids:
        ids = await store_codes(db, refresh=True)  # a store opened since the cache was filled
    if store not in ids:
        raise Invalid.field("store", _("No such store"))
    return Filters(first, last, ids[store], store)


@get("/analytics", name="console:analytics")
async def analytics_page(
    request: Request[Any, Any, Any],
    db: Db,
    start: FromDay = "",
    end: ToDay = "",
    store: StoreCode = "",
) -> Template:
    me = me_of(request.scope)
    allow(me, "analytics")
    form = {"from": start[:10], "to": end[:10], "store": store[:32]}
    stores = sorted((await service.user_store_codes(db)).values()) if me.is_hq else []
    try:
        wanted = await _filters(db, me, start, end, store)
    except Invalid as exc:
        errors = {e.field: e.message for e in exc.errors} or {"form": exc.detail}
        return render("analytics.html", me, 422, form=form, errors=errors, stores=stores)
    figures = await _figures(db, wanted)
    form = {"from": str(wanted.start), "to": str(wanted.end), "store": wanted.store_code}
    return render(
        "analytics.html",
        me,
        form=form,
        errors={},
        stores=stores,
        store=wanted.store_code,
        charts=charts(**figures),
        funnel_steps=funnel_steps(figures["funnel"]),
        repurchase_target=REPURCHASE_UPLIFT_TARGET,
        **figures,
    )


async def _figures(db: AsyncSession, f: Filters) -> dict[str, Any]:
    """Every figure of the period, from the API's own functions."""
    a, b, store_id = f.start, f.end, f.store_id
    return {
        "summary": await analytics.summary(db, start=a, end=b, store_id=store_id),
        "hourly": await analytics.hourly_sales(db, start=a, end=b, store_id=store_id),
        "categories": await analytics.repurchase_by_category(db, start=a, end=b, store_id=store_id),
        "tiers": await analytics.tier_mix(db, start=a, end=b, store_id=store_id),
        "funnel": await analytics.funnel(db, start=a, end=b, store_id=store_id),
    }


# ------------------------------------------------------------------ charts (pure)


def percent_of(rate: float | None) -> float | None:
    """A rate as a percentage for a chart's axis (0.7708 -> 77.08)."""
    return None if rate is None else round(rate * 100, 2)


def yuan_of(fen: int | None) -> float | None:
    return None if fen is None else fen / 100


def chart(kind: str, labels: list[str], *datasets: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A Chart.js description: ``type``, ``labels`` and ``datasets`` (``label``, ``data``);
    ``unit`` (``%``, ``¥``) for the axis; ``static/insights.js`` adds the colours."""
    return {"type": kind, "labels": labels, "datasets": list(datasets), **extra}


def series(label: str, data: list[Any]) -> dict[str, Any]:
    return {"label": label, "data": data}


def rates_chart(s: AnalyticsSummary) -> dict[str, Any]:
    """The headline rates beside their targets (a relative target has no bar)."""
    rows = [
        (_("Member share of sales"), s.member_share.rate, s.member_share.target),
        (_("Repurchase rate"), s.repurchase.rate, None),
        (_("Points redemption rate"), s.points_redemption.rate, s.points_redemption.industry),
        (_("Churn rate"), s.churn.churn_rate, s.churn.target_churn_rate),
        (_("Reactivation rate"), s.churn.reactivation_rate, None),
    ]
    return chart(
        "bar",
        [label for label, _now, _target in rows],
        series(_("Now"), [percent_of(now) for _label, now, _target in rows]),
        series(_("Target"), [percent_of(target) for _label, _now, target in rows]),
        unit="%",
    )


def average_chart(s: AnalyticsSummary) -> dict[str, Any]:
    return chart(
        "bar",
        [_("Members"), _("Non-members")],
        series(
            _("Average order"),
            [yuan_of(s.average_order.member_fen), yuan_of(s.average_order.non_member_fen)],
        ),
        unit="¥",
    )


def categories_chart(c: RepurchaseByCategory) -> dict[str, Any]:
    return chart(
        "bar",
        [x.category or _("(none)") for x in c.categories],
        series(_("Repurchase rate"), [percent_of(x.rate) for x in c.categories]),
        series(_("Benchmark"), [percent_of(x.benchmark) for x in c.categories]),
        unit="%",
    )


def hourly_chart(h: HourlySales) -> dict[str, Any]:
    return chart(
        "bar",
        [str(x.hour) for x in h.weekday],
        series(_("Weekdays"), [yuan_of(x.net_fen) for x in h.weekday]),
        series(_("Weekends"), [yuan_of(x.net_fen) for x in h.weekend]),
        unit="¥",
    )


def tiers_chart(t: TierMix) -> dict[str, Any]:
    return chart(
        "doughnut", [x.name for x in t.tiers], series(_("Members"), [x.members for x in t.tiers])
    )


def funnel_steps(f: Funnel) -> list[tuple[str, int]]:
    return [
        (_("Enrolled"), f.enrolled),
        (_("Bought"), f.purchased),
        (_("Bought again"), f.repeated),
        (_("Active"), f.active),
    ]


def funnel_chart(f: Funnel) -> dict[str, Any]:
    steps = funnel_steps(f)
    return chart(
        "bar",
        [label for label, _n in steps],
        series(_("Members"), [n for _label, n in steps]),
        horizontal=True,
    )


def churn_chart(s: AnalyticsSummary) -> dict[str, Any]:
    c = s.churn
    return chart(
        "bar",
        [_("Churn"), _("Reactivation")],
        series(_("Base"), [c.previous_active, c.lapsed]),
        series(_("Lost or won back"), [c.churned, c.reactivated]),
    )


def charts(
    *,
    summary: AnalyticsSummary,
    hourly: HourlySales,
    categories: RepurchaseByCategory,
    tiers: TierMix,
    funnel: Funnel,
) -> dict[str, dict[str, Any]]:
    """Every chart of the page, by name (the name of the table under it)."""
    return {
        "figures": rates_chart(summary),
        "average": average_chart(summary),
        "categories": categories_chart(categories),
        "hourly": hourly_chart(hourly),
        "tiers": tiers_chart(tiers),
        "funnel": funnel_chart(funnel),
        "churn": churn_chart(summary),
    }
