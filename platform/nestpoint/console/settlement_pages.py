"""The console's settlement pages (``/console/settlement``): the chain's months with their
status, a month's lines per store and the check that they add up to zero, each table a CSV.

HQ's admin computes a month's draft and closes a month (after a confirmation step); both go
through ``nestpoint.settlement.service``, the functions behind ``/api/v1/settlements``, so
the rules, the locks, the audit (``settlement.computed``, ``settlement.closed``) and the
``settlement.period_closed`` event are the API's. The close form carries its own
idempotency key: submitting it twice closes once and answers the same figures.

A store manager sees their own store's lines only, as a store key with ``settlement:read``
does (the service keeps them): a franchisee reads what it owes HQ or is owed, never another
store's figures nor HQ's line.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.params import FromPath
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from nestpoint.api.deps import Db
from nestpoint.console.pages import allow, form_of, new_reference, render, validated
from nestpoint.console.web import Me, _, me_of
from nestpoint.context import current_actor
from nestpoint.db import utcnow
from nestpoint.errors import FieldError, Forbidden, Invalid
from nestpoint.settlement import service as settlement
from nestpoint.settlement.schemas import CloseIn, PeriodFigures, SettlementLineRead, SettlementRules


def may_change(me: Me) -> bool:
    """HQ's admin computes and closes; the analyst and the store manager read."""
    return me.role == "hq_admin" and current_actor().has("settlement:write")


def _must_change(me: Me) -> None:
    allow(me, "settlement")
    if not may_change(me):
        raise Forbidden(_("Your role cannot compute or close settlement."))


def nets_total(lines: list[SettlementLineRead]) -> int:
    """The sum of the lines' nets (pure): zero for a whole period."""
    return sum(line.net_fen for line in lines)


@get("/settlement", name="console:settlement")
async def settlement_page(request: Request[Any, Any, Any], db: Db) -> Template:
    """The chain's months, newest first, and (for HQ's admin) a month to compute."""
    me = me_of(request.scope)
    allow(me, "settlement")
    return await _periods_page(db, me)


async def _periods_page(db: AsyncSession, me: Me, status: int = 200, **extra: Any) -> Template:
    zone = await settlement.tenant_zone(db)
    rules = await settlement.get_rules(db) if me.is_hq else None  # stores: not their page's
    return render(
        "settlement.html",
        me,
        status,
        periods=(await settlement.list_periods(db)).items,
        may_change=may_change(me),
        suggested=settlement.previous_month(settlement.month_of(utcnow(), zone)),
        errors=extra.pop("errors", {}),
        rules=rules,
        rule_form=extra.pop("rule_form", None) or (rules and rule_form_of(rules)),
        rule_errors=extra.pop("rule_errors", {}),
        **extra,
    )


RULE_FIELDS = ("point_value_fen", "benefit_fee_fen", "benefit_fees")


def fees_hint() -> str:
    return _("Write each fee as code=fen (a benefit's code, lower case), e.g. free_bath=500")


def rule_form_of(rules: SettlementRules) -> dict[str, str]:
    """The rule as the form shows it (pure): fees per benefit as ``code=fen, ...``."""
    fees = ", ".join(f"{code}={fen}" for code, fen in sorted(rules.benefit_fees.items()))
    return {
        "point_value_fen": str(rules.point_value_fen),
        "benefit_fee_fen": str(rules.benefit_fee_fen),
        "benefit_fees": fees,
    }


def rule_body(form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The form as the API's body, and the fields that are not even numbers (pure)."""
    body: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in ("point_value_fen", "benefit_fee_fen"):
        try:
            body[field] = int(form.get(field, "").strip())
        except ValueError:
            errors[field] = _("Enter a whole number of fen")
    fees: dict[str, Any] = {}
    for item in form.get("benefit_fees", "").replace("\n", ",").split(","):
        if not item.strip():
            continue
        code, sign, fen = item.partition("=")
        try:
            fees[code.strip()] = int(fen.strip()) if sign else None
        except ValueError:
            fees[code.strip()] = None
        if fees[code.strip()] is None:
            errors["benefit_fees"] = fees_hint()
    body["benefit_fees"] = fees
    return body, errors


@post("/settlement/rules", name="console:settlement-rules", status_code=200)
async def settlement_rules(request: Request[Any, Any, Any], db: Db) -> Template:
    """Set the chain's settlement rule: the API's ``PUT /api/v1/settlements/rules``, audited
    there (``settlement.rules_put``) when it changes; a refused value beside its field."""
    me = me_of(request.scope)
    _must_change(me)
    form = {field: value[:2000] for field, value in (await form_of(request)).items()}
    body, errors = rule_body(form)
    try:
        if errors:
            raise Invalid("; ".join(errors), errors=[FieldError(f, m) for f, m in errors.items()])
        await settlement.put_rules(db, validated(SettlementRules, body))
    except Invalid as exc:
        shown = {_rule_field(e.field): e.message for e in exc.errors} or {"form": exc.detail}
        if "benefit_fees" in shown:  # a code's pattern says less than an example
            shown["benefit_fees"] = fees_hint()
        return await _periods_page(db, me, 422, rule_errors=shown, rule_form=form)
    return await _periods_page(db, me, notice=_("Settlement rule saved."))


def _rule_field(field: str) -> str:
    """The form's field of an error (``benefit_fees.X``: the fees' box)."""
    head = field.split(".")[0]
    return head if head in RULE_FIELDS else "form"


@get("/settlement/{month:str}", name="console:settlement-month")
async def settlement_month(
    request: Request[Any, Any, Any], db: Db, month: FromPath[str]
) -> Template:
    """A computed or closed month's lines (404 before it is computed)."""
    me = me_of(request.scope)
    allow(me, "settlement")
    return _month_page(me, await settlement.show(db, month))


def _month_page(me: Me, figures: PeriodFigures, **extra: Any) -> Template:
    return render(
        "settlement_month.html",
        me,
        figures=figures,
        nets=nets_total(figures.lines),
        whole=me.is_hq,  # a store manager's lines are theirs only: no zero to check
        may_change=may_change(me),
        **extra,
    )


@post("/settlement/compute", name="console:settlement-compute", status_code=200)
async def settlement_compute(request: Request[Any, Any, Any], db: Db) -> Template:
    """Compute a month's draft (again: the same figures from the same ledgers)."""
    me = me_of(request.scope)
    _must_change(me)
    form = await form_of(request)
    month = form.get("month", "").strip()[:16]
    if settlement.parse_month(month) is None:
        errors = {"month": _("Enter a month such as 2026-11")}
        return await _periods_page(db, me, 422, errors=errors, month=month)
    try:
        figures = await settlement.compute(db, month)
    except Invalid as exc:  # a month not begun
        errors = {"month": exc.errors[0].message if exc.errors else exc.detail}
        return await _periods_page(db, me, 422, errors=errors, month=month)
    return _month_page(me, figures, notice=_("Computed."))


@get("/settlement/{month:str}/close", name="console:settlement-confirm")
async def settlement_confirm(
    request: Request[Any, Any, Any], db: Db, month: FromPath[str]
) -> Template:
    """The confirmation step: the draft as it stands, and the form that closes it for good."""
    me = me_of(request.scope)
    _must_change(me)
    figures = await settlement.show(db, month)
    if figures.period.status == "closed":
        return _month_page(me, figures)
    return render(
        "settlement_close.html",
        me,
        figures=figures,
        nets=nets_total(figures.lines),
        reference=new_reference(),
    )


@post("/settlement/{month:str}/close", name="console:settlement-close", status_code=200)
async def settlement_close(
    request: Request[Any, Any, Any], db: Db, month: FromPath[str]
) -> Template:
    """Close the month: computed once more and frozen, audited, announced once
    (``settlement.period_closed``). The form's reference is the close's idempotency key."""
    me = me_of(request.scope)
    _must_change(me)
    form = await form_of(request)
    if form.get("confirm") != "yes":
        raise Invalid.field("confirm", _("Confirm that the month closes for good."))
    data = validated(CloseIn, {"idempotency_key": form.get("reference", "")})
    answer = await settlement.close(db, month, data)
    notice = _("Already closed.") if answer.replayed else _("Closed. Its figures are final.")
    return _month_page(me, await settlement.show(db, month), notice=notice)
