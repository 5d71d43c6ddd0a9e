"""HTTP routes of campaigns under ``/api/v1/campaigns``: translate HTTP to service calls."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.params import JSONBody, PathParameter

from nestpoint.api.answers import answered, created_spec
from nestpoint.api.deps import DEFAULT_LIMIT, CursorQuery, Db, LimitQuery, hq_only, requires
from nestpoint.api.problems import problems
from nestpoint.campaigns import service
from nestpoint.campaigns.results import results as campaign_results
from nestpoint.campaigns.schemas import (
    CODE_PATTERN,
    CampaignIn,
    CampaignList,
    CampaignRead,
    CampaignResults,
    InstantiateIn,
    TemplateList,
)
from nestpoint.campaigns.templates import PLAYS, template_read

CodePath = Annotated[str, PathParameter(name="code", pattern=CODE_PATTERN, max_length=64)]
KeyPath = Annotated[
    str, PathParameter(name="key", pattern=r"^[a-z][a-z0-9_]{0,63}$", max_length=64)
]
CREATE_NOTE = (
    "The campaign is a draft until activated. Idempotent by `code`: a retry replays the "
    "first 201 (`Idempotent-Replayed: true`); the code with another request, or a code in "
    "use, is a 409 naming `code`. What it names must exist: a 422 naming the field "
    "(`audience.segment`, `audience.rule.all.1.value`, `actions.0.template_code`, "
    "`actions.1.benefit_code`, `actions.2.template`). Audited (`campaigns.created`)."
)


class CampaignController(Controller):
    """A chain's campaigns: plays over an audience, with budgets, caps and a holdout (HQ)."""

    path = "/campaigns"
    tags = ["campaigns"]

    @post(
        "/",
        guards=[requires("campaigns:write"), hq_only],
        responses=problems(409, 422) | created_spec(CampaignRead),
        summary="Create a campaign (a draft)",
        operation_id="createCampaign",
        description="HQ key with `campaigns:write`. " + CREATE_NOTE,
    )
    async def create(self, db: Db, data: JSONBody[CampaignIn]) -> Response[CampaignRead]:
        return answered(await service.create_campaign(db, data), CampaignRead)

    @get(
        "/",
        guards=[requires("campaigns:read"), hq_only],
        responses=problems(),
        summary="The chain's campaigns, by code",
        operation_id="listCampaigns",
        description="HQ key with `campaigns:read`; cursor-paginated.",
    )
    async def list(
        self, db: Db, cursor: CursorQuery = None, limit: LimitQuery = DEFAULT_LIMIT
    ) -> CampaignList:
        page = await service.list_campaigns(db, cursor=cursor, limit=limit)
        return CampaignList(
            items=[service.campaign_read(c) for c in page.items], next_cursor=page.next_cursor
        )

    @get(
        "/templates",
        guards=[requires("campaigns:read"), hq_only],
        responses=problems(),
        summary="The ready plays, each a template of a campaign",
        operation_id="listCampaignTemplates",
        description=(
            "First-purchase gift, recruitment week, birthday month, member day, festival 618, "
            "silent-member reactivation and the baby-milestone journey's steps, each with "
            "the values it `needs` and the campaign it makes (docs/campaigns.md)."
        ),
    )
    async def templates(self) -> TemplateList:
        return TemplateList(items=[template_read(p) for p in PLAYS])

    @post(
        "/templates/{key:str}/instantiate",
        guards=[requires("campaigns:write"), hq_only],
        responses=problems(404, 409, 422) | created_spec(CampaignRead),
        summary="Make a ready play into a draft campaign",
        operation_id="instantiateCampaignTemplate",
        description=(
            "HQ key with `campaigns:write`. An unknown template is a 404; a value the "
            "template needs and was not given is a 422 naming it (`coupon_template`). "
            + CREATE_NOTE
        ),
    )
    async def instantiate(
        self, db: Db, key: KeyPath, data: JSONBody[InstantiateIn]
    ) -> Response[CampaignRead]:
        return answered(await service.instantiate(db, key, data), CampaignRead)

    @get(
        "/{code:str}",
        guards=[requires("campaigns:read"), hq_only],
        responses=problems(404),
        summary="One campaign",
        operation_id="getCampaign",
        description="With the budget spent so far (`spent_points`, `spent_coupons`).",
    )
    async def detail(self, db: Db, code: CodePath) -> CampaignRead:
        return service.campaign_read(await service.get_campaign(db, code))

    @post(
        "/{code:str}/activate",
        guards=[requires("campaigns:write"), hq_only],
        responses=problems(404, 409),
        status_code=200,
        summary="Activate a draft campaign",
        operation_id="activateCampaign",
        description=(
            "HQ key with `campaigns:write`. The campaign runs from `starts_at` (or now) on its "
            "schedule. Again: nothing changes (200). A cancelled or ended campaign is a 409. "
            "Audited (`campaigns.activated`)."
        ),
    )
    async def activate(self, db: Db, code: CodePath) -> CampaignRead:
        return service.campaign_read(await service.activate(db, code))

    @post(
        "/{code:str}/cancel",
        guards=[requires("campaigns:write"), hq_only],
        responses=problems(404, 409),
        status_code=200,
        summary="Cancel a campaign for good",
        operation_id="cancelCampaign",
        description=(
            "HQ key with `campaigns:write`. What it granted stays. Again: nothing changes "
            "(200); an ended campaign is a 409. Audited (`campaigns.cancelled`)."
        ),
    )
    async def cancel(self, db: Db, code: CodePath) -> CampaignRead:
        return service.campaign_read(await service.cancel(db, code))

    @get(
        "/{code:str}/results",
        guards=[requires("campaigns:read"), hq_only],
        responses=problems(404),
        summary="A campaign's results: reach, redemption, uplift, cost, attainment",
        operation_id="getCampaignResults",
        description=(
            "Treated members against the holdout over the campaign's window: orders and "
            "revenue per member with the uplift and its 95% interval (Welch's normal "
            "approximation), cost in points (the ledger's) and redeemed coupon value, "
            "attainment against the goal, first-month repurchase of recruited members "
            "(docs/campaigns.md)."
        ),
    )
    async def results(self, db: Db, code: CodePath) -> CampaignResults:
        return await campaign_results(db, await service.get_campaign(db, code))
