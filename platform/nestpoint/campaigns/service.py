"""Campaigns' rules: define, check and move a campaign through its states; its audience;
the holdout; and the one place that grants, exactly once per member and trigger.

How a grant is made (:func:`grant`), in the caller's transaction:

1. lock the campaign's row (``FOR UPDATE``): every grant of one campaign, from any job, runs
   one after another, and the row is taken before any member's points account (the one
   lock order: campaign, then accounts in member-id order, then what the services lock);
2. insert one ``campaign_grants`` row per (member, trigger) with ``ON CONFLICT DO NOTHING
   RETURNING``: only the rows inserted now go on, so a job retried, or two at once, grant
   nothing twice (the loser of the unique key waits for the winner's commit, then skips);
   a member in the holdout share gets a ``holdout`` row and nothing else;
3. per member: the caps (the member's grants of the campaign so far), then the budget,
   reserved by one conditional ``UPDATE campaigns SET spent = spent + n WHERE spent + n <=
   budget``; then the actions (points through the ledger, a coupon through
   ``coupons.service.issue``, a benefit through ``benefits.service.grant_once``, a message
   through ``messaging.service.queue_message``), each idempotent by the grant's cause.

The row and its effects commit together, or neither does. Nothing here commits.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Select, and_, func, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.audit.service import record
from nestpoint.benefits import service as benefits
from nestpoint.campaigns import templates
from nestpoint.campaigns.models import Campaign, CampaignGrant
from nestpoint.campaigns.schemas import (
    Action,
    Budget,
    CampaignIn,
    CampaignRead,
    CampaignSpec,
    Caps,
    GrantBenefit,
    GrantPoints,
    InstantiateIn,
    IssueCoupon,
    SendMessage,
)
from nestpoint.context import require_tenant
from nestpoint.coupons import service as coupons
from nestpoint.coupons.models import CouponTemplate
from nestpoint.db.base import new_id, table_of, utcnow
from nestpoint.db.pagination import Page, paginate
from nestpoint.errors import Conflict, FieldError, Invalid, NotFound
from nestpoint.idempotency import service as idempotency
from nestpoint.idempotency.service import Answer, fingerprint
from nestpoint.loyalty.rules import Program
from nestpoint.loyalty.service import get_program
from nestpoint.members.models import Member
from nestpoint.messaging import service as messaging
from nestpoint.points import service as points
from nestpoint.segments import rules
from nestpoint.segments import service as segments

SCOPE = "campaign"  # idempotency keys of campaign creation: the campaign's code
LIVE = ("scheduled", "running")
RESERVED_CODES = frozenset({"templates"})
DEFAULT_BENEFIT_DAYS = 30  # a granted benefit without an end or valid_days
INSERT_ROWS = 1000  # grant rows per INSERT (11 parameters each: under every driver's limit)
campaigns_table = table_of(Campaign)
grants_table = table_of(CampaignGrant)
ACTIONS: TypeAdapter[list[Action]] = TypeAdapter(list[Action])


def cause_id(campaign_id: uuid.UUID, trigger_key: str) -> str:
    """What a grant's ledger entry, coupon and entitlement name as their cause."""
    return f"{campaign_id}:{trigger_key}"


def in_holdout(seed: str, member_id: uuid.UUID, percent: int) -> bool:
    """Whether a member is in the campaign's control share: the first 8 bytes of
    SHA-256(``seed:member id``) modulo 10,000 fall under ``percent`` x 100. Reproducible
    (the seed is the campaign's), independent between campaigns."""
    if percent <= 0:
        return False
    digest = hashlib.sha256(f"{seed}:{member_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 < percent * 100


def live(campaign: Campaign, now: datetime) -> bool:
    """Active (scheduled or running) and within its window at ``now``."""
    return (
        campaign.status in LIVE
        and (campaign.starts_at is None or campaign.starts_at <= now)
        and (campaign.ends_at is None or now < campaign.ends_at)
    )


# ---------------------------------------------------------------------------- definition


def campaign_read(c: Campaign) -> CampaignRead:
    return CampaignRead(
        id=c.id,
        code=c.code,
        name=c.name,
        kind=c.kind,
        template=c.template,
        status=c.status,
        schedule=c.schedule,
        audience=c.audience,
        actions=c.actions,
        budget=Budget(points=c.budget_points, coupons=c.budget_coupons),
        caps=Caps(
            points_per_member=c.cap_points_per_member,
            coupons_per_member=c.cap_coupons_per_member,
            grants_per_member=c.cap_grants_per_member,
        ),
        spent_points=c.spent_points,
        spent_coupons=c.spent_coupons,
        starts_at=c.starts_at,
        ends_at=c.ends_at,
        goal=c.goal or None,
        holdout_percent=c.holdout_percent,
        created_at=c.created_at,
        updated_at=c.updated_at,
    )


async def check_references(session: AsyncSession, data: CampaignIn) -> None:
    """What the campaign names must exist in the chain: a 422 naming the field."""
    segment = data.audience.segment
    if segment is not None and await segments.find_segment(session, segment) is None:
        raise Invalid.field("audience.segment", f"no segment {segment!r}")
    if data.audience.rule is not None:
        await segments.check_rule(session, data.audience.rule, "audience.rule")
    for i, action in enumerate(data.actions):
        if isinstance(action, IssueCoupon):
            found = await session.scalar(
                select(CouponTemplate.id).where(CouponTemplate.code == action.template_code)
            )
            if found is None:
                raise Invalid.field(
                    f"actions.{i}.template_code", f"no coupon template {action.template_code!r}"
                )
        elif isinstance(action, GrantBenefit):
            item = (await benefits.get_catalog(session)).items.get(action.benefit_code)
            if item is None or not item.spec.active:
                raise Invalid.field(
                    f"actions.{i}.benefit_code", f"no active benefit {action.benefit_code!r}"
                )
        elif (
            isinstance(action, SendMessage)
            and await messaging.wording(session, action.template, "zh-CN") is None
        ):
            raise Invalid.field(f"actions.{i}.template", f"no template {action.template!r}")


def _new_campaign(data: CampaignIn, template: str, now: datetime) -> Campaign:
    return Campaign(
        id=new_id(),
        code=data.code,
        name=data.name,
        kind=data.kind,
        template=template,
        status="draft",
        schedule=data.schedule.model_dump(mode="json", exclude_none=True),
        audience=data.audience.model_dump(mode="json", exclude_none=True),
        actions=[a.model_dump(mode="json", exclude_none=True) for a in data.actions],
        budget_points=data.budget.points,
        budget_coupons=data.budget.coupons,
        spent_points=0,
        spent_coupons=0,
        cap_points_per_member=data.caps.points_per_member,
        cap_coupons_per_member=data.caps.coupons_per_member,
        cap_grants_per_member=data.caps.grants_per_member,
        starts_at=data.starts_at,
        ends_at=data.ends_at,
        goal=data.goal.model_dump(mode="json") if data.goal else {},
        holdout_percent=data.holdout_percent,
        holdout_seed=secrets.token_hex(16),
        last_run_key="",
        created_at=now,
        updated_at=now,
    )


async def create_campaign(
    session: AsyncSession, data: CampaignIn, *, template: str = "", request: Any = None
) -> Answer[CampaignRead]:
    """Create a draft campaign (``request``: what the client sent, when it is not ``data``);
    idempotent by its code through the idempotency keys (scope
    ``campaign``): the same request again answers the first 201, another request with the
    same code is a 409 naming ``code``. Audited (``campaigns.created``)."""
    if data.code in RESERVED_CODES:  # a path of its own: /campaigns/templates
        raise Invalid.field("code", f"{data.code!r} is reserved")
    request_hash = fingerprint(
        request or {"campaign": data.model_dump(mode="json"), "template": template}
    )
    earlier = await idempotency.replay(session, SCOPE, data.code, request_hash, field="code")
    if earlier is not None:
        return earlier
    if await find_campaign(session, data.code) is not None:
        raise Conflict(
            f"code: a campaign {data.code!r} exists",
            errors=[FieldError("code", "a campaign with this code exists")],
        )
    await check_references(session, data)
    campaign = _new_campaign(data, template, utcnow())
    answer = idempotency.created(campaign_read(campaign))
    claimed = await idempotency.claim(session, SCOPE, data.code, request_hash, answer, field="code")
    if claimed is not None:  # a concurrent identical request committed first
        return claimed
    session.add(campaign)
    await session.flush()
    record(
        session,
        "campaigns.created",
        "campaign",
        campaign.id,
        {"code": campaign.code, "kind": campaign.kind, "template": template},
    )
    return answer


async def instantiate(
    session: AsyncSession, key: str, values: InstantiateIn, now: datetime | None = None
) -> Answer[CampaignRead]:
    """The ready play ``key`` made into a draft campaign (as :func:`create_campaign`)."""
    play = templates.BY_KEY.get(key)
    if play is None:
        raise NotFound(f"no campaign template {key!r}")
    data = templates.campaign_of(play, values, now or utcnow())
    request = {"template": key, "values": values.model_dump(mode="json")}
    return await create_campaign(session, data, template=key, request=request)


async def apply_spec(session: AsyncSession, spec: CampaignSpec) -> list[str]:
    """A manifest's campaign: created (``create``) when its code is new, then activated
    (``activate``) when the spec says so and it is a draft; one that exists otherwise stays
    as it is (what it granted was granted under its terms). Returns the changes made."""
    changes: list[str] = []
    found = await find_campaign(session, spec.code)
    if found is None:
        data = CampaignIn.model_validate(spec.model_dump(exclude={"active"}))
        await create_campaign(session, data)
        changes.append("create")
        found = await get_campaign(session, spec.code)
    if spec.active and found.status == "draft":
        await activate(session, spec.code)
        changes.append("activate")
    return changes


async def find_campaign(session: AsyncSession, code: str) -> Campaign | None:
    return await session.scalar(select(Campaign).where(Campaign.code == code))


async def get_campaign(session: AsyncSession, code: str) -> Campaign:
    campaign = await find_campaign(session, code)
    if campaign is None:
        raise NotFound(f"no campaign {code!r}")
    return campaign


async def list_campaigns(
    session: AsyncSession, *, cursor: str | None, limit: int
) -> Page[Campaign]:
    return await paginate(
        session, select(Campaign), (Campaign.code, Campaign.id), cursor=cursor, limit=limit
    )


async def _locked(session: AsyncSession, code: str) -> Campaign:
    campaign = await session.scalar(
        select(Campaign)
        .where(Campaign.code == code)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if campaign is None:
        raise NotFound(f"no campaign {code!r}")
    return campaign


async def activate(session: AsyncSession, code: str) -> Campaign:
    """A draft becomes ``scheduled``: it runs from ``starts_at`` (or now). Again: nothing
    changes. A cancelled or ended campaign is a 409. Audited (``campaigns.activated``)."""
    campaign = await _locked(session, code)
    if campaign.status in LIVE:
        return campaign
    if campaign.status != "draft":
        raise Conflict(f"the campaign is {campaign.status}")
    campaign.status = "scheduled"
    campaign.updated_at = utcnow()
    await session.flush()
    record(session, "campaigns.activated", "campaign", campaign.id, {"code": code})
    return campaign


async def cancel(session: AsyncSession, code: str) -> Campaign:
    """Stop a campaign for good (what it granted stays). Again: nothing changes; an ended
    one is a 409. Audited (``campaigns.cancelled``)."""
    campaign = await _locked(session, code)
    if campaign.status == "cancelled":
        return campaign
    if campaign.status == "ended":
        raise Conflict("the campaign has ended")
    before = campaign.status
    campaign.status = "cancelled"
    campaign.updated_at = utcnow()
    await session.flush()
    record(session, "campaigns.cancelled", "campaign", campaign.id, {"code": code, "from": before})
    return campaign


# ---------------------------------------------------------------------------- audience


async def facts_at(session: AsyncSession, now: datetime) -> rules.Facts:
    """The chain, its local date at ``now`` and its time zone (the rules' clock)."""
    program = await get_program(session)
    return rules.Facts(
        require_tenant().tenant_id, now.astimezone(program.zone).date(), program.zone
    )


async def audience_statement(
    session: AsyncSession, campaign: Campaign, facts: rules.Facts
) -> Select[Any] | None:
    """``SELECT members.id`` of the campaign's audience at ``facts`` (the segments' compiler,
    so every table it reads is filtered by the tenant in the statement itself); None when
    its saved segment was deleted (no one)."""
    audience = campaign.audience or {}
    if audience.get("segment"):
        segment = await segments.find_segment(session, audience["segment"])
        if segment is None:
            return None
        rule = rules.parse_rule(segment.rule)
    elif audience.get("rule") is not None:
        rule = rules.parse_rule(audience["rule"], "audience.rule")
    else:
        return select(Member.id).where(
            Member.tenant_id == facts.tenant_id, Member.status == "active"
        )
    return rules.compile_rule(rule, facts)


# ---------------------------------------------------------------------------- granting


@dataclass(slots=True)
class Counts:
    granted: int = 0
    holdout: int = 0
    refused: int = 0

    def add(self, other: Counts) -> None:
        self.granted += other.granted
        self.holdout += other.holdout
        self.refused += other.refused


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one treated grant would give, from the campaign's actions."""

    actions: list[Any]
    points: int
    coupons: int


def _plan(campaign: Campaign) -> _Plan:
    actions = ACTIONS.validate_python(campaign.actions)
    return _Plan(
        actions,
        sum(a.points for a in actions if isinstance(a, GrantPoints)),
        sum(1 for a in actions if isinstance(a, IssueCoupon)),
    )


async def lock_campaign(session: AsyncSession, campaign_id: uuid.UUID) -> Campaign | None:
    return await session.scalar(
        select(Campaign)
        .where(Campaign.id == campaign_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def grant(
    session: AsyncSession,
    campaign_id: uuid.UUID,
    pairs: Sequence[tuple[uuid.UUID, str]],
    now: datetime,
) -> Counts:
    """Grant the campaign to each (member, trigger key) not granted before; see the
    module's note. Nothing when the campaign is not live at ``now``."""
    counts = Counts()
    pairs = sorted(set(pairs))
    if not pairs:
        return counts
    campaign = await lock_campaign(session, campaign_id)
    if campaign is None or not live(campaign, now):
        return counts
    if campaign.status == "scheduled":
        campaign.status = "running"
        campaign.updated_at = now
        await session.flush()
    tenant_id = require_tenant().tenant_id
    rows: list[dict[str, Any]] = [
        {
            "tenant_id": tenant_id,
            "id": new_id(),
            "campaign_id": campaign.id,
            "member_id": member_id,
            "trigger_key": key,
            "status": "holdout"
            if in_holdout(campaign.holdout_seed, member_id, campaign.holdout_percent)
            else "granted",
            "points": 0,
            "coupons": 0,
            "outcomes": [],
            "created_at": now,
        }
        for member_id, key in pairs
    ]
    inserted: list[Any] = []
    for start in range(0, len(rows), INSERT_ROWS):
        inserted += (
            await session.execute(
                postgresql.insert(grants_table)
                .values(rows[start : start + INSERT_ROWS])
                .on_conflict_do_nothing(
                    index_elements=["tenant_id", "campaign_id", "member_id", "trigger_key"]
                )
                .returning(
                    grants_table.c.id,
                    grants_table.c.member_id,
                    grants_table.c.trigger_key,
                    grants_table.c.status,
                )
            )
        ).all()
    plan = _plan(campaign)
    program = await get_program(session)
    for row in sorted(inserted, key=lambda r: (r.member_id, r.trigger_key)):
        if row.status == "holdout":
            counts.holdout += 1
            continue
        status = await _give(session, campaign, plan, program, row, now)
        if status == "granted":
            counts.granted += 1
        else:
            counts.refused += 1
    return counts


async def _member_totals(
    session: AsyncSession, campaign: Campaign, member_id: uuid.UUID, grant_id: uuid.UUID
) -> tuple[int, int, int]:
    """(points, coupons, grants) the member received from the campaign before this grant."""
    row = (
        await session.execute(
            select(
                func.coalesce(func.sum(grants_table.c.points), 0),
                func.coalesce(func.sum(grants_table.c.coupons), 0),
                func.count(),
            ).where(
                grants_table.c.tenant_id == campaign.tenant_id,
                grants_table.c.campaign_id == campaign.id,
                grants_table.c.member_id == member_id,
                grants_table.c.status == "granted",
                grants_table.c.id != grant_id,
            )
        )
    ).one()
    return int(row[0]), int(row[1]), int(row[2])


def _over_cap(campaign: Campaign, plan: _Plan, totals: tuple[int, int, int]) -> bool:
    points_so_far, coupons_so_far, grants_so_far = totals
    caps = (
        (campaign.cap_points_per_member, points_so_far + plan.points, plan.points),
        (campaign.cap_coupons_per_member, coupons_so_far + plan.coupons, plan.coupons),
        (campaign.cap_grants_per_member, grants_so_far + 1, 1),
    )
    return any(cap is not None and given and after > cap for cap, after, given in caps)


async def reserve(session: AsyncSession, campaign: Campaign, points_n: int, coupons_n: int) -> bool:
    """Take ``points_n`` and ``coupons_n`` from the budget in one conditional UPDATE: False
    (nothing taken) when either would pass its budget."""
    if not points_n and not coupons_n:
        return True
    c = campaigns_table.c
    done = await session.scalar(
        update(campaigns_table)
        .where(
            c.tenant_id == campaign.tenant_id,
            c.id == campaign.id,
            (c.budget_points.is_(None)) | (c.spent_points + points_n <= c.budget_points),
            (c.budget_coupons.is_(None)) | (c.spent_coupons + coupons_n <= c.budget_coupons),
        )
        .values(spent_points=c.spent_points + points_n, spent_coupons=c.spent_coupons + coupons_n)
        .returning(c.id)
    )
    return done is not None


async def _give_back(
    session: AsyncSession, campaign: Campaign, points_n: int, coupons_n: int
) -> None:
    """Return reserved budget an action did not use (a coupon out of stock)."""
    if not points_n and not coupons_n:
        return
    c = campaigns_table.c
    await session.execute(
        update(campaigns_table)
        .where(c.tenant_id == campaign.tenant_id, c.id == campaign.id)
        .values(spent_points=c.spent_points - points_n, spent_coupons=c.spent_coupons - coupons_n)
    )


async def _give(
    session: AsyncSession,
    campaign: Campaign,
    plan: _Plan,
    program: Program,
    row: Any,
    now: datetime,
) -> str:
    """The caps, the budget, then the actions of one treated grant; its final status."""
    member_id, key = row.member_id, row.trigger_key
    status = "granted"
    if _over_cap(campaign, plan, await _member_totals(session, campaign, member_id, row.id)):
        status = "capped"
    elif not await reserve(session, campaign, plan.points, plan.coupons):
        status = "over_budget"
    outcomes: list[dict[str, Any]] = []
    given_points = given_coupons = 0
    if status == "granted":
        cause = cause_id(campaign.id, key)
        for action in plan.actions:
            outcome = await _act(session, campaign, program, action, member_id, key, cause, now)
            outcomes.append(outcome)
            if outcome["outcome"] == "refused":
                await _give_back(
                    session,
                    campaign,
                    action.points if isinstance(action, GrantPoints) else 0,
                    1 if isinstance(action, IssueCoupon) else 0,
                )
            elif isinstance(action, GrantPoints):
                given_points += action.points
            elif isinstance(action, IssueCoupon):
                given_coupons += 1
    await session.execute(
        update(grants_table)
        .where(grants_table.c.tenant_id == campaign.tenant_id, grants_table.c.id == row.id)
        .values(status=status, points=given_points, coupons=given_coupons, outcomes=outcomes)
    )
    return status


async def _act(
    session: AsyncSession,
    campaign: Campaign,
    program: Program,
    action: Any,
    member_id: uuid.UUID,
    key: str,
    cause: str,
    now: datetime,
) -> dict[str, Any]:
    """One action for one member: ``{"type", "outcome": "done" | "refused", ...}``. A
    refusal (a coupon out of stock, a member erased) rolls back only its own savepoint."""
    kind = action.type
    try:
        async with session.begin_nested():
            if isinstance(action, GrantPoints):
                await points.grant_bonus(
                    session, program, member_id, action.points,
                    cause_type="campaign", cause_id=cause, reason=campaign.name, now=now,
                    actor=f"campaign:{campaign.code}",
                )  # fmt: skip
                return {"type": kind, "outcome": "done", "points": action.points}
            if isinstance(action, IssueCoupon):
                coupon = await coupons.issue(
                    session,
                    action.template_code,
                    member_id,
                    cause_type="campaign",
                    cause_id=cause,
                    now=now,
                )
                return {"type": kind, "outcome": "done", "coupon_id": str(coupon.id)}
            if isinstance(action, GrantBenefit):
                ends = campaign.ends_at or now + timedelta(days=DEFAULT_BENEFIT_DAYS)
                expires = now + timedelta(days=action.valid_days) if action.valid_days else ends
                await benefits.grant_once(
                    session,
                    member_id,
                    action.benefit_code,
                    source="campaign",
                    source_ref=cause,
                    now=now,
                    expires_at=expires,
                )
                return {"type": kind, "outcome": "done", "benefit_code": action.benefit_code}
            message = await messaging.queue_message(
                session,
                member_id=member_id,
                key=f"campaign:{cause}:{member_id}",
                purpose="campaign",
                template=action.template,
                params=dict(action.params),
            )
            return {"type": kind, "outcome": "done", "message_id": str(message.id)}
    except (Conflict, Invalid, NotFound) as exc:
        return {"type": kind, "outcome": "refused", "reason": exc.detail[:200]}


async def grants_of(
    session: AsyncSession, campaign_id: uuid.UUID, member_ids: Sequence[uuid.UUID] | None = None
) -> list[CampaignGrant]:
    """The campaign's grants (of these members), by member and trigger."""
    stmt = select(CampaignGrant).where(CampaignGrant.campaign_id == campaign_id)
    if member_ids is not None:
        stmt = stmt.where(CampaignGrant.member_id.in_(member_ids))
    rows = await session.scalars(stmt.order_by(CampaignGrant.member_id, CampaignGrant.trigger_key))
    return list(rows.all())


def audience_in(stmt: Select[Any], member_ids: Sequence[uuid.UUID]) -> Select[Any]:
    """The audience restricted to some members (those an event or a date names)."""
    return stmt.where(and_(Member.id.in_(member_ids)))
