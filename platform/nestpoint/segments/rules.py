"""The rule language of custom segments: a JSON tree, validated, compiled to one SELECT.

A rule is ``{"all": [rule, ...]}``, ``{"any": [rule, ...]}``, ``{"not": rule}`` or a
condition ``{"field": ..., "op": ..., "value": ...}`` over a member's fields, their
children and their orders (docs/segments.md lists every field). :func:`parse_rule` checks
a tree with pydantic (each condition's shape chosen by its ``field``) and the limits below,
naming the path of a bad node (``rule.all.1.value``); :func:`compile_rule` turns it into
``SELECT members.id`` with set-based subqueries (EXISTS / IN over children, orders, order
lines, point accounts, stores, and the built-in segments' ``member_segments``).

Tenant safety: every table the statement reads is filtered by ``tenant_id = :tenant``
explicitly, in the statement itself (tests/segments/test_tenant_safety.py runs compiled
trees through connections that are not scoped to any tenant). Dates are computed from the
chain's local today and its time zone, so the statement is the same on PostgreSQL and
SQLite (plain comparisons of dates and timestamps, no date arithmetic in SQL).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeAlias, Union
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    exists,
    extract,
    false,
    func,
    not_,
    or_,
    select,
    true,
)

from nestpoint.errors import FieldError, Invalid
from nestpoint.members import dates
from nestpoint.members.models import Child, Member
from nestpoint.members.schemas import Gender, JoinChannel, Stage
from nestpoint.members.service import has_tag
from nestpoint.orders.models import Order, OrderLine
from nestpoint.points.models import PointAccount
from nestpoint.segments.builtin import Lifecycle, RfmGroup, ValueCircle
from nestpoint.segments.models import MemberSegment
from nestpoint.tenancy.models import Store
from nestpoint.text import required

MAX_CONDITIONS = 50  # conditions (leaves) in one tree
MAX_DEPTH = 6  # levels of all/any/not above a condition, plus the condition
MAX_VALUES = 50  # values of one "in"
MAX_DAYS = 3650  # ten years back
COUNTED = ("paid", "partially_refunded")  # orders that count (a fully refunded one does not)

Code = Annotated[str, required(32)]
Days = Annotated[int, Field(ge=0, le=MAX_DAYS)]
Amount = Annotated[int, Field(ge=0, le=10**15)]


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Leaf(_Node):
    tag: ClassVar[str]


class TierCond(_Leaf):
    """Members in one of these tiers (tier codes)."""

    tag: ClassVar[str] = "tier"
    field: Literal["tier"]
    op: Literal["in"]
    value: Annotated[list[Code], Field(min_length=1, max_length=MAX_VALUES)]


class GenderCond(_Leaf):
    tag: ClassVar[str] = "gender"
    field: Literal["gender"]
    op: Literal["eq", "in"]
    value: Gender | Annotated[list[Gender], Field(min_length=1, max_length=3)]

    @model_validator(mode="after")
    def _value_fits_op(self) -> GenderCond:
        if (self.op == "eq") != isinstance(self.value, str):
            raise ValueError("`eq` takes one gender, `in` a list of genders")
        return self


class JoinChannelCond(_Leaf):
    tag: ClassVar[str] = "join_channel"
    field: Literal["join_channel"]
    op: Literal["in"]
    value: Annotated[list[JoinChannel], Field(min_length=1, max_length=MAX_VALUES)]


class HomeStoreCond(_Leaf):
    """Members whose home store is one of these (store codes)."""

    tag: ClassVar[str] = "home_store"
    field: Literal["home_store"]
    op: Literal["in"]
    value: Annotated[list[Code], Field(min_length=1, max_length=MAX_VALUES)]


class JoinedDaysAgoCond(_Leaf):
    """Days since the member joined (local dates): ``gte``/``lte`` N, or ``between`` [A, B]."""

    tag: ClassVar[str] = "joined_days_ago"
    field: Literal["joined_days_ago"]
    op: Literal["gte", "lte", "between"]
    value: Days | Annotated[list[Days], Field(min_length=2, max_length=2)]

    @model_validator(mode="after")
    def _value_fits_op(self) -> JoinedDaysAgoCond:
        if (self.op == "between") != isinstance(self.value, list):
            raise ValueError("`between` takes [low, high], `gte` and `lte` one number of days")
        if isinstance(self.value, list) and self.value[0] > self.value[1]:
            raise ValueError("`between` takes [low, high] with low <= high")
        return self


class BirthdayMonthCond(_Leaf):
    tag: ClassVar[str] = "birthday_month"
    field: Literal["birthday_month"]
    op: Literal["in"]
    value: Annotated[list[Annotated[int, Field(ge=1, le=12)]], Field(min_length=1, max_length=12)]


class TagCond(_Leaf):
    tag: ClassVar[str] = "tag"
    field: Literal["tag"]
    op: Literal["has"]
    value: Annotated[str, required(32)]


class GrowthValueCond(_Leaf):
    tag: ClassVar[str] = "growth_value"
    field: Literal["growth_value"]
    op: Literal["gte", "lte"]
    value: Amount


class PointsBalanceCond(_Leaf):
    """The member's points balance (a member without an account has 0)."""

    tag: ClassVar[str] = "points_balance"
    field: Literal["points_balance"]
    op: Literal["gte", "lte"]
    value: Amount


class LastOrderDaysAgoCond(_Leaf):
    """Days since the member's last counted order (local dates); a member who never
    ordered is infinitely long ago: in every ``gte``, in no ``lte``."""

    tag: ClassVar[str] = "last_order_days_ago"
    field: Literal["last_order_days_ago"]
    op: Literal["gte", "lte"]
    value: Days


class ChildStageCond(_Leaf):
    """Members with a child (or a pregnancy) at one of these stages today."""

    tag: ClassVar[str] = "child_stage"
    field: Literal["child_stage"]
    op: Literal["in"]
    value: Annotated[list[Stage], Field(min_length=1, max_length=7)]


class DueWithinWeeksCond(_Leaf):
    """Members with a pregnancy due between today and N weeks from today."""

    tag: ClassVar[str] = "due_within_weeks"
    field: Literal["due_within_weeks"]
    op: Literal["lte"]
    value: Annotated[int, Field(ge=0, le=45)]


class TurnsMonths(_Node):
    months: Annotated[int, Field(ge=0, le=216)]
    within_days: Annotated[int, Field(ge=0, le=366)]


class ChildTurnsMonthsCond(_Leaf):
    """Members with a child turning ``months`` months old between today and
    ``within_days`` days from today."""

    tag: ClassVar[str] = "child_turns_months"
    field: Literal["child_turns_months"]
    op: Literal["within"] = "within"
    value: TurnsMonths


class _Aggregate(_Leaf):
    op: Literal["gte", "lte"]
    value: Amount
    days: Annotated[int, Field(ge=1, le=MAX_DAYS)] = Field(
        description="Over the last N days (today included)."
    )
    category: Annotated[str, required(64)] | None = Field(
        default=None, description="Only order lines of this category."
    )


class SpendCond(_Aggregate):
    """Spend in fen (net of refunds) over the last ``days`` days."""

    tag: ClassVar[str] = "spend_fen"
    field: Literal["spend_fen"]


class OrdersCond(_Aggregate):
    """Number of counted orders over the last ``days`` days."""

    tag: ClassVar[str] = "orders"
    field: Literal["orders"]


class RfmGroupCond(_Leaf):
    """Members in one of these RFM groups (as of the last recomputation of the built-in
    segments; a member not yet computed is in none)."""

    tag: ClassVar[str] = "rfm_group"
    field: Literal["rfm_group"]
    op: Literal["in"]
    value: Annotated[list[RfmGroup], Field(min_length=1, max_length=9)]


class ValueCircleCond(_Leaf):
    """Members in one of these value circles (as of the last recomputation)."""

    tag: ClassVar[str] = "value_circle"
    field: Literal["value_circle"]
    op: Literal["in"]
    value: Annotated[list[ValueCircle], Field(min_length=1, max_length=4)]


class LifecycleCond(_Leaf):
    """Members at one of these lifecycle stages (as of the last recomputation)."""

    tag: ClassVar[str] = "lifecycle"
    field: Literal["lifecycle"]
    op: Literal["in"]
    value: Annotated[list[Lifecycle], Field(min_length=1, max_length=4)]


LEAVES: tuple[type[_Leaf], ...] = (
    TierCond,
    GenderCond,
    JoinChannelCond,
    HomeStoreCond,
    JoinedDaysAgoCond,
    BirthdayMonthCond,
    TagCond,
    GrowthValueCond,
    PointsBalanceCond,
    LastOrderDaysAgoCond,
    ChildStageCond,
    DueWithinWeeksCond,
    ChildTurnsMonthsCond,
    SpendCond,
    OrdersCond,
    RfmGroupCond,
    ValueCircleCond,
    LifecycleCond,
)
FIELDS = tuple(leaf.tag for leaf in LEAVES)
COMBINATORS = ("all", "any", "not")


class AllRule(_Node):
    all: Annotated[list[Rule], Field(min_length=1, max_length=MAX_CONDITIONS)]


class AnyRule(_Node):
    any: Annotated[list[Rule], Field(min_length=1, max_length=MAX_CONDITIONS)]


class NotRule(_Node):
    not_: Rule = Field(alias="not")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def rule_tag(value: Any) -> str | None:
    """Which kind of node ``value`` is: ``all``, ``any``, ``not`` or a condition's field."""
    if isinstance(value, dict):
        if "field" in value:
            return value["field"] if isinstance(value["field"], str) else None
        for key in COMBINATORS:
            if key in value:
                return key
        return None
    if isinstance(value, _Leaf):
        return value.tag
    combinators: dict[type[Any], str] = {AllRule: "all", AnyRule: "any", NotRule: "not"}
    return combinators.get(type(value))


_NODE_ERROR = (
    'a rule is {"all": [rules]}, {"any": [rules]}, {"not": rule} or a condition '
    '{"field", "op", "value"} with field one of ' + ", ".join(FIELDS)
)

_TAGGED = (
    Annotated[AllRule, Tag("all")],
    Annotated[AnyRule, Tag("any")],
    Annotated[NotRule, Tag("not")],
    *(Annotated[leaf, Tag(leaf.tag)] for leaf in LEAVES),
)
if TYPE_CHECKING:
    Rule: TypeAlias = Any
else:
    Rule = Annotated[
        Union[_TAGGED],  # noqa: UP007
        Discriminator(rule_tag, custom_error_type="rule", custom_error_message=_NODE_ERROR),
    ]

for _model in (AllRule, AnyRule, NotRule):
    _model.model_rebuild()

RULE: TypeAdapter[Any] = TypeAdapter(Rule)


# ---------------------------------------------------------------------------- parsing


def _clean_path(loc: tuple[int | str, ...], raw: Any) -> list[str]:
    """Pydantic's location without the union's tags: ``all.1.value``, as the body has it."""
    out: list[str] = []
    node, at_rule, into_rules = raw, True, False
    for element in loc:
        if at_rule and element == rule_tag(node):
            at_rule = False
            into_rules = element in COMBINATORS
            continue
        if isinstance(element, str) and not isinstance(node, dict):
            continue  # the member of a plain union that was tried (`int`, `list[int]`)
        out.append(str(element))
        if isinstance(node, dict) and isinstance(element, str):
            node = node.get(element)
            at_rule = into_rules and element == "not"
            into_rules = into_rules and element in ("all", "any")
        elif isinstance(node, list) and isinstance(element, int) and element < len(node):
            node = node[element]
            at_rule, into_rules = into_rules, False
        else:
            node, at_rule, into_rules = None, False, False
    if at_rule and isinstance(node, dict) and "field" in node and rule_tag(node) not in FIELDS:
        out.append("field")  # an unknown field: name the node's "field"
    return out


def parse_rule(raw: Any, path: str = "rule") -> Any:
    """The rule tree of ``raw`` (a decoded JSON value), or :class:`Invalid` (422: the API's
    schema says only "an object", the grammar is checked here) naming every bad node by its
    path (``rule.all.1.value``); over the limits, naming the node where a limit is passed."""
    _check_size(raw, path)
    try:
        rule = RULE.validate_python(raw, strict=True)
    except ValidationError as exc:
        errors: list[FieldError] = []
        for error in exc.errors(include_input=False, include_url=False):
            where = ".".join([path, *_clean_path(tuple(error["loc"]), raw)])
            if FieldError(where, error["msg"]) not in errors:
                errors.append(FieldError(where, error["msg"]))
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
        raise Invalid(detail, errors=errors) from None
    return rule


def _check_size(raw: Any, path: str) -> None:
    """At most :data:`MAX_DEPTH` levels and :data:`MAX_CONDITIONS` conditions, checked on
    the raw tree before pydantic reads it."""
    count = 0

    def walk(node: Any, where: str, depth: int) -> None:
        nonlocal count
        if depth > MAX_DEPTH:
            raise Invalid.field(where, f"a rule is at most {MAX_DEPTH} levels deep")
        if not isinstance(node, dict) or "field" in node:
            count += 1
            if count > MAX_CONDITIONS:
                raise Invalid.field(where, f"a rule has at most {MAX_CONDITIONS} conditions")
            return
        for key in ("all", "any"):
            if isinstance(node.get(key), list):
                for i, child in enumerate(node[key]):
                    walk(child, f"{where}.{key}.{i}", depth + 1)
        if "not" in node:
            walk(node["not"], f"{where}.not", depth + 1)

    walk(raw, path, 1)


def conditions(rule: Any) -> list[Any]:
    """Every condition of the tree, in order."""
    if isinstance(rule, AllRule):
        return [c for r in rule.all for c in conditions(r)]
    if isinstance(rule, AnyRule):
        return [c for r in rule.any for c in conditions(r)]
    if isinstance(rule, NotRule):
        return conditions(rule.not_)
    return [rule]


def store_codes(rule: Any) -> set[str]:
    return {code for c in conditions(rule) if isinstance(c, HomeStoreCond) for code in c.value}


def dump_rule(rule: Any) -> dict[str, Any]:
    """The tree as JSON (``not`` by its name), as it is stored."""
    return dict(RULE.dump_python(rule, mode="json", by_alias=True, exclude_none=True))


# ---------------------------------------------------------------------------- compiling


@dataclass(frozen=True, slots=True)
class Facts:
    """What a compiled rule is bound to: the tenant, its local today and time zone."""

    tenant_id: uuid.UUID
    today: date
    zone: ZoneInfo

    def day_starts(self, day: date) -> datetime:
        """The UTC instant the local ``day`` starts."""
        return datetime.combine(day, time(0), tzinfo=self.zone).astimezone(UTC)


def compile_rule(rule: Any, facts: Facts) -> Select[Any]:
    """``SELECT members.id`` of the tenant's active members the rule holds for."""
    return select(Member.id).where(
        Member.tenant_id == facts.tenant_id,
        Member.status == "active",
        _condition(rule, facts),
    )


def _condition(rule: Any, facts: Facts) -> ColumnElement[bool]:
    if isinstance(rule, AllRule):
        return and_(true(), *(_condition(r, facts) for r in rule.all))
    if isinstance(rule, AnyRule):
        return or_(false(), *(_condition(r, facts) for r in rule.any))
    if isinstance(rule, NotRule):
        return not_(_condition(rule.not_, facts))
    return _LEAF_SQL[type(rule)](rule, facts)


def _compare(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    compared: ColumnElement[bool] = column >= value if op == "gte" else column <= value
    return compared


def _holds(op: str, value: int, actual: int) -> bool:
    return actual >= value if op == "gte" else actual <= value


def _tier(c: TierCond, f: Facts) -> ColumnElement[bool]:
    # Each nullable column is tested for NULL first: a condition is never NULL, so `not`
    # of it is its exact complement.
    return and_(Member.tier_code.is_not(None), Member.tier_code.in_(c.value))


def _gender(c: GenderCond, f: Facts) -> ColumnElement[bool]:
    return Member.gender == c.value if isinstance(c.value, str) else Member.gender.in_(c.value)


def _join_channel(c: JoinChannelCond, f: Facts) -> ColumnElement[bool]:
    return Member.join_channel.in_(c.value)


def _home_store(c: HomeStoreCond, f: Facts) -> ColumnElement[bool]:
    stores = select(Store.id).where(Store.tenant_id == f.tenant_id, Store.code.in_(c.value))
    return and_(Member.home_store_id.is_not(None), Member.home_store_id.in_(stores))


def _joined(c: JoinedDaysAgoCond, f: Facts) -> ColumnElement[bool]:
    low, high = c.value if isinstance(c.value, list) else [c.value, c.value]
    parts = []
    if c.op in ("gte", "between"):  # joined on or before today - low
        parts.append(Member.joined_at < f.day_starts(f.today - timedelta(days=low - 1)))
    if c.op in ("lte", "between"):  # joined on or after today - high
        parts.append(Member.joined_at >= f.day_starts(f.today - timedelta(days=high)))
    return and_(*parts)


def _birthday_month(c: BirthdayMonthCond, f: Facts) -> ColumnElement[bool]:
    return and_(Member.birthday.is_not(None), extract("month", Member.birthday).in_(c.value))


def _tag(c: TagCond, f: Facts) -> ColumnElement[bool]:
    return has_tag(c.value)  # type: ignore[no-any-return]


def _growth(c: GrowthValueCond, f: Facts) -> ColumnElement[bool]:
    return _compare(Member.growth_value, c.op, c.value)


def _account(f: Facts, *where: Any) -> ColumnElement[bool]:
    return exists().where(
        PointAccount.tenant_id == f.tenant_id, PointAccount.member_id == Member.id, *where
    )


def _points(c: PointsBalanceCond, f: Facts) -> ColumnElement[bool]:
    matching = _account(f, _compare(PointAccount.balance, c.op, c.value))
    if _holds(c.op, c.value, 0):  # no account: a balance of 0
        return or_(matching, ~_account(f))
    return matching


def _counted_order(f: Facts, since: datetime) -> ColumnElement[bool]:
    return exists().where(
        Order.tenant_id == f.tenant_id,
        Order.member_id == Member.id,
        Order.status.in_(COUNTED),
        Order.paid_at >= since,
    )


def _last_order(c: LastOrderDaysAgoCond, f: Facts) -> ColumnElement[bool]:
    if c.op == "lte":  # an order on or after today - N
        return _counted_order(f, f.day_starts(f.today - timedelta(days=c.value)))
    # gte: no order after today - N (never ordered included)
    return ~_counted_order(f, f.day_starts(f.today - timedelta(days=c.value - 1)))


def _child(f: Facts, *where: Any) -> ColumnElement[bool]:
    return exists().where(Child.tenant_id == f.tenant_id, Child.member_id == Member.id, *where)


def _stage_range(stage: str, today: date) -> ColumnElement[bool]:
    """A child at ``stage`` today, as a range of birth (or due) dates: the same bounds as
    ``members.service.stage_of``."""
    overdue_before = today - dates.OVERDUE_AFTER
    if stage == "pregnant":
        return and_(Child.birth_date.is_(None), Child.due_date >= overdue_before)
    if stage == "birth_overdue":
        return and_(Child.birth_date.is_(None), Child.due_date < overdue_before)
    if stage == "older":
        return Child.birth_date <= today - relativedelta(months=72)
    low, high = {"0-6m": (0, 6), "6-12m": (6, 12), "1-3y": (12, 36), "3-6y": (36, 72)}[stage]
    return and_(
        Child.birth_date <= today - relativedelta(months=low),
        Child.birth_date > today - relativedelta(months=high),
    )


def _stage(c: ChildStageCond, f: Facts) -> ColumnElement[bool]:
    return _child(f, or_(*(_stage_range(s, f.today) for s in c.value)))


def _due(c: DueWithinWeeksCond, f: Facts) -> ColumnElement[bool]:
    return _child(
        f,
        Child.birth_date.is_(None),
        Child.due_date >= f.today,
        Child.due_date <= f.today + timedelta(weeks=c.value),
    )


def _turns(c: ChildTurnsMonthsCond, f: Facts) -> ColumnElement[bool]:
    # Turning N months on a day in [today, today + D]: born in [today - N months,
    # today + D - N months].
    months = relativedelta(months=c.value.months)
    return _child(
        f,
        Child.birth_date >= f.today - months,
        Child.birth_date <= f.today + timedelta(days=c.value.within_days) - months,
    )


def _aggregate(c: SpendCond | OrdersCond, f: Facts) -> ColumnElement[bool]:
    """Members whose total over the window holds; a member without an order in the window
    has a total of 0 (in when 0 holds, as ``lte``)."""
    since = f.day_starts(f.today - timedelta(days=c.days - 1))
    window = and_(
        Order.tenant_id == f.tenant_id,
        Order.member_id.is_not(None),
        Order.status.in_(COUNTED),
        Order.paid_at >= since,
    )
    if c.category is None:
        total = (
            func.sum(Order.total_fen - Order.refunded_fen)
            if isinstance(c, SpendCond)
            else func.count(Order.id)
        )
        per_member = select(Order.member_id).where(window)
    else:
        total = (
            func.sum(OrderLine.paid_fen - OrderLine.refunded_fen)
            if isinstance(c, SpendCond)
            else func.count(func.distinct(Order.id))
        )
        per_member = (
            select(Order.member_id)
            .join(
                OrderLine,
                and_(OrderLine.tenant_id == Order.tenant_id, OrderLine.order_id == Order.id),
            )
            .where(window, OrderLine.tenant_id == f.tenant_id, OrderLine.category == c.category)
        )
    grouped = per_member.group_by(Order.member_id)
    if _holds(c.op, c.value, 0):
        failing = grouped.having(not_(_compare(total, c.op, c.value)))
        return Member.id.not_in(failing)
    return Member.id.in_(grouped.having(_compare(total, c.op, c.value)))


def _builtin(c: RfmGroupCond | ValueCircleCond | LifecycleCond, f: Facts) -> ColumnElement[bool]:
    """The member's row of the built-in segments holds one of the codes."""
    return exists().where(
        MemberSegment.tenant_id == f.tenant_id,
        MemberSegment.member_id == Member.id,
        getattr(MemberSegment, c.tag).in_(c.value),
    )


_LEAF_SQL: dict[type[Any], Callable[[Any, Facts], ColumnElement[bool]]] = {
    TierCond: _tier,
    GenderCond: _gender,
    JoinChannelCond: _join_channel,
    HomeStoreCond: _home_store,
    JoinedDaysAgoCond: _joined,
    BirthdayMonthCond: _birthday_month,
    TagCond: _tag,
    GrowthValueCond: _growth,
    PointsBalanceCond: _points,
    LastOrderDaysAgoCond: _last_order,
    ChildStageCond: _stage,
    DueWithinWeeksCond: _due,
    ChildTurnsMonthsCond: _turns,
    SpendCond: _aggregate,
    OrdersCond: _aggregate,
    RfmGroupCond: _builtin,
    ValueCircleCond: _builtin,
    LifecycleCond: _builtin,
}
