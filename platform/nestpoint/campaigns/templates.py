"""The ready plays of the source documents, each a template of a campaign: HQ lists them
(``GET /campaigns/templates``) and makes one into a draft campaign with a code and the few
values it needs (a coupon template, a benefit, a message template...; ``needs``).

Every play holds back 10% of its audience by default (``holdout_percent``), so each reports
its incremental effect, not only its activity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from nestpoint.campaigns.schemas import CampaignIn, InstantiateIn, TemplateRead
from nestpoint.errors import FieldError, Invalid

DEFAULT_HOLDOUT = 10
PLACEHOLDER = "<{}>"  # how the listing shows a value the template needs


@dataclass(frozen=True, slots=True)
class Play:
    key: str
    kind: str
    name: str
    description: str
    needs: tuple[str, ...]
    build: Callable[[InstantiateIn, datetime], dict[str, Any]]


def _coupon(v: InstantiateIn) -> dict[str, Any]:
    return {"type": "issue_coupon", "template_code": v.coupon_template}


def _message(v: InstantiateIn) -> dict[str, Any]:
    return {"type": "send_message", "template": v.message_template}


def _points(v: InstantiateIn, default: int) -> dict[str, Any]:
    return {"type": "grant_points", "points": v.points or default}


def _benefit(v: InstantiateIn) -> dict[str, Any]:
    return {"type": "grant_benefit", "benefit_code": v.benefit_code}


def _optional_message(v: InstantiateIn) -> list[dict[str, Any]]:
    return [_message(v)] if v.message_template else []


def _first_purchase(v: InstantiateIn, now: datetime) -> dict[str, Any]:
    return {
        "schedule": {"kind": "triggered", "on": "first_purchase"},
        "actions": [_points(v, 200), _coupon(v), *_optional_message(v)],
        "goal": {"metric": "reach", "target": 100},
    }


def _recruitment(v: InstantiateIn, now: datetime) -> dict[str, Any]:
    starts = v.starts_at or now
    return {
        "schedule": {"kind": "triggered", "on": "member_joined"},
        "actions": [_points(v, 100), _coupon(v), *_optional_message(v)],
        "starts_at": starts.isoformat(),
        "ends_at": (v.ends_at or starts + timedelta(days=7)).isoformat(),
        "goal": {"metric": "recruited", "target": 800},  # 会员招募周: 800 in a week
    }


def _birthday_month(v: InstantiateIn, now: datetime) -> dict[str, Any]:
    return {
        "schedule": {"kind": "triggered", "on": "birthday_month"},
        "actions": [_benefit(v), _coupon(v), *_optional_message(v)],
    }


def _member_day(v: InstantiateIn, now: datetime) -> dict[str, Any]:
    actions = [_message(v)] + ([_coupon(v)] if v.coupon_template else [])
    return {
        "schedule": {"kind": "recurring", "every": "monthly", "day_of_month": 18, "at": "09:00"},
        "actions": actions,
        "goal": {"metric": "orders", "target": 1000},
    }


def _festival(v: InstantiateIn, now: datetime) -> dict[str, Any]:
    assert v.starts_at is not None
    return {
        "schedule": {"kind": "one_off", "at": v.starts_at.isoformat()},
        "actions": [_benefit(v), _coupon(v), *_optional_message(v)],
        "starts_at": v.starts_at.isoformat(),
        "ends_at": v.ends_at.isoformat() if v.ends_at else None,
        "goal": {"metric": "revenue_fen", "target": 100_000_000},
    }


def _reactivation(v: InstantiateIn, now: datetime) -> dict[str, Any]:
    return {
        "schedule": {"kind": "recurring", "every": "weekly", "weekday": 1, "at": "10:00"},
        "audience": {"rule": {"field": "last_order_days_ago", "op": "gte", "value": 90}},
        "actions": [_coupon(v), _message(v)],
        "caps": {"coupons_per_member": 1},  # one win-back offer per member
        "goal": {"metric": "orders", "target": 100},
    }


def _step(trigger: dict[str, Any], with_coupon: bool, points: int = 0) -> Any:
    def build(v: InstantiateIn, now: datetime) -> dict[str, Any]:
        actions = [_message(v)]
        if with_coupon:
            actions.append(_coupon(v))
        if points:
            actions.append(_points(v, points))
        return {"schedule": {"kind": "triggered", **trigger}, "actions": actions}

    return build


PLAYS: tuple[Play, ...] = (
    Play(
        "first_purchase_gift",
        "first_purchase_gift",
        "First-purchase gift 首单礼",
        "On a member's first order: bonus points and a coupon for the next visit.",
        ("coupon_template",),
        _first_purchase,
    ),
    Play(
        "recruitment_week",
        "recruitment",
        "Recruitment week 会员招募周",
        "Every member who joins in the week gets points and a welcome coupon (goal: 800).",
        ("coupon_template",),
        _recruitment,
    ),
    Play(
        "birthday_month",
        "birthday_month",
        "Birthday month 生日月双倍积分+券",
        "In the member's birthday month: a points-multiplier benefit and a birthday coupon.",
        ("benefit_code", "coupon_template"),
        _birthday_month,
    ),
    Play(
        "member_day",
        "member_day",
        "Member day 会员日",
        "Every 18th at 09:00: the member-day reminder (and a coupon, if given).",
        ("message_template",),
        _member_day,
    ),
    Play(
        "festival_618",
        "festival",
        "Festival 618 双倍积分+满减券",
        "From the festival's start: double points (a multiplier benefit to its end) and a "
        "threshold coupon.",
        ("benefit_code", "coupon_template", "starts_at", "ends_at"),
        _festival,
    ),
    Play(
        "silent_reactivation",
        "reactivation",
        "Silent-member reactivation 沉默会员唤醒",
        "Every Monday: members without an order for 90 days get a coupon and a message.",
        ("coupon_template", "message_template"),
        _reactivation,
    ),
    Play(
        "milestone_hospital_bag",
        "milestone",
        "Hospital-bag reminder 待产包提醒 (34th week)",
        "In the 34th week of a pregnancy: the hospital-bag reminder and a coupon.",
        ("message_template", "coupon_template"),
        _step({"on": "pregnancy_week", "weeks": 34}, with_coupon=True),
    ),
    Play(
        "milestone_newborn_welcome",
        "milestone",
        "Newborn welcome 新生儿礼",
        "When a birth is recorded: a welcome message and bonus points.",
        ("message_template",),
        _step({"on": "child_age_days", "days": 0}, with_coupon=False, points=500),
    ),
    Play(
        "milestone_100_days",
        "milestone",
        "100 days 百天",
        "On the child's 100th day: a greeting and a coupon.",
        ("message_template", "coupon_template"),
        _step({"on": "child_age_days", "days": 100}, with_coupon=True),
    ),
    Play(
        "milestone_first_birthday",
        "milestone",
        "First birthday 周岁",
        "On the child's first birthday: a greeting and a coupon.",
        ("message_template", "coupon_template"),
        _step({"on": "child_age_months", "months": 12}, with_coupon=True),
    ),
    *(
        Play(
            f"milestone_formula_{months}m",
            "milestone",
            f"Formula stage at {months} months 奶粉换段",
            f"When the child turns {months} months: the next formula stage's reminder and a "
            "coupon.",
            ("message_template", "coupon_template"),
            _step({"on": "child_age_months", "months": months}, with_coupon=True),
        )
        for months in (6, 36)
    ),
)
BY_KEY = {play.key: play for play in PLAYS}


def _example() -> InstantiateIn:
    return InstantiateIn.model_construct(
        code="example",
        coupon_template=PLACEHOLDER.format("coupon_template"),
        benefit_code=PLACEHOLDER.format("benefit_code"),
        message_template=PLACEHOLDER.format("message_template"),
        points=None,
        starts_at=datetime(2026, 6, 1, 0, 0).astimezone(),
        ends_at=datetime(2026, 6, 19, 0, 0).astimezone(),
        audience=None,
        holdout_percent=None,
        name=None,
    )


def template_read(play: Play) -> TemplateRead:
    campaign = play.build(_example(), datetime(2026, 6, 1).astimezone())
    campaign = {k: v for k, v in campaign.items() if v is not None}
    campaign["holdout_percent"] = DEFAULT_HOLDOUT
    return TemplateRead(
        key=play.key,
        kind=play.kind,
        name=play.name,
        description=play.description,
        needs=list(play.needs),
        campaign=campaign,
    )


def campaign_of(play: Play, values: InstantiateIn, now: datetime) -> CampaignIn:
    """The draft campaign the play makes with ``values``; a value it needs and was not
    given is a 422 naming it."""
    missing = [name for name in play.needs if getattr(values, name) is None]
    if missing:
        raise Invalid(
            "; ".join(f"{name}: the template {play.key!r} needs it" for name in missing),
            errors=[FieldError(name, f"the template {play.key!r} needs it") for name in missing],
        )
    built = {k: v for k, v in play.build(values, now).items() if v is not None}
    built |= {
        "code": values.code,
        "name": values.name or play.name,
        "kind": play.kind,
        "holdout_percent": DEFAULT_HOLDOUT
        if values.holdout_percent is None
        else values.holdout_percent,
    }
    if values.audience is not None:
        built["audience"] = values.audience.model_dump(mode="json", exclude_none=True)
    if values.starts_at and "starts_at" not in built:
        built["starts_at"] = values.starts_at.isoformat()
    if values.ends_at and "ends_at" not in built:
        built["ends_at"] = values.ends_at.isoformat()
    try:
        return CampaignIn.model_validate(built)
    except ValidationError as exc:
        errors = [
            FieldError(".".join(str(part) for part in e["loc"]) or "body", e["msg"])
            for e in exc.errors(include_input=False, include_url=False)
        ]
        raise Invalid("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors) from None
