"""HTTP routes of analytics: the headline figures of a period and the detailed series.

``from``/``to`` are dates in the tenant's time zone, both included (default: the 30 days
ending today); ``store`` a store code (a store key: its own store, the default). The
figures are ``nestpoint.analytics.service``'s, the console's too (docs/analytics.md).
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Annotated

from litestar import Controller, get
from litestar.params import QueryParameter

from nestpoint.analytics import service
from nestpoint.analytics.schemas import (
    DEFAULT_ACTIVE_DAYS,
    AnalyticsSummary,
    Funnel,
    HourlySales,
    RepurchaseByCategory,
    TierMix,
)
from nestpoint.api.deps import Db, requires
from nestpoint.api.problems import problems
from nestpoint.errors import Invalid
from nestpoint.tenancy.service import store_codes

FromQuery = Annotated[
    date | None,
    QueryParameter(
        name="from",
        required=False,
        description="First day (tenant's time zone); default: 29 days before `to`.",
    ),
]
ToQuery = Annotated[
    date | None,
    QueryParameter(name="to", required=False, description="Last day, included; default: today."),
]
StoreQuery = Annotated[
    str | None,
    QueryParameter(
        name="store",
        required=False,
        max_length=32,
        description="A store's code: only its orders (and its home members). A store key: "
        "its own store, the default.",
    ),
]
ActiveDaysQuery = Annotated[
    int,
    QueryParameter(
        name="active_days",
        ge=1,
        le=service.MAX_PERIOD_DAYS,
        description="An active member bought in the period's last N days (default 90).",
    ),
]
DEFAULT_DAYS = 30
READ = [requires("analytics:read")]
ABOUT = (
    " Needs `analytics:read`; a store key reads only its own store (403 naming `query.store` "
    "for another). 422 naming `query.to` for a period that ends before it starts or is longer "
    "than 366 days, `query.from` or `query.to` for a day outside 1970-01-01 to 9998-12-31, "
    "`query.store` for an unknown store."
)


async def _period(
    db: Db, start: date | None, end: date | None, store: str | None
) -> tuple[date, date, uuid.UUID | None]:
    """The query's period and store, defaults filled in and checked (names as sent)."""
    if start is not None:
        service.check_day(start, "query.from")
    if end is not None:
        service.check_day(end, "query.to")
    end = end or (start + timedelta(days=DEFAULT_DAYS - 1) if start else await service.today(db))
    start = start or end - timedelta(days=DEFAULT_DAYS - 1)
    service.check_period(start, end, ("query.from", "query.to"))
    store_id = None
    if store is not None:
        codes = await store_codes(db)
        if store not in codes:
            codes = await store_codes(db, refresh=True)
        if store not in codes:
            raise Invalid.field("query.store", f"no store with code {store!r}")
        store_id = codes[store]
    return start, end, service.store_in_reach(store_id, "query.store")


class AnalyticsController(Controller):
    """The figures the source documents ask HQ to watch."""

    path = "/analytics"
    tags = ["analytics"]

    @get(
        "/summary",
        guards=READ,
        responses=problems(422),
        summary="Every headline figure of a period",
        operation_id="getAnalyticsSummary",
        description=(
            "Member share of sales, member and non-member average order, repurchase rate, "
            "points redemption rate, churn and reactivation, new members: net of refunds, in "
            "fen, each with the source documents' target." + ABOUT
        ),
    )
    async def summary(
        self,
        db: Db,
        start: FromQuery = None,
        end: ToQuery = None,
        store: StoreQuery = None,
    ) -> AnalyticsSummary:
        a, b, store_id = await _period(db, start, end, store)
        return await service.summary(db, start=a, end=b, store_id=store_id)

    @get(
        "/hourly-sales",
        guards=READ,
        responses=problems(422),
        summary="Sales by local hour of the day, weekdays and weekends apart",
        operation_id="getAnalyticsHourlySales",
        description="Orders and net sales per hour (the tenant's time zone), members apart."
        + ABOUT,
    )
    async def hourly_sales(
        self,
        db: Db,
        start: FromQuery = None,
        end: ToQuery = None,
        store: StoreQuery = None,
    ) -> HourlySales:
        a, b, store_id = await _period(db, start, end, store)
        return await service.hourly_sales(db, start=a, end=b, store_id=store_id)

    @get(
        "/repurchase-by-category",
        guards=READ,
        responses=problems(422),
        summary="Members' repurchase rate per product category",
        operation_id="getAnalyticsRepurchaseByCategory",
        description="Per order-line category: members who bought it, those who bought it in "
        "two or more orders, net sales." + ABOUT,
    )
    async def repurchase_by_category(
        self,
        db: Db,
        start: FromQuery = None,
        end: ToQuery = None,
        store: StoreQuery = None,
    ) -> RepurchaseByCategory:
        a, b, store_id = await _period(db, start, end, store)
        return await service.repurchase_by_category(db, start=a, end=b, store_id=store_id)

    @get(
        "/tier-mix",
        guards=READ,
        responses=problems(422),
        summary="Active members per tier now",
        operation_id="getAnalyticsTierMix",
        description="In the ladder's order; with a store, its home members." + ABOUT,
    )
    async def tier_mix(
        self,
        db: Db,
        start: FromQuery = None,
        end: ToQuery = None,
        store: StoreQuery = None,
    ) -> TierMix:
        a, b, store_id = await _period(db, start, end, store)
        return await service.tier_mix(db, start=a, end=b, store_id=store_id)

    @get(
        "/funnel",
        guards=READ,
        responses=problems(422),
        summary="The lifecycle funnel: enrolled, bought, bought again, active",
        operation_id="getAnalyticsFunnel",
        description="Members who joined by the period's end and how far they went by then." + ABOUT,
    )
    async def funnel(
        self,
        db: Db,
        start: FromQuery = None,
        end: ToQuery = None,
        store: StoreQuery = None,
        active_days: ActiveDaysQuery = DEFAULT_ACTIVE_DAYS,
    ) -> Funnel:
        a, b, store_id = await _period(db, start, end, store)
        return await service.funnel(db, start=a, end=b, store_id=store_id, active_days=active_days)
